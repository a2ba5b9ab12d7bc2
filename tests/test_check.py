"""check_url / consentfetch check: the live decision, through the download's code path."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from consentfetch import check_url
from consentfetch.testsite import LocalSite, Resource, make_image

from .test_consent_e2e import xmp_jpeg

LOCAL: dict[str, Any] = {"allow_private_networks": True}


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


def test_content_signal_is_decided_before_the_image_is_requested(site: LocalSite) -> None:
    site.put(0, "/robots.txt", "User-Agent: *\nContent-Signal: search=yes, use=reference\n")
    url = site.put(0, "/cs.jpg", make_image(40, 40))
    strict = check_url(url, **LOCAL)
    assert (strict.decision, strict.reason) == ("disallowed", "content_signal")
    assert "use=reference" in (strict.evidence or "")
    assert site.hit_count(0, "/cs.jpg") == 0
    assert check_url(url, consent="standard", **LOCAL).decision == "allowed"
    assert check_url(url, ignore=["content_signal"], **LOCAL).decision == "allowed"


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


# A verdict forged on screen: CSI sequences (ESC [ and the 8-bit CSI U+009B)
# that clear the screen and print "WOULD BE DOWNLOADED" in green.
FORGERY = "\x1b[2J\x1b[32mWOULD BE DOWNLOADED\u009b0m\x07"


@contextmanager
def raw_http(host: str, responses: dict[bytes, bytes]) -> Iterator[str]:
    """A loopback HTTP/1.1 server sending ``responses[path]`` byte for byte (404
    otherwise): header values aiohttp's own server refuses to send. Stops after
    20 connections or when the block ends."""
    server = socket.create_server((host, 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        for _ in range(20):
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                    break
                except TimeoutError:
                    continue
            else:
                return
            with conn:
                conn.settimeout(5)
                request = conn.recv(65536)
                path = request.split(b" ", 2)[1] if request.count(b" ") >= 2 else b""
                conn.sendall(responses.get(path, b"HTTP/1.1 404 Not Found\r\n"
                                                 b"Content-Length: 0\r\nConnection: close\r\n\r\n"))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()


def _run_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentfetch", "check", *args,
                           "--allow-private-networks"], capture_output=True, text=True,
                          timeout=60)


def test_cli_escapes_header_values_a_site_sends() -> None:
    image = make_image(20, 20)
    hostile = FORGERY.encode("utf-8")
    response = (b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\n"
                b"X-Robots-Tag: noai " + hostile + b"\r\n"
                b"tdm-reservation: 1\r\ntdm-policy: https://p.example/" + hostile + b"\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(image)) + image
    with raw_http("127.0.0.9", {b"/a.jpg": response}) as origin:
        result = _run_check(origin + "/a.jpg")
        record = json.loads(_run_check(origin + "/a.jpg", "--json").stdout)
    assert result.returncode == 1
    out = result.stdout
    assert not any(c in out for c in "\x1b\x07\u009b"), out
    assert "NOT DOWNLOADED (disallowed: x_robots_tag)" in out
    escaped = "\\x1b[2J\\x1b[32mWOULD BE DOWNLOADED\\x9b0m\\x07"
    assert f"header  X-Robots-Tag: noai {escaped}" in out
    assert f"header  tdm-policy: https://p.example/{escaped}" in out
    assert f"why: X-Robots-Tag: noai {escaped}" in out
    # --json: the 8-bit controls are \u escapes on the wire, the values intact.
    assert record["headers"]["X-Robots-Tag"] == [f"noai {FORGERY}"]


def test_cli_escapes_origin_file_evidence(site: LocalSite) -> None:
    site.put(0, "/.well-known/tdmrep.json", json.dumps(
        [{"location": "/*", "tdm-reservation": 1, "tdm-policy": "https://p/" + FORGERY}]))
    url = site.put(0, "/a.jpg", make_image(20, 20))
    result = _run_check(url)
    assert result.returncode == 1 and "tdm_reserved" in result.stdout
    assert not any(c in result.stdout for c in "\x1b\x07\u009b"), result.stdout
    assert "WOULD BE DOWNLOADED\\x9b0m" in result.stdout
