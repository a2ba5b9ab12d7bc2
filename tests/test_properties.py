"""The run's promise, searched for counterexamples with hypothesis.

Invariant: whatever a site sends (status line, reason phrase, header values
as raw bytes, redirect Locations, robots.txt / ai.txt / tdmrep.json bodies)
and whatever an input row holds (URL, caption, kept column, lone surrogates
included), ``fetch_shards`` completes and every input row has exactly one
audit row; and no row is ``success`` on an origin whose robots.txt disallows
everything to every agent.

Each example is one small real run against the local site (started once for
the module), so examples are bounded in number and size.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentfetch import fetch_shards, read_audit
from consentfetch.testsite import LocalSite, RawResource, Resource, make_image, running_site
from consentfetch.workercache import process_cache

from .conftest import LOCAL

HOSTS = ("127.0.0.200", "127.0.0.201", "127.0.0.202")
IMAGE = make_image(32, 24)
# Random URLs and Locations must not leave the machine: only loopback gets
# past the address guard, and no name is ever looked up (see no_dns).
OPTIONS: dict[str, Any] = {**LOCAL, "allow_private_networks": False, "allowed_networks": ("127.0.0.0/8",),
           "retries": 0, "timeout": 2, "input_format": "jsonl"}
EXAMPLES = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def psite() -> Iterator[LocalSite]:
    with running_site(HOSTS) as s:
        yield s


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names fail to resolve, without a query: hypothesis makes up host names."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        try:
            ipaddress.ip_address(text)
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME,
                                  "name lookups are off in this test") from None
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def run(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run of ``rows``; asserts one audit row per input row and returns them."""
    # Every example serves new origin files on the same origins: forget the
    # policies this process cached from the examples before.
    process_cache().clear()
    with tempfile.TemporaryDirectory(prefix="consentfetch-prop-") as tmp:
        src = Path(tmp) / "urls.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        report = fetch_shards(str(src), str(Path(tmp) / "out"), caption_col="caption",
                              save_additional_columns=["extra"], **OPTIONS)
        audit = read_audit(str(Path(tmp) / "out")).to_pylist()
    assert report.total == len(rows) == len(audit)
    assert sorted(r["key"] for r in audit) == sorted({r["key"] for r in audit})
    return sorted(audit, key=lambda r: r["key"])


# Bytes a hostile server may put in one header line or a reason phrase.
line_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
HEADER_NAMES = (b"X-Robots-Tag", b"tdm-reservation", b"tdm-policy", b"Content-Usage",
                b"Retry-After", b"Link", b"Location", b"Content-Type", b"Content-Length",
                b"Transfer-Encoding", b"Content-Encoding", b"X-Anything")
headers = st.lists(st.tuples(st.sampled_from(HEADER_NAMES), line_bytes), max_size=5)
statuses = st.sampled_from([200, 203, 206, 301, 302, 307, 404, 429, 500, 503, 599, 999])
# Any text, often with a lone surrogate in it (hypothesis rarely makes one by itself).
SURROGATES = ("\ud800", "\udbff", "\udc80", "\udcff", "\udfff")
any_text = st.builds(lambda a, s, b: a + s + b, st.text(max_size=15),
                     st.one_of(st.just(""), st.sampled_from(SURROGATES)), st.text(max_size=15))
# URL-shaped text with the parts that break parsers: open IPv6 literals, empty
# or over-long labels, bad IDNA, ports out of range, odd schemes.
url_like = st.builds(
    lambda scheme, host, port, path: scheme + host + port + path,
    st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "//", "", "http:"]),
    st.one_of(st.sampled_from([f"{HOSTS[1]}", "[::1", "[::1]", "[", "xn--", "xn--a.b",
                               "a" * 64 + ".b", "a..b", ".", "%zz", "user@" + HOSTS[1]]),
              any_text),
    st.sampled_from(["", ":", ":0", ":99999999", ":-1", ":x", ":PORT"]),
    st.one_of(st.just("/p/x.jpg"), any_text.map(lambda t: "/p/" + t)))


def raw_response(status: int, reason: bytes, head: list[tuple[bytes, bytes]],
                 body: bytes) -> RawResource:
    lines = [b"HTTP/1.1 %d " % status + reason, *(n + b": " + v for n, v in head),
             b"Connection: close"]
    return RawResource(b"\r\n".join(lines) + b"\r\n\r\n" + body)


@EXAMPLES
@given(status=statuses, reason=line_bytes, head=headers)
def test_any_response_ends_as_one_row(psite, status, reason, head) -> None:
    url = psite.put(0, "/img.jpg", raw_response(status, reason, head, IMAGE))
    ok = psite.put(1, "/ok.jpg", IMAGE)
    hostile, ordinary = run([{"url": url}, {"url": ok}])
    assert ordinary["status"] == "success"


locations = st.one_of(line_bytes, url_like.map(lambda t: t.encode("utf-8", "surrogatepass")))


@EXAMPLES
@given(location=locations, robots_location=locations)
def test_any_redirect_location_ends_as_one_row(psite, location, robots_location) -> None:
    location = location.replace(b":PORT", b":%d" % psite.port)
    robots_location = robots_location.replace(b":PORT", b":%d" % psite.port)
    psite.put(2, "/robots.txt", raw_response(301, b"Moved", [(b"Location", robots_location)],
                                             b""))
    rows = [{"url": psite.put(0, "/r.jpg", raw_response(302, b"Found",
                                                        [(b"Location", location)], b""))},
            {"url": psite.put(2, "/img.jpg", IMAGE)}]
    run(rows)


# Lines that cannot open a group or allow anything, so they cannot lift a
# complete "Disallow: /" for every agent: anything else goes.
junk_lines = st.lists(any_text.filter(
    lambda s: "agent" not in s.lower() and "allow" not in s.lower()), max_size=6)
bodies = st.one_of(st.binary(max_size=200), any_text.map(
    lambda s: s.encode("utf-8", "surrogatepass")))


tdmrep_files = st.builds(
    lambda location, reservation, policy: json.dumps(
        [{"location": location, "tdm-reservation": reservation, "tdm-policy": policy}]).encode(),
    st.one_of(st.just("/*"), any_text), st.sampled_from([1, 0, "1"]),
    st.one_of(st.sampled_from(SURROGATES), any_text))


@EXAMPLES
@given(junk=junk_lines, ai_txt=bodies, tdmrep=st.one_of(bodies, tdmrep_files),
       other_robots=bodies)
def test_any_origin_files_end_as_one_row_and_a_disallow_holds(psite, junk, ai_txt, tdmrep,
                                                              other_robots) -> None:
    closed = "User-agent: *\nDisallow: /\n" + "\n".join(junk) + "\n"
    psite.put(0, "/robots.txt", Resource(closed.encode("utf-8", "surrogatepass"),
                                         content_type="text/plain"))
    psite.put(1, "/robots.txt", Resource(other_robots, content_type="text/plain"))
    for host in (0, 1):
        psite.put(host, "/ai.txt", Resource(ai_txt, content_type="text/plain"))
        psite.put(host, "/.well-known/tdmrep.json",
                  Resource(tdmrep, content_type="application/json"))
    audit = run([{"url": psite.put(0, "/img.jpg", IMAGE)},
                 {"url": psite.put(1, "/img.jpg", IMAGE)}])
    assert audit[0]["status"] == "disallowed"


@EXAMPLES
@given(rows=st.lists(st.fixed_dictionaries({
    "url": st.one_of(url_like, any_text, st.none()),
    "caption": st.one_of(any_text, st.none()),
    "extra": st.one_of(any_text, st.none())}), min_size=1, max_size=6))
def test_any_input_rows_end_as_one_row_each(psite, rows) -> None:
    psite.put(1, "/robots.txt", "User-agent: *\nAllow: /\n")
    for row in rows:
        if row["url"] is not None:
            row["url"] = row["url"].replace("PORT", str(psite.port))
    audit = run(rows)
    for row in audit:  # every string the run wrote is storable UTF-8
        for value in row.values():
            if isinstance(value, str):
                value.encode("utf-8")
