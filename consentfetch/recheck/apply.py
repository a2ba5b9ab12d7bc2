"""Applying a recheck: the run's shards without the samples whose consent was withdrawn.

:func:`apply_recheck` reads ``rechecks/<stamp>/recheck.parquet`` (:mod:`.table`)
and withdraws every sample whose row there is ``disallowed``: its members
leave the shard's tar (every other member is copied byte for byte, header
included, in the same order, so webdataset readers see the same keys and
bytes), its audit row becomes ``disallowed`` with the recheck's reason,
evidence and ``decided_at`` plus a ``withdrawn_at`` timestamp (null on every
other row; shards that lose nothing are not rewritten and have no such column,
:func:`~consentfetch.audit.read_audit` reads the mix as one table), and the
shard's stats are counted again. ``run.json`` gets the recheck in its
``rechecks`` history and ``consent_checked_as_of``. A withdrawn row keeps
its ``sha256``, ``width``, ``height`` and ``http_status``: what was
downloaded, and then withdrawn.

In place, one shard at a time (``J`` is ``rechecks/<stamp>/apply.json``, the
journal, written atomically)::

    1. write 00000.tar.tmp, 00000.parquet.tmp, 00000_stats.json.tmp (whole)
    2. J: staged = shard 0
    3. delete 00000_stats.json           the shard stops looking complete
    4. rename 00000.tar.tmp     -> 00000.tar
    5. rename 00000.parquet.tmp -> 00000.parquet
    6. rename 00000_stats.json.tmp -> 00000_stats.json   complete again, new
    7. J: shards below 1 done, staged = none
    ... every affected shard, then run.json (its history), then J: finished.

Shards go in ascending order, so the journal says "done below shard N" and
keeps one size however many shards the run has; a shard that keeps every
sample is not rewritten and not journaled on its own (a rerun reads its
parquet again and finds, again, nothing to withdraw).

A reader sees an old shard until step 3, no shard (it is not complete: no
stats file) from 3 to 6, the new shard after 6: never a tar without the
samples beside a parquet that says they are there. A SIGKILL at any point
is finished by running the same apply again: before step 2 the ``.tmp``
files may be partial, so they are deleted and the shard staged again from
its (old) files; from step 2 on they are whole, so the renames not yet done
are done (3 to 6 each skip what already happened). A shard whose rows are
already withdrawn (``withdrawn_at`` set, status no longer ``success``)
withdraws nothing and is not rewritten, journal or not. ``withdrawn_at`` is
fixed in the journal when the apply first starts, so an interrupted apply
finishes with the values an uninterrupted one would have written.

On an object store a rename is a copy and a delete, each whole or not at
all: the same steps hold, and the stats file of a rewritten shard records
the new files' sizes as downloads do.

With ``output`` the source is only read: the new folder gets every complete
shard (filtered, or copied as it is), the origins.parquet parts, the
recheck's folder, then run.json, with the same staging, journal and order.
Do not apply a recheck to a folder a download is writing to.
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..audit.read import open_output, with_evidence_columns
from ..errors import OutputError, RecheckNotFound
from ..layout import (
    ORIGINS_FILE,
    RECHECKS_DIR,
    RUN_FILE,
    TMP_SUFFIX,
    member_key,
    shard_files,
    shard_of,
    temporary,
)
from ..safetext import redact_userinfo
from ..tarstream import BLOCK, TarStream
from ..writer import EVIDENCE_FIELDS, OutputDir, shard_stats, storable
from .table import (
    KEPT,
    RECHECK_FILE,
    WITHDRAWN,
    recheck_file,
    recheck_folder,
)

logger = logging.getLogger(__name__)

JOURNAL_FILE = "apply.json"
#: What an apply adds to run.json; a resumed download keeps them (the shards it kept
#: are still the rechecked ones).
RUN_JSON_KEYS = ("rechecks", "consent_checked_as_of")
#: The audit column a withdrawal adds: when the sample left the shard (null on other rows).
WITHDRAWN_AT = pa.field("withdrawn_at", pa.timestamp("us", tz="UTC"))
# The recheck columns a withdrawal copies into the audit row.
_CARRIED = ("reason", "evidence", "decided_at", *(f.name for f in EVIDENCE_FIELDS))
_NEEDED = ("shard", "key", "status", "sha256", *_CARRIED)
COPY_CHUNK = 1 << 20  # bytes per read when copying members and files (a multiple of BLOCK)


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What applying a recheck did, in total (an interrupted apply finished by a
    second call reports the whole apply, not the part the second call did)."""

    output: str  #: the folder that holds the applied dataset
    stamp: str  #: the recheck applied
    shards_rewritten: int  #: shards written without their withdrawn samples
    shards_copied: int  #: shards copied unchanged (``output`` only)
    samples_withdrawn: int
    bytes_removed: int  #: how much smaller the rewritten tars are, together
    resumed: bool  #: this call finished an apply that was interrupted
    already_applied: bool  #: the recheck was applied before: nothing was done


def apply_recheck(run_dir: str, stamp: str | None = None, *, output: str | None = None,
                  storage_options: dict[str, Any] | None = None,
                  output_storage_options: dict[str, Any] | None = None) -> ApplyReport:
    """Remove from ``run_dir``'s shards the samples a recheck found withdrawn.

    ``stamp`` names the recheck (``rechecks/<stamp>/``); None takes the latest,
    looked up in ``output`` first when given, then in ``run_dir``. Without
    ``output`` the shards are rewritten in place; with it ``run_dir`` is only
    read and ``output`` (a new folder, local or any fsspec URL) receives the
    filtered dataset. Atomic per shard and resumable: calling it again after
    an interruption (even SIGKILL) finishes the job; after a finished apply it
    does nothing. Raises :class:`~consentfetch.errors.RecheckNotFound` when
    there is no such recheck, :class:`~consentfetch.errors.OutputError` when a
    folder cannot be read or written.

    Example::

        >>> apply_recheck("out/")                                # the latest recheck, in place
        >>> apply_recheck("s3://bucket/run1/", output="published/")  # a filtered copy
    """
    source = open_output(run_dir, storage_options)
    target = _target(source, output, output_storage_options)
    where, stamp = _find_recheck(source if target is None else target, source, stamp)
    try:
        return _Apply(source, target or source, where, stamp).run()
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot apply recheck {stamp}: {exc}") from exc


def _target(source: OutputDir, output: str | None,
            options: dict[str, Any] | None) -> OutputDir | None:
    """The folder to write, or None to write ``source`` in place."""
    if output is None:
        return None
    target = OutputDir(output, options)
    same_protocol = set(_protocols(target)) & set(_protocols(source))
    return None if same_protocol and target.root == source.root else target


def _protocols(out: OutputDir) -> tuple[str, ...]:
    protocol = out.fs.protocol
    return tuple(protocol) if isinstance(protocol, (tuple, list)) else (protocol,)


def _find_recheck(first: OutputDir, then: OutputDir,
                  stamp: str | None) -> tuple[OutputDir, str]:
    """The folder holding the recheck ``stamp`` (or the latest one), and its stamp."""
    for out in dict.fromkeys((first, then)):
        found = _stamps(out) if stamp is None else \
            [stamp] if out.exists(recheck_file(stamp)) else []
        if found:
            return out, found[-1]
    looked = " or ".join(dict.fromkeys(redact_userinfo(o.url) for o in (first, then)))
    wanted = "no recheck" if stamp is None else f"no recheck {stamp}"
    raise RecheckNotFound(f"{wanted} in {looked} (no {RECHECKS_DIR}/<stamp>/{RECHECK_FILE}): "
                          "run `consentfetch recheck` first")


def _stamps(out: OutputDir) -> list[str]:
    """The stamps of the rechecks in ``out`` that wrote their table, oldest first."""
    return [s for s in _names_in(out, RECHECKS_DIR) if out.exists(recheck_file(s))]


def _names_in(out: OutputDir, folder: str) -> list[str]:
    """The names in ``out``'s ``folder``, sorted ([] when there is no such folder)."""
    path = out.path(folder)
    out.fs.invalidate_cache(path)
    try:
        listed = out.fs.ls(path, detail=False) if out.fs.isdir(path) else []
    except FileNotFoundError:
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in listed)


@dataclass(slots=True)
class _Withdrawals:
    """The recheck's withdrawn rows by shard and key, and what the history needs."""

    by_shard: dict[int, dict[str, dict[str, Any]]]
    rechecked: int
    decided_at: datetime | None  # the earliest decision: consent holds as of then


def read_withdrawals(out: OutputDir, stamp: str, batch_rows: int = 8192) -> _Withdrawals:
    """The ``disallowed`` rows of a recheck table (memory: those rows only)."""
    by_shard: dict[int, dict[str, dict[str, Any]]] = {}
    earliest: datetime | None = None
    with out.fs.open(out.path(recheck_file(stamp)), "rb") as f:
        parquet = pq.ParquetFile(f)
        missing = [c for c in _NEEDED if c not in parquet.schema_arrow.names]
        if missing:
            raise OutputError(f"{recheck_file(stamp)} is not a recheck table: "
                              f"no column {', '.join(missing)}")
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(_NEEDED)):
            for row in batch.to_pylist():
                if row["decided_at"] is not None:
                    earliest = min(earliest or row["decided_at"], row["decided_at"])
                if row["status"] == WITHDRAWN and row["shard"] is not None:
                    by_shard.setdefault(row["shard"], {})[row["key"]] = row
        rechecked = parquet.metadata.num_rows
    return _Withdrawals(by_shard, rechecked, earliest)


def withdrawn_keys(rows: list[dict[str, Any]],
                   withdrawn: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """The keys of ``rows`` (a shard's audit rows) to withdraw now: still ``success``
    and, when the recheck recorded a digest, with that digest (the same sample)."""
    keys = set()
    for row in rows:
        found = withdrawn.get(row["key"])
        if found is not None and row["status"] == KEPT \
                and found["sha256"] in (None, row.get("sha256")):
            keys.add(row["key"])
    return keys


def withdraw_rows(rows: list[dict[str, Any]], keys: Collection[str],
                  withdrawn: Mapping[str, Mapping[str, Any]], at: datetime) -> None:
    """Turn the rows of ``keys`` into ``disallowed`` rows with the recheck's decision
    and ``withdrawn_at`` = ``at``; every row gets a ``withdrawn_at`` cell."""
    for row in rows:
        row.setdefault(WITHDRAWN_AT.name, None)
        if row["key"] in keys:
            decision = withdrawn[row["key"]]
            row.update({name: decision[name] for name in _CARRIED},
                       status=WITHDRAWN, withdrawn_at=at)


def filter_tar(source: IO[bytes], sink: IO[bytes], drop: Collection[str]) -> None:
    """Copy the tar ``source`` to ``sink`` without the members of the keys ``drop``.

    Each kept member is copied as it is in ``source`` (its header blocks, any
    pax or long-name header before it, data and padding), in order; memory is
    bounded by :data:`COPY_CHUNK`, however large the tar.
    """
    out = TarStream(sink)
    with tarfile.open(fileobj=source, mode="r:") as tar:
        while (member := tar.next()) is not None:
            # tarfile keeps every member it reads (an undocumented list); we need none.
            tar.members.clear()  # type: ignore[attr-defined]
            if member_key(member.name) in drop:
                continue
            end = member.offset_data + -(-member.size // BLOCK) * BLOCK
            for chunk in _read_range(source, member.offset, end):
                out.add_blocks(chunk)
    out.close()


def _read_range(f: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    f.seek(start)
    while start < end:
        chunk = f.read(min(COPY_CHUNK, end - start))
        if not chunk:
            raise OutputError(f"tar ends at byte {start}, inside a member")
        start += len(chunk)
        yield chunk


class _Apply:
    """One apply of one recheck; its state between calls is the journal."""

    def __init__(self, source: OutputDir, target: OutputDir, where: OutputDir,
                 stamp: str) -> None:
        self.source = source
        self.target = target
        self.where = where  # the folder the recheck was found in
        self.stamp = stamp
        self.in_place = source is target
        self.journal_name = f"{recheck_folder(stamp)}/{JOURNAL_FILE}"
        self.journal: dict[str, Any] = {}
        self.withdrawn_at = datetime.now(UTC)  # replaced by the journal's, fixed at the start

    def run(self) -> ApplyReport:
        resumed = self.target.exists(self.journal_name)
        if resumed:
            self.journal = self.target.read_json(self.journal_name)
            if self.journal.get("finished_at"):
                return self._report(resumed=False, already=True)
        else:
            self._start()
        self._remove_leftovers()
        withdrawals = read_withdrawals(self.where, self.stamp)
        self.withdrawn_at = datetime.fromisoformat(self.journal["withdrawn_at"])
        # A shard staged in place has no stats file from step 3 on: it is still to finish.
        staged = {self.journal["staged"]} - {None}
        for shard_id in sorted(self.source.completed_shards() | staged):
            if shard_id >= self.journal["done_below"]:
                self._shard(shard_id, withdrawals.by_shard.get(shard_id, {}))
        if not self.in_place:
            self._copy_origins()
            self._copy_recheck()
        self._write_run_json(withdrawals)
        self.journal["finished_at"] = datetime.now(UTC).isoformat()
        self._save_journal("finished")
        logger.info("applied recheck %s to %s: %d sample(s) withdrawn from %d shard(s)",
                    self.stamp, redact_userinfo(self.target.url),
                    self.journal["samples_withdrawn"], self.journal["shards_rewritten"])
        return self._report(resumed=resumed, already=False)

    def _start(self) -> None:
        if not self.in_place and (self.target.completed_shards()
                                  or self.target.exists(RUN_FILE)):
            raise OutputError(f"{redact_userinfo(self.target.url)} already holds a dataset: "
                              "apply a recheck into a new folder")
        now = datetime.now(UTC).isoformat()
        self.journal = {
            "stamp": self.stamp, "source": redact_userinfo(self.source.url),
            "output": redact_userinfo(self.target.url), "started_at": now,
            "withdrawn_at": now, "finished_at": None, "staged": None, "done_below": 0,
            "shards_rewritten": 0, "shards_copied": 0, "samples_withdrawn": 0,
            "bytes_removed": 0}
        self.target.fs.makedirs(self.target.path(recheck_folder(self.stamp)), exist_ok=True)
        self._save_journal("started")

    def _checkpoint(self, step: str) -> None:
        """A step is done and on disk (tests stop the process here, see the module doc)."""
        logger.debug("apply %s: %s", self.stamp, step)

    def _save_journal(self, step: str) -> None:
        self.target.write_json(self.journal_name, self.journal)
        self._checkpoint(f"journal {step}")

    def _remove_leftovers(self) -> None:
        """Delete the ``.tmp`` files an interrupted apply left, but a staged shard's:
        in the folder, the recheck's folder and (into a new folder) origins.parquet/."""
        staged = self.journal["staged"]
        folders = [recheck_folder(self.stamp)] + ([] if self.in_place else [ORIGINS_FILE])
        names = self.target.names() + [f"{folder}/{n}" for folder in folders
                                       for n in _names_in(self.target, folder)]
        for name in names:
            shard_id = shard_of(name.removesuffix(TMP_SUFFIX))
            if name.endswith(TMP_SUFFIX) and (shard_id is None or shard_id != staged):
                self.target.fs.rm(self.target.path(name))

    def _shard(self, shard_id: int, withdrawn: dict[str, dict[str, Any]]) -> None:
        if self.journal["staged"] != shard_id:
            changed = self._stage(shard_id, withdrawn)
            if changed is None:  # nothing to withdraw, and in place: nothing to write
                self.journal["done_below"] = shard_id + 1  # saved with the next change
                return
            self.journal["staged"] = shard_id
            self.journal["shards_rewritten" if changed[0] else "shards_copied"] += 1
            self.journal["samples_withdrawn"] += changed[0]
            self.journal["bytes_removed"] += changed[1]
            self._save_journal(f"staged {shard_id}")
        self._commit(shard_id)
        self._mark_done(shard_id)

    def _mark_done(self, shard_id: int) -> None:
        self.journal["staged"] = None
        self.journal["done_below"] = shard_id + 1
        self._save_journal(f"done {shard_id}")

    def _stage(self, shard_id: int,
               withdrawn: dict[str, dict[str, Any]]) -> tuple[int, int] | None:
        """Write the shard's new files under ``.tmp``: (samples withdrawn, bytes
        removed), or None when in place and the shard keeps every sample."""
        tar, parquet, stats = shard_files(shard_id)
        table = with_evidence_columns(self.source.read_table(parquet))
        rows = table.to_pylist()
        keys = withdrawn_keys(rows, withdrawn) if withdrawn else set()
        if not keys:
            if self.in_place:
                return None
            for name in (tar, parquet, stats):
                self._copy(name)
            return 0, 0
        self._stage_tar(tar, keys)
        withdraw_rows(rows, keys, withdrawn, self.withdrawn_at)
        schema = table.schema if WITHDRAWN_AT.name in table.column_names \
            else table.schema.append(WITHDRAWN_AT)
        self._stage_parquet(parquet, pa.Table.from_pylist(rows, schema=schema))
        self._stage_stats(shard_id, rows)
        removed = self.source.fs.size(self.source.path(tar)) \
            - self.target.fs.size(self.target.path(temporary(tar)))
        return len(keys), removed

    def _stage_tar(self, name: str, drop: set[str]) -> None:
        with self.source.fs.open(self.source.path(name), "rb") as src, \
                self.target.fs.open(self.target.path(temporary(name)), "wb") as dst:
            filter_tar(src, dst, drop)
        self._checkpoint(f"staged {name}")

    def _stage_parquet(self, name: str, table: pa.Table) -> None:
        with self.target.fs.open(self.target.path(temporary(name)), "wb") as f:
            pq.write_table(table, f)
        self._checkpoint(f"staged {name}")

    def _stage_stats(self, shard_id: int, rows: list[dict[str, Any]]) -> None:
        tar, parquet, name = shard_files(shard_id)
        old = self.source.read_json(name)
        # The download's timings stay: they say when the samples were fetched.
        stats = {**old, **shard_stats(shard_id, rows, old["start_time"], old["end_time"])}
        stats["withdrawn"] = sum(1 for r in rows if r[WITHDRAWN_AT.name] is not None)
        stats.pop("bytes", None)
        if not self.target.local:  # an object store's completeness check compares sizes
            stats["bytes"] = {
                "tar": self.target.fs.size(self.target.path(temporary(tar))),
                "parquet": self.target.fs.size(self.target.path(temporary(parquet)))}
        self.target.fs.pipe_file(self.target.path(temporary(name)),
                                 _json_bytes(stats))
        self._checkpoint(f"staged {name}")

    def _copy(self, name: str, *, commit: bool = False) -> None:
        """Copy the source's file ``name`` to the target's ``name.tmp`` (and commit it)."""
        with self.source.fs.open(self.source.path(name), "rb") as src, \
                self.target.fs.open(self.target.path(temporary(name)), "wb") as dst:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
        if commit:
            self.target.commit(name)
        self._checkpoint(f"copied {name}")

    def _commit(self, shard_id: int) -> None:
        """Steps 3 to 6 of the module doc; each skipped if an earlier call did it."""
        tar, parquet, stats = shard_files(shard_id)
        if self.target.exists(temporary(stats)) and self.target.exists(stats):
            self.target.fs.rm(self.target.path(stats))
            self._checkpoint(f"removed {stats}")
        elif not self.target.exists(temporary(stats)) and not self.target.exists(stats):
            logger.warning("shard %d of %s lost its files while staged: it is left "
                           "incomplete", shard_id, redact_userinfo(self.target.url))
        for name in (tar, parquet, stats):
            if self.target.exists(temporary(name)):
                self.target.commit(name)
                self._checkpoint(f"renamed {name}")

    def _copy_origins(self) -> None:
        for name in self.source.origin_parts():
            if "/" in name:
                self.target.fs.makedirs(self.target.path(name.rsplit("/", 1)[0]),
                                        exist_ok=True)
            self._copy(name, commit=True)

    def _copy_recheck(self) -> None:
        """The recheck's own files beside the filtered dataset (not the source's journal)."""
        if self.where is self.target:
            return
        for base in _names_in(self.source, recheck_folder(self.stamp)):
            if base != JOURNAL_FILE and not base.endswith(TMP_SUFFIX):
                self._copy(f"{recheck_folder(self.stamp)}/{base}", commit=True)

    def _write_run_json(self, withdrawals: _Withdrawals) -> None:
        """Last: the recheck in run.json's history, and the date consent holds as of."""
        run = self.source.read_json(RUN_FILE) if self.source.exists(RUN_FILE) else {}
        decided = withdrawals.decided_at or datetime.strptime(
            self.stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        entry = {"stamp": self.stamp, "decided_at": decided.isoformat(),
                 "rechecked": withdrawals.rechecked,
                 "withdrawn": self.journal["samples_withdrawn"],
                 "applied_at": self.journal["withdrawn_at"],
                 "source": self.journal["source"], "output": self.journal["output"]}
        history = [h for h in run.get(RUN_JSON_KEYS[0], []) if h.get("stamp") != self.stamp]
        history = sorted([*history, entry], key=lambda h: str(h.get("decided_at")))
        run[RUN_JSON_KEYS[0]] = history
        run[RUN_JSON_KEYS[1]] = history[-1]["decided_at"]
        if not self.in_place:
            run["output"] = self.journal["output"]
        self.target.write_json(RUN_FILE, run)
        self._checkpoint("wrote run.json")

    def _report(self, *, resumed: bool, already: bool) -> ApplyReport:
        j = self.journal
        return ApplyReport(self.target.url, self.stamp, j["shards_rewritten"],
                           j["shards_copied"], j["samples_withdrawn"], j["bytes_removed"],
                           resumed, already)


def _json_bytes(value: Any) -> bytes:
    """A json file's bytes, as :meth:`OutputDir.write_json` writes them."""
    return (json.dumps(storable(value), indent=2, default=str) + "\n").encode()
