"""consentfetch: download image datasets while honouring every machine-readable opt-out.

Public names are the ones in ``__all__``; every other module may change.
"""

from ._version import __version__
from .audit import explain_url, read_audit, summarize_audit
from .check import CheckResult, check_url
from .config import FetchConfig, FetchOptions, make_config
from .errors import (
    ConfigError,
    ConsentFetchError,
    InputError,
    OutputError,
    RecheckNotFound,
    RunInterrupted,
)
from .progress import ProgressSnapshot, ProgressView
from .recheck.apply import ApplyReport, apply_recheck
from .recheck.decide import RecheckReport, recheck_shards
from .run import Report, fetch_shards

__all__ = [
    "ApplyReport",
    "CheckResult",
    "ConfigError",
    "ConsentFetchError",
    "FetchConfig",
    "FetchOptions",
    "InputError",
    "OutputError",
    "ProgressSnapshot",
    "ProgressView",
    "RecheckNotFound",
    "RecheckReport",
    "Report",
    "RunInterrupted",
    "__version__",
    "apply_recheck",
    "check_url",
    "explain_url",
    "fetch_shards",
    "make_config",
    "read_audit",
    "recheck_shards",
    "summarize_audit",
]
