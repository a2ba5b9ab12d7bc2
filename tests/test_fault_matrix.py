"""The fault matrix: hostile and broken servers and inputs, all in one run.

Every fault gets its own audit row with the right reason, the run finishes,
and the ordinary rows around the faults still succeed. A second test shows a
slow host does not stall the fast ones (asserted by request order, not time).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentfetch import ProgressSnapshot, fetch_shards, read_audit
from consentfetch.testsite import LocalSite, Resource, make_image, running_site

from .conftest import LOCAL, png_bomb, with_local

HUGE_CAPTION = "ünïcode caption " * 65_536  # ~1 MiB


MATRIX_HOSTS = tuple(f"127.0.0.{i}" for i in range(50, 80))
PRIVATE = MATRIX_HOSTS[-1]  # the one host the guard still refuses


def build_matrix(site: LocalSite) -> list[tuple[str, str, str | None, str | None]]:
    """(name, url, expected status, expected reason): each fault on its own origin."""
    hosts = iter(range(len(MATRIX_HOSTS) - 1))
    fail, bad = "failed_to_download", "failed_to_resize"
    ok = make_image(64, 48)

    def at(path: str, resource: Resource | bytes | None = None) -> str:
        host = next(hosts)
        return site.put(host, path, resource) if resource is not None else site.url(host, path)

    closed = at("/closed/a.jpg", make_image(40, 40))
    site.put(closed.split("/")[2].split(":")[0], "/robots.txt",
             "User-agent: *\nDisallow: /closed/\n")
    dup = at("/dup.jpg", ok)
    refused = site.hosts[next(hosts)]
    return [
        ("normal", at("/gen/n1.jpg?w=300&h=200"), "success", None),
        ("connection refused", f"http://{refused}:1/a.jpg", fail, "connection_error"),
        ("reset mid-body", at("/fault/reset_body"), fail, "connection_error"),
        ("body shorter than Content-Length", at("/fault/short"), fail, "connection_error"),
        ("stall before headers", at("/fault/slow?delay=30"), fail, "timeout"),
        ("slow drip", at("/fault/drip?seconds=60"), fail, "timeout"),
        ("500 then 200", at("/fault/flaky?id=a&fail=1&code=500"), "success", None),
        ("503 with Retry-After, then 200",
         at("/fault/flaky?id=b&fail=1&code=503&retry_after=1"), "success", None),
        ("redirect loop", at("/fault/loop"), fail, "too_many_redirects"),
        ("redirect to a private address",
         at("/r", Resource(b"", status=302,
                           headers={"Location": f"http://{PRIVATE}:{site.port}/gen/x.jpg"})),
         fail, "blocked_address"),
        ("redirect to an opted-out origin",
         at("/r", Resource(b"", status=302, headers={"Location": closed})),
         "disallowed", "robots_disallowed"),
        ("non-image content", at("/html", Resource(b"<html><body>hello</body></html>",
                                                   content_type="text/html")),
         bad, "decode_error"),
        ("zero-length body", at("/empty.jpg", b""), bad, "decode_error"),
        ("corrupt JPEG", at("/corrupt.jpg", ok[:200] + b"\x00" * 300), bad, "decode_error"),
        ("20000x20000 PNG bomb", at("/bomb.png", png_bomb(20_000)), bad, "image_too_large"),
        ("URL with a space", at("/a b.jpg", ok), "success", None),
        ("duplicate URL (1)", dup, "success", None),
        ("duplicate URL (2)", dup, "success", None),
        ("unicode host (IDNA)", "http://bücher.invalid/a.jpg", fail, "dns_error"),
        ("ftp:", "ftp://127.0.0.2/a.jpg", fail, "invalid_url"),
        ("data:", "data:image/png;base64,iVBORw0KGgo=", fail, "invalid_url"),
        ("javascript:", "javascript:alert(1)", fail, "invalid_url"),
        ("normal, after the faults", at("/gen/n2.jpg?w=120&h=300"), "success", None),
    ]


@pytest.fixture
def matrix_site():
    with running_site(MATRIX_HOSTS) as site:
        yield site


def test_fault_matrix(matrix_site: LocalSite, tmp_path: Path) -> None:
    site = matrix_site
    matrix = build_matrix(site)
    rows = [{"url": url, "caption": name, "n": i} for i, (name, url, _, _) in enumerate(matrix)]
    rows.append({"url": site.url(0, "/gen/cap.jpg"), "caption": HUGE_CAPTION, "n": len(rows)})
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    # Every host but PRIVATE is let through the guard.
    allowed = [f"{h}/32" for h in site.hosts if h != PRIVATE]
    out = tmp_path / "out"
    report = fetch_shards(str(path), str(out), caption_col="caption",
                          save_additional_columns=["n"],
                          **with_local({ "allow_private_networks": False,
                             "allowed_networks": allowed, "timeout": 2, "retries": 1,
                             "retry_backoff": 0.05, "concurrency": 16}))
    audit = {r["n"]: r for r in read_audit(str(out)).to_pylist()}
    assert len(audit) == len(rows) == report.total
    for i, (name, url, status, reason) in enumerate(matrix):
        row = audit[i]
        assert (row["status"], row["reason"]) == (status, reason), (name, row["evidence"])
        assert row["url"] == url
        if reason:
            assert row["evidence"], name
    big = audit[len(matrix)]
    assert big["status"] == "success" and big["caption"] == HUGE_CAPTION
    # The 503 was retried after its Retry-After, not before.
    times = [t for t, host, path in site.log if path.startswith("/fault/flaky?id=b")]
    assert len(times) == 2 and times[1] - times[0] >= 0.9


def test_invalid_utf8_caption_in_csv(matrix_site: LocalSite, tmp_path: Path) -> None:
    url = matrix_site.put(0, "/a.jpg", make_image(40, 40))
    path = tmp_path / "urls.csv"
    path.write_bytes(b"url,caption\n" + url.encode() + b",caf\xe9 \xff\n")
    fetch_shards(str(path), str(tmp_path / "o"), caption_col="caption", **LOCAL)
    (row,) = read_audit(str(tmp_path / "o")).to_pylist()
    # the bytes kept, as escapes (surrogateescape), not replaced by U+FFFD (issue 15)
    assert row["status"] == "success" and row["caption"] == "caf\\udce9 \\udcff"


def test_429_burst_backs_the_host_off(matrix_site: LocalSite, tmp_path: Path) -> None:
    """A host answering 429 is backed off as a whole, then everything succeeds."""
    site = matrix_site
    rows = [{"url": site.url(0, f"/fault/burst?n=3&retry_after=1&i={i}")} for i in range(6)]
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    fetch_shards(str(path), str(tmp_path / "o"),
                 **with_local({ "retries": 3, "retry_backoff": 0.05, "per_host_concurrency": 2}))
    audit = read_audit(str(tmp_path / "o")).to_pylist()
    assert [r["status"] for r in audit] == ["success"] * 6
    burst = [t for t, _, p in site.log if p.startswith("/fault/burst")]
    assert len(burst) <= 6 + 3 + 2  # 3 refusals, and little else was wasted
    # After the first 429 no request went out before its Retry-After had passed.
    assert burst[-1] - burst[0] >= 0.9


def test_circuit_breaker_gives_a_dead_host_up(matrix_site: LocalSite, tmp_path: Path) -> None:
    site = matrix_site
    rows = [{"url": site.url(0, f"/fault/status?code=500&i={i}")} for i in range(30)]
    rows.append({"url": site.url(1, "/gen/fine.jpg")})
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    fetch_shards(str(path), str(tmp_path / "o"),
                 **with_local({ "retries": 1, "retry_backoff": 0.01, "max_host_failures": 4,
                    "per_host_concurrency": 1}))
    audit = read_audit(str(tmp_path / "o")).to_pylist()
    assert audit[-1]["status"] == "success"
    dead = audit[:-1]
    assert all(r["reason"] == "http_error" for r in dead)
    given_up = [r for r in dead if r["evidence"].startswith("not requested:")]
    assert len(given_up) >= 25 and "given up" in given_up[0]["evidence"]
    assert site.hit_count(0, "/fault/status") <= 6  # 4 failures trip it (+ in flight)


def test_not_requested_evidence_is_true(matrix_site: LocalSite, tmp_path: Path) -> None:
    """A row says "not requested" only if its URL was never requested (issue 15).

    With retries, a row requested once or twice before its host was given up
    keeps the outcome of its own last request, and says how many requests it
    made and why no more.
    """
    site = matrix_site
    rows = [{"url": site.url(0, f"/fault/status?code=500&i={i}")} for i in range(12)]
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    fetch_shards(str(path), str(tmp_path / "o"),
                 **with_local({"retries": 2, "retry_backoff": 0.01, "max_host_failures": 3,
                               "per_host_concurrency": 2}))
    audit = read_audit(str(tmp_path / "o")).to_pylist()
    requested = Counter(p for _, _, p in site.log if p.startswith("/fault/status"))
    assert sum(requested.values()) <= 3 + 2  # the breaker tripped (+ in flight)
    for row in audit:
        own = requested["/fault/status?" + row["url"].split("?", 1)[1]]
        assert row["evidence"].startswith("not requested:") == (own == 0), (row, own)
        if own:  # the row's own last answer
            assert row["evidence"].endswith("HTTP 500 Internal Server Error"), row
        if own > 1:
            assert row["evidence"].startswith(f"requested {own} times; "), row


class SnapshotRecorder:
    """A progress view that keeps every snapshot it is shown."""

    interval = 0.0

    def __init__(self) -> None:
        self.shown: list[ProgressSnapshot] = []
        self.closed = False

    def show(self, snapshot: ProgressSnapshot) -> None:
        self.shown.append(snapshot)

    def close(self) -> None:
        self.closed = True


def test_three_503s_cost_seconds_and_their_evidence_is_true(matrix_site: LocalSite,
                                                          tmp_path: Path) -> None:
    """Issue 15's case: three URLs of one host answer 503, twenty others are fine.

    With the default retries and backoff, a host that never had a success is
    given up within its small budget: at most 4 failures (backoff 1+2+4+8 s
    passes 10 s), not the 60 s budget's 7 (it took 136 s, then 46 s). Each
    row's evidence says what happened to it at the site: not requested, or
    requested N times and why no more.
    """
    site = matrix_site
    rows = [{"url": site.put(1 + i, f"/{i}.jpg", make_image(32, 32, seed=i))}
            for i in range(20)]
    rows += [{"url": site.url(0, f"/fault/status?code=503&i={i}")} for i in range(3)]
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    view = SnapshotRecorder()
    fetch_shards(str(path), str(tmp_path / "o"), progress=view,
                 allow_private_networks=True, processes=1, timeout=5)  # default politeness
    audit = read_audit(str(tmp_path / "o")).to_pylist()
    assert [r["status"] for r in audit[:20]] == ["success"] * 20
    # While the host backed off (2 s at least), the progress line said so.
    waits = [s.next_try for s in view.shown if s.backing_off]
    assert waits and all(w is not None and w <= 10.0 for w in waits), view.shown
    assert view.shown[-1].backing_off == 0 and view.closed
    requested = Counter(p for _, _, p in site.log if p.startswith("/fault/status"))
    assert 2 <= sum(requested.values()) <= 4
    for row in audit[20:]:
        assert (row["status"], row["reason"]) == ("failed_to_download", "http_error"), row
        own = requested["/fault/status?" + row["url"].split("?", 1)[1]]
        evidence = row["evidence"]
        if own == 0:
            assert evidence.startswith("not requested: 127.0.0.50 failed"), evidence
        else:
            assert row["http_status"] == 503
            told = "requested once" if own == 1 else f"requested {own} times"
            assert evidence.startswith(f"{told}; gave up: 127.0.0.50 failed"), evidence
            assert "no success in this run" in evidence and evidence.endswith(
                "; last: HTTP 503 Service Unavailable"), evidence


def test_a_retry_after_past_the_cap_gives_the_host_up(matrix_site: LocalSite,
                                                     tmp_path: Path) -> None:
    """A host asking for more than --max-retry-after is not waited for, nor asked again:
    its other rows are audited at once, their evidence naming the Retry-After."""
    site = matrix_site
    rows = [{"url": site.url(0, f"/fault/status?code=503&retry_after=3600&i={i}")}
            for i in range(6)]
    rows.append({"url": site.put(1, "/fine.jpg", make_image(32, 32))})
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    fetch_shards(str(path), str(tmp_path / "o"),
                 **with_local({"retries": 2, "per_host_concurrency": 1}))
    audit = read_audit(str(tmp_path / "o")).to_pylist()
    assert audit[-1]["status"] == "success"
    requested = Counter(p for _, _, p in site.log if p.startswith("/fault/status"))
    assert sum(requested.values()) == 1  # the first answer says: not within this run
    for row in audit[:-1]:
        assert row["reason"] == "http_error", row
        own = requested["/fault/status?" + row["url"].split("?", 1)[1]]
        if own:
            assert row["evidence"] == "HTTP 503 Service Unavailable (Retry-After: 3600)", row
        else:
            assert row["evidence"].startswith("not requested: 127.0.0.50 asked for "
                                              "Retry-After: 3600"), row["evidence"]
            assert "--max-retry-after 60 s" in row["evidence"], row["evidence"]


def test_a_host_that_timed_out_gets_a_shorter_deadline(matrix_site: LocalSite,
                                                       tmp_path: Path) -> None:
    """A stalling host costs one full --timeout, not one per attempt: the retry after
    its timeout waits a quarter of it, and the evidence says so."""
    site = matrix_site
    rows = [{"url": site.url(0, "/fault/slow?delay=30")}]
    path = tmp_path / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    fetch_shards(str(path), str(tmp_path / "o"), **with_local({"timeout": 2, "retries": 1}))
    (row,) = read_audit(str(tmp_path / "o")).to_pylist()
    assert site.hit_count(0, "/fault/slow") == 2
    assert (row["status"], row["reason"]) == ("failed_to_download", "timeout")
    assert row["evidence"] == ("requested 2 times; last: no complete response within 0.5 s "
                               "(--timeout 2 s, cut as the host's last request had timed out)")


def test_origin_files_are_loaded_ahead_of_the_workers(tmp_path: Path) -> None:
    """The origin of the shard's last row has its robots.txt asked for in the first
    wave of requests, not when a worker reaches the row: a robots.txt that never
    answers costs its --timeout during the shard, not after it."""
    hosts = tuple(f"127.0.0.{i}" for i in range(80, 91))
    with running_site(hosts) as site:
        rows = [{"url": site.url(h, f"/fault/slow?delay=0.3&i={i}")}
                for i in range(6) for h in range(10)]
        rows.append({"url": site.url(10, "/gen/last.jpg")})
        path = tmp_path / "urls.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        fetch_shards(str(path), str(tmp_path / "o"),
                     **with_local({"concurrency": 8, "per_host_concurrency": 2}))
        order = [(host, p) for _, host, p in site.log]
    assert read_audit(str(tmp_path / "o")).num_rows == len(rows)
    last_robots = order.index((hosts[10], "/robots.txt"))
    images = [i for i, (_, p) in enumerate(order) if p.startswith("/fault/slow")]
    assert len(images) == 60
    assert last_robots < images[8], order[:last_robots + 1]  # 8 workers: the first wave


def test_slow_host_does_not_stall_fast_hosts(tmp_path: Path) -> None:
    """One slow host among many fast ones: fast rows are not held behind it.

    Asserted by the order of requests at the site, not by wall time: every
    fast-host request arrives before the slow host's third request does.
    """
    hosts = tuple(f"127.0.0.{i}" for i in range(40, 49))
    with running_site(hosts) as site:
        slow, fast = 0, range(1, len(hosts))
        rows = [{"url": site.url(slow, f"/fault/slow?delay=1&i={i}")} for i in range(6)]
        for i in range(30):
            for h in fast:
                rows.append({"url": site.put(h, f"/{i}.jpg", make_image(32, 32, seed=i))})
        path = tmp_path / "urls.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)  # slow rows first, the worst case
        fetch_shards(str(path), str(tmp_path / "o"),
                     **with_local({ "concurrency": 8, "per_host_concurrency": 2, "retries": 0}))
        slow_arrivals = [t for t, host, p in site.log
                         if host == hosts[slow] and p.startswith("/fault/slow")]
        fast_arrivals = [t for t, host, p in site.log
                         if host != hosts[slow] and p.endswith(".jpg")]
    assert len(slow_arrivals) == 6 and len(fast_arrivals) == 30 * len(fast)
    assert max(fast_arrivals) < sorted(slow_arrivals)[2]
    audit = read_audit(str(tmp_path / "o")).to_pylist()
    assert [r["status"] for r in audit].count("success") == len(audit)
