"""robots.txt Crawl-delay end to end: kept to up to --max-crawl-delay; a host asking
for more is not requested, and its rows say so."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from consentfetch import ConfigError, fetch_shards, read_audit
from consentfetch.config import RESUME_SAFE_OPTIONS, make_config
from consentfetch.testsite import LocalSite, make_image

from .conftest import LOCAL


@pytest.mark.parametrize("value, shown", [
    ("100000000", "asks for 1e+08 s"),
    ("1" + "0" * 400, "asks for inf s"),  # too large for a float
])
def test_crawl_delay_beyond_the_cap_is_not_requested(
        site: LocalSite, url_list, tmp_path: Path, value: str, shown: str) -> None:
    site.put(0, "/robots.txt", f"User-agent: *\nDisallow: /private/\nCrawl-delay: {value}\n")
    urls = [site.put(0, f"/a{i}.jpg", make_image(32, 32)) for i in range(3)]
    urls.append(site.put(0, "/private/b.jpg", make_image(32, 32)))
    urls.append(site.put(1, "/other.jpg", make_image(32, 32)))  # another host is unaffected
    started = time.monotonic()
    report = fetch_shards(url_list([{"url": u} for u in urls]), str(tmp_path / "out"), **LOCAL)
    assert time.monotonic() - started < 10
    assert report.reasons == {"crawl_delay_too_long": 3, "robots_disallowed": 1}
    assert report.counts == {"failed_to_download": 3, "disallowed": 1, "success": 1}
    rows = {r["url"]: r for r in read_audit(str(tmp_path / "out")).to_pylist()}
    evidence = rows[urls[0]]["evidence"]
    assert rows[urls[0]]["status"] == "failed_to_download"
    assert f"{site.origin(0)}/robots.txt line 3 `Crawl-delay: " in evidence
    assert shown in evidence and "--max-crawl-delay 60 s" in evidence
    assert "raise --max-crawl-delay" in evidence
    assert len(evidence) < 400  # a 400-digit value is cut, not repeated
    assert all(site.hit_count(0, f"/a{i}.jpg") == 0 for i in range(3))


def test_crawl_delay_under_the_cap_is_kept_to(site: LocalSite, url_list,
                                              tmp_path: Path) -> None:
    site.put(0, "/robots.txt", "User-agent: *\nCrawl-delay: 0.1\n")
    urls = [site.put(0, f"/a{i}.jpg", make_image(32, 32)) for i in range(3)]
    options: dict[str, Any] = {**LOCAL, "max_crawl_delay": 0.05}
    first = fetch_shards(url_list([{"url": u} for u in urls]), str(tmp_path / "out"), **options)
    assert first.reasons == {"crawl_delay_too_long": 3}
    assert "more than --max-crawl-delay 0.05 s" in \
        read_audit(str(tmp_path / "out")).to_pylist()[0]["evidence"]
    # A larger cap on a resumed run with --retry-failed fetches them, 0.1 s apart.
    again = fetch_shards(url_list([{"url": u} for u in urls]), str(tmp_path / "out"),
                         **{**options, "max_crawl_delay": 1, "retry_failed": True})
    assert again.counts == {"success": 3}
    starts = [t for t, _, path in site.log if path.endswith(".jpg")]
    assert len(starts) == 3
    assert all(b - a >= 0.09 for a, b in zip(starts, starts[1:], strict=False))


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan")])
def test_max_crawl_delay_must_be_finite(bad: float) -> None:
    with pytest.raises(ConfigError, match="--max-crawl-delay"):
        make_config(max_crawl_delay=bad)


def test_max_crawl_delay_is_resume_safe() -> None:
    assert "max_crawl_delay" in RESUME_SAFE_OPTIONS
    assert make_config().max_crawl_delay == 60
