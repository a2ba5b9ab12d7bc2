"""``consentfetch report``: one self-contained, escaped HTML page, rendered by a real browser.

The browser test needs Debian's ``chromium`` package (``apt-get install -y
chromium``); it is skipped, saying so, when ``/usr/bin/chromium`` is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from consentfetch.audit.report import render_report, write_report
from consentfetch.testsite import running_site

from .test_audit import HOSTILE, HOSTS, AuditRun, cli, make_run

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TIMEOUT = 60  # seconds, per chromium process


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditRun]:
    with running_site(HOSTS) as site:
        yield make_run(tmp_path_factory.mktemp("report"), site)


@pytest.fixture(scope="module")
def page(run: AuditRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "report.html"
    write_report(str(run.out), str(path))
    return path


class _Structure(HTMLParser):
    """Collects tags, attributes and text; checks that elements nest and close."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "rect", "stop", "path", "circle"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.text: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((tag, k, v) for k, v in attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parsed(text: str) -> _Structure:
    parser = _Structure()
    parser.feed(text)
    parser.close()
    return parser


def test_report_is_self_contained_and_escaped(run: AuditRun, page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    doc = parsed(text)
    assert not doc.errors and doc.stack == [], (doc.errors, doc.stack)
    # No script, no external anything: every attribute value is inert.
    assert "script" not in doc.tags and "link" not in doc.tags and "iframe" not in doc.tags
    assert not [a for a in doc.attrs if a[1] in ("src", "href", "action", "srcset")
                or a[1].startswith("on")], doc.attrs
    assert "@import" not in text and not re.search(r"url\((?!#)", text)
    assert re.search(r"<script", text, re.I) is None
    csp = [v for tag, k, v in doc.attrs if tag == "meta" and k == "content"
           and v and "default-src 'none'" in v]
    assert csp, "the Content-Security-Policy meta tag is missing"
    # The hostile URL and caption are there, as text.
    escaped = HOSTILE.replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in text and "&quot;quoted&quot; &amp; &#x27;single&#x27;" in text
    body = "".join(doc.text)
    assert run.hostile_url in body and f"{HOSTILE} \"quoted\" & 'single'" in body


def test_report_content(run: AuditRun, page: Path) -> None:
    body = " ".join(" ".join(parsed(page.read_text(encoding="utf-8")).text).split())
    total = len(run.expect)
    assert "URLs in the input" in body and str(total) in body
    opted_out = sum(status == "disallowed" for status, _ in run.expect.values())
    assert "Downloaded 2" in body and f"Opted out, not downloaded {opted_out}" in body
    for reason in {r for _, r in run.expect.values() if r}:
        assert reason in body, reason  # each reason has its example block
    assert "Disallow: /private/" in body and "takedown 42" in body  # evidence
    assert f"{HOSTS[5]} 4 of 4" in body  # top opted-out host
    meta = json.loads((run.out / "run.json").read_text())
    assert meta["user_agent"] in body and "strict" in body
    assert "none: every check was on" in body
    for check in meta["checks_performed"]:
        assert check in body
    assert "shard_size 8" in body and "run complete" in body


def test_report_warns_about_checks_off_and_runs_in_progress(run: AuditRun,
                                                           tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(run.out, out)
    meta = json.loads((out / "run.json").read_text())
    meta.update(state="running", finished_at=None, checks_off=["ai_txt (--ignore)"],
                config={**meta["config"], "input_format": "<b>bold</b>"})
    (out / "run.json").write_text(json.dumps(meta))
    (out / "00001_stats.json").unlink()
    text = render_report(str(out))
    body = " ".join(" ".join(parsed(text).text).split())
    assert "Consent checks turned off in this run: ai_txt (--ignore)" in body
    assert "still in progress" in body and "2 shard(s) completed so far" in body
    assert "&lt;b&gt;bold&lt;/b&gt;" in text and "<b>bold</b>" not in text


def test_report_command(run: AuditRun, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "r.html"
    assert cli("report", str(run.out), "-o", str(target), "--examples", "1") == 0
    assert f"wrote {target} ({len(run.expect)} URLs)" in capsys.readouterr().out
    assert target.read_text(encoding="utf-8").count('<ol class="examples"><li>') > 5
    # nothing to report is the user's to fix (a wrong folder): exit 2, as every error
    assert cli("report", str(tmp_path / "missing"), "-o", str(target)) == 2
    (tmp_path / "empty").mkdir()
    assert cli("report", str(tmp_path / "empty"), "-o", str(target)) == 2
    assert "nothing to report" in capsys.readouterr().err


# ---------------------------------------------------------------- a real browser


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run headless chromium once, offline and bounded in time."""
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", *extra, url],
        capture_output=True, text=True, timeout=BROWSER_TIMEOUT)


def console_lines(stderr: str, url: str) -> list[str]:
    """The page's console messages (errors, CSP violations) that chromium logged."""
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln and url in ln]


@pytest.mark.skipif(not CHROMIUM.exists(),
                    reason="needs /usr/bin/chromium (Debian: apt-get install -y chromium)")
def test_report_renders_in_chromium(page: Path, tmp_path: Path) -> None:
    url = page.as_uri()
    # 1. A control page: proves this chromium reports console errors the way we look
    #    for them, so that finding none on the report means something.
    control = tmp_path / "control.html"
    control.write_text("<!doctype html><title>c</title><p>c</p>"
                       "<script>console.error('control'); notDefined();</script>")
    result = chromium(control.as_uri(), tmp_path / "p0", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    assert any("Uncaught" in ln for ln in console_lines(result.stderr, control.as_uri())), \
        "chromium did not log the control page's console error: the check would be blind"

    # 2. The screenshot: not blank, the charts' colours are there, no console message.
    shot = tmp_path / "report.png"
    result = chromium(url, tmp_path / "p1", f"--screenshot={shot}", "--window-size=1280,2000",
                      "--hide-scrollbars")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert console_lines(result.stderr, url) == []
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        assert rgb.size == (1280, 2000)
        assert ImageStat.Stat(rgb.convert("L")).stddev[0] > 20  # not a blank page
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 200  # text, charts, badges: many distinct colours
        counts = {c: n for n, c in colours}
        for hex_colour in ("#6753e0", "#2f9e73", "#e4683f"):  # disallowed, success, failed
            rgb_colour = tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
            assert counts.get(rgb_colour, 0) > 500, hex_colour  # the bars were drawn

    # 3. The DOM the browser built: complete, and the hostile text stayed text.
    result = chromium(url, tmp_path / "p2", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "Where every URL went" in dom and "</footer>" in dom
    assert re.search(r"<script", dom, re.I) is None
    assert HOSTILE.replace("<", "&lt;").replace(">", "&gt;") in dom
    assert console_lines(result.stderr, url) == []


def test_escape_replaces_controls_and_bidi_overrides() -> None:
    from consentfetch.audit.report import _e
    assert _e("a\x1b[2J\u009b\u202egpj.exe\u2066<b>") == \
        "a\ufffd[2J\ufffd\ufffdgpj.exe\ufffd&lt;b&gt;"
    assert _e("line\nnext\ttab café") == "line\nnext\ttab café"
