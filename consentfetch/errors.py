"""The exceptions consentfetch raises to its caller.

Per-URL problems never raise: they become audit rows with a status and a
reason code (see :mod:`consentfetch.consent.decision`). Exceptions are for
problems a caller can act on: bad options, unreadable input, an output folder
we cannot use, an interrupted run.

    ConsentFetchError
    ├── ConfigError (ValueError)        an option has a bad value or type
    │   └── FilterError                 a ``--filter`` expression that does not parse,
    │                                   or names an unknown column
    ├── InputError (ValueError)         the URL list cannot be read
    ├── OutputError (OSError)           the output folder cannot be created or written
    │                                   (permission, full disk, an object store's error,
    │                                   a file in its place), or holds shards another
    │                                   tool wrote (img2dataset)
    │   └── RecheckNotFound             no recheck to apply in the folder(s) given
    └── RunInterrupted (KeyboardInterrupt-like, but an Exception)
                                        the run was stopped before it finished
"""

from __future__ import annotations


class ConsentFetchError(Exception):
    """Base class of every exception raised by consentfetch."""


class ConfigError(ConsentFetchError, ValueError):
    """An option has a value we cannot use."""


class FilterError(ConfigError):
    """A ``consentfetch audit --filter`` expression (``select_rows``) that does not
    parse, or names a column the audit does not have."""


class InputError(ConsentFetchError, ValueError):
    """The input URL list is missing, of an unknown format, or lacks a column."""


class OutputError(ConsentFetchError, OSError):
    """The output folder cannot be created or written, or is not ours to write."""


class RecheckNotFound(OutputError):
    """``apply_recheck`` found no ``rechecks/<stamp>/recheck.parquet`` to apply."""


class RunInterrupted(ConsentFetchError):
    """The run was stopped (Ctrl-C or SIGTERM) before every shard finished.

    Completed shards are kept; running the same command again resumes.
    """
