"""Origin files are read whole, however they arrive, and a damaged body fails safe.

robots.txt, ai.txt and tdmrep.json decide before the image is requested, so a
rule lost because the body arrived in pieces is an opt-out ignored. These tests
deliver the files the way real links do (pieces with pauses, chunked, over
HTTPS from a test certificate authority), cut them, and cut lines in two.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from yarl import URL

from consentfetch import fetch_shards, read_audit
from consentfetch.consent.decision import Denial, Reason
from consentfetch.consent.origins import ai_txt_from_fetch, robots_from_fetch, tdmrep_from_fetch
from consentfetch.consent.robots import MAX_ROBOTS_BYTES, RobotsPolicy, complete_lines, strip_bom
from consentfetch.testsite import (
    DRIP,
    RUDE,
    Delivery,
    LocalSite,
    Resource,
    make_image,
    running_site,
)

from .conftest import LOCAL, Answer

HOSTS = tuple(f"127.0.0.{i}" for i in range(30, 36))
FILLER = "".join(f"# comment line {i:05d}, padding the file as real ones are padded\n"
                 for i in range(700))  # about 48 KB: several TCP windows


# -- pure helpers ----------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    (b"\xef\xbb\xbfUser-agent: *", b"User-agent: *"),
    (b"\xef\xbbUser-agent: *", b"User-agent: *"),  # the BOM's last byte lost
    (b"\xefUser-agent: *", b"User-agent: *"),
    (b"\xef\xbb", b""),
    (b"\xef", b""),
    (b"User-agent: *", b"User-agent: *"),
    (b"", b""),
    (b"\xef\xbb\xbf\xef\xbb\xbfX", b"\xef\xbb\xbfX"),  # one BOM only
    (b"\xef\xbb\xbe", b"\xef\xbb\xbe"),  # U+FEFE, a real character: kept
    (b"\xef\x80\x80x", b"\xef\x80\x80x"),  # U+F000: kept
    (b"\xef\xbb\x80", b"\xef\xbb\x80"),  # U+FEC0: kept
])
def test_strip_bom(raw: bytes, expected: bytes) -> None:
    assert strip_bom(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    (b"a\nb\nDisallow: /pri", b"a\nb\n"),
    (b"a\r\nDisallow: /", b"a\r\n"),
    (b"a\rDisallow: /", b"a\r"),
    (b"a\n", b"a\n"),
    (b"no line end at all", b""),
    (b"", b""),
])
def test_complete_lines(raw: bytes, expected: bytes) -> None:
    assert complete_lines(raw) == expected


@pytest.mark.parametrize("prefix", [b"\xef\xbb\xbf", b"\xef\xbb", b"\xef"])
def test_a_damaged_byte_order_mark_does_not_hide_the_first_group(prefix: bytes) -> None:
    policy = RobotsPolicy.parse(prefix + b"User-agent: *\nDisallow: /\n")
    assert not policy.check("/a.jpg", "mybot").allowed




def _Error() -> Denial:
    return Denial(Reason.CONNECTION_ERROR, "ClientPayloadError: Response payload is not completed")


def test_a_truncated_robots_txt_is_parsed_up_to_its_last_complete_line() -> None:
    body = ("User-agent: *\nDisallow: /private/\n" * 3).encode()
    cut = body[: body.rindex(b"/private/") + 1]  # ends in "Disallow: /"
    robots, record = robots_from_fetch("o", "u", Answer(200, cut, truncated=True))
    assert robots is not None and robots.check("/public/a.jpg", "mybot").allowed
    assert not robots.check("/private/a.jpg", "mybot").allowed
    assert record.truncated and record.outcome == "parsed"
    assert record.size == len(complete_lines(cut))


def test_a_robots_txt_cut_by_the_connection_is_unreachable() -> None:
    robots, record = robots_from_fetch("o", "u", Answer(200, b"", _Error()))
    assert robots is None and record.outcome == "unreachable"
    assert "HTTP 200" in (record.error or "") and "ClientPayloadError" in (record.error or "")


def test_an_ai_txt_cut_by_the_connection_is_unreachable_not_absent() -> None:
    policy, record = ai_txt_from_fetch("o", "u", Answer(200, b"", _Error()))
    assert policy is None and record.outcome == "unreachable"
    _, missing = ai_txt_from_fetch("o", "u", Answer(404))
    assert missing.outcome == "absent"
    _, failed = ai_txt_from_fetch("o", "u", Answer(None, b"", _Error()))
    assert failed.outcome == "absent"  # no answer at all: the site said nothing


@pytest.mark.parametrize("answer", [Answer(200, b"", _Error()),
                                    Answer(200, b'[{"location": "/*", ', truncated=True)])
def test_a_tdmrep_json_not_read_whole_is_unreachable(answer: Answer) -> None:
    parsed, record = tdmrep_from_fetch("o", "u", answer)
    assert parsed is None and record.outcome == "unreachable"


# -- end to end, over real (rude) connections --------------------------------------
MODES = {
    "whole": ({}, False),
    "rude-https": ({"delivery": RUDE}, True),
    "drip": ({"delivery": DRIP}, False),
    "chunked-slow": ({"delivery": Delivery(piece=1460, pause=0.002, chunked=True)}, True),
}


@pytest.fixture(params=list(MODES))
def rude(request: pytest.FixtureRequest) -> Iterator[LocalSite]:
    options, tls = MODES[request.param]
    with running_site(HOSTS, tls=tls, **options) as site:
        yield site


def _options(site: LocalSite) -> dict:
    return {**LOCAL, "ca_file": site.ca_file, "timeout": 20}


def _audit(site: LocalSite, url_list, out: Path, urls: list[str], **options) -> dict:
    fetch_shards(url_list([{"url": u} for u in urls]), str(out),
                 **{**_options(site), **options})
    return {r["url"]: r for r in read_audit(str(out)).to_pylist()}


def test_a_rule_on_the_last_line_of_a_long_robots_txt_is_honoured(
        rude: LocalSite, url_list, tmp_path: Path) -> None:
    site = rude
    site.put(0, "/robots.txt", "User-agent: *\n" + FILLER + "Disallow: /private/\n")
    denied = site.put(0, "/private/a.jpg", make_image(40, 40))
    allowed = site.put(0, "/public/a.jpg", make_image(40, 40))
    # ai.txt and tdmrep.json, long too, with their rule at the very end
    site.put(1, "/robots.txt", "User-agent: *\nAllow: /\n")
    site.put(1, "/ai.txt", "User-agent: *\n" + FILLER + "Disallow: *.png\n")
    by_ai = site.put(1, "/a.png", make_image(30, 30, "png"))
    entries = [{"location": f"/pad/{i}/*", "tdm-reservation": 0} for i in range(1500)]
    site.put(2, "/robots.txt", "User-agent: *\nAllow: /\n")
    site.put(2, "/.well-known/tdmrep.json",
             json.dumps([*entries, {"location": "/*", "tdm-reservation": 1}]))
    by_tdm = site.put(2, "/a.jpg", make_image(30, 30))
    audit = _audit(site, url_list, tmp_path / "o", [denied, allowed, by_ai, by_tdm])
    assert audit[denied]["reason"] == "robots_disallowed", audit[denied]["evidence"]
    assert audit[allowed]["status"] == "success", audit[allowed]["evidence"]
    assert audit[by_ai]["reason"] == "aitxt_disallowed", audit[by_ai]["evidence"]
    assert audit[by_tdm]["reason"] == "tdm_reserved", audit[by_tdm]["evidence"]
    assert site.hit_count(0, "/private/a.jpg") == 0
    snapshot = pq.read_table(tmp_path / "o" / "origins.parquet").to_pylist()
    for row in snapshot:
        assert row["outcome"] in ("parsed", "absent") and not row["truncated"], row


def test_a_robots_txt_over_500_kib_is_cut_at_a_line_end_and_recorded_truncated(
        rude: LocalSite, url_list, tmp_path: Path) -> None:
    site = rude
    head = "User-agent: *\nDisallow: /private/\n"
    # The limit falls inside the last "Disallow: /private/" line, just after "Disallow: /".
    line = "Disallow: /private/\n"
    padding = MAX_ROBOTS_BYTES - len(head) - len("Disallow: /")
    body = head + "#" * (padding - 1) + "\n" + line + "Disallow: /beyond/\n"
    assert body.encode()[:MAX_ROBOTS_BYTES].endswith(b"Disallow: /")
    site.put(0, "/robots.txt", body)
    public = site.put(0, "/public/a.jpg", make_image(40, 40))
    private = site.put(0, "/private/a.jpg", make_image(40, 40))
    beyond = site.put(0, "/beyond/a.jpg", make_image(40, 40))  # past the limit: not read
    audit = _audit(site, url_list, tmp_path / "o", [public, private, beyond])
    assert audit[public]["status"] == "success", audit[public]["evidence"]
    assert audit[private]["reason"] == "robots_disallowed"
    assert audit[beyond]["status"] == "success"
    row, = [r for r in pq.read_table(tmp_path / "o" / "origins.parquet").to_pylist()
            if r["kind"] == "robots.txt"]
    assert row["truncated"] and row["outcome"] == "parsed"
    assert row["size"] == MAX_ROBOTS_BYTES - len("Disallow: /")


def test_files_cut_by_the_connection_fail_safe(rude: LocalSite, url_list,
                                               tmp_path: Path) -> None:
    site = rude
    robots = ("User-agent: *\n" + FILLER + "Disallow: /private/\n").encode()
    site.put(0, "/robots.txt", Resource(robots, content_type="text/plain", cut=4000))
    by_robots = site.put(0, "/a.jpg", make_image(30, 30))
    site.put(1, "/robots.txt", "User-agent: *\nAllow: /\n")
    site.put(1, "/ai.txt", Resource(robots, content_type="text/plain", cut=4000))
    by_ai = site.put(1, "/a.jpg", make_image(30, 30))
    site.put(2, "/robots.txt", "User-agent: *\nAllow: /\n")
    site.put(2, "/.well-known/tdmrep.json",
             Resource(json.dumps([{"location": "/*", "tdm-reservation": 0}] * 200).encode(),
                      content_type="application/json", cut=1000))
    by_tdm = site.put(2, "/a.jpg", make_image(30, 30))
    audit = _audit(site, url_list, tmp_path / "o", [by_robots, by_ai, by_tdm])
    assert audit[by_robots]["reason"] == "robots_unreachable", audit[by_robots]["evidence"]
    assert audit[by_ai]["reason"] == "aitxt_disallowed", audit[by_ai]["evidence"]
    assert "fail safe" in audit[by_ai]["evidence"]
    assert audit[by_tdm]["reason"] == "tdm_reserved", audit[by_tdm]["evidence"]
    for host in range(3):
        assert site.hit_count(host, "/a.jpg") == 0
    assert {r["outcome"] for r in pq.read_table(tmp_path / "o" / "origins.parquet").to_pylist()
            if r["kind"] != "robots.txt" or r["origin"].startswith(f"{site.scheme}://127.0.0.30")
            } >= {"unreachable"}


def test_a_partial_byte_order_mark_still_denies(rude: LocalSite, url_list,
                                                tmp_path: Path) -> None:
    site = rude
    site.put(0, "/robots.txt", Resource(b"\xef\xbbUser-agent: *\nDisallow: /\n",
                                        content_type="text/plain"))
    url = site.put(0, "/a.jpg", make_image(30, 30))
    audit = _audit(site, url_list, tmp_path / "o", [url])
    assert audit[url]["reason"] == "robots_disallowed"


def test_https_needs_the_test_authority_to_be_trusted_explicitly(url_list,
                                                                 tmp_path: Path) -> None:
    with running_site(HOSTS[:2], tls=True) as site:
        for host in range(2):
            site.put(host, "/robots.txt", "User-agent: *\nAllow: /\n")
        first, second = (site.put(host, "/a.jpg", make_image(30, 30)) for host in range(2))
        assert URL(first).scheme == "https"
        untrusted = _audit(site, url_list, tmp_path / "no", [first], ca_file=None)
        assert untrusted[first]["reason"] == "tls_error", untrusted[first]["evidence"]
        trusted = _audit(site, url_list, tmp_path / "yes", [second])
        assert trusted[second]["status"] == "success", trusted[second]["evidence"]
