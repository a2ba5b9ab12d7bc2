"""An output folder written by img2dataset: refused by download, read by the audit tools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from consentfetch import OutputError, fetch_shards, read_audit
from consentfetch.audit import read_run, summarize_audit, written_by
from consentfetch.audit.img2dataset import http_status_of, reason_of

from .conftest import LOCAL
from .img2dataset_folder import ROWS, write_img2dataset_folder


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentfetch", *args], capture_output=True,
                          text=True, timeout=120)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("extra", [(), ("--overwrite",)])
def test_download_refuses_an_img2dataset_folder(url_list, tmp_path: Path,
                                                extra: tuple[str, ...]) -> None:
    folder = write_img2dataset_folder(tmp_path / "laion")
    before = _snapshot(folder)
    result = run_cli("download", url_list([{"url": "http://127.0.0.2/a.jpg"}]), str(folder),
                     "--processes", "1", *extra)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "looks like img2dataset output" in result.stderr
    assert "new output folder" in result.stderr
    assert _snapshot(folder) == before  # nothing deleted, nothing added: no run.json


def test_fetch_shards_refuses_shards_without_run_json(url_list, tmp_path: Path) -> None:
    folder = write_img2dataset_folder(tmp_path / "laion")
    (folder / "00000_stats.json").write_text(json.dumps({"reasons": {}}))  # not img2dataset's
    with pytest.raises(OutputError, match="another tool may have written them"):
        fetch_shards(url_list([{"url": "http://127.0.0.2/a.jpg"}]), str(folder), **LOCAL)
    assert not (folder / "run.json").exists()


def test_read_audit_maps_img2dataset_rows(tmp_path: Path) -> None:
    folder = str(write_img2dataset_folder(tmp_path / "laion"))
    assert written_by(folder) == "img2dataset" and read_run(folder) == {}
    rows = {r["url"]: r for r in read_audit(folder).to_pylist()}
    assert [rows[url]["status"] for url, _, _ in ROWS] == [status for _, status, _ in ROWS]
    assert {url: rows[url]["reason"] for url, _, _ in ROWS} == {
        "https://a.example/ok.jpg": None, "https://a.example/gone.jpg": "http_error",
        "https://b.example/slow.jpg": "timeout", "https://c.example/x.jpg": "dns_error",
        "https://a.example/tiny.jpg": "image_too_small", "https://a.example/odd.jpg": None}
    gone = rows["https://a.example/gone.jpg"]
    assert (gone["http_status"], gone["evidence"]) == (404, "HTTP Error 404: Not Found")
    assert rows["https://a.example/odd.jpg"]["evidence"] == "something nobody foresaw"
    assert rows["https://a.example/ok.jpg"]["width"] == 256
    assert rows["https://a.example/ok.jpg"]["exif"] == "{}"  # its other columns are kept
    assert "error_message" not in rows["https://a.example/ok.jpg"]
    assert read_audit(folder, reason="timeout").num_rows == 1
    summary = summarize_audit(folder)
    assert summary["by_status"]["failed_to_download"] == 4
    assert summary["by_reason"]["http_error"] == 1


def test_audit_commands_say_img2dataset_wrote_the_folder(tmp_path: Path) -> None:
    folder = str(write_img2dataset_folder(tmp_path / "laion"))
    note = "written by img2dataset, not consentfetch: no consent checks were recorded"
    for args in (("audit", folder), ("audit", folder, "--status", "failed_to_download"),
                 ("why", "https://a.example/gone.jpg", folder)):
        result = run_cli(*args)
        assert result.returncode == 0, result.stderr
        assert note in result.stderr and "Traceback" not in result.stderr
    assert "HTTP Error 404" in run_cli("why", "https://a.example/gone.jpg", folder).stdout
    ok = run_cli("why", "https://a.example/ok.jpg", folder).stdout
    assert "Downloaded by img2dataset, which recorded no consent check" in ok
    assert "no opt-out signal" not in ok  # no check was made: it cannot say none applied
    as_json = json.loads(run_cli("audit", folder, "--format", "json").stdout)
    assert as_json["written_by"] == "img2dataset" and as_json["total"] == len(ROWS)
    report = tmp_path / "report.html"
    result = run_cli("report", folder, "-o", str(report))
    assert result.returncode == 0, result.stderr
    assert "written by img2dataset" in report.read_text()


@pytest.mark.parametrize(("message", "reason", "status"), [
    (None, None, None),
    ("HTTP Error 503: Service Unavailable", "http_error", 503),
    ("HTTP Error 302: The HTTP server returned a redirect error that would lead to an "
     "infinite loop.", "too_many_redirects", 302),
    ("<urlopen error timed out>", "timeout", None),
    ("<urlopen error [Errno 111] Connection refused>", "connection_error", None),
    ("<urlopen error [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed>",
     "tls_error", None),
    ("unknown url type: 'ftp'", "invalid_url", None),
    ("Use of image disallowed by X-Robots-Tag directive", None, None),  # status is not ours
    ("Image decoding error", "decode_error", None),
    ("aspect ratio too large", "aspect_ratio_too_large", None),
    ("image area too large", "image_too_large", None),
    ("hash mismatch", "hash_mismatch", None),
    ("list index out of range", None, None),
])
def test_img2dataset_messages_to_reasons(message: str | None, reason: str | None,
                                         status: int | None) -> None:
    assert (reason_of(message), http_status_of(message)) == (reason, status)
