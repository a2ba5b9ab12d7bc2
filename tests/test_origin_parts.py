"""origins.parquet as a folder of parts: written with the shards, never rewritten,
read per origin (row-group statistics), older single-file outputs still read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentfetch import fetch_shards
from consentfetch.audit import read_origins
from consentfetch.config import make_config
from consentfetch.distribute.originphase import fresh_origins, seed_policies, shard_policies
from consentfetch.reader import InputRow, ShardInput
from consentfetch.testsite import LocalSite, make_image
from consentfetch.workercache import OriginIndex, process_cache, row_groups
from consentfetch.writer import ORIGIN_ROW_GROUP, OutputDir

from .conftest import LOCAL


def _rows(site: LocalSite, count: int) -> list[dict[str, Any]]:
    image = make_image(30, 30)
    return [{"url": site.put(i % 4, f"/{i}.jpg", image)} for i in range(count)]


def _parts(out: Path) -> list[Path]:
    return sorted((out / "origins.parquet").glob("*.parquet"))


def test_each_shard_adds_a_part_and_none_is_rewritten(site: LocalSite, url_list,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "o"
    fetch_shards(url_list(_rows(site, 8)), str(out), shard_size=2, **LOCAL)
    first = {p.name: p.stat().st_mtime_ns for p in _parts(out)}
    # Four origins, one per shard's first rows: each shard that fetched wrote its own part.
    assert len(first) >= 1
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in _parts(out)) >= 12
    # A resumed run with more rows adds parts; the earlier ones stay as they were.
    fetch_shards(url_list(_rows(site, 16)), str(out), shard_size=2, **LOCAL)
    again = {p.name: p.stat().st_mtime_ns for p in _parts(out)}
    assert {name: again[name] for name in first} == first
    assert len(again) > len(first)
    kinds = {(r["origin"], r["kind"]) for r in read_origins(str(out))}
    assert len(kinds) == 4 * 3  # four origins, robots.txt + ai.txt + tdmrep.json each


def test_read_origins_keeps_the_latest_fetch_and_filters_by_origin(tmp_path: Path) -> None:
    out = OutputDir(str(tmp_path / "o"))
    row = {"origin": "http://a.test", "kind": "robots.txt", "url": "http://a.test/robots.txt",
           "http_status": 404, "outcome": "absent", "error": None, "size": 0, "sha256": None,
           "fetched_at": pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py(), "body": None,
           "unreached_reason": None, "truncated": False}
    other = {**row, "origin": "http://b.test", "url": "http://b.test/robots.txt"}
    out.write_origin_part("origins.parquet/20260101T000000000000Z-000000.parquet", [row, other])
    out.write_origin_part("origins.parquet/20260102T000000000000Z-000000.parquet",
                          [{**row, "http_status": 200, "outcome": "parsed"}])
    rows = read_origins(out.url)
    assert [(r["origin"], r["http_status"]) for r in rows] == [
        ("http://a.test", 200), ("http://b.test", 404)]
    assert "body" not in rows[0]
    assert [r["origin"] for r in read_origins(out.url, origins={"http://b.test"})] == [
        "http://b.test"]


def test_read_rows_skips_row_groups_by_statistics(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader looking for a few origins reads their row groups, not the whole part."""
    out = OutputDir(str(tmp_path / "o"))
    rows = [{"origin": f"http://h{i:05d}.test", "kind": "robots.txt",
             "url": f"http://h{i:05d}.test/robots.txt", "outcome": "absent", "size": 0,
             "truncated": False} for i in range(ORIGIN_ROW_GROUP * 50)]
    name = "origins.parquet/20260101T000000000000Z-000000.parquet"
    out.write_origin_part(name, rows)
    assert pq.ParquetFile(tmp_path / "o" / name).num_row_groups == 50
    reads: list[list[int]] = []
    real = pq.ParquetFile.read_row_groups

    def counted(self: pq.ParquetFile, groups: list[int], *args: Any,
                **kwargs: Any) -> pa.Table:
        reads.append(list(groups))
        return real(self, groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", counted)
    wanted = {"http://h00003.test", f"http://h{ORIGIN_ROW_GROUP * 7 + 1:05d}.test"}
    found = out.read_rows(name, "origin", wanted)
    assert {r["origin"] for r in found} == wanted
    assert reads == [[0, 7], [0, 7]]  # 2 of 50 row groups (the column, then the rows)
    assert out.read_rows(name, "origin", {"http://nowhere.test"}) == []


def test_an_older_single_origins_file_is_read_and_kept_on_resume(site: LocalSite, url_list,
                                                                 tmp_path: Path) -> None:
    out = tmp_path / "o"
    fetch_shards(url_list(_rows(site, 4)), str(out), shard_size=2, **LOCAL)
    # Make it look like an older run's output: one origins.parquet file.
    table = pa.concat_tables([pq.read_table(p) for p in _parts(out)])
    for part in _parts(out):
        part.unlink()
    (out / "origins.parquet").rmdir()
    pq.write_table(table, out / "origins.parquet")
    assert len(read_origins(str(out))) == 4 * 3
    fetch_shards(url_list(_rows(site, 8)), str(out), shard_size=2, **LOCAL)
    assert (out / "origins.parquet").is_dir()
    assert _parts(out)[0].name == "00000000T000000000000Z-000000.parquet"  # the old file
    assert pq.read_table(_parts(out)[0]).num_rows == table.num_rows
    assert len(read_origins(str(out))) == 4 * 3


def test_fresh_origins_follows_the_latest_part(tmp_path: Path) -> None:
    """An origin whose latest part lacks bodies must be fetched again."""
    out = OutputDir(str(tmp_path / "o"))
    now = datetime.now(UTC)
    base = {"origin": "http://a.test", "http_status": 404, "outcome": "absent",
            "fetched_at": now, "size": 0, "truncated": False, "body": b""}
    files = [{**base, "kind": k, "url": f"http://a.test/{k}"}
             for k in ("robots.txt", "ai.txt", "tdmrep.json")]
    config = make_config(**LOCAL)
    out.write_origin_part("origins.parquet/20260101T000000000000Z-000000.parquet", files)
    assert fresh_origins(out, {"http://a.test", "http://b.test"}, config) == {"http://a.test"}
    out.write_origin_part("origins.parquet/20260102T000000000000Z-000000.parquet",
                          [{**f, "http_status": 200, "outcome": "parsed", "body": None}
                           for f in files])
    assert fresh_origins(out, {"http://a.test"}, config) == set()


def _origin_files(origin: str, fetched_at: datetime) -> list[dict[str, Any]]:
    """An origin's three files, each a 404, as a fetch writes them to a part."""
    return [{"origin": origin, "kind": kind, "url": f"{origin}/{kind}", "http_status": 404,
             "outcome": "absent", "fetched_at": fetched_at, "size": 0, "truncated": False,
             "body": b""} for kind in ("robots.txt", "ai.txt", "tdmrep.json")]


def _part(day: int) -> str:
    return f"origins.parquet/202601{day:02d}T000000000000Z-000000.parquet"


def _shard(*hosts: str) -> ShardInput:
    return ShardInput(0, [InputRow(f"http://{host}/x.jpg", None, {}) for host in hosts])


def test_seeding_reads_only_the_parts_holding_the_shards_origins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts accumulate over a run (one per shard): a shard must not open every one
    of them; a worker process reads each part's origins once, not once per shard."""
    out = OutputDir(str(tmp_path / "o"))
    now = datetime.now(UTC)
    for day in range(1, 6):
        out.write_origin_part(_part(day), [r for i in range(20)
                                           for r in _origin_files(f"http://d{day}h{i}.test:80",
                                                                  now)])
    config = make_config(**LOCAL)
    process_cache().clear()
    opened: list[str] = []
    real_open = out.fs.open

    def counted(path: str, *args: Any, **kwargs: Any) -> Any:
        if "/origins.parquet/" in path:
            opened.append("origins.parquet/" + path.rsplit("/", 1)[1])
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(out.fs, "open", counted)
    try:
        assert seed_policies(out, _shard("d2h3.test", "d2h4.test", "new.test"), config) == 2
        # Each part once to index it, then the one holding the shard's origins.
        assert opened == [_part(day) for day in range(1, 6)] + [_part(2)]
        opened.clear()
        assert seed_policies(out, _shard("d4h1.test", "new.test"), config) == 1
        assert opened == [_part(4)]
        opened.clear()
        assert seed_policies(out, _shard("new.test", "other.test"), config) == 0
        assert opened == []  # no part holds them: none opened
    finally:
        process_cache().clear()


def test_seeding_takes_the_latest_part_holding_an_origin(tmp_path: Path) -> None:
    out = OutputDir(str(tmp_path / "o"))
    now = datetime.now(UTC)
    earlier = now - timedelta(hours=1)
    out.write_origin_part(_part(1), _origin_files("http://a.test:80", earlier))
    out.write_origin_part(_part(2), _origin_files("http://b.test:80", now))
    config = make_config(**LOCAL)
    process_cache().clear()
    try:
        assert seed_policies(out, _shard("b.test"), config) == 1
        # A later part fetched a.test again (the index learns of it at the next shard).
        out.write_origin_part(_part(3), _origin_files("http://a.test:80", now))
        assert seed_policies(out, _shard("a.test"), config) == 1
        policy = shard_policies(config).get("http://a.test:80")
        assert policy is not None
        assert {f.fetched_at for f in policy.files.values()} == {now}
    finally:
        process_cache().clear()


def test_the_origin_index_starts_again_when_the_folder_is_written_anew(
        tmp_path: Path) -> None:
    out = OutputDir(str(tmp_path / "o"))
    now = datetime.now(UTC)
    out.write_origin_part(_part(1), _origin_files("http://a.test:80", now))
    config = make_config(**LOCAL)
    process_cache().clear()
    try:
        assert seed_policies(out, _shard("a.test"), config) == 1
        out.remove_run()  # --overwrite: a new run, other parts
        out.write_origin_part(_part(5), _origin_files("http://b.test:80", now))
        process_cache().policies.clear()
        assert seed_policies(out, _shard("a.test", "b.test"), config) == 1
        assert shard_policies(config).get("http://b.test:80") is not None
    finally:
        process_cache().clear()


def test_origin_index_past_its_bound_names_the_parts_it_could_not_hold() -> None:
    index = OriginIndex("memory://o", max_entries=5)
    index.add("p1", ["a", "b"], ["a", "b"])
    index.add("p2", ["c", "d"], ["c"])  # would hold 7: kept unsearched
    index.add("p3", ["e"], None)  # not sorted: its row groups' statistics must tell
    assert len(index) == 5
    assert index.parts_for({"a", "x"}) == [("p1", {"a"}, [0]), ("p2", {"a", "x"}, None)]
    assert index.parts_for({"b", "e"}) == [("p1", {"b"}, [0, 1]), ("p2", {"b", "e"}, None),
                                           ("p3", {"e"}, None)]
    assert index.stale(["p1", "p2", "p3", "p4"]) is False
    assert index.stale(["p0", "p1", "p2", "p3"]) is True  # a new part older than the newest
    assert index.stale(["p2", "p3"]) is True  # p1 is gone


@pytest.mark.parametrize(("values", "groups"), [
    ({"a"}, [0]), ({"b"}, [0]), ({"c"}, [0, 1]),  # c's rows may begin in group 0
    ({"d"}, [1]), ({"f"}, [1, 2, 3]),  # f fills group 2 and may spill either side
    ({"z"}, [3]), ({"0"}, [0]), (set(), []),
])
def test_row_groups_of_a_sorted_file(values: set[str], groups: list[int]) -> None:
    assert row_groups(["a", "c", "f", "f"], values) == groups


def test_seeding_finds_an_origin_whose_files_straddle_row_groups(tmp_path: Path) -> None:
    out = OutputDir(str(tmp_path / "o"))
    now = datetime.now(UTC)
    origins = [f"http://h{i:03d}.test:80" for i in range(100)]  # 300 rows: 64 a group
    out.write_origin_part(_part(1), [r for o in origins for r in _origin_files(o, now)])
    assert pq.ParquetFile(tmp_path / "o" / _part(1)).num_row_groups == 5
    config = make_config(**LOCAL)
    process_cache().clear()
    try:
        assert seed_policies(out, _shard(*(o[7:-3] for o in origins)), config) == 100
    finally:
        process_cache().clear()
