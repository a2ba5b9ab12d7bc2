"""Hostile and broken servers: every fault ends as one audit row with the right reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consentfetch import fetch_shards, read_audit
from consentfetch.testsite import LocalSite, Resource, make_image

from .conftest import LOCAL


def _one(site: LocalSite | None, url_list, tmp_path: Path, url: str, **options) -> dict:
    opts: dict[str, Any] = {**LOCAL, **options}
    fetch_shards(url_list([{"url": url}]), str(tmp_path / "out"), **opts)
    (row,) = read_audit(str(tmp_path / "out")).to_pylist()
    return row


@pytest.mark.parametrize("path,status,reason,http_status", [
    ("/missing.jpg", "failed_to_download", "http_error", 404),
    ("/fault/status?code=500", "failed_to_download", "http_error", 500),
    ("/fault/status?code=429", "failed_to_download", "http_error", 429),
    ("/fault/reset", "failed_to_download", "connection_error", None),
    ("/fault/short", "failed_to_download", "connection_error", None),
    ("/fault/loop", "failed_to_download", "too_many_redirects", None),
    ("/fault/redirect?n=3&to=/gen/x.jpg", "success", None, 200),
])
def test_fault_reasons(site, url_list, tmp_path, path, status, reason, http_status) -> None:
    row = _one(site, url_list, tmp_path, site.url(0, path))
    assert (row["status"], row["reason"], row["http_status"]) == (status, reason, http_status)
    if reason:
        assert row["evidence"]


def test_transient_errors_are_retried(site, url_list, tmp_path) -> None:
    url = site.url(0, "/fault/status?code=503")
    _one(site, url_list, tmp_path, url, retries=2)
    assert site.hit_count(0, "/fault/status") == 3  # first attempt + 2 retries


def test_client_errors_are_not_retried(site, url_list, tmp_path) -> None:
    _one(site, url_list, tmp_path, site.url(0, "/missing.jpg"), retries=3)
    assert site.hit_count(0, "/missing.jpg") == 1


def test_slow_headers_time_out(site, url_list, tmp_path) -> None:
    row = _one(site, url_list, tmp_path, site.url(0, "/fault/slow?delay=5"), timeout=0.5,
               retries=0)
    assert (row["status"], row["reason"]) == ("failed_to_download", "timeout")


def test_slow_drip_body_ends_at_total_deadline(site, url_list, tmp_path) -> None:
    """A body trickling a byte a second is cut at --timeout, not per-read."""
    import time
    t0 = time.monotonic()
    row = _one(site, url_list, tmp_path, site.url(0, "/fault/drip?seconds=30"), timeout=1.5,
               retries=0)
    assert row["reason"] == "timeout"
    assert time.monotonic() - t0 < 10


def test_one_deadline_covers_the_whole_redirect_chain(site, url_list, tmp_path) -> None:
    """--timeout bounds an attempt's hops together: 4 hops of 0.4 s exceed 1 s."""
    row = _one(site, url_list, tmp_path / "slow",
               site.url(0, "/fault/redirect?n=4&delay=0.4&to=/gen/x.jpg"), timeout=1, retries=0)
    assert row["reason"] == "timeout" and "within 1 s" in row["evidence"]
    row = _one(site, url_list, tmp_path / "fast",
               site.url(0, "/fault/redirect?n=4&delay=0.1&to=/gen/x.jpg"), timeout=1, retries=0)
    assert row["status"] == "success"


def test_too_large_by_header_and_by_stream(site, url_list, tmp_path) -> None:
    url = site.put(0, "/big.jpg", make_image(800, 800))
    row = _one(site, url_list, tmp_path, url, max_bytes=1000)
    assert (row["reason"], row["http_status"]) == ("too_large", 200)
    assert "Content-Length" in row["evidence"]


def test_redirect_to_unsupported_scheme(site, url_list, tmp_path) -> None:
    url = site.put(0, "/r", Resource(b"", status=302, headers={"Location": "ftp://x/a.jpg"}))
    row = _one(site, url_list, tmp_path, url)
    assert row["reason"] == "invalid_url" and "ftp" in row["evidence"]


def test_redirect_hop_is_checked_against_its_own_robots(site, url_list, tmp_path) -> None:
    site.put(1, "/robots.txt", "User-agent: *\nDisallow: /secret/\n")
    target = site.put(1, "/secret/a.jpg", make_image(50, 50))
    url = site.put(0, "/r", Resource(b"", status=301, headers={"Location": target}))
    row = _one(site, url_list, tmp_path, url)
    assert row["reason"] == "robots_disallowed" and "/secret/" in row["evidence"]
    assert site.hit_count(1, "/secret/a.jpg") == 0


def test_x_robots_tag_denies_before_the_body(site, url_list, tmp_path) -> None:
    url = site.put(0, "/a.jpg", Resource(make_image(100, 100),
                                         headers=[("X-Robots-Tag", "noindex"),
                                                  ("X-Robots-Tag", "consentfetch: NoImageAI")]))
    row = _one(site, url_list, tmp_path, url, consent="standard")
    assert (row["status"], row["reason"], row["http_status"]) == ("disallowed", "x_robots_tag",
                                                                  200)
    assert "noimageai" in row["evidence"].lower()
    assert row["sha256"] is None  # no body was read


def test_noindex_denies_only_in_strict(site, url_list, tmp_path) -> None:
    url = site.put(0, "/a.jpg", Resource(make_image(60, 60), headers={"X-Robots-Tag": "noindex"}))
    assert _one(site, url_list, tmp_path / "a", url, consent="strict")["reason"] == "x_robots_tag"
    assert _one(site, url_list, tmp_path / "b", url, consent="standard")["status"] == "success"


def test_other_bots_directives_do_not_deny(site, url_list, tmp_path) -> None:
    url = site.put(0, "/a.jpg", Resource(make_image(60, 60),
                                         headers={"X-Robots-Tag": "otherbot: noai"}))
    assert _one(site, url_list, tmp_path, url)["status"] == "success"


@pytest.mark.parametrize("robots,status", [
    (Resource(b"", status=404), "success"),
    (Resource(b"", status=403), "success"),
    (Resource(b"", status=429), "disallowed"),
    (Resource(b"", status=500), "disallowed"),
])
def test_robots_status_codes(site, url_list, tmp_path, robots, status) -> None:
    site.put(0, "/robots.txt", robots)
    url = site.put(0, "/a.jpg", make_image(60, 60))
    row = _one(site, url_list, tmp_path, url)
    assert row["status"] == status
    if status == "disallowed":
        assert row["reason"] == "robots_unreachable"
        assert site.hit_count(0, "/a.jpg") == 0


def test_robots_redirect_is_followed(site, url_list, tmp_path) -> None:
    site.put(0, "/robots.txt", Resource(b"", status=301,
                                        headers={"Location": site.url(1, "/real-robots.txt")}))
    site.put(1, "/real-robots.txt", "User-agent: *\nDisallow: /no/\n")
    url = site.put(0, "/no/a.jpg", make_image(60, 60))
    assert _one(site, url_list, tmp_path, url)["reason"] == "robots_disallowed"


def test_opt_in_needs_a_group_naming_us(site, url_list, tmp_path) -> None:
    site.put(0, "/robots.txt", "User-agent: *\nAllow: /\n")
    site.put(1, "/robots.txt", "User-agent: consentfetch\nAllow: /\n")
    a = site.put(0, "/a.jpg", make_image(60, 60))
    b = site.put(1, "/b.jpg", make_image(60, 60))
    assert _one(site, url_list, tmp_path / "a", a, consent="opt-in")["reason"] == "no_opt_in"
    assert _one(site, url_list, tmp_path / "b", b, consent="opt-in")["status"] == "success"


@pytest.mark.parametrize("body,reason", [
    (b"<html>not an image</html>", "decode_error"),
    (b"", "decode_error"),
])
def test_bad_bodies(site, url_list, tmp_path, body, reason) -> None:
    url = site.put(0, "/a.jpg", body)
    row = _one(site, url_list, tmp_path, url)
    assert (row["status"], row["reason"]) == ("failed_to_resize", reason)
    assert row["sha256"] and row["http_status"] == 200


def test_image_filters(site, url_list, tmp_path) -> None:
    small = site.put(0, "/small.jpg", make_image(30, 30))
    wide = site.put(0, "/wide.jpg", make_image(400, 40))
    assert _one(site, url_list, tmp_path / "a", small, min_image_size=64)["reason"] \
        == "image_too_small"
    assert _one(site, url_list, tmp_path / "b", wide, max_aspect_ratio=3)["reason"] \
        == "aspect_ratio_too_large"


@pytest.mark.parametrize("url,reason", [
    ("ftp://127.0.0.2/a.jpg", "invalid_url"),
    ("data:image/png;base64,AAAA", "invalid_url"),
    ("javascript:alert(1)", "invalid_url"),
    ("http:///nohost.jpg", "invalid_url"),
    ("", "invalid_url"),
    ("http://127.0.0.2:99999/a.jpg", "invalid_url"),
])
def test_invalid_urls(site, url_list, tmp_path, url, reason) -> None:
    row = _one(site, url_list, tmp_path, url)
    assert (row["status"], row["reason"]) == ("failed_to_download", reason)


def test_private_addresses_blocked_by_default(site, url_list, tmp_path) -> None:
    url = site.put(0, "/a.jpg", make_image(60, 60))
    row = _one(site, url_list, tmp_path, url, allow_private_networks=False)
    assert (row["status"], row["reason"]) == ("failed_to_download", "blocked_address")
    assert site.hit_count(0, "/a.jpg") == 0 and site.hit_count(0, "/robots.txt") == 0


def test_localhost_name_blocked_after_resolution(url_list, tmp_path) -> None:
    """A host name is judged by what it resolves to (in the resolver, at connect time)."""
    row = _one(None, url_list, tmp_path, "http://localhost:9/a.jpg",
               allow_private_networks=False)
    assert row["reason"] == "blocked_address" and "localhost" in row["evidence"]


def test_dns_failure(url_list, tmp_path) -> None:
    row = _one(None, url_list, tmp_path, "http://no-such-host.invalid/a.jpg", retries=0)
    assert (row["status"], row["reason"]) == ("failed_to_download", "dns_error")
