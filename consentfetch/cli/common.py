"""What every command shares: exit codes, the handler type, safe terminal text.

A handler takes the parsed arguments, prints its results to stdout (problems
to stderr) and returns an exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from ..safetext import for_terminal, redact_userinfo

EXIT_OK, EXIT_NO_DATA, EXIT_USAGE = 0, 1, 2
EXIT_ERROR = 2  # a ConsentFetchError: something the user must fix
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def shown(text: str) -> str:
    """A message for the terminal: URL credentials redacted, controls escaped."""
    return for_terminal(redact_userinfo(text))


def cell(value: Any) -> str:
    """One value of a row for the terminal: ``-`` for none, controls escaped."""
    if value is None:
        return "-"
    return for_terminal(str(value))


def usage_error(message: str) -> int:
    print(f"consentfetch: error: {for_terminal(message)}", file=sys.stderr)
    return EXIT_USAGE


def failed(exc: Exception) -> int:
    """A ConsentFetchError the user must fix (a missing folder, a file that is no
    run): said as an error, exit 2."""
    print(f"consentfetch: error: {shown(str(exc))}", file=sys.stderr)
    return EXIT_ERROR


def note_foreign(output_dir: str) -> None:
    """Say on stderr when another tool (img2dataset) wrote ``output_dir``: its rows
    are read as a courtesy, and no consent check was recorded."""
    from ..audit import IMG2DATASET, IMG2DATASET_NOTE, written_by
    if written_by(output_dir) == IMG2DATASET:
        print(f"consentfetch: note: {shown(output_dir)} was {IMG2DATASET_NOTE}",
              file=sys.stderr)


def no_data(message: str) -> int:
    print(f"consentfetch: {shown(message)}", file=sys.stderr)
    return EXIT_NO_DATA


def positive(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value
