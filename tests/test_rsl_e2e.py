"""RSL licences end to end on the local site: robots.txt ``License`` and ``Link`` headers.

Checked: the audit row (status, reason, evidence), the request log (a licence
named by robots.txt that refuses means no image request; each licence URL is
fetched once per run), origins.parquet's licence rows, and the shards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from consentfetch import check_url, fetch_shards, read_audit
from consentfetch.testsite import LocalSite, Resource, make_image

from .conftest import DELIVERIES, LOCAL, delivered_site

HOSTS = tuple(f"127.0.0.{i}" for i in range(30, 34))
NS = 'xmlns="https://rslstandard.org/rsl"'
NO_TRAIN = (f'<rsl {NS}><content url="/"><license><prohibits type="usage">ai-train'
            "</prohibits></license></content></rsl>")
FREE_ALL = (f'<rsl {NS}><content url="/"><license><permits type="usage">all'
            "</permits></license></content></rsl>")
ARTICLES = (f'<rsl {NS}><content url="/"><license><permits type="usage">all</permits>'
            '</license></content><content url="/articles/"><license><prohibits '
            'type="usage">ai-train</prohibits></license></content></rsl>')
RSL = "application/rsl+xml"


@pytest.fixture(params=DELIVERIES)
def wide(request: pytest.FixtureRequest) -> Iterator[LocalSite]:
    with delivered_site(HOSTS, request.param) as s:
        yield s


def _options(site: LocalSite, **extra: Any) -> dict[str, Any]:
    return {**LOCAL, "ca_file": site.ca_file, **extra}


def _licence(site: LocalSite, host: int, path: str, body: str, status: int = 200) -> str:
    return site.put(host, path, Resource(body.encode(), status=status, content_type=RSL))


def _rows(out: Path) -> dict[str, dict[str, Any]]:
    return {row["url"]: row for row in read_audit(str(out)).to_pylist()}


def _run(site: LocalSite, url_list: Any, out: Path, urls: list[str], **extra: Any) -> None:
    fetch_shards(url_list([{"url": u} for u in urls]), str(out), image_size=32,
                 **_options(site, **extra))


def test_robots_licence_denies_before_the_image(wide: LocalSite, url_list: Any,
                                                tmp_path: Path) -> None:
    site = wide
    licence = _licence(site, 3, "/licence.xml", ARTICLES)
    for host in (0, 1):  # two origins name the same licence
        site.put(host, "/robots.txt", f"License: {licence}\nUser-agent: *\nAllow: /\n")
    denied = [site.put(h, "/articles/a.jpg", make_image(40, 40)) for h in (0, 1)]
    allowed = [site.put(h, "/news/a.jpg", make_image(40, 40)) for h in (0, 1)]
    out = tmp_path / "out"
    _run(site, url_list, out, denied + allowed, consent="standard")
    rows = _rows(out)
    for url in denied:
        row = rows[url]
        assert (row["status"], row["reason"]) == ("disallowed", "rsl_prohibited")
        assert licence in row["evidence"] and "ai-train" in row["evidence"]
        assert '<content url="/articles/">' in row["evidence"]
        assert row["evidence_signal"] == "licence" and row["evidence_file"] == licence
        assert row["evidence_file_sha256"] and row["evidence_file_sha256"] in {
            r["sha256"] for r in pq.read_table(out / "origins.parquet").to_pylist()}
    for url in allowed:
        assert rows[url]["status"] == "success"
    assert site.hit_count(0, "/articles/a.jpg") == site.hit_count(1, "/articles/a.jpg") == 0
    assert site.hit_count(3, "/licence.xml") == 1  # once per run, for both origins
    licences = [r for r in pq.read_table(out / "origins.parquet").to_pylist()
                if r["kind"] == "licence"]
    assert len(licences) == 1
    assert licences[0]["url"] == licence and licences[0]["outcome"] == "parsed"
    assert licences[0]["size"] == len(ARTICLES) and licences[0]["fetched_at"] is not None


@pytest.mark.parametrize(("profile", "status"), [("strict", "disallowed"),
                                                  ("standard", "success")])
def test_unreachable_licence(site: LocalSite, url_list: Any, tmp_path: Path,
                             profile: str, status: str) -> None:
    licence = _licence(site, 3, "/down.xml", "busy", status=503)
    site.put(0, "/robots.txt", f"User-agent: *\nAllow: /\nLicense: {licence}\n")
    image = site.put(0, "/a.jpg", make_image(40, 40))
    out = tmp_path / profile
    _run(site, url_list, out, [image], consent=profile)
    row = _rows(out)[image]
    assert row["status"] == status
    if status == "disallowed":
        assert row["reason"] == "rsl_prohibited"
        assert "licence unreachable" in row["evidence"] and "HTTP 503" in row["evidence"]
        assert site.hit_count(0, "/a.jpg") == 0
    record = [r for r in pq.read_table(out / "origins.parquet").to_pylist()
              if r["kind"] == "licence"]
    assert [(r["url"], r["http_status"], r["outcome"]) for r in record] == [
        (licence, 503, "unreachable")]


def test_link_header_licence_denies_before_the_body(wide: LocalSite, url_list: Any,
                                                    tmp_path: Path) -> None:
    site = wide
    own = _licence(site, 0, "/rsl.xml", f'<rsl {NS}><content url=""><license>'
                   '<prohibits type="usage">all</prohibits></license></content></rsl>')
    elsewhere = _licence(site, 2, "/free.xml", FREE_ALL)
    link = f'<{own}>; rel="license"; type="{RSL}"'
    denied = site.put(0, "/a.jpg", Resource(make_image(40, 40), content_type="image/jpeg",
                                            headers={"Link": link}))
    other_type = site.put(0, "/b.jpg", Resource(
        make_image(40, 40), content_type="image/jpeg",
        headers={"Link": f'<{own}>; rel="license"; type="text/html"'}))
    free = site.put(1, "/c.jpg", Resource(
        make_image(40, 40), content_type="image/jpeg",
        headers={"Link": f'<{elsewhere}>; rel="license"; type="{RSL}"'}))
    out = tmp_path / "out"
    _run(site, url_list, out, [denied, other_type, free], per_host_concurrency=1)
    rows = _rows(out)
    assert (rows[denied]["status"], rows[denied]["reason"]) == ("disallowed",
                                                                 "rsl_prohibited")
    assert own in rows[denied]["evidence"] and "Link" in rows[denied]["evidence"]
    assert rows[denied]["evidence_signal"] == "licence"
    assert rows[other_type]["status"] == "success"
    assert rows[free]["status"] == "success"
    assert site.hit_count(0, "/rsl.xml") == 1 and site.hit_count(2, "/free.xml") == 1


def test_opt_in_takes_a_free_licence_as_permission(site: LocalSite, url_list: Any,
                                                   tmp_path: Path) -> None:
    licence = _licence(site, 3, "/free.xml", FREE_ALL)
    site.put(0, "/robots.txt", f"License: {licence}\nUser-agent: *\nAllow: /\n")
    site.put(1, "/robots.txt", "User-agent: *\nAllow: /\n")
    licensed = site.put(0, "/a.jpg", make_image(40, 40))
    unlicensed = site.put(1, "/a.jpg", make_image(40, 40))
    out = tmp_path / "out"
    _run(site, url_list, out, [licensed, unlicensed], consent="opt-in")
    rows = _rows(out)
    assert rows[licensed]["status"] == "success"
    assert rows[unlicensed]["reason"] == "no_opt_in"


def test_ignore_rsl_fetches_no_licence(site: LocalSite, url_list: Any,
                                       tmp_path: Path) -> None:
    licence = _licence(site, 3, "/licence.xml", NO_TRAIN)
    site.put(0, "/robots.txt", f"License: {licence}\nUser-agent: *\nAllow: /\n")
    image = site.put(0, "/a.jpg", make_image(40, 40))
    out = tmp_path / "out"
    _run(site, url_list, out, [image], ignore=["rsl"])
    assert _rows(out)[image]["status"] == "success"
    assert site.hit_count(3, "/licence.xml") == 0


def test_check_reports_the_licence(site: LocalSite) -> None:
    licence = _licence(site, 3, "/licence.xml", NO_TRAIN)
    site.put(0, "/robots.txt", f"User-agent: *\nLicense: {licence}\nAllow: /\n")
    image = site.put(0, "/a.jpg", make_image(40, 40))
    result = check_url(image, **_options(site))
    assert (result.decision, result.reason) == ("disallowed", "rsl_prohibited")
    assert licence in (result.evidence or "")
    assert any(f["kind"] == "licence" and f["url"] == licence for f in result.origin_files)
    assert site.hit_count(0, "/a.jpg") == 0


def test_origin_phase_fetches_robots_licences_once(site: LocalSite) -> None:
    from consentfetch.config import make_config
    from consentfetch.distribute.originphase import fetch_origin_batch

    licence = _licence(site, 3, "/licence.xml", NO_TRAIN)
    for host in (0, 1):
        site.put(host, "/robots.txt", f"License: {licence}\nUser-agent: *\nAllow: /\n")
    config = make_config(**_options(site))
    rows = fetch_origin_batch([site.origin(0), site.origin(1)], config)
    licences = [r for r in rows if r["kind"] == "licence"]
    assert [(r["url"], r["outcome"]) for r in licences] == [(licence, "parsed")]
    assert licences[0]["body"] == NO_TRAIN.encode()
    assert site.hit_count(3, "/licence.xml") == 1
