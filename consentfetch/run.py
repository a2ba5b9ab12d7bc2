"""A run: ``fetch_shards``, a URL list in, webdataset shards and a full audit out.

Where a run starts. The call chain reads: run (this module: resume, the
origin phase, run.json, origins.parquet, totals) → a distributor
(:mod:`~consentfetch.distribute`) → the shard task → the shard pipeline
(:mod:`~consentfetch.pipeline`: consent, net, image) → the writer.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Unpack

from ._version import __version__
from .config import CHECKS, FetchConfig, FetchOptions, resolve_config, resume_conflicts
from .consent.decision import Retry, Status, retry_when
from .consent.metadata import C2PA_AVAILABLE
from .distribute import Distributor, distributor_for
from .distribute.originphase import batches, collect_origins, fresh_origins
from .errors import ConfigError, InputError, OutputError, RunInterrupted
from .layout import RUN_FILE, key_index, origin_part, parquet_name, run_stamp, stats_name
from .pipeline import engine_for
from .progress import Progress, ProgressView, view_of
from .reader import InputRow, InputSource, ShardInput, input_identity
from .recheck.apply import RUN_JSON_KEYS
from .safetext import lost_userinfo, redact_userinfo
from .writer import CONSENTFETCH, IMG2DATASET, RESERVED_COLUMNS, OutputDir

logger = logging.getLogger(__name__)

# Rows of the origin phase per part of origins.parquet: the most the main process
# holds at once (bodies included), whatever the number of origins.
ORIGIN_PART_ROWS = 8192


def is_retryable(row: dict[str, Any]) -> bool:
    """An audit row worth --retry-failed: a download failure the table of transient
    failures (:data:`~consentfetch.consent.decision.TRANSIENT`) says a later run may
    not repeat. Consent decisions (disallowed) are never retried."""
    return row["status"] == Status.FAILED_TO_DOWNLOAD and \
        Retry.NEXT_RUN in retry_when(row["reason"], row.get("http_status"))


@dataclass(frozen=True)
class Report:
    """The outcome of a run, counted over every shard in the output folder."""

    output_dir: str
    counts: dict[str, int]  # by status
    reasons: dict[str, int]  # by reason code
    shards_written: int
    shards_skipped: int  # already complete from an earlier run
    duration: float
    origins: int = 0  # origin-file rows this run added to origins.parquet
    leftovers_removed: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def fetch_shards(input: str, output_dir: str, config: FetchConfig | None = None, *,
                 storage_options: dict[str, Any] | None = None,
                 progress: bool | ProgressView = False,
                 **options: Unpack[FetchOptions]) -> Report:
    """Download every URL of ``input`` into webdataset shards under ``output_dir``.

    ``options`` are the ``consentfetch download`` flags with underscores
    (``image_size=256``, ``consent="strict"``, ...), validated into a
    :class:`~consentfetch.config.FetchConfig`; or pass a ``config`` made by
    :func:`~consentfetch.config.make_config` instead (a config *and* options
    is a ``ConfigError``). Every input row gets one audit
    row; per-URL problems never raise. An output folder holding an earlier run
    is resumed (complete shards are kept) unless ``overwrite=True``.
    ``progress=True`` logs a progress line every 10 s (logger
    ``consentfetch.progress``, INFO); a :class:`~consentfetch.progress.ProgressView`
    shows it your way.

    Raises :class:`~consentfetch.errors.ConfigError`, ``InputError`` or
    ``OutputError`` for problems the caller must fix, and
    :class:`~consentfetch.errors.RunInterrupted` if stopped by Ctrl-C.
    """
    config = resolve_config(config, options)
    source = InputSource(input, input_format=config.input_format, url_col=config.url_col,
                         caption_col=config.caption_col,
                         additional_columns=config.save_additional_columns,
                         shard_size=config.shard_size, storage_options=storage_options,
                         hash_col=config.hash_column, bbox_col=config.bbox_col)
    clash = RESERVED_COLUMNS.intersection(f.name for f in source.extra_fields)
    if clash:
        raise ConfigError(f"--save-additional-columns: {', '.join(sorted(clash))} would clash "
                          "with an audit column of the same name")
    # Loads the opt-out/opt-in lists now (they may live on s3:// too), so a bad
    # list fails early.
    engine_for(config, storage_options)
    out = OutputDir(output_dir, storage_options)
    view = view_of(progress)
    return _Run(config, source, out, input, view).execute()


class _Run:
    def __init__(self, config: FetchConfig, source: InputSource, out: OutputDir, input: str,
                 view: ProgressView | None) -> None:
        self.config = config
        self.source = source
        self.out = out
        self.input = input
        self.started = datetime.now(UTC)
        self.view = view
        self.stamp = run_stamp(self.started)
        self.origin_parts = 0  # parts of origins.parquet this run wrote
        self.origin_rows = 0  # rows in them
        self.written = 0
        self.rechecked: dict[str, Any] = {}  # an applied recheck's keys in run.json, kept

    def execute(self) -> Report:
        self._check_ours()
        if not self.config.overwrite:
            self._check_resumable()
        # A cluster that cannot start fails here, before the folder is touched.
        dist = distributor_for(self.config, self._processes())
        try:
            return self._execute(dist)
        finally:
            dist.close()

    def _execute(self, dist: Distributor) -> Report:
        if self.config.overwrite:
            self.out.remove_run()
        leftovers = self.out.remove_temporaries()
        broken = self.out.remove_incomplete()
        if leftovers or broken:
            logger.info("removed %d temporary file(s) and %d unfinished shard(s) of an "
                        "interrupted run", len(leftovers), len(broken))
        done = self.out.completed_shards()
        if self.out.adopt_legacy_origins():
            logger.info("moved the single origins.parquet of an earlier run into its "
                        "folder of parts")
        self._write_run_json("running")
        progress = self._progress(done)
        t0 = time.monotonic()
        try:
            if dist.shared_origins:
                self._origin_phase(dist, done)
            for outcome in dist.run_shards(self._jobs(done), self.config, self.out,
                                           self.source.extra_fields, progress):
                self.written += 1
                self._write_origin_part(outcome.origin_rows)  # with its shard, never again
        except KeyboardInterrupt as exc:
            self._finish_anyway("interrupted")
            # Counted on disk: a worker's shard can complete before its result is read.
            complete = len(self.out.completed_shards())
            raise RunInterrupted(
                f"interrupted: {complete} complete shard(s) in {self.out.url} are kept "
                f"({max(0, complete - len(done))} new in this run); shards in flight were "
                "discarded; run the same command again to resume") from exc
        except Exception:
            self._finish_anyway("failed")  # run.json must not go on saying "running"
            raise
        finally:
            progress.close()
        report = self._finish("complete", len(done), time.monotonic() - t0)
        if report.total == 0:
            logger.warning("%s holds no rows: nothing to download", redact_userinfo(self.input))
        return Report(**{**report.__dict__, "leftovers_removed": leftovers})

    def _jobs(self, done: set[int], quiet: bool = False) -> Iterator[ShardInput]:
        """The shards to run: those not complete, then --retry-failed's rewrites."""
        work = self._todo(done, quiet)
        if self.config.retry_failed:
            work = itertools.chain(work, self._retry_jobs(done, quiet))
        return work

    def _origin_phase(self, dist: Distributor, done: set[int]) -> None:
        """Fetch every origin's consent files once for the whole run (see originphase)."""
        t0 = time.monotonic()
        engine = engine_for(self.config, self.out.storage_options)
        bases = collect_origins(self._jobs(done, quiet=True), engine)
        fresh = fresh_origins(self.out, set(bases), self.config)
        todo = [base for origin, base in sorted(bases.items()) if origin not in fresh]
        logger.info("origin phase: %d origin(s) in the input, %d to fetch (%s)",
                    len(bases), len(todo), dist.name)
        del bases, fresh
        pending: list[dict[str, Any]] = []
        try:
            for rows in dist.fetch_origins(batches(todo, dist.parallelism), self.config):
                pending += rows
                if len(pending) >= ORIGIN_PART_ROWS:
                    self._write_origin_part(pending)
                    pending = []
        finally:  # interrupted or not, what was fetched is kept for a resumed run
            self._write_origin_part(pending)
        logger.info("origin phase: done in %.1f s", time.monotonic() - t0)

    def _progress(self, done: set[int]) -> Progress:
        """The progress of the work this run does: the input's rows less those of the
        shards complete before it, plus the rows --retry-failed redoes."""
        kept = sum(int(self.out.read_json(stats_name(i))["count"]) for i in done)
        retried = 0
        if self.config.retry_failed:
            retried = sum(len(self._retryable(shard_id)) for shard_id in done)
        total = self.source.total_rows
        todo = None if total is None else max(0, total - kept) + retried
        return Progress(todo, self.view, resumed=kept - retried,
                        estimate=self.source.total_is_estimate)

    def _todo(self, done: set[int], quiet: bool = False) -> Iterator[ShardInput]:
        skipped = 0
        for shard in self.source.shards():
            if shard.shard_id in done:
                skipped += 1
                continue
            yield shard
        if skipped and not quiet:
            logger.info("resumed: %d shard(s) were already complete", skipped)

    def _retry_jobs(self, done: set[int], quiet: bool = False) -> Iterator[ShardInput]:
        """For --retry-failed: the transient failures of shards complete before this run."""
        extra = [f.name for f in self.source.extra_fields]
        total = 0
        inputs: Iterator[ShardInput] | None = None  # the input, read only if needed
        for shard_id in sorted(done):
            rows = self._retryable(shard_id)
            if not rows:
                continue
            total += len(rows)
            indices = [key_index(r["key"], self.config.shard_size) for r in rows]
            retried = [InputRow(r["url"], r["caption"], {n: r.get(n) for n in extra})
                       for r in rows]
            if any(lost_userinfo(row.url) for row in retried):
                inputs = inputs or self.source.shards()
                retried = _with_credentials(retried, indices, shard_id, inputs)
            yield ShardInput(shard_id, retried, indices)
        if not quiet:
            logger.info("--retry-failed: %d transient failure(s) retried", total)

    def _retryable(self, shard_id: int) -> list[dict[str, Any]]:
        """The audit rows of a complete shard that --retry-failed redoes."""
        return [r for r in self.out.read_table(parquet_name(shard_id)).to_pylist()
                if is_retryable(r)]

    def _check_ours(self) -> None:
        """Refuse a folder holding shards that no consentfetch run wrote (no run.json):
        they are neither resumed nor, with --overwrite, deleted."""
        writer = self.out.written_by()
        if writer in (None, CONSENTFETCH):
            return
        looks = "it looks like img2dataset output" if writer == IMG2DATASET \
            else "another tool may have written them"
        raise OutputError(
            f"{self.out.url} holds shards but no consentfetch run.json ({looks}); "
            "consentfetch does not add to them or delete them, even with --overwrite. "
            "Choose a new output folder.")

    def _check_resumable(self) -> None:
        """Refuse to add to a folder holding a run made with other options."""
        if not self.out.exists(RUN_FILE):
            return
        previous = self.out.read_json(RUN_FILE)
        self.rechecked = {k: previous[k] for k in RUN_JSON_KEYS if k in previous}
        conflicts = resume_conflicts(previous.get("config", {}), self.config)
        if not self._same_input(previous):
            conflicts.insert(0, f"input was {previous['input']!r}, now "
                                f"{redact_userinfo(self.input)!r}")
        if conflicts:
            finished = len(self.out.completed_shards())
            raise ConfigError(
                f"{self.out.url} holds a run made with other options ("
                + "; ".join(conflicts) + "). Run again with the same options to resume, "
                "or write to a new output folder; --overwrite would delete the "
                f"{finished} finished shard(s) in {self.out.url} and start over.")

    def _same_input(self, previous: dict[str, Any]) -> bool:
        """Whether run.json's input is this run's, however either was spelled
        (see :func:`~consentfetch.reader.input_identity`). A run.json without
        ``input_id`` (older versions) names the input as typed: it matches when
        equal, or when it resolves, from the current directory, to this input."""
        typed = previous.get("input")
        if typed is None:
            return True
        now = redact_userinfo(self.source.identity)
        if "input_id" in previous:
            return bool(previous["input_id"] == now)
        if typed == redact_userinfo(self.input):
            return True
        try:
            return redact_userinfo(input_identity(typed, self.out.storage_options)) == now
        except InputError:
            return False

    def _processes(self) -> int:
        total = self.source.total_rows
        if total is None:
            return self.config.processes
        return max(1, min(self.config.processes, math.ceil(total / self.config.shard_size)))

    def _write_origin_part(self, rows: list[dict[str, Any]]) -> None:
        """Add ``rows`` to origins.parquet as a part of their own (none if empty)."""
        if rows:
            self.out.write_origin_part(origin_part(self.stamp, self.origin_parts), rows)
            self.origin_parts += 1
            self.origin_rows += len(rows)

    def _finish_anyway(self, state: str) -> None:
        """:meth:`_finish` on the way out of a run that did not complete: when the
        folder cannot take run.json either (a full disk, lost permission), the
        error that ended the run is the one raised, and this one is logged."""
        try:
            self._finish(state)
        except OSError as exc:  # OutputError included
            logger.warning("run.json could not say %r: %s", state, exc)

    def _finish(self, state: str, skipped: int = 0, duration: float = 0.0) -> Report:
        counts, reasons = self._totals()
        self._write_run_json(state, counts, reasons)
        return Report(self.out.url, counts, reasons, self.written, skipped, duration,
                      self.origin_rows)

    def _totals(self) -> tuple[dict[str, int], dict[str, int]]:
        counts: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for shard_id in sorted(self.out.completed_shards()):
            stats = self.out.read_json(stats_name(shard_id))
            counts.update(stats["status"])
            reasons.update(stats["reasons"])
        return dict(sorted(counts.items())), dict(sorted(reasons.items()))

    def _checks_off(self) -> list[str]:
        off = [f"{name} (--ignore)" for name in self.config.ignore]
        if self.config.enabled("c2pa") and not C2PA_AVAILABLE:
            off.append("c2pa (c2pa-python is not installed: pip install 'consentfetch[c2pa]')")
        return off

    def _write_run_json(self, state: str, counts: dict[str, int] | None = None,
                        reasons: dict[str, int] | None = None) -> None:
        self.out.write_json(RUN_FILE, {
            "consentfetch_version": __version__,
            "state": state,
            "input": redact_userinfo(self.input),  # as typed, for people
            "input_id": redact_userinfo(self.source.identity),  # what resume compares
            "output": redact_userinfo(self.out.url),
            "started_at": self.started.isoformat(),
            "finished_at": None if state == "running" else datetime.now(UTC).isoformat(),
            "user_agent": self.config.user_agent,
            "consent_profile": self.config.consent,
            "checks_performed": engine_for(self.config, self.out.storage_options)
            .checks_performed(CHECKS),
            "checks_off": self._checks_off(),
            "config": self.config.to_dict(),
            "totals": {"status": counts or {}, "reasons": reasons or {}},
            **self.rechecked,
        })


def _with_credentials(rows: list[InputRow], indices: list[int], shard_id: int,
                      inputs: Iterator[ShardInput]) -> list[InputRow]:
    """``rows`` (from a shard's audit) with every URL whose credentials were not
    stored taken again from the input, whose shards ``inputs`` yields in order."""
    original = next((s for s in inputs if s.shard_id >= shard_id), None)
    if original is None or original.shard_id != shard_id:
        return rows
    return [original.rows[i] if lost_userinfo(row.url) and i < len(original.rows) else row
            for row, i in zip(rows, indices, strict=True)]
