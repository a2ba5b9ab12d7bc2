"""The ``consentfetch`` command line: the only code that prints.

    consentfetch download INPUT OUTPUT_DIR [options]
    consentfetch audit OUTPUT_DIR [--by status|reason|host] [--format table|json|csv] [...]
    consentfetch why URL OUTPUT_DIR | consentfetch why --host HOST OUTPUT_DIR
    consentfetch report OUTPUT_DIR -o report.html
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
import logging
import os
import sys
from collections.abc import Sequence

from .._version import __version__
from ..errors import ConsentFetchError, RunInterrupted
from . import audit, check, demo, download
from .common import EXIT_ERROR, EXIT_INTERRUPTED, Handler, shown

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "build_parser", "main"]

# In the order `consentfetch --help` lists them.
_COMMAND_MODULES = (audit, download, check, demo)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The parser of every command, and {command: handler}."""
    parser = argparse.ArgumentParser(
        prog="consentfetch",
        description="Download image datasets while honouring every machine-readable opt-out.")
    parser.add_argument("--version", action="version", version=f"consentfetch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)
    handlers: dict[str, Handler] = {}
    for module in _COMMAND_MODULES:
        handlers.update(module.add_commands(sub))
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
        return handlers[args.command](args)
    except RunInterrupted as exc:
        print(f"\nconsentfetch: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\nconsentfetch: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ConsentFetchError as exc:
        print(f"consentfetch: error: {shown(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`consentfetch audit out/ | head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
