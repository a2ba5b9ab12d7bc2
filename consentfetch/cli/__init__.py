"""The ``consentfetch`` command line: the only code that prints.

    consentfetch download INPUT OUTPUT_DIR [options]
    consentfetch audit OUTPUT_DIR [--by status|reason|host] [--format table|json|csv] [...]
    consentfetch why URL OUTPUT_DIR | consentfetch why --host HOST OUTPUT_DIR
    consentfetch report OUTPUT_DIR -o report.html
    consentfetch recheck OUTPUT_DIR [--headers] [--output NEW_DIR] [...]
    consentfetch check URL [URL...]
    consentfetch demo [OUTPUT_DIR]

One module per command (or family of commands), each with ``add_commands``,
which adds its subcommands to the parser and returns their handlers. This
module assembles the parser, sets up logging, and turns what a handler raises
into a message and an exit code: 2 for a :class:`ConsentFetchError`, 130 when
interrupted. Everything else in the package logs.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .._version import __version__
from ..errors import ConsentFetchError, RunInterrupted
from . import audit, check, demo, download, recheck
from .common import EXIT_ERROR, EXIT_INTERRUPTED, Handler, failed, shown

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "build_parser", "main"]

# In the order `consentfetch --help` lists them.
_COMMAND_MODULES = (audit, download, recheck, check, demo)


class _Parser(argparse.ArgumentParser):
    """argparse, with a hint for img2dataset's snake_case spelling of our flags."""

    def error(self, message: str) -> NoReturn:
        hint = _kebab_hint(self, message)
        super().error(message + hint)


def _kebab_hint(parser: argparse.ArgumentParser, message: str) -> str:
    """" (did you mean --image-size?)" for "unrecognized arguments: --image_size 256"."""
    if "unrecognized arguments:" not in message:
        return ""
    known = {flag for action in _all_actions(parser) for flag in action.option_strings}
    words = message.split("unrecognized arguments:", 1)[1].split()
    guesses = [word.split("=", 1)[0].replace("_", "-") for word in words
               if word.startswith("--") and "_" in word]
    found = [guess for guess in guesses if guess in known]
    return f" (did you mean {', '.join(found)}? flags are spelled with '-')" if found else ""


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions += _all_actions(sub)
    return actions


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The parser of every command, and {command: handler}."""
    parser = _Parser(
        prog="consentfetch",
        description="Download image datasets while honouring every machine-readable opt-out.")
    parser.add_argument("--version", action="version", version=f"consentfetch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)
    handlers: dict[str, Handler] = {}
    for module in _COMMAND_MODULES:
        handlers.update(module.add_commands(sub))
    for command in sub.choices.values():  # -v also after the command: `download ... -v`
        command.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                             help="more log lines (-vv: debug)")
    return parser, handlers


class _TerminalFormatter(logging.Formatter):
    """Log lines shown with :func:`~.common.shown`: a logged URL or header value can
    neither repaint the terminal, nor forge a second log line, nor show a password."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return shown(super().formatMessage(record))


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 \
        else logging.DEBUG
    handler = logging.StreamHandler()
    handler.setFormatter(_TerminalFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return _run(handlers[args.command], args)
    finally:
        # Arrow objects left for the interpreter's final teardown can abort the
        # process after its work is done ("terminate called without an active
        # exception", apache/arrow#34314, #39862): collect them while Arrow is alive.
        gc.collect()


def _run(handler: Handler, args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except RunInterrupted as exc:
        print(f"\nconsentfetch: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\nconsentfetch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConsentFetchError as exc:
        return failed(exc)
    except BrokenPipeError:
        # The reader went away (`consentfetch audit out/ | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
