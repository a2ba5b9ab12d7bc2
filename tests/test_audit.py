"""Reading a run back: ``read_audit``, ``summarize_audit``, the filter language, and
the ``audit`` and ``why`` commands (called through a parser built here, as
``consentfetch.cli`` wires them).

One run with every opt-out signal of the local site (the pattern of
tests/test_consent_e2e.py's ``scenario``) is made once per module and copied
where a test needs to change it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentfetch import fetch_shards
from consentfetch.audit import (
    REASONS,
    STATUSES,
    FilterError,
    explain_host,
    explain_row,
    explain_url,
    find_url,
    normalize_url,
    parse_filter,
    read_audit,
    select_rows,
    summarize_audit,
)
from consentfetch.audit.filter import And, Compare, Member, Or
from consentfetch.cli.audit import add_commands as add_audit_commands
from consentfetch.consent.decision import Reason, Status, status_of
from consentfetch.errors import ConfigError, ConsentFetchError, OutputError
from consentfetch.testsite import LocalSite, Resource, make_image, running_site

from .conftest import with_local
from .test_consent_e2e import PLAIN, xmp_jpeg

HOSTS = tuple(f"127.0.0.{i}" for i in range(30, 41))
HOSTILE = "<script>alert(1)</script>"


@dataclass
class AuditRun:
    """A finished run with every signal, and what each URL should have become."""

    out: Path
    site: LocalSite
    expect: dict[str, tuple[str, str | None]]  # url -> (status, reason)
    hostile_url: str
    redirect_url: str


def make_run(base: Path, site: LocalSite) -> AuditRun:
    """Put one signal per origin of ``site``, download it into ``base/out``."""
    ok = ("success", None)
    expect: dict[str, tuple[str, str | None]] = {}
    rows: list[dict[str, str]] = []

    def image(host: int, path: str, outcome: tuple[str, str | None], body: bytes | None = None,
              headers: dict[str, str] | None = None, caption: str | None = None) -> str:
        url = site.put(host, path, Resource(body or make_image(48, 36, seed=len(expect)),
                                            headers=headers or {}))
        expect[url] = outcome
        rows.append({"url": url, "caption": caption or f"caption of {path}"})
        return url

    # 0: robots.txt Disallow; the hostile URL and caption come first, so they are examples
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /private/\n")
    hostile = image(0, f"/private/{HOSTILE}.jpg", ("disallowed", "robots_disallowed"),
                    caption=f"{HOSTILE} \"quoted\" & 'single'")
    image(0, "/private/a.jpg", ("disallowed", "robots_disallowed"))
    image(0, "/public/a.jpg", ok)
    image(0, "/public/b.jpg", ok)
    missing = site.url(0, "/public/missing.jpg")
    expect[missing] = ("failed_to_download", "http_error")
    rows.append({"url": missing, "caption": "gone"})
    image(0, "/public/corrupt.jpg", ("failed_to_resize", "decode_error"),
          body=b"\xff\xd8\xff\xe0 not a jpeg")
    expect["ftp://127.0.0.30/a.jpg"] = ("failed_to_download", "invalid_url")
    rows.append({"url": "ftp://127.0.0.30/a.jpg", "caption": "ftp"})
    # 1: AI-crawler inference (strict)
    site.put(1, "/robots.txt", "User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
    image(1, "/a.jpg", ("disallowed", "ai_crawler_blocked"))
    # 2: Content-Usage in robots.txt
    site.put(2, "/robots.txt", "User-agent: *\nAllow: /\nContent-Usage: /art/ train-ai=n\n")
    image(2, "/art/a.jpg", ("disallowed", "aipref_disallowed"))
    # 3: ai.txt
    site.put(3, "/robots.txt", PLAIN)
    site.put(3, "/ai.txt", "User-agent: *\nDisallow: *.png\n")
    image(3, "/a.png", ("disallowed", "aitxt_disallowed"), body=make_image(40, 40, "png"))
    # 4: tdmrep.json
    site.put(4, "/robots.txt", PLAIN)
    site.put(4, "/.well-known/tdmrep.json",
             json.dumps([{"location": "/reserved/*", "tdm-reservation": 1}]))
    image(4, "/reserved/a.jpg", ("disallowed", "tdm_reserved"))
    # 5: response headers
    site.put(5, "/robots.txt", PLAIN)
    image(5, "/tdm.jpg", ("disallowed", "tdm_reserved"), headers={"tdm-reservation": "1"})
    image(5, "/cu.jpg", ("disallowed", "aipref_disallowed"),
          headers={"Content-Usage": "train-ai=n"})
    image(5, "/xrt.jpg", ("disallowed", "x_robots_tag"), headers={"X-Robots-Tag": "noai"})
    image(5, "/xrt2.jpg", ("disallowed", "x_robots_tag"),
          headers={"X-Robots-Tag": "noimageai"})
    # 6: embedded IPTC
    site.put(6, "/robots.txt", PLAIN)
    image(6, "/prohibited.jpg", ("disallowed", "metadata_prohibited"),
          body=xmp_jpeg("DMI-PROHIBITED-AIMLTRAINING"))
    # 7: opt-out list, by prefix and by content hash
    site.put(7, "/robots.txt", PLAIN)
    image(7, "/listed/a.jpg", ("disallowed", "registry_opt_out"))
    hashed = make_image(30, 30, seed=999)
    image(7, "/copy.jpg", ("disallowed", "registry_opt_out"), body=hashed)
    opt_out = base / "optout.csv"
    opt_out.write_text("url_prefix,sha256,source\n"
                       f"{site.url(7, '/listed/')},,artist request\n"
                       f",{hashlib.sha256(hashed).hexdigest()},takedown 42\n")
    # 8: a redirect from an open origin into host 0's /private/
    site.put(8, "/robots.txt", PLAIN)
    redirect = site.put(8, "/go", Resource(b"", status=302,
                                           headers={"Location": site.url(0, "/private/r.jpg")}))
    expect[redirect] = ("disallowed", "robots_disallowed")
    rows.append({"url": redirect, "caption": "redirect"})
    # 9: robots.txt answers 503
    site.put(9, "/robots.txt", Resource(b"busy", status=503))
    image(9, "/a.jpg", ("disallowed", "robots_unreachable"))
    image(9, "/b.jpg", ("disallowed", "robots_unreachable"))
    # 10: Cloudflare Content Signals in robots.txt
    site.put(10, "/robots.txt", "User-Agent: *\nContent-signal: search=yes, ai-train=no\n")
    image(10, "/a.jpg", ("disallowed", "content_signal"))

    url_list = base / "urls.parquet"
    pq.write_table(pa.Table.from_pylist(rows), url_list)
    out = base / "out"
    fetch_shards(str(url_list), str(out), caption_col="caption", shard_size=8,
                 opt_out_lists=[str(opt_out)], **with_local({ "retries": 0}))
    return AuditRun(out, site, expect, hostile, redirect)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditRun]:
    with running_site(HOSTS) as site:
        yield make_run(tmp_path_factory.mktemp("audit"), site)


def cli(*argv: str) -> int:
    """Parse ``argv`` with a parser holding only the audit commands; run the handler."""
    parser = argparse.ArgumentParser(prog="consentfetch")
    handlers = add_audit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return handlers[args.command](args)


def copy_run(run: AuditRun, dest: Path) -> Path:
    shutil.copytree(run.out, dest)
    return dest


# ---------------------------------------------------------------- Python API


def test_the_run_has_every_signal(run: AuditRun) -> None:
    audit = {r["url"]: r for r in read_audit(str(run.out)).to_pylist()}
    assert {u: (r["status"], r["reason"]) for u, r in audit.items()} == run.expect
    disallowed = {Reason(r) for s, r in run.expect.values() if s == "disallowed" and r}
    # opt-in needs its own profile: see test_one_template_per_reason; RSL licences
    # have their own end-to-end file (tests/test_rsl_e2e.py)
    assert disallowed == {r for r in Reason if status_of(r) == "disallowed"} - {
        Reason.NO_OPT_IN, Reason.RSL_PROHIBITED}


def test_read_audit_filters_and_missing_folder(run: AuditRun, tmp_path: Path) -> None:
    host = HOSTS[5]
    rows = read_audit(str(run.out), host=host.upper(), status="disallowed").to_pylist()
    assert len(rows) == 4 and all(host in r["url"] for r in rows)
    assert read_audit(str(run.out), reason="x_robots_tag").num_rows == 2
    with pytest.raises(OutputError, match="no output folder"):
        read_audit(str(tmp_path / "nope"))
    assert not (tmp_path / "nope").exists()  # reading never creates the folder


def test_summarize_audit(run: AuditRun) -> None:
    total = len(run.expect)
    summary = summarize_audit(str(run.out))
    json.dumps(summary)  # plain values only
    assert summary["total"] == total
    assert list(summary["by_status"]) == ["success", "disallowed", "failed_to_download",
                                          "failed_to_resize"]
    assert sum(summary["by_status"].values()) == total
    assert summary["by_status"]["success"] == 2
    assert summary["by_reason"]["robots_disallowed"] == 3
    assert summary["by_reason"]["x_robots_tag"] == 2
    assert sum(summary["by_reason"].values()) == total - 2
    groups = {(g["status"], g["reason"]): g for g in summary["groups"]}
    assert groups[("success", None)]["count"] == 2
    assert groups[("disallowed", "robots_unreachable")]["share"] == round(2 / total, 4)
    opted = summary["top_hosts"]["opted_out"]
    assert opted[0]["host"] == HOSTS[5] and opted[0]["disallowed"] == 4
    assert [h["host"] for h in summary["top_hosts"]["failed"]] == [HOSTS[0]]
    assert summary["top_hosts"]["failed"][0]["reasons"]["http_error"] == 1

    table = read_audit(str(run.out))
    by_status = summarize_audit(table, by="status")
    assert [g["status"] for g in by_status["groups"]] == list(
        s for s, n in summary["by_status"].items() if n)
    by_host = summarize_audit(table, by="host", top=3)
    assert len(by_host["groups"]) == 3 and by_host["groups"][0]["host"] == HOSTS[5]
    with pytest.raises(ValueError):
        summarize_audit(table, by="colour")
    assert summarize_audit(pa.table({}))["total"] == 0


# ---------------------------------------------------------------- the filter language


def test_filter_language(run: AuditRun) -> None:
    table = read_audit(str(run.out))

    def keys(expr: str) -> set[str]:
        return {r["url"] for r in select_rows(table, expr).to_pylist()}

    def expected(pred) -> set[str]:
        return {u for u, (s, r) in run.expect.items() if pred(u, s, r)}

    assert keys('reason == "x_robots_tag"') == expected(lambda u, s, r: r == "x_robots_tag")
    assert keys("reason != 'x_robots_tag'") == expected(lambda u, s, r: r != "x_robots_tag")
    assert keys('reason == null') == expected(lambda u, s, r: r is None)
    assert keys('reason in ("tdm_reserved", "ai_crawler_blocked",)') == expected(
        lambda u, s, r: r in ("tdm_reserved", "ai_crawler_blocked"))
    assert keys('status not in ("disallowed", "success")') == expected(
        lambda u, s, r: s.startswith("failed"))
    host5 = HOSTS[5]
    assert keys(f'host == "{host5}" and not (reason == "tdm_reserved" or '
                'reason == "aipref_disallowed")') == expected(
        lambda u, s, r: host5 in u and r == "x_robots_tag")
    assert keys('http_status == 404') == keys('http_status == "404"') == expected(
        lambda u, s, r: r == "http_error")
    flags = select_rows(table, 'status == "disallowed"', reason=["x_robots_tag", "tdm_reserved"],
                        host=[host5.upper()])
    assert flags.num_rows == 3


@pytest.mark.parametrize("expression, message", [
    ('reason ==', "expected a quoted value"),
    ('reason = "x"', "unexpected character '='"),
    ('(reason == "a"', "expected ')'"),
    ('colour == "red"', "unknown column colour"),
    ('reason in ()', "expected a quoted value"),
    ('reason == "a" status == "b"', "expected 'and', 'or' or the end"),
    ('__import__("os")', "expected '==', '!=' or 'in'"),
    ('__import__("os").system("true")', "unexpected character '.'"),
    ('http_status == "four"', "holds numbers"),
    ('', "empty expression"),
])
def test_filter_errors(run: AuditRun, expression: str, message: str) -> None:
    with pytest.raises(FilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        select_rows(read_audit(str(run.out)), expression)


def test_parse_filter_precedence() -> None:
    # "and" binds tighter than "or"
    assert parse_filter('a == "1" or b == "2" and c == "3"') == Or(
        Compare("a", "==", "1"), And(Compare("b", "==", "2"), Compare("c", "==", "3")))
    assert parse_filter('x in ("a\\"b")') == Member("x", False, ('a"b',))


# ---------------------------------------------------------------- consentfetch audit


def test_audit_table_json_csv(run: AuditRun, capsys: pytest.CaptureFixture[str]) -> None:
    total = len(run.expect)
    assert cli("audit", str(run.out)) == 0
    text = capsys.readouterr().out
    assert f"{total} URLs in 3 complete shard(s) (run complete)" in text
    line = next(ln for ln in text.splitlines() if "robots_disallowed" in ln)
    assert line.split()[:3] == ["disallowed", "robots_disallowed", "3"]

    assert cli("audit", str(run.out), "--format", "json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"] == total and data["run_state"] == "complete"
    assert data["complete_shards"] == 3 and data["by_reason"]["x_robots_tag"] == 2

    assert cli("audit", str(run.out), "--by", "status", "--format", "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    opted_out = sum(status == "disallowed" for status, _ in run.expect.values())
    assert {r["status"]: int(r["count"]) for r in rows} == {
        "success": 2, "disallowed": opted_out, "failed_to_download": 2, "failed_to_resize": 1}


def test_audit_by_host(run: AuditRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("audit", str(run.out), "--by", "host") == 0
    text = capsys.readouterr().out
    opted, failed = text.split("hosts with the most failures:")
    assert "hosts with the most opt-outs:" in opted
    lines = opted.splitlines()
    first = lines[lines.index("hosts with the most opt-outs:") + 2]  # after the header
    assert first.split()[:3] == [HOSTS[5], "4", "4"], opted
    assert "x_robots_tag 2" in first and "http_error" not in opted.split(HOSTS[0])[-1]
    assert HOSTS[0] in failed and "http_error 1" in failed and HOSTS[5] not in failed

    assert cli("audit", str(run.out), "--by", "host", "--format", "csv", "--limit", "2") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["host"] for r in rows] == [HOSTS[5], HOSTS[0]]
    assert rows[1]["reasons"] == "robots_disallowed:2;decode_error:1;http_error:1;invalid_url:1"


def test_audit_lists_matching_rows(run: AuditRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("audit", str(run.out), "--filter", 'reason == "x_robots_tag"') == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["key", "url", "status", "reason", "evidence"]
    assert len(lines) == 3 and all("x_robots_tag" in ln and "X-Robots-Tag" in ln
                                   for ln in lines[1:])

    assert cli("audit", str(run.out), "--reason", "robots_disallowed", "--format", "json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and set(rows[0]) == {"key", "url", "status", "reason", "evidence"}
    assert run.hostile_url in {r["url"] for r in rows}

    assert cli("audit", str(run.out), "--status", "disallowed", "--host", HOSTS[5],
               "--format", "csv", "--limit", "2") == 0
    captured = capsys.readouterr()
    assert len(list(csv.DictReader(io.StringIO(captured.out)))) == 2
    assert "2 more matching row(s)" in captured.err

    assert cli("audit", str(run.out), "--status", "disallowed", "--count",
               "--format", "json") == 0
    opted_out = sum(status == "disallowed" for status, _ in run.expect.values())
    assert json.loads(capsys.readouterr().out)["total"] == opted_out


def test_audit_table_escapes_control_characters(run: AuditRun, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = copy_run(run, tmp_path / "ctl")
    table = pq.read_table(out / "00000.parquet")
    evidence = table["evidence"].to_pylist()
    evidence[0] = "evil \x1b[2J\x1b]0;pwned\x07 header"
    pq.write_table(table.set_column(table.schema.get_field_index("evidence"), "evidence",
                                    pa.array(evidence, pa.string())), out / "00000.parquet")
    assert cli("audit", str(out), "--filter", 'evidence != null', "--limit", "1") == 0
    text = capsys.readouterr().out
    assert "\x1b" not in text and "\\x1b[2J" in text


def test_audit_exit_codes(run: AuditRun, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("audit", str(run.out), "--filter", "reason ==") == 2
    assert "--filter: expected a quoted value" in capsys.readouterr().err
    assert cli("audit", str(run.out), "--reason", "no_opt_in") == 1
    assert "no matching audit rows" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli("audit", str(run.out), "--reason", "no_such_reason")
    assert exc.value.code == 2
    # A missing folder, or one that holds no run, is the user's to fix: exit 2 (issue 15)
    assert cli("audit", str(tmp_path / "missing")) == 2
    assert "error: no output folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli("audit", str(tmp_path / "empty")) == 2
    assert "holds no consentfetch run (no run.json)" in capsys.readouterr().err
    (tmp_path / "started").mkdir()  # a run that has begun but finished no shard yet
    (tmp_path / "started" / "run.json").write_text('{"state": "running"}')
    assert cli("audit", str(tmp_path / "started")) == 1
    assert "no complete shards" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli("audit", str(run.out), "--limit", "0")
    assert exc.value.code == 2


def test_run_in_progress(run: AuditRun, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    out = copy_run(run, tmp_path / "partial")
    shard1 = pq.read_table(out / "00001.parquet").num_rows
    (out / "00001_stats.json").unlink()
    meta = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**meta, "state": "running",
                                              "finished_at": None}))
    assert read_audit(str(out)).num_rows == len(run.expect) - shard1
    assert cli("audit", str(out)) == 0
    text = capsys.readouterr().out
    assert f"{len(run.expect) - shard1} URLs in 2 complete shard(s) (run in progress)" in text


def test_memory_filesystem(run: AuditRun, capsys: pytest.CaptureFixture[str]) -> None:
    fs = fsspec.filesystem("memory")
    root = "/consentfetch-audit-test"
    try:
        for path in run.out.rglob("*"):  # origins.parquet is a folder of parts
            if path.is_file():
                fs.pipe(f"{root}/{path.relative_to(run.out).as_posix()}", path.read_bytes())
        url = f"memory://{root}"
        assert read_audit(url).num_rows == len(run.expect)
        assert cli("audit", url, "--format", "json") == 0
        assert json.loads(capsys.readouterr().out)["total"] == len(run.expect)
        assert cli("audit", url, "--filter", 'reason == "tdm_reserved"', "--format",
                   "json") == 0
        assert len(json.loads(capsys.readouterr().out)) == 2
        assert cli("why", run.hostile_url, url) == 0
        assert "disallows" in capsys.readouterr().out
    finally:
        if fs.exists(root):
            fs.rm(root, recursive=True)


# ---------------------------------------------------------------- why


def test_why_robots_names_file_rule_and_full_sha(run: AuditRun,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    origins = pq.read_table(run.out / "origins.parquet").to_pylist()
    robots = next(o for o in origins if o["url"] == run.site.url(0, "/robots.txt"))
    url = run.site.url(0, "/private/a.jpg")
    assert cli("why", url, str(run.out)) == 0
    text = " ".join(capsys.readouterr().out.split())  # undo the wrapping
    assert text.startswith(f"{url} (key ")
    assert (f"Not downloaded: your robots.txt at {robots['url']} (fetched "
            f"{robots['fetched_at']:%Y-%m-%d %H:%M} UTC, sha256 {robots['sha256']}) disallows "
            "/private/a.jpg for user-agent *, rule `Disallow: /private/` on line 2.") in text
    assert "consent profile: strict" in text


def test_why_never_quotes_a_later_fetch(run: AuditRun, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """origins.parquet keeps the latest fetch of a file; if it is not the one the
    row was decided by (a resumed run re-fetched a changed robots.txt), the row's
    own full digest (evidence_file_sha256) is quoted, not the other file's."""
    out = copy_run(run, tmp_path / "stale")
    origins = pq.read_table(out / "origins.parquet")
    robots_url = run.site.url(0, "/robots.txt")
    digests = [("0" * 64 if u == robots_url else d)
               for u, d in zip(origins["url"].to_pylist(), origins["sha256"].to_pylist(), strict=False)]
    # A later part, as a resumed run that fetched robots.txt again adds one.
    pq.write_table(origins.set_column(origins.schema.get_field_index("sha256"), "sha256",
                                      pa.array(digests, pa.string())),
                   out / "origins.parquet" / "99991231T000000000000Z-000000.parquet")
    assert cli("why", run.site.url(0, "/private/a.jpg"), str(out), "--json") == 0
    text = json.loads(capsys.readouterr().out)[0]["explanation"]
    own = find_url(read_audit(str(out)), run.site.url(0, "/private/a.jpg"))
    digest = own["evidence_file_sha256"][0].as_py()
    assert len(digest) == 64 and digest != "0" * 64
    assert "0" * 64 not in text and f"sha256 {digest}) disallows" in text


def test_why_json_and_url_normalisation(run: AuditRun,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = run.site.url(5, "/xrt.jpg")
    shouted = url.replace("http://", "HTTP://")
    assert cli("why", shouted, str(run.out), "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0]["url"] == url and rows[0]["reason"] == "x_robots_tag"
    assert "`X-Robots-Tag: noai`" in rows[0]["explanation"]
    assert set(rows[0]) >= {"key", "url", "status", "reason", "evidence", "decided_at",
                            "explanation"}
    assert normalize_url("HTTPS://Example.COM:443") == "https://example.com/"
    assert normalize_url("http://EXAMPLE.com:80/A?b#C") == "http://example.com/A?b#C"
    assert normalize_url("http://ex.com:8080/a") == "http://ex.com:8080/a"
    assert normalize_url("not a url") == "not a url"


def test_why_host_and_misses(run: AuditRun, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("why", "--host", HOSTS[5], str(run.out)) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{HOSTS[5]}: 4 URL(s) in this dataset's input; 0 downloaded, 4 "
                           "not downloaded because of an opt-out, 0 failed")
    assert text.count("Not downloaded:") == 4
    assert cli("why", run.site.url(5, "/nope.jpg"), str(run.out)) == 1
    err = capsys.readouterr().err
    assert "no audit row for" in err and f"try consentfetch why --host {HOSTS[5]}" in err
    assert cli("why", str(run.out)) == 2
    assert cli("why", "--host", HOSTS[5], "http://x/", str(run.out)) == 2


def test_every_row_is_explained(run: AuditRun) -> None:
    site = run.site
    by_url = {r["url"]: r["explanation"] for r in explain_host(str(run.out), HOSTS[0])}
    by_url.update({r["url"]: r["explanation"]
                   for h in HOSTS[1:] for r in explain_host(str(run.out), h)})
    by_url.update({r["url"]: r["explanation"]
                   for r in explain_url(str(run.out), "ftp://127.0.0.30/a.jpg")})
    assert set(by_url) == set(run.expect)

    def said(host: int, path: str) -> str:
        return by_url[site.url(host, path)]

    assert said(0, "/public/a.jpg").startswith("Downloaded on ")
    assert "in the dataset as sample" in said(0, "/public/a.jpg")
    assert "blocks the AI-training crawler GPTBot" in said(1, "/a.jpg")
    assert "says `Content-Usage: /art/ train-ai=n` on line 3" in said(2, "/art/a.jpg")
    assert "your ai.txt at" in said(3, "/a.png") and "`Disallow: *.png`" in said(3, "/a.png")
    assert "your TDMRep file at" in said(4, "/reserved/a.jpg")
    assert "carried `tdm-reservation: 1`" in said(5, "/tdm.jpg")
    assert "header `Content-Usage: train-ai=n`" in said(5, "/cu.jpg")
    assert "directive `noimageai`" in said(5, "/xrt2.jpg")
    assert "DMI-PROHIBITED-AIMLTRAINING" in said(6, "/prohibited.jpg")
    assert "opt-out list" in said(7, "/listed/a.jpg") and "never requested" in said(
        7, "/listed/a.jpg")
    assert "content (its sha256)" in said(7, "/copy.jpg") and "takedown 42" in said(
        7, "/copy.jpg")
    assert "redirected to another site" in by_url[run.redirect_url]
    assert "could not be fetched" in said(9, "/a.jpg") and "RFC 9309" in said(9, "/a.jpg")
    assert said(0, "/public/missing.jpg").startswith("Not downloaded: the server did not "
                                                     "serve the image: HTTP 404")
    assert said(0, "/public/corrupt.jpg").startswith("Downloaded but not kept: the file "
                                                     "could not be read as an image")
    assert "not a usable http(s) URL" in by_url["ftp://127.0.0.30/a.jpg"]


@pytest.mark.parametrize("reason", [None, *Reason])
def test_one_template_per_reason(reason: Reason | None) -> None:
    row = {"key": "000000042", "url": "https://example.com/a.jpg",
           "status": "success" if reason is None else str(status_of(reason)),
           "reason": None if reason is None else str(reason),
           "evidence": None if reason is None else "EVIDENCE-TEXT",
           "consent_profile": "standard", "ignored_checks": "ai_txt,iptc"}
    text = explain_row(row)
    head = {"success": "Downloaded", "disallowed": "Not downloaded:",
            "failed_to_download": "Not downloaded:", "failed_to_resize":
            "Downloaded but not kept:"}[str(row["status"])]
    assert text.startswith(head)
    assert f"reason {reason}" not in text  # a template, not the generic fallback
    if reason is not None:
        assert "EVIDENCE-TEXT" in text
    assert "checks turned off for this run: ai_txt, iptc" in text
    assert "consent profile: standard" in text


def _set_evidence(out: Path, values: list[str]) -> None:
    table = pq.read_table(out / "00000.parquet")
    evidence = table["evidence"].to_pylist()
    evidence[: len(values)] = values
    pq.write_table(table.set_column(table.schema.get_field_index("evidence"), "evidence",
                                    pa.array(evidence, pa.string())), out / "00000.parquet")


def test_audit_csv_cells_are_not_formulas_and_json_has_no_raw_c1(
        run: AuditRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = copy_run(run, tmp_path / "hostile")
    hostile = ["=HYPERLINK(\"http://evil\",\"ok\")", "+1", "-2+3", "@SUM(A1)", "\t=1",
               "a\x00b\x1b[2J\u009b31m", "\r=1", "two\rrows"]
    _set_evidence(out, hostile)
    assert cli("audit", str(out), "--filter", "evidence != null", "--format", "csv") == 0
    text = capsys.readouterr().out
    cells = [r["evidence"] for r in csv.DictReader(io.StringIO(text, newline=""))]
    for value in hostile[:5]:
        assert "'" + value in cells
    assert {"a\\x00b\\x1b[2J\\x9b31m", "\\x0d=1", "two\\x0drows"} <= set(cells)
    assert not any(c in text for c in "\x00\x1b\u009b\r")
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) for c in cells)

    assert cli("audit", str(out), "--filter", "evidence != null", "--format", "json") == 0
    text = capsys.readouterr().out
    assert not any(c in text for c in "\x00\x1b\u009b")
    assert "a\x00b\x1b[2J\u009b31m" in {r["evidence"] for r in json.loads(text)}
    # Only what is printed changes: the audit data keeps the text as it came.
    assert read_audit(str(out))["evidence"].to_pylist()[: len(hostile)] == hostile


def test_why_json_has_no_raw_c1(run: AuditRun, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    out = copy_run(run, tmp_path / "why")
    _set_evidence(out, ["robots.txt line 2: \u009b2J\u009b32mdownloaded"])
    url = pq.read_table(out / "00000.parquet")["url"][0].as_py()
    assert cli("why", url, str(out), "--json") == 0
    text = capsys.readouterr().out
    assert "\u009b" not in text and "\\u009b2J" in text
    assert json.loads(text)[0]["evidence"].startswith("robots.txt line 2: \u009b2J")


# ---------------------------------------------------------------- evidence as data


def test_why_reads_evidence_data_not_its_wording(run: AuditRun, tmp_path: Path) -> None:
    """Rewording the evidence text ("for user-agent" -> "for User-agent") used to drop
    why's full digest and "never requested": the sentence was parsed back with a
    regex. Now the explanation comes from the row's data and only quotes the text."""
    out = copy_run(run, tmp_path / "reworded")
    table = pq.read_table(out / "00000.parquet")
    reworded = [None if e is None else e.replace("for user-agent", "for User-agent")
                for e in table["evidence"].to_pylist()]
    pq.write_table(table.set_column(table.schema.get_field_index("evidence"), "evidence",
                                    pa.array(reworded, pa.string())), out / "00000.parquet")
    robots = next(o for o in pq.read_table(out / "origins.parquet").to_pylist()
                  if o["url"] == run.site.url(0, "/robots.txt"))
    [row] = explain_url(str(out), run.site.url(0, "/private/a.jpg"))
    assert "for User-agent" in row["evidence"]
    assert f"sha256 {robots['sha256']}) disallows /private/a.jpg" in row["explanation"]
    assert "rule `Disallow: /private/` on line 2" in row["explanation"]
    assert "The image itself was never requested" in row["explanation"]


def test_evidence_columns_hold_the_proof(run: AuditRun) -> None:
    audit = read_audit(str(run.out))
    robots = next(o for o in pq.read_table(run.out / "origins.parquet").to_pylist()
                  if o["url"] == run.site.url(0, "/robots.txt"))
    # "every row decided by line 2 of this robots.txt" is one --filter expression
    decided = select_rows(audit, f'evidence_file == "{robots["url"]}" and evidence_line == 2')
    assert set(decided["url"].to_pylist()) == {
        u for u, (_, r) in run.expect.items() if r == "robots_disallowed"}
    row = decided.to_pylist()[0]
    assert row["evidence_signal"] == "robots.txt" and row["evidence_agent"] == "*"
    assert row["evidence_rule"] == "Disallow: /private/"
    assert row["evidence_file_sha256"] == robots["sha256"]
    assert row["evidence_fetched_at"] == robots["fetched_at"]

    def proof(host: int, path: str) -> dict[str, object]:
        [found] = find_url(audit, run.site.url(host, path)).to_pylist()
        return {k.removeprefix("evidence_"): v for k, v in found.items()
                if k.startswith("evidence_")}

    assert proof(0, "/public/a.jpg") == dict.fromkeys(
        ("signal", "file", "file_sha256", "fetched_at", "line", "rule", "agent"))
    assert proof(1, "/a.jpg")["agent"] == "GPTBot"
    assert (proof(2, "/art/a.jpg")["line"], proof(2, "/art/a.jpg")["rule"]) == (
        3, "Content-Usage: /art/ train-ai=n")
    assert proof(3, "/a.png")["signal"] == "ai.txt"
    tdm = proof(4, "/reserved/a.jpg")
    assert (tdm["signal"], tdm["line"]) == ("tdmrep.json", 1)
    assert tdm["rule"] == '{"location": "/reserved/*", "tdm-reservation": 1}'
    assert proof(5, "/xrt.jpg")["signal"] == "header"
    assert proof(5, "/xrt.jpg")["rule"] == "X-Robots-Tag: noai"
    assert proof(6, "/prohibited.jpg")["signal"] == "xmp"
    listed = proof(7, "/copy.jpg")
    assert listed["signal"] == "list" and str(listed["file"]).endswith("optout.csv")
    assert str(listed["rule"]).startswith("sha256 ")
    assert proof(9, "/a.jpg")["signal"] == "robots.txt"
    assert proof(0, "/public/missing.jpg")["signal"] == "network"
    assert proof(0, "/public/corrupt.jpg")["signal"] == "image"
    [ftp] = find_url(audit, "ftp://127.0.0.30/a.jpg").to_pylist()
    assert ftp["evidence_signal"] == "input"
    [redirected] = find_url(audit, run.redirect_url).to_pylist()
    assert redirected["evidence_file"] == robots["url"]  # the hop's origin decided


def _without_evidence_columns(run: AuditRun, dest: Path) -> Path:
    """A copy of the run whose shard parquets look written before the columns existed."""
    out = copy_run(run, dest)
    for shard in out.glob("*.parquet"):
        if shard.name == "origins.parquet":
            continue
        table = pq.read_table(shard)
        pq.write_table(table.drop_columns([c for c in table.column_names
                                           if c.startswith("evidence_")]), shard)
    return out


def test_older_outputs_without_evidence_columns(run: AuditRun, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = _without_evidence_columns(run, tmp_path / "old")
    assert "evidence_line" not in pq.read_table(out / "00000.parquet").column_names
    audit = read_audit(str(out))
    assert audit.num_rows == len(run.expect)
    assert audit["evidence_signal"].null_count == audit.num_rows
    assert select_rows(audit, "evidence_line == 2").num_rows == 0
    assert summarize_audit(str(out))["total"] == len(run.expect)
    assert cli("audit", str(out), "--filter", 'evidence_signal == null', "--count") == 0
    assert str(len(run.expect)) in capsys.readouterr().out
    assert cli("audit", str(out), "--by", "host") == 0
    [row] = explain_url(str(out), run.site.url(0, "/private/a.jpg"))
    # the catalogue's sentence around the evidence text: nothing parsed back
    assert row["explanation"].startswith("Not downloaded: the site's robots.txt disallows "
                                         "it: http://")
    assert cli("why", "--host", HOSTS[5], str(out)) == 0
    assert capsys.readouterr().out.count("Not downloaded:") == 4
    assert cli("report", str(out), "-o", str(tmp_path / "r.html")) == 0
    assert "Disallow: /private/" in (tmp_path / "r.html").read_text()


# ---------------------------------------------------------------- one catalogue


def test_the_catalogue_words_every_status_and_reason() -> None:
    assert set(REASONS) == set(Reason) and Reason.CRAWL_DELAY_TOO_LONG in REASONS
    assert set(STATUSES) == set(Status)
    for reason, wording in REASONS.items():
        assert wording.label and wording.help and "\n" not in wording.help, reason
        assert "{evidence}" in wording.explanation, reason
        assert wording.explanation.format(evidence="E").count("E") >= 1
    labels = [w.label for w in REASONS.values()]
    assert len(set(labels)) == len(labels)  # a chart never shows two codes as one


def test_filter_error_is_in_the_exception_tree() -> None:
    assert issubclass(FilterError, ConfigError) and issubclass(FilterError, ConsentFetchError)
    assert issubclass(FilterError, ValueError)
    with pytest.raises(ConfigError):
        parse_filter("status ==")
