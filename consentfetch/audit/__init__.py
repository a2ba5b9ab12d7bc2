"""Reading the audit back: every row of every complete shard of an output folder.

The package, by job:

* :mod:`.read` — :func:`read_audit` (the rows, as one pyarrow Table, optionally
  narrowed to a status, a reason code or a host), :func:`read_columns`,
  ``run.json`` and ``origins.parquet``;
* :mod:`.hosts` — the hostname of every row, URL normalisation, :func:`find_url`;
* :mod:`.summary` — :func:`summarize_audit`: totals by status and by reason,
  grouped rows for a table, the hosts that opted out or failed most;
* :mod:`.filter` — the ``consentfetch audit --filter`` language
  (:func:`parse_filter` → a typed tree, :func:`select_rows`); nothing is ever
  ``eval``-ed;
* :mod:`.catalogue` — the one wording of every status and reason code;
* :mod:`.why` — :func:`explain_url` / :func:`explain_host`: rows in plain words;
* :mod:`.report` — the self-contained HTML report of a run;
* :mod:`.img2dataset` — img2dataset's output folders read as an audit, as a courtesy.

Everything works on a finished run and on one still in progress, on any
fsspec URL, and on outputs written before the ``evidence_*`` columns existed.
"""

from ..errors import FilterError
from .catalogue import REASONS, STATUSES, reason_label, reason_wording, status_wording
from .filter import parse_filter, select_rows
from .hosts import find_url, host_column, hostname, normalize_url
from .img2dataset import IMG2DATASET, IMG2DATASET_NOTE
from .read import (
                   ROW_COLUMNS,
                   completed_shard_count,
                   open_output,
                   read_audit,
                   read_columns,
                   read_origins,
                   read_run,
                   written_by,
)
from .summary import FAILED, STATUS_ORDER, SUMMARY_GROUPS, summarize_audit
from .why import explain_host, explain_row, explain_url

__all__ = [
    "FAILED",
    "IMG2DATASET",
    "IMG2DATASET_NOTE",
    "REASONS",
    "ROW_COLUMNS",
    "STATUSES",
    "STATUS_ORDER",
    "SUMMARY_GROUPS",
    "FilterError",
    "completed_shard_count",
    "explain_host",
    "explain_row",
    "explain_url",
    "find_url",
    "host_column",
    "hostname",
    "normalize_url",
    "open_output",
    "parse_filter",
    "read_audit",
    "read_columns",
    "read_origins",
    "read_run",
    "reason_label",
    "reason_wording",
    "select_rows",
    "status_wording",
    "summarize_audit",
    "written_by",
]
