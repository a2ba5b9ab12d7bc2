"""Applying a recheck: withdrawn samples leave the shards, all else stays byte for byte."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from consentfetch import ConsentFetchError, OutputError, fetch_shards, read_audit
from consentfetch.audit.read import read_columns
from consentfetch.errors import RecheckNotFound
from consentfetch.recheck import apply as apply_module
from consentfetch.recheck.apply import apply_recheck, filter_tar
from consentfetch.recheck.table import RECHECK_SCHEMA, recheck_file
from consentfetch.tarstream import TarStream
from consentfetch.testsite import make_image, running_site
from consentfetch.writer import OutputDir

from .conftest import LOCAL

STAMP = "20270101T000000Z"
RECHECKED_AT = datetime(2027, 1, 1, tzinfo=UTC)
N_IMAGES = 10
# Shards of 4 rows: 0 and 1 lose samples, 2 keeps its own (one row there is `changed`).
WITHDRAW = {"000001", "000003", "000010"}
CHANGED = "000020"
BROKEN = "/missing.jpg"  # a 404 in the input: not a success, never rechecked


@pytest.fixture(scope="module")
def base_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run of 11 rows in 3 shards, written once for the module."""
    root = tmp_path_factory.mktemp("base")
    with running_site(("127.0.0.31",)) as site:
        rows = [{"url": site.put(0, f"/img/{i}.jpg", make_image(24, 24, seed=i)),
                 "caption": f"picture {i}"} for i in range(N_IMAGES)]
        rows.insert(5, {"url": site.url(0, BROKEN), "caption": "gone"})
        pq.write_table(pa.Table.from_pylist(rows), root / "urls.parquet")
        report = fetch_shards(str(root / "urls.parquet"), str(root / "run"),
                              **{**LOCAL, "shard_size": 4, "caption_col": "caption"})
    assert report.counts == {"success": N_IMAGES, "failed_to_download": 1}
    return root / "run"


@pytest.fixture
def run(base_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the base run with the standard recheck in it."""
    out = tmp_path / "run"
    shutil.copytree(base_run, out)
    write_recheck(out)
    return out


def recheck_rows(out: Path, withdraw: set[str], changed: str | None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for shard, audit in shard_audits(out):
        for r in audit:
            if r["status"] != "success":
                continue
            row: dict[str, Any] = {f.name: None for f in RECHECK_SCHEMA}
            row.update(shard=shard, key=r["key"], url=r["url"], sha256=r["sha256"],
                       previous_status="success", status="success",
                       decided_at=RECHECKED_AT + timedelta(seconds=len(rows)))
            if r["key"] in withdraw:
                robots = r["url"].split("/img/")[0] + "/robots.txt"
                row.update(status="disallowed", reason="robots_disallowed",
                           evidence=f"{robots} line 2: Disallow: /img/",
                           evidence_signal="robots.txt", evidence_file=robots,
                           evidence_file_sha256="ab" * 32, evidence_line=2,
                           evidence_rule="Disallow: /img/", evidence_agent="*",
                           evidence_fetched_at=RECHECKED_AT)
            elif r["key"] == changed:
                row.update(status="changed", reason="content_changed")
            rows.append(row)
    return rows


def write_recheck(out: Path, stamp: str = STAMP, withdraw: set[str] = WITHDRAW,
                  changed: str | None = CHANGED) -> list[dict[str, Any]]:
    rows = recheck_rows(out, withdraw, changed)
    path = out / recheck_file(stamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=RECHECK_SCHEMA), path)
    (path.parent / "summary.json").write_text(json.dumps({"rechecked": len(rows)}))
    return rows


def shard_audits(out: Path) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    for parquet in sorted(out.glob("[0-9]*.parquet")):
        yield int(parquet.stem), pq.read_table(parquet).to_pylist()


def members(tar: Path | bytes) -> list[tuple[str, bytes]]:
    """Every member of a tar as (name, raw header + data + padding)."""
    data = tar if isinstance(tar, bytes) else tar.read_bytes()
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return [(m.name, data[m.offset:m.offset_data + -(-m.size // 512) * 512])
                for m in t.getmembers()]


def digests(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its sha256 and mtime (ns)."""
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                         p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def samples(tars: list[Path]) -> dict[str, dict[str, bytes]]:
    """The samples webdataset reads from ``tars``, by key."""
    found: dict[str, dict[str, bytes]] = {}
    for sample in wds.WebDataset([str(t) for t in tars], shardshuffle=False):
        key = sample["__key__"]
        assert key not in found
        found[key] = {k: v for k, v in sample.items() if not k.startswith("__")}
    return found


def dataset_state(out: Path) -> dict[str, Any]:
    """What a reader sees, but the apply's clock (withdrawn_at, applied_at) and folder."""
    state: dict[str, Any] = {}
    for path in sorted(out.glob("[0-9]*")):
        if path.suffix == ".parquet":
            rows = pq.read_table(path).to_pylist()
            state[path.name] = [{**r, "withdrawn_at": r.get("withdrawn_at") is not None}
                                for r in rows]
        elif path.name.endswith("_stats.json"):
            state[path.name] = json.loads(path.read_text())
        else:
            state[path.name] = path.read_bytes()
    run = json.loads((out / "run.json").read_text())
    run.pop("output")
    for entry in run.get("rechecks", []):
        for varies in ("applied_at", "source", "output"):
            entry.pop(varies)
    state["run.json"] = run
    return state


def assert_consistent(out: Path) -> None:
    """Every complete shard agrees with itself: its tar holds exactly its successes."""
    outdir = OutputDir(str(out))
    for shard_id in outdir.completed_shards():
        assert outdir.shard_problem(shard_id) is None
        stem = f"{shard_id:05d}"
        successes = {r["key"] for r in pq.read_table(out / f"{stem}.parquet").to_pylist()
                     if r["status"] == "success"}
        assert set(samples([out / f"{stem}.tar"])) == successes


# ------------------------------------------------------------------ applying


def test_apply_withdraws_samples_and_keeps_every_other_byte(run: Path) -> None:
    before = {t.name: members(t) for t in sorted(run.glob("*.tar"))}
    before_samples = samples(sorted(run.glob("*.tar")))
    untouched = {n: (run / n).read_bytes() for n in ("00002.tar", "00002.parquet",
                                                     "00002_stats.json")}
    bytes_before = sum(t.stat().st_size for t in run.glob("*.tar"))

    report = apply_recheck(str(run))

    assert (report.stamp, report.shards_rewritten, report.shards_copied,
            report.samples_withdrawn) == (STAMP, 2, 0, 3)
    assert report.bytes_removed == bytes_before - sum(t.stat().st_size
                                                      for t in run.glob("*.tar")) > 0
    assert not report.already_applied and not report.resumed
    # webdataset reads every kept sample, same key, same bytes; the withdrawn are gone
    after_samples = samples(sorted(run.glob("*.tar")))
    assert set(after_samples) == set(before_samples) - WITHDRAW
    assert all(after_samples[k] == before_samples[k] for k in after_samples)
    # each kept member is the same bytes, header included, in the same order
    for name, old in before.items():
        kept = [(n, raw) for n, raw in old if n.split(".")[0] not in WITHDRAW]
        assert members(run / name) == kept
    assert {n: (run / n).read_bytes() for n in untouched} == untouched
    assert_consistent(run)


def test_apply_turns_withdrawn_rows_into_disallowed_rows(run: Path) -> None:
    recheck = {r["key"]: r for r in pq.read_table(run / recheck_file(STAMP)).to_pylist()}
    audit_before = {r["key"]: r for r in read_audit(str(run)).to_pylist()}
    apply_recheck(str(run))

    audit = read_audit(str(run)).to_pylist()
    assert len(audit) == N_IMAGES + 1  # still one row per input row
    assert len({r["key"] for r in audit}) == N_IMAGES + 1
    for row in audit:
        old = audit_before[row["key"]]
        if row["key"] not in WITHDRAW:
            assert row == {**old, "withdrawn_at": None}
            continue
        decision = recheck[row["key"]]
        assert row["status"] == "disallowed"
        assert row["withdrawn_at"] is not None
        for column in ("reason", "evidence", "decided_at", "evidence_signal", "evidence_file",
                       "evidence_file_sha256", "evidence_line", "evidence_rule",
                       "evidence_agent", "evidence_fetched_at"):
            assert row[column] == decision[column], column
        assert (row["sha256"], row["url"]) == (old["sha256"], old["url"])  # what it was
    # only the rewritten shards have the new column; read_audit reads the mix
    assert "withdrawn_at" in pq.read_schema(run / "00000.parquet").names
    assert "withdrawn_at" not in pq.read_schema(run / "00002.parquet").names


def test_apply_counts_the_stats_again(run: Path) -> None:
    old = json.loads((run / "00000_stats.json").read_text())
    apply_recheck(str(run))
    for shard, rows in shard_audits(run):
        stats = json.loads((run / f"{shard:05d}_stats.json").read_text())
        statuses = Counter(r["status"] for r in rows)
        assert stats["count"] == len(rows)
        assert stats["successes"] == statuses["success"]
        assert stats["status"] == dict(sorted(statuses.items()))
        assert stats["failed_to_download"] == statuses["failed_to_download"]
        reasons = Counter(r["reason"] for r in rows if r["reason"])
        assert stats["status_dict"] == {"success": statuses["success"], **reasons}
    stats = json.loads((run / "00000_stats.json").read_text())
    assert (stats["successes"], stats["withdrawn"]) == (2, 2)
    assert stats["reasons"]["robots_disallowed"] == 2
    assert stats["start_time"] == old["start_time"]  # when the samples were downloaded


def test_apply_records_the_recheck_in_run_json(run: Path) -> None:
    before = json.loads((run / "run.json").read_text())
    apply_recheck(str(run))
    after = json.loads((run / "run.json").read_text())
    entry = after["rechecks"][-1]
    assert {k: entry[k] for k in ("stamp", "rechecked", "withdrawn", "output")} == {
        "stamp": STAMP, "rechecked": N_IMAGES, "withdrawn": 3, "output": str(run)}
    assert entry["decided_at"] == after["consent_checked_as_of"] == RECHECKED_AT.isoformat()
    assert datetime.fromisoformat(entry["applied_at"]) > RECHECKED_AT - timedelta(days=400)
    assert {k: v for k, v in after.items()
            if k not in ("rechecks", "consent_checked_as_of")} == before


def test_a_later_recheck_adds_to_the_history(run: Path) -> None:
    apply_recheck(str(run))
    later = "20270201T000000Z"
    rows = write_recheck(run, later, withdraw={"000000"}, changed=None)
    report = apply_recheck(str(run))  # the latest recheck
    assert (report.stamp, report.samples_withdrawn, report.shards_rewritten) == (later, 1, 1)
    run_json = json.loads((run / "run.json").read_text())
    assert [h["stamp"] for h in run_json["rechecks"]] == [STAMP, later]
    assert run_json["consent_checked_as_of"] == rows[0]["decided_at"].isoformat()
    audit = {r["key"]: r for r in read_audit(str(run)).to_pylist()}
    assert audit["000000"]["status"] == "disallowed"
    # the first recheck's withdrawals keep their rows and times
    assert audit["000001"]["decided_at"] == RECHECKED_AT + timedelta(seconds=1)
    assert_consistent(run)


def test_a_second_apply_changes_nothing(run: Path) -> None:
    first = apply_recheck(str(run))
    files = digests(run)
    second = apply_recheck(str(run))
    assert digests(run) == files
    assert second.already_applied
    assert (second.samples_withdrawn, second.shards_rewritten) == (3, 2)  # the apply's totals
    assert first.output == second.output


def test_a_recheck_of_an_unchanged_site_withdraws_nothing(run: Path, base_run: Path) -> None:
    shutil.rmtree(run / "rechecks")
    write_recheck(run, withdraw=set(), changed=None)
    report = apply_recheck(str(run))
    assert (report.samples_withdrawn, report.shards_rewritten, report.bytes_removed) == (0, 0, 0)
    for path in base_run.glob("[0-9]*"):
        assert (run / path.name).read_bytes() == path.read_bytes()
    assert json.loads((run / "run.json").read_text())["rechecks"][0]["withdrawn"] == 0


def test_a_withdrawal_of_other_bytes_than_the_stored_ones_is_not_applied(run: Path) -> None:
    """A recheck row whose digest is not the sample's no longer describes that sample."""
    table = pq.read_table(run / recheck_file(STAMP)).to_pylist()
    for row in table:
        if row["key"] == "000010":
            row["sha256"] = "0" * 64
    pq.write_table(pa.Table.from_pylist(table, schema=RECHECK_SCHEMA),
                   run / recheck_file(STAMP))
    report = apply_recheck(str(run))
    assert report.samples_withdrawn == 2
    assert "000010" in samples([run / "00001.tar"])


def test_no_recheck_is_a_clear_error(base_run: Path, tmp_path: Path) -> None:
    with pytest.raises(RecheckNotFound, match="no recheck in .*consentfetch recheck") as err:
        apply_recheck(str(base_run))
    assert isinstance(err.value, ConsentFetchError)
    with pytest.raises(RecheckNotFound, match="no recheck 20990101T000000Z"):
        apply_recheck(str(base_run), "20990101T000000Z")
    with pytest.raises(OutputError, match="no output folder"):
        apply_recheck(str(tmp_path / "nowhere"))


# ------------------------------------------------------------------ interrupted


class _Crash(BaseException):
    """Stands for the process dying: nothing catches it."""


def _crash_at(monkeypatch: pytest.MonkeyPatch, step: int | None, seen: list[str]) -> None:
    def checkpoint(self: Any, label: str) -> None:
        seen.append(label)
        if len(seen) == step:
            raise _Crash(label)
    monkeypatch.setattr(apply_module._Apply, "_checkpoint", checkpoint)


@pytest.mark.parametrize("into", [None, "new"])
def test_an_apply_stopped_after_any_step_is_finished_by_the_next(
        base_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        into: str | None) -> None:
    """In place and into a new folder: stopped after step k, for every k."""
    def prepared(name: str) -> tuple[Path, Path]:
        source = tmp_path / name
        shutil.copytree(base_run, source)
        write_recheck(source)
        return source, source if into is None else tmp_path / f"{name}-{into}"

    def apply(source: Path, target: Path) -> Any:
        return apply_recheck(str(source), output=None if into is None else str(target))

    steps: list[str] = []
    _crash_at(monkeypatch, None, steps)
    reference = prepared("reference")
    apply(*reference)
    expected = dataset_state(reference[1])
    assert len(steps) > 20, steps
    for step in range(1, len(steps) + 1):
        source, target = prepared(f"stop{step}")
        _crash_at(monkeypatch, step, [])
        with pytest.raises(_Crash):
            apply(source, target)
        if target.exists():
            assert_consistent(target)  # what a reader sees at that moment
        monkeypatch.undo()
        report = apply(source, target)
        assert report.resumed or (step == len(steps) and report.already_applied)
        assert (report.samples_withdrawn, report.shards_rewritten) == (3, 2)
        assert dataset_state(target) == expected, steps[step - 1]
        assert not list(target.rglob("*.tmp"))
        shutil.rmtree(source)
        shutil.rmtree(target, ignore_errors=True)


_KILL_SCRIPT = """
import os, signal, sys
from consentfetch.recheck import apply
seen = []
def checkpoint(self, label):
    seen.append(label)
    if len(seen) == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
apply._Apply._checkpoint = checkpoint
apply.apply_recheck(sys.argv[1])
"""


# after: a .tmp file written; the stats file removed; tar and parquet renamed; the
# second shard's tar renamed (shard 0 and 1 take steps 2-10 and 11-19)
@pytest.mark.parametrize("step", [2, 6, 8, 17])
def test_sigkill_during_apply_then_rerun(run: Path, tmp_path: Path, base_run: Path,
                                         step: int) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(base_run, reference)
    write_recheck(reference)
    apply_recheck(str(reference))
    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(run), str(step)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert_consistent(run)
    report = apply_recheck(str(run))
    assert report.resumed
    assert dataset_state(run) == dataset_state(reference)
    assert not list(run.rglob("*.tmp"))


# ------------------------------------------------------------------ --output


def _read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _writable(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_apply_into_a_new_local_folder_leaves_the_source_alone(run: Path,
                                                               tmp_path: Path) -> None:
    before = digests(run)
    samples_before = samples(sorted(run.glob("*.tar")))
    new = tmp_path / "published"
    _read_only(run)  # (root ignores it: the digests below are the real check)
    try:
        report = apply_recheck(str(run), output=str(new))
    finally:
        _writable(run)
    assert digests(run) == before
    assert (report.output, report.shards_rewritten, report.shards_copied,
            report.samples_withdrawn) == (str(new), 2, 1, 3)
    kept = samples(sorted(new.glob("*.tar")))
    assert set(kept) == set(samples_before) - WITHDRAW
    assert all(kept[k] == samples_before[k] for k in kept)
    for name in ("00002.tar", "00002.parquet", "00002_stats.json"):
        assert (new / name).read_bytes() == (run / name).read_bytes()
    assert len(read_audit(str(new))) == N_IMAGES + 1
    assert len(read_audit(str(new), status="disallowed")) == 3
    assert_consistent(new)
    origins = sorted(p.relative_to(run) for p in (run / "origins.parquet").rglob("*.parquet"))
    assert origins and origins == sorted(p.relative_to(new)
                                         for p in (new / "origins.parquet").rglob("*.parquet"))
    assert (new / recheck_file(STAMP)).read_bytes() == (run / recheck_file(STAMP)).read_bytes()
    run_json = json.loads((new / "run.json").read_text())
    assert run_json["output"] == str(new)
    assert run_json["rechecks"][0]["source"] == str(run)
    assert apply_recheck(str(run), output=str(new)).already_applied


def test_apply_into_memory(run: Path, tmp_path: Path) -> None:
    before = digests(run)
    url = f"memory://apply-{uuid.uuid4().hex}"
    report = apply_recheck(str(run), output=url)
    assert (report.samples_withdrawn, report.shards_copied) == (3, 1)
    assert digests(run) == before
    fs = fsspec.filesystem("memory")
    local = tmp_path / "copy"
    local.mkdir()
    for name in ("00000.tar", "00001.tar", "00002.tar"):
        (local / name).write_bytes(fs.cat(f"{url}/{name}"))
    assert set(samples(sorted(local.glob("*.tar")))) == \
        set(samples(sorted(run.glob("*.tar")))) - WITHDRAW
    assert len(read_audit(url)) == N_IMAGES + 1
    out = OutputDir(url)
    assert out.completed_shards() == {0, 1, 2}
    assert all(out.shard_problem(i) is None for i in range(3))
    assert json.loads(fs.cat(f"{url}/00000_stats.json"))["bytes"]["tar"] == \
        len(fs.cat(f"{url}/00000.tar"))
    assert json.loads(fs.cat(f"{url}/run.json"))["consent_checked_as_of"]
    fs.rm(url, recursive=True)


def test_in_place_on_memory(run: Path) -> None:
    url = f"memory://inplace-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.put(str(run), url, recursive=True)
    report = apply_recheck(url)
    assert report.samples_withdrawn == 3
    assert len(read_audit(url, status="disallowed")) == 3
    out = OutputDir(url)
    assert all(out.shard_problem(i) is None for i in range(3))
    assert not [p for p in fs.find(url) if p.endswith(".tmp")]
    fs.rm(url, recursive=True)


def test_a_recheck_written_into_the_new_folder_is_found_there(run: Path,
                                                              tmp_path: Path) -> None:
    new = tmp_path / "published"
    (new / "rechecks").mkdir(parents=True)
    shutil.move(run / "rechecks" / STAMP, new / "rechecks" / STAMP)
    report = apply_recheck(str(run), output=str(new))
    assert report.samples_withdrawn == 3


def test_a_new_folder_that_holds_a_dataset_is_refused(run: Path, base_run: Path) -> None:
    with pytest.raises(OutputError, match="already holds a dataset"):
        apply_recheck(str(run), output=str(base_run))


# ------------------------------------------------------------------ the tar copy


def test_filter_tar_copies_members_with_long_names_whole() -> None:
    """A pax header (a name over 100 bytes) travels with its member."""
    sink = io.BytesIO()
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for key in ("a", "b" * 120, "c"):
            for ext, data in (("jpg", key.encode() * 700), ("json", b"{}")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    source = sink.getvalue()
    filtered = io.BytesIO()
    filter_tar(io.BytesIO(source), filtered, {"a"})
    assert members(filtered.getvalue()) == [m for m in members(source)
                                            if not m[0].startswith("a.")]
    assert len(filtered.getvalue()) % tarfile.RECORDSIZE == 0


def test_filter_tar_of_a_tarstream_tar_is_what_tarstream_writes() -> None:
    parts = [(f"{k}.{e}", f"{k}{e}".encode() * 300) for k in ("001", "002", "003")
             for e in ("jpg", "txt")]
    def write(items: list[tuple[str, bytes]]) -> bytes:
        sink = io.BytesIO()
        stream = TarStream(sink)
        for name, data in items:
            stream.add(name, data)
        stream.close()
        return sink.getvalue()
    filtered = io.BytesIO()
    filter_tar(io.BytesIO(write(parts)), filtered, {"002"})
    assert filtered.getvalue() == write([p for p in parts if not p[0].startswith("002")])


def test_a_resumed_download_keeps_the_applied_recheck(run: Path, base_run: Path) -> None:
    """Resuming the download (every shard complete: nothing is requested) must not
    forget that the dataset was rechecked, nor bring withdrawn samples back."""
    apply_recheck(str(run))
    applied = json.loads((run / "run.json").read_text())
    report = fetch_shards(str(base_run.parent / "urls.parquet"), str(run),
                          **{**LOCAL, "shard_size": 4, "caption_col": "caption"})
    assert report.counts == {"success": N_IMAGES - 3, "failed_to_download": 1,
                             "disallowed": 3}
    resumed = json.loads((run / "run.json").read_text())
    assert resumed["rechecks"] == applied["rechecks"]
    assert resumed["consent_checked_as_of"] == applied["consent_checked_as_of"]
    assert set(samples(sorted(run.glob("*.tar")))).isdisjoint(WITHDRAW)


def test_leftovers_of_an_interrupted_apply_are_removed(run: Path) -> None:
    for name in ("00000.tar.tmp", "00002_stats.json.tmp", f"rechecks/{STAMP}/apply.json.tmp"):
        (run / name).write_bytes(b"partial")
    apply_recheck(str(run))
    assert not list(run.rglob("*.tmp"))
    assert_consistent(run)


def test_retry_failed_after_an_apply_keeps_the_withdrawals(site: Any, url_list: Any,
                                                         tmp_path: Path) -> None:
    """--retry-failed rewrites a shard from its parquet: withdrawn rows and their
    withdrawn_at stay, and withdrawn samples do not come back."""
    rows = [{"url": site.put(0, f"/img/{i}.jpg", make_image(24, 24, seed=i))} for i in range(3)]
    rows.append({"url": site.url(0, "/fault/flaky?id=apply&fail=1&code=503")})
    path, out = url_list(rows), tmp_path / "o"
    options = {**LOCAL, "retries": 0, "shard_size": 4}
    assert fetch_shards(path, str(out), **options).counts == {"success": 3,
                                                              "failed_to_download": 1}
    write_recheck(out, withdraw={"000001"}, changed=None)
    apply_recheck(str(out))

    report = fetch_shards(path, str(out), retry_failed=True, **options)
    assert report.counts == {"success": 3, "disallowed": 1}
    audit = {r["key"]: r for r in read_audit(str(out)).to_pylist()}
    assert audit["000001"]["status"] == "disallowed"
    assert audit["000001"]["withdrawn_at"] is not None
    assert audit["000003"]["withdrawn_at"] is None
    assert set(samples([out / "00000.tar"])) == {"000000", "000002", "000003"}


def test_the_audit_reads_shards_with_and_without_withdrawn_at(run: Path) -> None:
    shutil.rmtree(run / "rechecks")
    write_recheck(run, withdraw={"000010"}, changed=None)  # shard 1 only
    # the run's own folder as output is in place (a new folder holding a dataset is refused)
    apply_recheck(str(run), output=str(run))
    audit = read_audit(str(run))
    assert audit.num_rows == N_IMAGES + 1
    withdrawn = {r["key"] for r in audit.to_pylist() if r["withdrawn_at"] is not None}
    assert withdrawn == {"000010"}
    columns = read_columns(str(run), ["key", "withdrawn_at"]).to_pylist()
    assert [r["key"] for r in columns if r["withdrawn_at"]] == ["000010"]
    assert len(read_audit(str(run), status="disallowed")) == 1
