"""Credentials in input URLs: used for the image request only, never sent to the
origin files, never stored or printed (``https://***@host/a.jpg``)."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from consentfetch import check_url, fetch_shards, read_audit
from consentfetch.testsite import LocalSite, make_image

from .conftest import LOCAL

USER, PASSWORD = "alice", "s3cretPW-7f3a"
ORIGIN_FILES = ("/robots.txt", "/ai.txt", "/.well-known/tdmrep.json")


def with_userinfo(url: str) -> str:
    return url.replace("http://", f"http://{USER}:{PASSWORD}@", 1)


BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def sent(site: LocalSite, host: int, path: str) -> list[str]:
    """The Authorization headers ``path`` of ``host`` received."""
    return [auth for h, p, auth in site.authorizations if (h, p) == (site.hosts[host], path)]


def redacted(url: str) -> str:
    return url.replace("http://", "http://***@", 1)


def assert_no_secret(folder: Path) -> None:
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert PASSWORD.encode() not in path.read_bytes(), path
        assert USER.encode() not in path.read_bytes(), path
        if path.suffix == ".parquet":  # its pages may be compressed: read the values
            text = json.dumps(pq.read_table(path).to_pylist(), default=str)
            assert PASSWORD not in text and USER not in text, path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentfetch", *args], capture_output=True,
                          text=True, timeout=60)


def test_credentials_only_reach_the_image_and_are_never_stored(
        site: LocalSite, url_list, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /closed/\n")
    urls = [site.put(0, "/a.jpg", make_image(40, 40)),
            site.put(0, "/closed/b.jpg", make_image(40, 40)),
            site.url(0, "/missing.jpg")]
    out = tmp_path / "out"
    with caplog.at_level(logging.DEBUG):
        fetch_shards(url_list([{"url": with_userinfo(u), "caption": "c"} for u in urls]),
                     str(out), caption_col="caption", **LOCAL)
    for path in ORIGIN_FILES:
        assert site.hit_count(0, path) == 1 and sent(site, 0, path) == [], path
    assert sent(site, 0, "/a.jpg") == [BASIC]  # the user put them there for the image
    assert site.hit_count(0, "/closed/b.jpg") == 0

    audit = read_audit(str(out)).sort_by("key").to_pylist()
    assert [r["url"] for r in audit] == [redacted(u) for u in urls]
    assert [r["status"] for r in audit] == ["success", "disallowed", "failed_to_download"]
    assert caplog.records and PASSWORD not in caplog.text

    why = cli("why", with_userinfo(urls[1]), str(out))
    assert why.returncode == 0 and redacted(urls[1]) in why.stdout
    report = cli("report", str(out), "-o", str(out / "report.html"))
    assert report.returncode == 0
    listing = cli("audit", str(out), "--filter", "url != null", "--format", "json")
    assert json.loads(listing.stdout)[0]["url"] == redacted(urls[0])
    for result in (why, report, listing):
        assert PASSWORD not in result.stdout + result.stderr
    assert_no_secret(out)  # shards, sample .json, parquet, origins.parquet, run.json, report


def test_check_uses_credentials_for_the_image_only(site: LocalSite) -> None:
    url = site.put(2, "/a.jpg", make_image(40, 40))
    result = check_url(with_userinfo(url), allow_private_networks=True)
    assert result.decision == "allowed"
    assert result.url == redacted(url) and result.hops == [redacted(url)]
    assert all(PASSWORD not in f["url"] for f in result.origin_files)
    assert sent(site, 2, "/a.jpg") == [BASIC]
    assert all(sent(site, 2, path) == [] for path in ORIGIN_FILES)


def test_retry_failed_takes_the_credentials_from_the_input(site: LocalSite, url_list,
                                                           tmp_path: Path) -> None:
    flaky = site.url(0, "/fault/flaky?id=cred&fail=1&code=503")
    path, out = url_list([{"url": with_userinfo(flaky)}]), tmp_path / "out"
    options: dict[str, Any] = {**LOCAL, "retries": 0}
    assert fetch_shards(path, str(out), **options).counts == {"failed_to_download": 1}
    assert fetch_shards(path, str(out), retry_failed=True, **options).counts == {"success": 1}
    # Both attempts carried the user's credentials; the audit still holds none.
    assert sent(site, 0, "/fault/flaky") == [BASIC, BASIC]
    assert read_audit(str(out))["url"].to_pylist() == [redacted(flaky)]
    assert_no_secret(out)


def test_input_and_list_urls_with_credentials_stay_out_of_run_json(
        site: LocalSite, tmp_path: Path) -> None:
    image = site.put(0, "/a.jpg", make_image(40, 40))
    site.put(0, "/urls.csv", f"url\n{image}\n{site.url(0, '/listed.jpg')}\n")
    site.put(0, "/optout.txt", f"{site.url(0, '/listed.jpg')}\n")
    source, listed = (with_userinfo(site.url(0, p)) for p in ("/urls.csv", "/optout.txt"))
    out = tmp_path / "out"
    options: dict[str, Any] = {**LOCAL, "opt_out_lists": [listed], "input_format": "csv"}
    report = fetch_shards(source, str(out), **options)
    assert report.counts == {"disallowed": 1, "success": 1}
    run = json.loads((out / "run.json").read_text())
    assert run["input"] == redacted(site.url(0, "/urls.csv"))
    assert run["config"]["opt_out_lists"] == [redacted(site.url(0, "/optout.txt"))]
    assert fetch_shards(source, str(out), **options).shards_skipped == 1  # resumes
    assert_no_secret(out)  # the list hit's evidence names the list, without credentials
