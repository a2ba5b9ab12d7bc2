"""Resume, --retry-failed, clean stops and SIGKILL at any moment."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import webdataset as wds

from consentfetch import ConfigError, fetch_shards, read_audit
from consentfetch.testsite import LocalSite, Resource, make_image, running_site

from .conftest import LOCAL, sigint_default, with_local


def check_invariants(out: Path, n_rows: int) -> None:
    """Every tar readable, every input row audited once, samples == successes."""
    assert not list(out.glob("*.tmp"))
    audit = read_audit(str(out)).to_pylist()
    assert len(audit) == n_rows
    assert len({r["key"] for r in audit}) == n_rows
    assert len({r["url"] for r in audit}) == n_rows
    successes = {r["key"] for r in audit if r["status"] == "success"}
    keys = []
    for tar_path in sorted(out.glob("*.tar")):
        with tarfile.open(tar_path) as tar:
            tar.getmembers()
        keys += [s["__key__"] for s in wds.WebDataset(str(tar_path), shardshuffle=False)]
    assert len(keys) == len(set(keys)), "duplicate samples"
    assert set(keys) == successes


def test_retry_failed_rewrites_only_transient_failures(site: LocalSite, url_list,
                                                       tmp_path: Path) -> None:
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /no/\n")
    rows = [{"url": site.put(0, f"/ok/{i}.jpg", make_image(40, 40, seed=i))} for i in range(4)]
    rows += [{"url": site.url(0, f"/fault/flaky?id={i}&fail=1&code=503")} for i in range(3)]
    rows += [{"url": site.url(0, "/missing.jpg")}, {"url": site.url(0, "/no/a.jpg")}]
    path, out = url_list(rows), tmp_path / "o"
    options: dict[str, Any] = {**LOCAL, "retries": 0, "shard_size": 5}
    first = fetch_shards(path, str(out), **options)
    assert first.counts == {"disallowed": 1, "failed_to_download": 4, "success": 4}
    keys_before = {r["url"]: r["key"] for r in read_audit(str(out)).to_pylist()}

    second = fetch_shards(path, str(out), retry_failed=True, **options)
    assert second.counts == {"disallowed": 1, "failed_to_download": 1, "success": 7}
    audit = {r["url"]: r for r in read_audit(str(out)).to_pylist()}
    assert {u: r["key"] for u, r in audit.items()} == keys_before  # keys are kept
    assert audit[site.url(0, "/missing.jpg")]["reason"] == "http_error"  # 404: not retried
    assert site.hit_count(0, "/missing.jpg") == 1
    assert site.hit_count(0, "/no/a.jpg") == 0
    check_invariants(out, len(rows))


def test_retry_failed_retries_a_host_given_up_after_5xx(site: LocalSite, url_list,
                                                       tmp_path: Path) -> None:
    """A host given up after 503s fails its other rows with http_error and no status
    (none was requested); they are transient like those given up after timeouts."""
    paths = [f"/{i}.jpg" for i in range(4)]
    for p in paths:
        site.put(0, p, Resource(b"busy", status=503))
    path, out = url_list([{"url": site.url(0, p)} for p in paths]), tmp_path / "o"
    options: dict[str, Any] = {**LOCAL, "retries": 0, "max_host_failures": 2, "per_host_concurrency": 1}
    first = fetch_shards(path, str(out), **options)
    assert first.counts == {"failed_to_download": 4}
    audit = read_audit(str(out)).to_pylist()
    assert sorted((r["reason"], r["http_status"] or 0) for r in audit) == [
        ("http_error", 0), ("http_error", 0), ("http_error", 503), ("http_error", 503)]
    for i, p in enumerate(paths):
        site.put(0, p, make_image(40, 40, seed=i))

    second = fetch_shards(path, str(out), retry_failed=True, **options)
    assert second.counts == {"success": 4}
    check_invariants(out, len(paths))


def test_resume_refuses_other_options(site: LocalSite, url_list, tmp_path: Path) -> None:
    path, out = url_list([{"url": site.put(0, "/a.jpg", make_image(40, 40))}]), tmp_path / "o"
    fetch_shards(path, str(out), **LOCAL)
    with pytest.raises(ConfigError, match="--image-size was 256, now 128.*--overwrite"):
        fetch_shards(path, str(out), image_size=128, **LOCAL)
    fetch_shards(path, str(out), **with_local({ "timeout": 7, "concurrency": 3}))  # safe changes
    report = fetch_shards(path, str(out), image_size=128, overwrite=True, **LOCAL)
    assert report.shards_written == 1
    assert json.loads((out / "run.json").read_text())["config"]["image_size"] == 128


def test_inconsistent_shard_is_redone(site: LocalSite, url_list, tmp_path: Path) -> None:
    rows = [{"url": site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i))} for i in range(4)]
    path, out = url_list(rows), tmp_path / "o"
    fetch_shards(path, str(out), shard_size=2, **LOCAL)
    (out / "00001.tar").write_bytes(b"")  # truncated by a crash of some other tool
    report = fetch_shards(path, str(out), shard_size=2, **LOCAL)
    assert (report.shards_written, report.shards_skipped) == (1, 1)
    check_invariants(out, 4)


def _slow_run(site: LocalSite, url_list, n: int) -> str:
    rows = [{"url": site.url(i % len(site.hosts), f"/fault/slow?delay=0.05&i={i}")}
            for i in range(n)]
    return url_list(rows)


def _download(path: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "consentfetch", "download", path, str(out),
         "--allow-private-networks", "--shard-size", "50", "--processes", "2",
         "--concurrency", "8", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        preexec_fn=sigint_default)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.05)


@pytest.mark.parametrize("kill_after_shards", [0, 4, 10])  # of 12; 10: the last two run
def test_sigkill_then_resume(url_list, tmp_path: Path, kill_after_shards: int) -> None:
    """SIGKILL (of the parent alone: workers must die with it) at three points."""
    with running_site(("127.0.0.20", "127.0.0.21", "127.0.0.22")) as site:
        n = 600
        path, out = _slow_run(site, url_list, n), tmp_path / "o"
        proc = _download(path, out)
        if kill_after_shards == 0:
            _wait_for(lambda: site.hit_count(0, "/fault/slow") > 5)
        else:
            _wait_for(lambda: len(list(out.glob("*_stats.json"))) >= kill_after_shards)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        # The workers die with their parent (PR_SET_PDEATHSIG): nothing of the
        # killed run is left to race the resumed one.
        _wait_for(lambda: not _group_alive(proc.pid), timeout=10)
        done_before = len(list(out.glob("*_stats.json")))
        assert done_before < n // 50, "the run finished before it could be killed"
        resumed = _download(path, out)
        stdout, stderr = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, stderr
        assert f"{n} URLs: {n} success" in stdout
    check_invariants(out, n)


def test_sigterm_stops_cleanly_with_workers(url_list, tmp_path: Path) -> None:
    with running_site(("127.0.0.23", "127.0.0.24")) as site:
        path, out = _slow_run(site, url_list, 400), tmp_path / "o"
        proc = _download(path, out)
        _wait_for(lambda: site.hit_count(0, "/fault/slow") > 10)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert "run the same command again to resume" in stderr
        assert not list(out.glob("*.tmp"))
        assert json.loads((out / "run.json").read_text())["state"] == "interrupted"
        for stats in out.glob("*_stats.json"):  # whatever finished is whole
            stem = stats.name.removesuffix("_stats.json")
            assert (out / f"{stem}.tar").exists() and (out / f"{stem}.parquet").exists()


def test_a_failed_run_says_so_in_run_json(site: LocalSite, url_list, tmp_path: Path,
                                          monkeypatch) -> None:
    import consentfetch.distribute as distribute

    def broken(*args, **kwargs):
        raise RuntimeError("worker pool broke")
        yield  # pragma: no cover

    monkeypatch.setattr(distribute.LocalDistributor, "run_shards", broken)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError, match="worker pool broke"):
        fetch_shards(url_list([{"url": site.put(0, "/a.jpg", make_image(40, 40))}]), str(out),
                     **LOCAL)
    assert json.loads((out / "run.json").read_text())["state"] == "failed"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentfetch", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_resume_knows_the_input_however_it_is_spelled(site: LocalSite, url_list,
                                                      tmp_path: Path) -> None:
    """A relative path, the absolute path and a symlink, from other directories,
    are one input; only the input as typed differs."""
    data, elsewhere = tmp_path / "data", tmp_path / "elsewhere"
    data.mkdir()
    elsewhere.mkdir()
    path = Path(url_list([{"url": site.put(0, "/a.jpg", make_image(40, 40))}],
                         name="data/urls.parquet"))
    (elsewhere / "link.parquet").symlink_to(path)
    out, flags = tmp_path / "o", ("--allow-private-networks", "--processes", "1")
    first = _cli("download", "data/urls.parquet", str(out), *flags, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run = json.loads((out / "run.json").read_text())
    assert (run["input"], run["input_id"]) == ("data/urls.parquet", str(path.resolve()))
    for typed, cwd in ((str(path), elsewhere), ("./urls.parquet", data),
                       ("link.parquet", elsewhere)):
        again = _cli("download", typed, str(out), *flags, cwd=cwd)
        assert again.returncode == 0, again.stderr
        assert "shards written: 0 (+1 complete from an earlier run)" in again.stdout
    assert site.hit_count(0, "/a.jpg") == 1


def test_resume_reads_an_older_run_json_without_input_id(site: LocalSite, url_list,
                                                         tmp_path: Path,
                                                         monkeypatch) -> None:
    path = url_list([{"url": site.put(0, "/a.jpg", make_image(40, 40))}])
    out = tmp_path / "o"
    fetch_shards(path, str(out), **LOCAL)
    run = json.loads((out / "run.json").read_text())
    del run["input_id"]  # as versions before it wrote it
    run["input"] = "urls.parquet"  # typed relative to tmp_path
    (out / "run.json").write_text(json.dumps(run))
    monkeypatch.chdir(tmp_path)
    report = fetch_shards(path, str(out), **LOCAL)  # absolute now: the same file
    assert (report.shards_written, report.shards_skipped) == (0, 1)
    monkeypatch.chdir(out)  # from here, "urls.parquet" is another (missing) file
    (out / "run.json").write_text(json.dumps(run))
    with pytest.raises(ConfigError, match="input was 'urls.parquet'"):
        fetch_shards(path, str(out), **LOCAL)


def test_resume_refusal_says_what_overwrite_deletes(site: LocalSite, url_list,
                                                    tmp_path: Path) -> None:
    rows = [{"url": site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i))} for i in range(2)]
    path, other = url_list(rows), url_list(rows[:1], name="other.parquet")
    out = tmp_path / "o"
    flags = ("--allow-private-networks", "--processes", "1", "--shard-size", "1")
    assert _cli("download", path, str(out), *flags, cwd=tmp_path).returncode == 0
    refused = _cli("download", other, str(out), *flags, cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    assert "input was" in refused.stderr and "new output folder" in refused.stderr
    assert f"--overwrite would delete the 2 finished shard(s) in {out}" in refused.stderr
    assert len(list(out.glob("*_stats.json"))) == 2


def test_ctrl_c_starts_no_shard_and_counts_the_shards_on_disk(url_list,
                                                               tmp_path: Path) -> None:
    """Ctrl-C in a terminal (SIGINT to the whole process group) with two worker
    processes: the shards the pool had queued are not started, in-flight ones are
    discarded, and the message counts the complete shards really on disk."""
    with running_site(("127.0.0.26", "127.0.0.27")) as site:
        rows = [{"url": site.url(i % 2, f"/fault/slow?delay=0.3&i={i}")} for i in range(400)]
        out = tmp_path / "o"
        proc = _download(url_list(rows), out, "--shard-size", "20", "--per-host-concurrency",
                         "4", "--min-host-delay", "0")
        _wait_for(lambda: len(list(out.glob("*_stats.json"))) >= 2)
        time.sleep(0.3)  # the next shards are running, and more are queued
        signalled = time.time()
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    complete = sorted(out.glob("*_stats.json"))
    assert f"interrupted: {len(complete)} complete shard(s) in {out} are kept" in stderr
    assert "shards in flight were discarded" in stderr
    started = [json.loads(p.read_text())["start_time"] for p in complete]
    assert all(t < signalled for t in started), "a shard was started after Ctrl-C"
    assert not list(out.glob("*.tmp"))
    assert {p.name.split(".")[0] for p in out.glob("*.tar")} == \
        {p.name.removesuffix("_stats.json") for p in complete}
