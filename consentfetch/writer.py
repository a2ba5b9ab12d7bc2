"""Output: webdataset tar shards, audit parquet, stats, run.json, origins.parquet.

The names are :mod:`~consentfetch.layout`'s; this module writes the files.

Atomic completion: on a local file system every file is written under
``<name>.tmp`` and renamed when whole. A shard's files are renamed tar,
parquet, then stats: a shard is complete exactly when its ``_stats.json``
exists (the tar and parquet were renamed before it), so a crash never leaves a
shard that looks complete.

On an object store (``s3://``, ``gs://``, ``memory://``, any non-local fsspec
file system) a rename is a copy, not atomic, but an object appears whole when
its upload completes, or not at all. There the tar is built in a local
temporary file while the shard runs, and at the end the tar, the parquet and
then the stats file are uploaded under their final names, in that order: the
stats file, written last, is still the completion marker. A crash leaves at
most a tar or a tar and a parquet without a stats file, which a resumed run
removes (:meth:`OutputDir.remove_incomplete`).
"""

from __future__ import annotations

import bisect
import errno
import functools
import io
import itertools
import json
import logging
import shutil
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Concatenate, ParamSpec, TypeVar

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .consent.decision import Evidence, Status
from .errors import OutputError
from .layout import (
    LEGACY_ORIGIN_PART,
    ORIGINS_FILE,
    RECHECKS_DIR,
    RUN_FILE,
    TMP_SUFFIX,
    completed_shard,
    is_origin_part,
    is_run_file,
    member_key,
    member_name,
    shard_files,
    shard_name,
    shard_of,
    temporary,
)
from .reader import InputRow
from .safetext import redact_userinfo
from .tarstream import TarStream

logger = logging.getLogger(__name__)

TAR_MTIME = 0  # a fixed member mtime makes tars reproducible (as webdataset's TarWriter allows)

# The evidence as data beside its text (ARCHITECTURE.md §5), from consent.decision.Evidence;
# null when a row has none (successes) and in outputs written before they existed.
EVIDENCE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("evidence_signal", pa.string()),
    pa.field("evidence_file", pa.string()),
    pa.field("evidence_file_sha256", pa.string()),
    pa.field("evidence_fetched_at", pa.timestamp("us", tz="UTC")),
    pa.field("evidence_line", pa.int32()),
    pa.field("evidence_rule", pa.string()),
    pa.field("evidence_agent", pa.string()),
)

# The audit columns after the kept input columns, in order (ARCHITECTURE.md §5).
AUDIT_FIELDS: tuple[pa.Field, ...] = (
    pa.field("status", pa.string()),
    pa.field("reason", pa.string()),
    pa.field("evidence", pa.string()),
    pa.field("http_status", pa.int32()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("original_width", pa.int32()),
    pa.field("original_height", pa.int32()),
    pa.field("sha256", pa.string()),
    pa.field("decided_at", pa.timestamp("us", tz="UTC")),
    # How the run decided consent, on every row so a dataset says how it was made.
    pa.field("consent_profile", pa.string()),
    pa.field("ignored_checks", pa.string()),  # comma-separated; null when none
    *EVIDENCE_FIELDS,
    # Where the body came from, for ``consentfetch recheck``: the URLs the request was
    # redirected to, in order (null: no redirect), and the body's size in bytes.
    pa.field("redirects", pa.list_(pa.string())),
    pa.field("body_size", pa.int64()),
)
LEAD_FIELDS: tuple[pa.Field, ...] = (
    pa.field("key", pa.string()),
    pa.field("url", pa.string()),
    pa.field("caption", pa.string()),
)
# The columns of origins.parquet's parts (consent.origins.OriginFile.to_row), fixed
# so that every part, whatever its rows hold, reads as one dataset with the others.
ORIGIN_FIELDS: tuple[pa.Field, ...] = (
    pa.field("origin", pa.string()),
    pa.field("kind", pa.string()),
    pa.field("url", pa.string()),
    pa.field("http_status", pa.int64()),
    pa.field("outcome", pa.string()),
    pa.field("error", pa.string()),
    pa.field("fetched_at", pa.timestamp("us", tz="UTC")),
    pa.field("size", pa.int64()),
    pa.field("sha256", pa.string()),
    pa.field("body", pa.binary()),
    pa.field("unreached_reason", pa.string()),
    pa.field("truncated", pa.bool_()),
)
# Rows per row group of an origin part: small, so a reader looking for a few
# origins skips, by the row groups' min/max statistics, almost all of a part.
ORIGIN_ROW_GROUP = 64
RESERVED_COLUMNS = frozenset(f.name for f in LEAD_FIELDS + AUDIT_FIELDS)

# Who wrote an output folder's shards (OutputDir.written_by).
CONSENTFETCH = "consentfetch"
IMG2DATASET = "img2dataset"
UNKNOWN_WRITER = "unknown"


def storable(value: Any) -> Any:
    """``value`` with every string in it made storable as UTF-8.

    Text can hold lone surrogates: a header or reason phrase that was not
    UTF-8 (decoded with ``surrogateescape``), a ``"\\ud800"`` in a JSON file or
    input line. pyarrow, the tar's UTF-8 members and strict JSON readers refuse
    them; each becomes its backslash escape (``\\udcff``), so the audit row is
    written and still shows what was there. Dicts, lists and tuples are walked.
    """
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(k) if isinstance(k, str) else k: storable(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [storable(v) for v in value]
    return value


def storable_text(text: str) -> str:
    """``text``, lone surrogates replaced by their backslash escapes."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def evidence_columns(proof: Evidence | None) -> dict[str, Any]:
    """The ``evidence_*`` cells of an audit row (all null without evidence data)."""
    if proof is None:
        return {f.name: None for f in EVIDENCE_FIELDS}
    file = None if proof.file is None else redact_userinfo(proof.file)
    return {"evidence_signal": str(proof.signal), "evidence_file": file,
            "evidence_file_sha256": proof.file_sha256,
            "evidence_fetched_at": proof.fetched_at, "evidence_line": proof.line,
            "evidence_rule": proof.rule, "evidence_agent": proof.agent}


def audit_schema(extra_fields: Sequence[pa.Field]) -> pa.Schema:
    return pa.schema([*LEAD_FIELDS, *extra_fields, *AUDIT_FIELDS])


@dataclass(frozen=True, slots=True)
class RowResult:
    """What happened to one input row; becomes its audit row (and sample, on success)."""

    status: Status
    reason: str | None = None
    evidence: str | None = None
    proof: Evidence | None = None  # the evidence as data; ``evidence`` is its text
    http_status: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    original_width: int | None = None
    original_height: int | None = None
    image: bytes | None = None  # the encoded sample, success only
    blurred: int | None = None  # --bbox-col: boxes blurred (said in the sample .json)
    redirects: list[str] | None = None  # the URLs redirected to, in order; None: none
    body_size: int | None = None  # bytes of the downloaded body
    decided_at: datetime = field(default_factory=lambda: datetime.now(UTC))


# What the user is told for the errors a write to the output folder meets most.
_WRITE_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}


def write_error_message(url: str, exc: OSError, file: str | None = None) -> str:
    """The message of the :class:`OutputError` for ``exc``, met writing to the output
    folder ``url``; ``file`` is a file found where the folder should be. Pure."""
    if file is not None:
        where = "" if file.rstrip("/") == url.rstrip("/") else f" ({file} is a file)"
        return (f"OUTPUT_DIR {url} is a file, not a folder{where}: give the path of a "
                "folder, new or holding an earlier run")
    what = _WRITE_ERRORS.get(exc.errno or 0)
    return f"cannot write to output folder {url}: " + (f"{what} ({exc})" if what else str(exc))


@contextmanager
def output_errors(url: str) -> Iterator[None]:
    """Every ``OSError`` met inside (permission, full disk, an object store's error)
    becomes an :class:`OutputError` naming the output folder ``url``: the one place
    file-system errors of the output are translated."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(write_error_message(redact_userinfo(url), exc)) from exc


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _writes(method: Callable[Concatenate[Any, _P], _R]) -> Callable[Concatenate[Any, _P], _R]:
    """A method that writes to the output folder ``self.url``: see :func:`output_errors`."""
    @functools.wraps(method)
    def wrapper(self: Any, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with output_errors(self.url):
            return method(self, *args, **kwargs)
    return wrapper


class OutputDir:
    """The output folder, local or any fsspec URL.

    Every method that writes raises :class:`OutputError` for a file-system
    error (:func:`output_errors`).
    """

    def __init__(self, path: str, storage_options: dict[str, Any] | None = None) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(str(path), **(storage_options or {}))
        self.root = self.root.rstrip("/")
        self.url = str(path)
        self.storage_options = dict(storage_options or {})
        # Renames are atomic only on a local file system; elsewhere files are
        # written under their final names and the stats file marks completion.
        self.local = _is_local(self.fs)
        try:
            self.fs.makedirs(self.root, exist_ok=True)
        except OSError as exc:
            file = self._file_in_path()
            message = write_error_message(redact_userinfo(self.url), exc, file) if file \
                else f"cannot create output folder {redact_userinfo(self.url)}: {exc}"
            raise OutputError(message) from exc

    def _file_in_path(self) -> str | None:
        """The file standing where the folder or one of its parents should be, if any."""
        path = self.root
        for _ in range(path.count("/") + 1):  # at most one step per level
            try:
                if self.fs.isfile(path):
                    return str(path)
            except OSError:
                return None
            parent = path.rsplit("/", 1)[0]
            if parent in (path, ""):
                return None
            path = parent
        return None

    def path(self, name: str) -> str:
        return f"{self.root}/{name}"

    def exists(self, name: str) -> bool:
        # Other processes write here too: an object store's cached listing would be stale.
        self.fs.invalidate_cache(self.root)
        return bool(self.fs.exists(self.path(name)))

    def names(self) -> list[str]:
        self.fs.invalidate_cache(self.root)
        try:
            listed = self.fs.ls(self.root, detail=False)
        except FileNotFoundError:  # an object store has no empty folders
            return []
        return sorted(p.rsplit("/", 1)[-1] for p in listed)

    def completed_shards(self) -> set[int]:
        """Shard ids whose stats file exists, i.e. that finished (see module doc)."""
        return {shard_id for name in self.names()
                if (shard_id := completed_shard(name)) is not None}

    def written_by(self) -> str | None:
        """Which tool wrote the shards here: :data:`CONSENTFETCH` (our ``run.json``
        is present), :data:`IMG2DATASET` (shards without ``run.json`` whose stats
        or parquet are img2dataset's), :data:`UNKNOWN_WRITER` (other shards without
        ``run.json``), or None when the folder holds no ``run.json`` and no shard."""
        if self.exists(RUN_FILE):
            return CONSENTFETCH
        started = sorted({i for name in self.names() if (i := shard_of(name)) is not None})
        if not started:
            return None
        try:
            return IMG2DATASET if self._img2dataset_shard(started[0]) else UNKNOWN_WRITER
        except (OSError, ValueError):
            return UNKNOWN_WRITER

    def _img2dataset_shard(self, shard_id: int) -> bool:
        """Whether a shard has img2dataset's files: stats with its keys but not our
        ``reasons``, or else a parquet with its ``error_message`` column."""
        _, parquet, stats = shard_files(shard_id)
        if self.exists(stats):
            found = self.read_json(stats)
            return isinstance(found, dict) and "reasons" not in found \
                and "status_dict" in found
        if self.exists(parquet):
            with self.fs.open(self.path(parquet), "rb") as f:
                return "error_message" in pq.ParquetFile(f).schema_arrow.names
        return False

    def shard_problem(self, shard_id: int) -> str | None:
        """Why a shard that looks complete is not (None when it is whole).

        Complete means: tar, parquet and stats all present, the parquet holds
        ``count`` rows, and the tar holds one ``.json`` member per success. On
        an object store, where each file is whole or absent, the sizes the
        stats file recorded are compared instead of reading every tar back.
        """
        tar_file, parquet, stats_file = shard_files(shard_id)
        missing = [n for n in (tar_file, parquet, stats_file) if not self.exists(n)]
        if missing:
            return f"missing {', '.join(missing)}"
        try:
            stats = self.read_json(stats_file)
            if not self.local and "bytes" in stats:
                return self._size_problem(shard_name(shard_id), stats["bytes"])
            with self.fs.open(self.path(parquet), "rb") as f:
                rows = pq.ParquetFile(f).metadata.num_rows
            with self.fs.open(self.path(tar_file), "rb") as f, \
                    tarfile.open(fileobj=f, mode="r:") as tar:
                samples = sum(1 for m in tar if m.name.endswith(".json"))
        except (OSError, ValueError, KeyError, tarfile.TarError) as exc:
            return f"unreadable: {exc}"
        if rows != stats["count"] or samples != stats["successes"]:
            return (f"{rows} audit rows and {samples} samples, but stats say "
                    f"{stats['count']} rows and {stats['successes']} successes")
        return None

    def _size_problem(self, stem: str, sizes: dict[str, int]) -> str | None:
        for suffix, expected in sizes.items():
            actual = self.fs.size(self.path(f"{stem}.{suffix}"))
            if actual != expected:
                return f"{stem}.{suffix} has {actual} bytes, but stats say {expected}"
        return None

    @_writes
    def remove_shard(self, shard_id: int) -> None:
        """Delete every file of a shard, stats first (so it stops looking complete)."""
        tar, parquet, stats = shard_files(shard_id)
        for name in (stats, tar, parquet):
            if self.exists(name):
                self.fs.rm(self.path(name))

    @_writes
    def remove_shard_leftovers(self, shard_id: int, *, keep_complete: bool = False) -> None:
        """Before a (re)try of a shard: delete what an earlier attempt left of it.

        Its temporary files always; with ``keep_complete`` (a --retry-failed
        rewrite starts from the complete shard) only those, otherwise every
        file of the shard. Names are probed one by one, without listing the folder.
        """
        self.fs.invalidate_cache(self.root)
        tar, parquet, stats = shard_files(shard_id)
        names = [temporary(n) for n in (tar, parquet, stats)]
        if not keep_complete:
            names = [stats, tar, parquet, *names]
        for name in names:
            if self.fs.exists(self.path(name)):
                self.fs.rm(self.path(name))

    @_writes
    def remove_incomplete(self) -> list[int]:
        """Delete the files of shards that did not finish; returns their ids."""
        complete = {i for i in self.completed_shards() if self.shard_problem(i) is None}
        started = {shard_id for name in self.names()
                   if (shard_id := shard_of(name)) is not None}
        broken = sorted(started - complete)
        for shard_id in broken:
            self.remove_shard(shard_id)
        return broken

    @_writes
    def remove_temporaries(self) -> list[str]:
        """Delete leftovers of an interrupted run; returns their names."""
        leftovers = [n for n in self.names() if n.endswith(TMP_SUFFIX)]
        leftovers += [n for n in self._origin_names() if n.endswith(TMP_SUFFIX)]
        for name in leftovers:
            self.fs.rm(self.path(name))
        return leftovers

    @_writes
    def remove_run(self) -> None:
        """For --overwrite: delete every file a previous run wrote."""
        for name in self.names():
            if is_run_file(name):
                self.fs.rm(self.path(name), recursive=name in (ORIGINS_FILE, RECHECKS_DIR))

    def _origin_names(self) -> list[str]:
        """Every name in the origins folder (``origins.parquet/...``), sorted."""
        folder = self.path(ORIGINS_FILE)
        self.fs.invalidate_cache(folder)
        try:
            if not self.fs.isdir(folder):
                return []
            listed = self.fs.ls(folder, detail=False)
        except FileNotFoundError:
            return []
        return sorted(f"{ORIGINS_FILE}/{p.rsplit('/', 1)[-1]}" for p in listed)

    def origin_parts(self) -> list[str]:
        """The finished parts of origins.parquet, oldest first: a run's single
        origins.parquet file if it is an older run's, else the folder's parts."""
        if self.exists(ORIGINS_FILE) and not self.fs.isdir(self.path(ORIGINS_FILE)):
            return [ORIGINS_FILE]
        return [n for n in self._origin_names() if is_origin_part(n.split("/", 1)[1])]

    @_writes
    def adopt_legacy_origins(self) -> bool:
        """Move an older run's single origins.parquet file into the folder of parts,
        as its oldest part, so a resumed run can add parts beside it."""
        if self.origin_parts() != [ORIGINS_FILE]:
            return False
        self.fs.mv(self.path(ORIGINS_FILE), self.path(temporary(ORIGINS_FILE)))
        self.fs.makedirs(self.path(ORIGINS_FILE), exist_ok=True)
        self.fs.mv(self.path(temporary(ORIGINS_FILE)), self.path(LEGACY_ORIGIN_PART))
        return True

    @_writes
    def write_origin_part(self, name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Write origin-file rows as the part ``name``, sorted by origin, kind and URL,
        in small row groups (see :data:`ORIGIN_ROW_GROUP`)."""
        ordered = sorted(rows, key=lambda r: (r["origin"], r["kind"], r["url"]))
        table = pa.Table.from_pylist([storable(r) for r in ordered],
                                     schema=pa.schema(ORIGIN_FIELDS))
        self.write_table(name, table, row_group_size=ORIGIN_ROW_GROUP)

    @_writes
    def commit(self, name: str) -> None:
        self.fs.mv(self.path(temporary(name)), self.path(name))

    @_writes
    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole file atomically: locally a temporary name, then a rename;
        on an object store one upload, which appears whole or not at all."""
        if not self.local:
            self.fs.pipe_file(self.path(name), data)
            return
        with self.fs.open(self.path(temporary(name)), "wb") as f:
            f.write(data)
        self.commit(name)

    @_writes
    def upload(self, name: str, source: IO[bytes]) -> int:
        """Copy ``source`` (from its start) to ``name`` on an object store; returns its size."""
        source.seek(0)
        with self.fs.open(self.path(name), "wb") as f:
            shutil.copyfileobj(source, f, 1 << 20)
        return source.tell()

    @_writes
    def write_json(self, name: str, value: Any) -> None:
        text = json.dumps(storable(value), indent=2, default=str)
        self.write_bytes(name, (text + "\n").encode())

    def read_json(self, name: str) -> Any:
        with self.fs.open(self.path(name), "rb") as f:
            return json.load(f)

    def read_table(self, name: str) -> pa.Table:
        # ParquetFile, not pq.read_table: with a file object, read_table's
        # threaded dataset reader makes pyarrow 26 abort at interpreter exit
        # now and then ("terminate called without an active exception").
        with self.fs.open(self.path(name), "rb") as f:
            return pq.ParquetFile(f).read()

    def read_rows(self, name: str, column: str, values: set[str]) -> list[dict[str, Any]]:
        """The rows of a parquet file whose ``column`` is in ``values``.

        Skips the row groups whose min/max statistics of ``column`` hold none of
        ``values``; of the others reads ``column`` first, then only those
        holding a match. A file sorted by ``column`` in small row groups is
        read for the matches only, however many rows it holds.
        """
        ordered = sorted(values)
        wanted = pa.array(ordered, pa.string())
        with self.fs.open(self.path(name), "rb") as f:
            pf = pq.ParquetFile(f)
            index = pf.schema_arrow.get_field_index(column)
            groups = [g for g in range(pf.num_row_groups)
                      if _may_hold(pf.metadata.row_group(g).column(index).statistics, ordered)]
            if not groups:
                return []
            # One read of the column over every candidate group, then one of the
            # groups that hold a match: few calls, however many groups match.
            keys = pf.read_row_groups(groups, columns=[column]).column(column)
            hits = pc.indices_nonzero(pc.is_in(keys, value_set=wanted)).to_pylist()
            if not hits:
                return []
            ends = list(itertools.accumulate(pf.metadata.row_group(g).num_rows for g in groups))
            matched = sorted({groups[bisect.bisect_right(ends, hit)] for hit in hits})
            table = pf.read_row_groups(matched)
        return _rows_where(table, column, wanted)

    def read_columns(self, name: str, columns: list[str]) -> tuple[pa.Table, list[int]]:
        """``columns`` of a parquet file, nothing else, and how many rows each of
        its row groups holds."""
        with self.fs.open(self.path(name), "rb") as f:
            pf = pq.ParquetFile(f)
            sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
            return pf.read(columns=columns), sizes

    def read_groups(self, name: str, groups: list[int], column: str,
                    values: set[str]) -> list[dict[str, Any]]:
        """The rows of the row groups ``groups`` of a parquet file whose ``column`` is
        in ``values``: for a reader that knows where its rows are (see :meth:`read_rows`
        for one that does not)."""
        with self.fs.open(self.path(name), "rb") as f:
            table = pq.ParquetFile(f).read_row_groups(sorted(set(groups)))
        return _rows_where(table, column, pa.array(sorted(values), pa.string()))

    def iter_rows(self, name: str, batch_rows: int = 4096) -> Iterator[dict[str, Any]]:
        """The rows of a parquet file, read ``batch_rows`` at a time."""
        with self.fs.open(self.path(name), "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
                yield from batch.to_pylist()

    @_writes
    def write_rows(self, name: str, rows: Sequence[dict[str, Any]],
                   row_group_size: int | None = None) -> None:
        """Write ``rows`` as the parquet file ``name``, their strings made :func:`storable`."""
        self.write_table(name, pa.Table.from_pylist([storable(r) for r in rows]),
                         row_group_size=row_group_size)

    @_writes
    def write_table(self, name: str, table: pa.Table, row_group_size: int | None = None) -> None:
        if "/" in name:
            self.fs.makedirs(self.path(name.rsplit("/", 1)[0]), exist_ok=True)
        if not self.local:
            sink = io.BytesIO()
            pq.write_table(table, sink, row_group_size=row_group_size)
            self.write_bytes(name, sink.getvalue())
            return
        with self.fs.open(self.path(temporary(name)), "wb") as f:
            pq.write_table(table, f, row_group_size=row_group_size)
        self.commit(name)


def _rows_where(table: pa.Table, column: str, wanted: pa.Array) -> list[dict[str, Any]]:
    """The rows of ``table`` whose ``column`` is one of ``wanted``."""
    rows: list[dict[str, Any]] = table.filter(
        pc.is_in(table.column(column), value_set=wanted)).to_pylist()
    return rows


def _may_hold(stats: pq.Statistics | None, ordered: list[str]) -> bool:
    """Whether a row group with column ``stats`` may hold one of ``ordered`` (sorted)."""
    if stats is None or not stats.has_min_max:
        return True
    low, high = stats.min, stats.max
    if not isinstance(low, str) or not isinstance(high, str):
        return True
    at = bisect.bisect_left(ordered, low)
    return at < len(ordered) and ordered[at] <= high


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


class ShardWriter:
    """Writes one shard: samples into a tar as they arrive, the audit at the end."""

    def __init__(self, out: OutputDir, shard_id: int, extra_fields: Sequence[pa.Field], *,
                 encode_format: str, save_caption: bool,
                 run_columns: dict[str, Any] | None = None,
                 replace_keys: set[str] | None = None) -> None:
        self.out = out
        self.url = out.url  # named by the OutputError of a failed write
        self.stem = shard_name(shard_id)
        self.tar, self.parquet, self.stats = shard_files(shard_id)
        self.shard_id = shard_id
        self.schema = audit_schema(extra_fields)
        self.extra_names = [f.name for f in extra_fields]
        self.encode_format = encode_format
        self.save_caption = save_caption
        self.run_columns = run_columns or {}
        self.started = time.time()
        self._rows: list[dict[str, Any]] = []
        # Locally the tar streams to its temporary name; for an object store it
        # is built in a local temporary file and uploaded whole at commit.
        with output_errors(out.url):
            self._tar_file: IO[bytes] = (
                out.fs.open(out.path(temporary(self.tar)), "wb") if out.local
                else tempfile.TemporaryFile(prefix=f"consentfetch-{self.stem}-", suffix=".tar"))
            self._tar = TarStream(self._tar_file, mtime=TAR_MTIME)
            self._rewrite = replace_keys is not None
            if replace_keys is not None:
                self._carry_over(replace_keys)

    def _carry_over(self, replace_keys: set[str]) -> None:
        """Start from the existing shard: its samples and audit rows but ``replace_keys``."""
        table = self.out.read_table(self.parquet)
        # Columns the shard gained after its download (an applied recheck's
        # withdrawn_at) stay, null on the rewritten rows.
        for column in table.schema:
            if column.name not in self.schema.names:
                self.schema = self.schema.append(column)
        self._rows = [r for r in table.to_pylist() if r["key"] not in replace_keys]
        with self.out.fs.open(self.out.path(self.tar), "rb") as f, \
                tarfile.open(fileobj=f, mode="r:") as old:
            for member in old:
                if member_key(member.name) not in replace_keys:
                    data = old.extractfile(member)
                    self._tar.add(member.name, data.read() if data else b"")

    @_writes
    def add(self, key: str, row: InputRow, result: RowResult) -> None:
        record = self._record(key, row, result)
        self._rows.append(record)
        if result.status is Status.SUCCESS and result.image is not None:
            self._add_member(member_name(key, self.encode_format), result.image)
            if self.save_caption:
                self._add_member(member_name(key, "txt"), (record["caption"] or "").encode())
            meta = {**record, "decided_at": result.decided_at.isoformat()}
            if result.blurred is not None:
                meta["blurred_boxes"] = result.blurred
            self._add_member(member_name(key, "json"),
                             json.dumps(meta, ensure_ascii=False, default=str).encode())

    def _record(self, key: str, row: InputRow, result: RowResult) -> dict[str, Any]:
        # Credentials in an input URL are used for its request, never stored:
        # not in the audit, not in the sample .json (https://***@host/a.jpg).
        url = None if row.url is None else redact_userinfo(row.url)
        record: dict[str, Any] = {"key": key, "url": url, "caption": row.caption}
        for name in self.extra_names:
            record[name] = row.extra.get(name)
        record.update(
            status=str(result.status), reason=result.reason,
            evidence=None if result.evidence is None else redact_userinfo(result.evidence),
            http_status=result.http_status, width=result.width, height=result.height,
            original_width=result.original_width, original_height=result.original_height,
            sha256=result.sha256, decided_at=result.decided_at, **self.run_columns,
            **evidence_columns(result.proof),
            redirects=None if result.redirects is None
            else [redact_userinfo(u) for u in result.redirects], body_size=result.body_size)
        return {name: storable(value) for name, value in record.items()}

    def _add_member(self, name: str, data: bytes) -> None:
        self._tar.add(name, data)

    @_writes
    def commit(self) -> dict[str, Any]:
        """Finish the shard atomically and return its stats."""
        self._tar.close()
        self._rows.sort(key=lambda r: r["key"])
        table = pa.Table.from_pylist(self._rows, schema=self.schema)
        stats = shard_stats(self.shard_id, self._rows, self.started, time.time())
        if self.out.local:
            self._tar_file.close()
            with self.out.fs.open(self.out.path(temporary(self.parquet)), "wb") as f:
                pq.write_table(table, f)
            if self._rewrite:  # the shard stops looking complete until the new stats land
                self.out.fs.rm(self.out.path(self.stats))
            self.out.commit(self.tar)
            self.out.commit(self.parquet)
        else:
            parquet = io.BytesIO()
            pq.write_table(table, parquet)
            if self._rewrite:
                self.out.fs.rm(self.out.path(self.stats))
            tar_bytes = self.out.upload(self.tar, self._tar_file)
            self._tar_file.close()
            self.out.write_bytes(self.parquet, parquet.getvalue())
            stats["bytes"] = {"tar": tar_bytes, "parquet": len(parquet.getvalue())}
        self.out.write_json(self.stats, stats)  # last: marks completion
        return stats

    def abort(self) -> None:
        """Close and remove this shard's temporary files, as far as the file system
        lets us (it may be the reason for the abort): never raises ``OSError``, so
        the error that made the shard fail is the one its caller sees."""
        try:
            try:
                self._tar.close()
            finally:
                self._tar_file.close()
        except OSError as exc:
            logger.warning("shard %s: closing its temporary tar: %s", self.stem, exc)
        for name in (self.tar, self.parquet) if self.out.local else ():
            tmp = self.out.path(temporary(name))
            try:
                if self.out.fs.exists(tmp):
                    self.out.fs.rm(tmp)
            except OSError as exc:
                logger.warning("shard %s: cannot remove %s: %s", self.stem, tmp, exc)


def shard_stats(shard_id: int, rows: Iterable[dict[str, Any]], start: float,
                end: float) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for row in rows:
        statuses[row["status"]] += 1
        if row["reason"]:
            reasons[row["reason"]] += 1
    successes = statuses.get(str(Status.SUCCESS), 0)
    return {
        "shard_id": shard_id,
        "count": sum(statuses.values()),
        "successes": successes,
        # img2dataset's keys, for the scripts that read its stats: its two failure
        # counts (a refusal on consent grounds is neither, so it is in neither), and
        # status_dict, the count of every outcome ("success" and each reason code).
        "failed_to_download": statuses.get(str(Status.FAILED_TO_DOWNLOAD), 0),
        "failed_to_resize": statuses.get(str(Status.FAILED_TO_RESIZE), 0),
        "status_dict": {"success": successes, **dict(sorted(reasons.items()))}
        if successes else dict(sorted(reasons.items())),
        "status": dict(sorted(statuses.items())),
        "reasons": dict(sorted(reasons.items())),
        "start_time": start,
        "end_time": end,
        "duration": round(end - start, 3),
    }
