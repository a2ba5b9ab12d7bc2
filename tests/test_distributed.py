"""Spark and Ray distributors, the origin phase and retried shard tasks.

Spark runs in ``local[2,3]`` (two task slots; a task may be tried three
times: a plain ``local[2]`` never retries) and Ray in a local two-CPU
instance, each started once for the module. Both download from the local test
site and must keep the local invariants: one audit row per input row, readable
shards, no duplicate samples, robots.txt fetched once per origin for the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from consentfetch import ConfigError, fetch_shards, read_audit
from consentfetch.config import make_config
from consentfetch.consent.decision import Denial, Reason
from consentfetch.consent.origins import (
    FileKind,
    OriginPolicies,
    origin_file_from_row,
    policy_from_files,
)
from consentfetch.distribute.cluster import task_config
from consentfetch.distribute.task import FAULT_ENV
from consentfetch.net.client import SmallFetch
from consentfetch.testsite import LocalSite, Resource, make_image

from .conftest import LOCAL, with_local
from .test_remote import BUCKET, _fs, _local_copy, s3  # noqa: F401 (s3 is a fixture)
from .test_resume import check_invariants

ENGINES = ("spark", "ray")


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fault-injection folder, in the environment before any worker starts."""
    folder = tmp_path_factory.mktemp("faults")
    old = os.environ.get(FAULT_ENV)
    os.environ[FAULT_ENV] = str(folder)
    yield folder
    if old is None:
        os.environ.pop(FAULT_ENV, None)
    else:
        os.environ[FAULT_ENV] = old


@pytest.fixture(scope="module")
def spark(faults: Path) -> Iterator[Any]:
    pytest.importorskip("pyspark")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java (apt-get install default-jre-headless)")
    from pyspark import SparkConf, SparkContext
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = (SparkConf().setMaster("local[2,3]").setAppName("consentfetch-tests")
            .set("spark.ui.enabled", "false")
            .set("spark.driver.host", "127.0.0.1").set("spark.driver.bindAddress", "127.0.0.1")
            .set(f"spark.executorEnv.{FAULT_ENV}", str(faults)))
    sc = SparkContext.getOrCreate(conf)
    sc.setLogLevel("ERROR")
    yield sc
    sc.stop()


@pytest.fixture(scope="module")
def ray_local(faults: Path) -> Iterator[Any]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             _node_ip_address="127.0.0.1",
             logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {FAULT_ENV: str(faults)}})
    yield ray
    ray.shutdown()


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    request.getfixturevalue({"spark": "spark", "ray": "ray_local"}[request.param])
    return str(request.param)


def _scenario(site: LocalSite, n: int = 24) -> list[dict[str, Any]]:
    """Rows over three origins, with a refusal, a 404 and a redirect to a fourth origin."""
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /private/\n")
    site.put(1, "/ai.txt", "User-agent: *\nDisallow: /noai/\n")
    site.put(2, "/.well-known/tdmrep.json",
             Resource(b'[{"location": "/tdm/*", "tdm-reservation": 1}]',
                      content_type="application/json"))
    rows = []
    for i in range(n):
        host = i % 3
        if i % 8 == 0:
            path = f"/private/{i}.jpg" if host == 0 else f"/missing/{i}.jpg"
        elif i % 8 == 1:
            path = {0: f"/fault/redirect?to={site.url(3, '/gen/r.jpg')}&i={i}",
                    1: f"/noai/{i}.jpg", 2: f"/tdm/{i}.jpg"}[host]
        else:
            path = f"/img/{i}.jpg"
        if not path.startswith(("/missing", "/fault")):
            site.put(host, path.split("?")[0], make_image(40 + i, 30 + i, seed=i))
        rows.append({"url": site.url(host, path), "caption": f"c{i}"})
    return rows


def _origin_file_hits(site: LocalSite, host: int) -> tuple[int, int, int]:
    return (site.hit_count(host, "/robots.txt"), site.hit_count(host, "/ai.txt"),
            site.hit_count(host, "/.well-known/tdmrep.json"))


def test_cluster_run_matches_local_and_fetches_origins_once(
        engine: str, site: LocalSite, url_list, tmp_path: Path) -> None:
    rows = _scenario(site)
    path, out = url_list(rows), tmp_path / "o"
    options: dict[str, Any] = {**LOCAL, "shard_size": 4, "caption_col": "caption", "distributor": engine}
    report = fetch_shards(path, str(out), **options)
    assert report.total == len(rows) and report.shards_written == 6
    check_invariants(out, len(rows))
    # One fetch of each consent file per origin for the whole cluster run.
    for host in range(3):
        assert _origin_file_hits(site, host) == (1, 1, 1), host
    # The redirect target's origin is not in the input: fetched on demand, at
    # most once per worker process (two here).
    assert 1 <= site.hit_count(3, "/robots.txt") <= 2
    run = json.loads((out / "run.json").read_text())
    assert run["state"] == "complete" and run["config"]["distributor"] == engine
    audit = {r["url"]: (r["status"], r["reason"]) for r in read_audit(str(out)).to_pylist()}

    # The same decisions as a local, single-process run.
    local = tmp_path / "local"
    fetch_shards(path, str(local), **{**options, "distributor": "multiprocessing"})
    assert {r["url"]: (r["status"], r["reason"])
            for r in read_audit(str(local)).to_pylist()} == audit
    assert {"robots_disallowed", "aitxt_disallowed", "tdm_reserved", "http_error"} <= {
        reason for _, reason in audit.values()}

    # Resume: an unfinished shard is redone, and no origin file is fetched again
    # (origins.parquet holds them, bodies kept).
    hits = [_origin_file_hits(site, h) for h in range(3)]
    (out / "00002_stats.json").unlink()
    (out / "00003.tar.tmp").write_bytes(b"half a tar")
    again = fetch_shards(path, str(out), **options)
    assert (again.shards_written, again.shards_skipped) == (1, 5)
    assert [_origin_file_hits(site, h) for h in range(3)] == hits
    check_invariants(out, len(rows))


@pytest.mark.parametrize("fault", ["exit", "raise"])
def test_failed_task_is_retried_by_the_engine(engine: str, fault: str, faults: Path,
                                              site: LocalSite, url_list,
                                              tmp_path: Path) -> None:
    """A task dies (or raises) halfway through its shard; the engine's retry redoes
    the shard from scratch, and the output is as if nothing happened."""
    rows = [{"url": site.put(i % 3, f"/{fault}/{i}.jpg", make_image(40, 40, seed=i))}
            for i in range(16)]
    for name in os.listdir(faults):
        os.unlink(faults / name)
    (faults / "00001.arm").write_text(f"{fault} 2")
    out = tmp_path / "o"
    report = fetch_shards(url_list(rows), str(out),
                          **with_local({ "shard_size": 4, "distributor": engine}))
    assert (faults / "00001.fired").exists(), "the fault was not injected"
    assert not (faults / "00001.arm").exists()
    assert report.counts == {"success": 16}
    check_invariants(out, 16)
    assert all(site.hit_count(h, "/robots.txt") == 1 for h in range(3))


def test_retry_failed_on_a_cluster(engine: str, site: LocalSite, url_list,
                                   tmp_path: Path) -> None:
    """--retry-failed rewrites complete shards from a cluster task, keys unchanged."""
    rows = [{"url": site.put(0, f"/rf/{i}.jpg", make_image(40, 40, seed=i))} for i in range(4)]
    rows += [{"url": site.url(1, f"/fault/flaky?id={engine}{i}&fail=1&code=503")}
             for i in range(4)]
    path, out = url_list(rows), tmp_path / "o"
    options: dict[str, Any] = {**LOCAL, "retries": 0, "shard_size": 3, "distributor": engine}
    first = fetch_shards(path, str(out), **options)
    assert first.counts == {"failed_to_download": 4, "success": 4}
    keys = {r["url"]: r["key"] for r in read_audit(str(out)).to_pylist()}
    second = fetch_shards(path, str(out), retry_failed=True, **options)
    assert second.counts == {"success": 8}
    assert {r["url"]: r["key"] for r in read_audit(str(out)).to_pylist()} == keys
    check_invariants(out, 8)


def test_cluster_writes_to_s3(engine: str, s3: dict[str, Any], site: LocalSite,  # noqa: F811
                              url_list, tmp_path: Path) -> None:
    """Workers get the output folder's storage_options and write whole shards to S3."""
    rows = [{"url": site.put(i % 2, f"/s3/{i}.jpg", make_image(40, 40, seed=i))}
            for i in range(6)]
    out = f"s3://{BUCKET}/{engine}"
    report = fetch_shards(url_list(rows), out, storage_options=s3,
                          **with_local({ "shard_size": 3, "distributor": engine}))
    assert report.counts == {"success": 6} and report.shards_written == 2
    assert read_audit(out, storage_options=s3).num_rows == 6
    check_invariants(_local_copy(_fs(s3), f"{BUCKET}/{engine}", tmp_path / "copy"), 6)


# ------------------------------------------------------------------ no cluster


@pytest.mark.parametrize("distributor,package", [("spark", "pyspark"), ("ray", "ray")])
def test_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, distributor: str,
                                        package: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(ConfigError, match=rf"pip install 'consentfetch\[{distributor}\]'"):
        make_config(distributor=distributor)


def test_per_host_limit_is_split_over_tasks() -> None:
    config = make_config(per_host_concurrency=8)
    assert task_config(config, 3).per_host_concurrency == 3  # ceil(8 / 3)
    assert task_config(config, 64).per_host_concurrency == 1  # at least one
    assert task_config(config, 1).per_host_concurrency == 8
    assert task_config(config, 64).image_size == config.image_size


def _fetched(status: int | None, body: bytes = b"", error: Denial | None = None,
             reached: bool = True) -> SmallFetch:
    from yarl import URL
    return SmallFetch(URL("http://h/"), status, body, error, reached=reached)


@pytest.mark.parametrize("answers", [
    {"/robots.txt": _fetched(200, b"User-agent: *\nDisallow: /x/\nCrawl-delay: 3\n"),
     "/ai.txt": _fetched(200, b"User-agent: *\nDisallow: /y/\n"),
     "/.well-known/tdmrep.json": _fetched(200, b'[{"location": "/z/*", "tdm-reservation": 1}]')},
    {"/robots.txt": _fetched(404), "/ai.txt": _fetched(404),
     "/.well-known/tdmrep.json": _fetched(500)},
    {"/robots.txt": _fetched(503)},
    {"/robots.txt": _fetched(None, error=Denial(Reason.DNS_ERROR, "no such host"),
                             reached=False)},
])
def test_policy_rebuilt_from_snapshot_rows_decides_alike(answers: dict[str, SmallFetch]) -> None:
    import asyncio

    from yarl import URL

    from consentfetch.consent.engine import ConsentEngine, Permits

    async def fetch(url: URL) -> SmallFetch:
        return answers.get(url.path, _fetched(404))

    async def load() -> Any:
        policies = OriginPolicies(fetch, keep_bodies=True)
        live = await policies.get(URL("http://h/"))
        return live, [f.to_row() for f in policies.used.values()]

    live, rows = asyncio.run(load())
    files = {r["kind"]: origin_file_from_row(r) for r in rows}
    seeded = policy_from_files(live.origin, files)
    assert seeded is not None
    assert set(seeded.files) == set(live.files) <= set(FileKind)
    assert seeded.unreached == live.unreached
    engine = ConsentEngine(token="consentfetch", profile="strict")
    for path in ("/a.jpg", "/x/a.jpg", "/y/a.jpg", "/z/a.jpg"):
        url = URL("http://h" + path)
        assert engine.check_origin(seeded, url, Permits()) == \
            engine.check_origin(live, url, Permits()), path
    if live.robots is not None:
        assert seeded.robots is not None
        assert seeded.robots.crawl_delay("consentfetch") == live.robots.crawl_delay("consentfetch")
    # Without the bodies, the rows cannot stand in for a fetch.
    stripped = {k: origin_file_from_row({**r, "body": None}) for k, r in
                ((r["kind"], r) for r in rows)}
    if any(f.outcome == "parsed" for f in stripped.values()):
        assert policy_from_files(live.origin, stripped) is None
