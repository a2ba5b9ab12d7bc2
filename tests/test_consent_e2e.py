"""Every opt-out signal end to end: each origin of the local site says "no" its own way.

Each test runs twice: against a polite site (every body in one write, plain
HTTP) and a rude one (HTTPS from a test authority, every body chunked and
written a TCP window at a time with pauses), as real links deliver them.

Checked for each: the audit row (status, reason, evidence), the site's request
log (origin-level denials never request the image; origin files are fetched
once), and that no opted-out image reaches the shards.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from consentfetch import fetch_shards, read_audit
from consentfetch.testsite import LocalSite, Resource, make_image

from .conftest import DELIVERIES, LOCAL, delivered_site

HOSTS = tuple(f"127.0.0.{i}" for i in range(10, 20))
PLAIN = "User-agent: *\nAllow: /\n"
IPTC_NS = "http://ns.useplus.org/ldf/xmp/1.0/"
# Cloudflare's managed robots.txt, shortened: its comment block says "content-signal = no"
# too, and another bot's group says yes; only the "*" line applies to us.
CONTENT_SIGNAL_ROBOTS = (
    "# (b) If a content-signal = no, you may not collect content for\n"
    "# the corresponding use.\n"
    "User-Agent: *\nContent-signal: search=yes, ai-train=no\nAllow: /\n\n"
    "User-agent: otherbot\nContent-Signal: ai-train=yes\nAllow: /\n")


def xmp_jpeg(value: str) -> bytes:
    packet = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:plus="{IPTC_NS}" '
        f'plus:DataMining="http://ns.useplus.org/ldf/vocab/{value}"/>'
        "</rdf:RDF></x:xmpmeta>").encode()
    out = io.BytesIO()
    Image.new("RGB", (120, 90), (200, 30, 30)).save(out, "JPEG", xmp=packet)
    return out.getvalue()


@pytest.fixture(params=DELIVERIES)
def wide(request: pytest.FixtureRequest) -> Iterator[LocalSite]:
    with delivered_site(HOSTS, request.param) as s:
        yield s


def local(site: LocalSite) -> dict:
    """The end-to-end options, trusting the site's test authority when it speaks HTTPS."""
    return {**LOCAL, "ca_file": site.ca_file}


@pytest.fixture
def scenario(wide: LocalSite, tmp_path: Path) -> dict:
    """Put one signal per origin; return {url: (strict outcome, standard outcome)}."""
    site = wide
    ok = ("success", None)
    expect: dict[str, tuple] = {}

    def image(host: int, path: str, strict: tuple, standard: tuple | None = None,
              body: bytes | None = None, headers: dict | None = None) -> str:
        url = site.put(host, path, Resource(body or make_image(80, 60, seed=len(expect)),
                                            headers=headers or {}))
        expect[url] = (strict, standard or strict)
        return url

    # 0: robots.txt Disallow
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /private/\n")
    image(0, "/private/a.jpg", ("disallowed", "robots_disallowed"))
    image(0, "/public/a.jpg", ok)
    # 1: robots.txt blocks an AI-training crawler only (inference: strict only)
    site.put(1, "/robots.txt", "User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
    image(1, "/a.jpg", ("disallowed", "ai_crawler_blocked"), ok)
    # 2: robots.txt Content-Usage with a path
    site.put(2, "/robots.txt", "User-agent: *\nAllow: /\nContent-Usage: /art/ train-ai=n\n")
    image(2, "/art/a.jpg", ("disallowed", "aipref_disallowed"))
    image(2, "/photos/a.jpg", ok)
    # 3: ai.txt
    site.put(3, "/robots.txt", PLAIN)
    site.put(3, "/ai.txt", "User-agent: *\nDisallow: *.png\n")
    image(3, "/a.png", ("disallowed", "aitxt_disallowed"),
          body=make_image(50, 50, "png"))
    image(3, "/a.jpg", ok)
    # 4: tdmrep.json; in standard the image's own header supersedes the file
    site.put(4, "/robots.txt", PLAIN)
    site.put(4, "/.well-known/tdmrep.json", json.dumps([
        {"location": "/reserved/*", "tdm-reservation": 1},
        {"location": "/*", "tdm-reservation": 0}]))
    image(4, "/reserved/a.jpg", ("disallowed", "tdm_reserved"))
    image(4, "/reserved/b.jpg", ("disallowed", "tdm_reserved"), ok,
          headers={"tdm-reservation": "0"})
    image(4, "/open/a.jpg", ok)
    # 5: response headers
    site.put(5, "/robots.txt", PLAIN)
    image(5, "/tdm.jpg", ("disallowed", "tdm_reserved"),
          headers={"tdm-reservation": "1", "tdm-policy": "https://example.com/policy.json"})
    image(5, "/cu.jpg", ("disallowed", "aipref_disallowed"),
          headers={"Content-Usage": "train-ai=n"})
    image(5, "/genai.jpg", ("disallowed", "aipref_disallowed"), ok,
          headers={"Content-Usage": "train-genai=n"})
    image(5, "/xrt.jpg", ("disallowed", "x_robots_tag"),
          headers={"X-Robots-Tag": "max-image-preview:large, NoAI, mybot: none"})
    # 6: embedded IPTC metadata
    site.put(6, "/robots.txt", PLAIN)
    image(6, "/prohibited.jpg", ("disallowed", "metadata_prohibited"),
          body=xmp_jpeg("DMI-PROHIBITED-AIMLTRAINING"))
    image(6, "/allowed.jpg", ok, body=xmp_jpeg("DMI-ALLOWED"))
    # 7: the user's opt-out list: by prefix, and by content hash
    site.put(7, "/robots.txt", PLAIN)
    listed = image(7, "/listed/a.jpg", ("disallowed", "registry_opt_out"))
    hashed_body = make_image(70, 70, seed=999)
    image(7, "/copy.jpg", ("disallowed", "registry_opt_out"), body=hashed_body)
    image(7, "/fine.jpg", ok)
    opt_out = tmp_path / "optout.csv"
    opt_out.write_text("url_prefix,sha256,source\n"
                       f"{listed.rsplit('/', 1)[0]}/,,artist request\n"
                       f",{hashlib.sha256(hashed_body).hexdigest()},takedown 42\n")
    # 8: a redirect from an open origin into a reserved one
    site.put(8, "/robots.txt", PLAIN)
    target = site.url(0, "/private/redirected.jpg")
    site.put(0, "/private/redirected.jpg", make_image(40, 40))
    hop = site.put(8, "/go", Resource(b"", status=302, headers={"Location": target}))
    expect[hop] = (("disallowed", "robots_disallowed"),) * 2
    # 9: Cloudflare Content Signals in robots.txt
    site.put(9, "/robots.txt", CONTENT_SIGNAL_ROBOTS)
    image(9, "/cs.jpg", ("disallowed", "content_signal"))
    return {"site": site, "expect": expect, "opt_out": str(opt_out)}


def _run(scenario: dict, url_list, tmp_path: Path, profile: str) -> dict[str, dict]:
    rows = [{"url": u} for u in scenario["expect"]]
    out = tmp_path / profile
    fetch_shards(url_list(rows), str(out), consent=profile,
                 opt_out_lists=[scenario["opt_out"]], **local(scenario["site"]))
    return {r["url"]: r for r in read_audit(str(out)).to_pylist()}


@pytest.mark.parametrize("profile", ["strict", "standard"])
def test_every_signal(scenario: dict, url_list, tmp_path: Path, profile: str) -> None:
    audit = _run(scenario, url_list, tmp_path, profile)
    column = 0 if profile == "strict" else 1
    for url, outcomes in scenario["expect"].items():
        row = audit[url]
        assert (row["status"], row["reason"]) == outcomes[column], (url, row["evidence"])
        if row["status"] == "disallowed":
            assert row["evidence"], url
        assert row["consent_profile"] == profile and row["ignored_checks"] is None


def test_evidence_names_the_signal(scenario: dict, url_list, tmp_path: Path) -> None:
    audit = _run(scenario, url_list, tmp_path, "strict")
    site = scenario["site"]
    ev = {u.split(":", 2)[-1].split("/", 1)[-1]: audit[u]["evidence"] for u in audit}

    def evidence(host: int, path: str) -> str:
        return audit[site.url(host, path)]["evidence"]

    assert "Disallow: /private/" in evidence(0, "/private/a.jpg")
    assert "GPTBot" in evidence(1, "/a.jpg") and "line 2" in evidence(1, "/a.jpg")
    assert "train-ai=n" in evidence(2, "/art/a.jpg") and "robots.txt" in evidence(2, "/art/a.jpg")
    assert "ai.txt" in evidence(3, "/a.png") and "*.png" in evidence(3, "/a.png")
    assert "tdmrep.json" in evidence(4, "/reserved/a.jpg")
    assert "tdm-reservation: 1" in evidence(5, "/tdm.jpg")
    assert "policy.json" in evidence(5, "/tdm.jpg")
    assert "Content-Usage" in evidence(5, "/cu.jpg")
    assert "noai" in evidence(5, "/xrt.jpg").lower()
    assert "DMI-PROHIBITED-AIMLTRAINING" in evidence(6, "/prohibited.jpg")
    assert "opt-out list" in evidence(7, "/listed/a.jpg")
    assert "optout.csv" in evidence(7, "/listed/a.jpg")
    assert "artist request" in evidence(7, "/listed/a.jpg")
    assert "takedown 42" in evidence(7, "/copy.jpg")
    cs = audit[site.url(9, "/cs.jpg")]
    assert "ai-train=no" in cs["evidence"] and "line 4" in cs["evidence"]
    assert (cs["evidence_signal"], cs["evidence_line"], cs["evidence_rule"],
            cs["evidence_agent"]) == ("robots.txt", 4,
                                      "Content-signal: search=yes, ai-train=no", "*")
    assert cs["evidence_file"] == site.url(9, "/robots.txt") and cs["evidence_file_sha256"]
    assert ev  # every row has been looked at


def test_origin_denials_never_request_the_image(scenario: dict, url_list,
                                                 tmp_path: Path) -> None:
    site = scenario["site"]
    _run(scenario, url_list, tmp_path, "strict")
    for host, path in [(0, "/private/a.jpg"), (0, "/private/redirected.jpg"), (1, "/a.jpg"),
                       (2, "/art/a.jpg"), (3, "/a.png"), (4, "/reserved/a.jpg"),
                       (4, "/reserved/b.jpg"), (7, "/listed/a.jpg"), (9, "/cs.jpg")]:
        assert site.hit_count(host, path) == 0, (host, path)
    for host in range(len(HOSTS)):
        assert site.hit_count(host, "/robots.txt") == 1, host
        assert site.hit_count(host, "/ai.txt") <= 1
        assert site.hit_count(host, "/.well-known/tdmrep.json") <= 1


def test_no_opted_out_bytes_in_the_shards(scenario: dict, url_list, tmp_path: Path) -> None:
    audit = _run(scenario, url_list, tmp_path, "strict")
    samples = list(wds.WebDataset(str(tmp_path / "strict" / "00000.tar"), shardshuffle=False))
    sample_urls = {json.loads(s["json"])["url"] for s in samples}
    assert sample_urls == {u for u, r in audit.items() if r["status"] == "success"}


def test_ignored_checks_are_recorded(scenario: dict, url_list, tmp_path: Path) -> None:
    site = scenario["site"]
    rows = [{"url": site.url(3, "/a.png")}, {"url": site.url(6, "/prohibited.jpg")}]
    out = tmp_path / "ignored"
    fetch_shards(url_list(rows), str(out), ignore=["ai_txt", "iptc"], **local(site))
    audit = read_audit(str(out)).to_pylist()
    assert [r["status"] for r in audit] == ["success", "success"]
    assert {r["ignored_checks"] for r in audit} == {"ai_txt,iptc"}
    run = json.loads((out / "run.json").read_text())
    assert "ai_txt (--ignore)" in run["checks_off"] and "iptc (--ignore)" in run["checks_off"]
    assert "ai_txt" not in run["checks_performed"]
    assert site.hit_count(3, "/ai.txt") == 0  # an ignored check fetches nothing


def test_opt_in_profile(wide: LocalSite, url_list, tmp_path: Path) -> None:
    site = wide
    site.put(0, "/robots.txt", PLAIN)
    plain = site.put(0, "/plain.jpg", make_image(40, 40))
    by_header = site.put(0, "/y.jpg", Resource(make_image(40, 40),
                                               headers={"Content-Usage": "train-ai=y"}))
    by_tdm = site.put(0, "/t.jpg", Resource(make_image(40, 40),
                                            headers={"tdm-reservation": "0"}))
    by_iptc = site.put(0, "/i.jpg", xmp_jpeg("DMI-ALLOWED"))
    by_list = site.put(0, "/l.jpg", make_image(40, 40))
    allow = tmp_path / "allow.txt"
    allow.write_text(f"{by_list}\n")
    rows = [{"url": u} for u in (plain, by_header, by_tdm, by_iptc, by_list)]
    fetch_shards(url_list(rows), str(tmp_path / "o"), consent="opt-in",
                 opt_in_lists=[str(allow)], **local(site))
    audit = {r["url"]: r for r in read_audit(str(tmp_path / "o")).to_pylist()}
    assert audit[plain]["reason"] == "no_opt_in"
    for url in (by_header, by_tdm, by_iptc, by_list):
        assert audit[url]["status"] == "success", audit[url]["evidence"]


def test_origins_snapshot(scenario: dict, url_list, tmp_path: Path) -> None:
    import pyarrow.parquet as pq
    site = scenario["site"]
    rows = [{"url": site.url(4, "/open/a.jpg")}, {"url": site.url(3, "/a.jpg")}]
    out = tmp_path / "snap"
    fetch_shards(url_list(rows), str(out), save_consent_files=True, **local(site))
    snap = pq.read_table(out / "origins.parquet").to_pylist()
    kinds = {(r["origin"].rsplit(":", 1)[0].split("://")[1], r["kind"]): r for r in snap}
    tdm = kinds[("127.0.0.14", "tdmrep.json")]
    assert tdm["outcome"] == "parsed" and tdm["http_status"] == 200
    assert tdm["sha256"] == hashlib.sha256(tdm["body"]).hexdigest() and tdm["size"] > 0
    assert kinds[("127.0.0.13", "ai.txt")]["body"].startswith(b"User-agent")
    assert kinds[("127.0.0.14", "ai.txt")]["outcome"] == "absent"
