"""check_url / consentfetch check: the live decision, through the download's code path."""

from __future__ import annotations

import json
import subprocess
import sys

from consentfetch import check_url
from consentfetch.testsite import LocalSite, Resource, make_image

from .test_consent_e2e import xmp_jpeg

LOCAL = {"allow_private_networks": True}


def test_allowed_url_lists_the_files_consulted(site: LocalSite) -> None:
    url = site.put(0, "/a.jpg", make_image(40, 40))
    result = check_url(url, **LOCAL)
    assert (result.decision, result.reason, result.http_status) == ("allowed", None, 200)
    assert sorted(f["kind"] for f in result.origin_files) == ["ai.txt", "robots.txt",
                                                              "tdmrep.json"]
    assert result.headers["Content-Type"] == ["image/jpeg"]


def test_each_stage_is_reported(site: LocalSite) -> None:
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /closed/\n")
    closed = site.put(0, "/closed/a.jpg", make_image(40, 40))
    header = site.put(0, "/h.jpg", Resource(make_image(40, 40),
                                            headers={"Content-Usage": "train-ai=n"}))
    body = site.put(0, "/b.jpg", xmp_jpeg("DMI-PROHIBITED"))
    assert check_url(closed, **LOCAL).reason == "robots_disallowed"
    assert site.hit_count(0, "/closed/a.jpg") == 0  # an origin denial never requests
    result = check_url(header, **LOCAL)
    assert result.reason == "aipref_disallowed"
    assert result.headers["Content-Usage"] == ["train-ai=n"]
    assert check_url(body, **LOCAL).reason == "metadata_prohibited"


def test_profile_and_redirect_hops(site: LocalSite) -> None:
    site.put(1, "/robots.txt", "User-agent: GPTBot\nDisallow: /\n")
    target = site.put(1, "/img.jpg", make_image(40, 40))
    hop = site.put(0, "/go", Resource(b"", status=302, headers={"Location": target}))
    strict = check_url(hop, **LOCAL)
    assert strict.reason == "ai_crawler_blocked" and strict.hops == [hop, target]
    assert check_url(hop, consent="standard", **LOCAL).decision == "allowed"


def test_cli_text_json_and_exit_codes(site: LocalSite) -> None:
    ok = site.put(0, "/ok.jpg", make_image(40, 40))
    no = site.put(0, "/no.jpg", Resource(make_image(40, 40), headers={"X-Robots-Tag": "noai"}))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "consentfetch", "check", *args,
                               "--allow-private-networks"], capture_output=True, text=True,
                              timeout=60)

    result = run(ok)
    assert result.returncode == 0 and "WOULD BE DOWNLOADED" in result.stdout
    result = run(ok, no)
    assert result.returncode == 1
    assert "NOT DOWNLOADED (disallowed: x_robots_tag)" in result.stdout
    assert "header  X-Robots-Tag: noai" in result.stdout
    result = run(no, "--json")
    record = json.loads(result.stdout)
    assert (record["decision"], record["reason"]) == ("disallowed", "x_robots_tag")
