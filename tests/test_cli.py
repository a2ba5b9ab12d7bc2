"""The command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from consentfetch.testsite import LocalSite, Resource, make_image

from .conftest import sigint_default


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentfetch", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_download_then_audit(site: LocalSite, url_list, tmp_path: Path) -> None:
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /private/\n")
    rows = [{"url": site.put(0, f"/img/{i}.jpg", make_image(80, 60, seed=i)), "caption": f"c{i}"}
            for i in range(5)]
    rows.append({"url": site.put(0, "/private/x.jpg", make_image(80, 60)), "caption": "p"})
    rows.append({"url": site.put(1, "/n.jpg", Resource(make_image(80, 60),
                                                       headers={"X-Robots-Tag": "noai"})),
                 "caption": "n"})
    out = tmp_path / "out"
    result = run_cli("download", url_list(rows), str(out), "--caption-col", "caption",
                     "--allow-private-networks", "--processes", "1", "--image-size", "64",
                     "--resize-mode", "center_crop")
    assert result.returncode == 0, result.stderr
    assert "7 URLs" in result.stdout and "5 success" in result.stdout
    assert "robots_disallowed" in result.stdout and "x_robots_tag" in result.stdout
    audit = pq.read_table(out / "00000.parquet").to_pylist()
    assert [r["status"] for r in audit].count("success") == 5
    assert all(r["width"] == 64 for r in audit if r["status"] == "success")

    result = run_cli("audit", str(out), "--by", "reason", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["by_reason"] == {"robots_disallowed": 1, "x_robots_tag": 1}
    assert data["by_status"]["success"] == 5
    result = run_cli("audit", str(out), "--by", "host")
    assert "127.0.0.2" in result.stdout and "127.0.0.3" in result.stdout


def test_progress_lines_when_not_a_terminal(site: LocalSite, url_list, tmp_path: Path) -> None:
    rows = [{"url": site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i))} for i in range(3)]
    result = run_cli("download", url_list(rows), str(tmp_path / "o"), "--allow-private-networks",
                     "--processes", "1")
    assert result.returncode == 0, result.stderr
    assert "progress: 3/3 rows" in result.stderr  # the closing line, logged


def test_demo_runs_and_explains(tmp_path: Path) -> None:
    result = run_cli("demo", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for reason in ("robots_disallowed", "x_robots_tag", "robots_unreachable", "tdm_reserved",
                   "aipref_disallowed", "aitxt_disallowed", "metadata_prohibited",
                   "content_signal", "rsl_prohibited"):
        assert reason in out
    assert "success" in out and "Disallow: /private/" in out
    assert (tmp_path / "demo" / "00000.tar").exists()
    assert json.loads((tmp_path / "demo" / "run.json").read_text())["state"] == "complete"


def test_errors_exit_2_with_a_message(tmp_path: Path) -> None:
    result = run_cli("download", str(tmp_path / "nope.parquet"), str(tmp_path / "o"))
    assert result.returncode == 2
    assert "consentfetch: error:" in result.stderr and "nope.parquet" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("download", "x.parquet", "o", "--image-size", "0")
    assert result.returncode == 2 and "--image-size" in result.stderr


def test_ctrl_c_says_how_to_resume(site: LocalSite, url_list, tmp_path: Path) -> None:
    rows = [{"url": site.url(0, f"/fault/slow?delay=20&i={i}")} for i in range(4)]
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [sys.executable, "-m", "consentfetch", "download", url_list(rows), str(out),
         "--allow-private-networks", "--processes", "1", "--timeout", "30"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    deadline = time.monotonic() + 20
    while site.hit_count(0, "/fault/slow") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "run the same command again to resume" in stderr
    assert not list(out.glob("*.tmp")) and not list(out.glob("*.tar"))
    assert json.loads((out / "run.json").read_text())["state"] == "interrupted"


def test_python_dash_m_and_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("consentfetch ")
    assert os.path.basename(sys.executable)  # the same interpreter runs the CLI


def test_download_with_worker_processes(site: LocalSite, url_list, tmp_path: Path) -> None:
    rows = [{"url": site.put(i % 2, f"/{i}.jpg", make_image(50, 40, seed=i))} for i in range(40)]
    out = tmp_path / "o"
    result = run_cli("download", url_list(rows), str(out), "--allow-private-networks",
                     "--processes", "2", "--shard-size", "10")
    assert result.returncode == 0, result.stderr
    assert "40 URLs: 40 success" in result.stdout
    assert sorted(p.name for p in out.glob("*_stats.json")) == [
        f"0000{i}_stats.json" for i in range(4)]


def test_why_and_report_commands(site: LocalSite, url_list, tmp_path: Path) -> None:
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /art/\n")
    closed = site.put(0, "/art/a.jpg", make_image(40, 40))
    fine = site.put(0, "/b.jpg", make_image(40, 40))
    out = tmp_path / "o"
    assert run_cli("download", url_list([{"url": closed}, {"url": fine}]), str(out),
                   "--allow-private-networks", "--processes", "1").returncode == 0
    result = run_cli("why", closed, str(out))
    assert result.returncode == 0, result.stderr
    assert "Disallow: /art/" in result.stdout and "robots.txt" in result.stdout
    result = run_cli("why", site.url(0, "/never-listed.jpg"), str(out))
    assert result.returncode == 1
    report = tmp_path / "report.html"
    result = run_cli("report", str(out), "-o", str(report))
    assert result.returncode == 0, result.stderr
    html = report.read_text()
    assert "robots_disallowed" in html and "<script" not in html.lower()


def test_log_lines_and_errors_are_escaped_and_redacted(tmp_path: Path) -> None:
    import logging

    from consentfetch.cli import _TerminalFormatter
    record = logging.LogRecord("consentfetch.x", logging.WARNING, __file__, 1,
                               "bad entry %s", ("https://u:pw@h/\x1b[2Jx\nFORGED",), None)
    line = _TerminalFormatter("%(levelname)s %(message)s").format(record)
    assert line == "WARNING bad entry https://***@h/\\x1b[2Jx\\x0aFORGED"
    missing = f"https://u:pw-secret-9@127.0.0.1:9/\x1b[31m{tmp_path}.csv"
    result = run_cli("download", missing, str(tmp_path / "out"), "--input-format", "csv")
    assert result.returncode == 2 and "\x1b" not in result.stderr
    assert "pw-secret-9" not in result.stderr and "https://***@127.0.0.1:9/\\x1b[31m" in result.stderr


# -- rough edges a dataset builder meets (issue 15) ------------------------------------


def test_demo_refuses_a_folder_holding_a_real_run(site: LocalSite, url_list,
                                                  tmp_path: Path) -> None:
    """`consentfetch demo DIR` replaces what is in DIR: it must never take a real run."""
    url = site.put(0, "/a.jpg", make_image(40, 40))
    real = tmp_path / "real"
    assert run_cli("download", url_list([{"url": url}]), str(real), "--allow-private-networks",
                   "--processes", "1").returncode == 0
    before = sorted(p.name for p in real.iterdir())
    result = run_cli("demo", str(real))
    assert result.returncode == 2 and "not empty" in result.stderr, result.stderr
    assert sorted(p.name for p in real.iterdir()) == before
    assert json.loads((real / "run.json").read_text())["input"].endswith("urls.parquet")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    assert run_cli("demo", str(tmp_path / "notes")).returncode == 2
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_demo_runs_again_in_its_own_folder(tmp_path: Path) -> None:
    assert run_cli("demo", str(tmp_path / "d")).returncode == 0
    again = run_cli("demo", str(tmp_path / "d"))
    assert again.returncode == 0, again.stderr


def test_snake_case_flags_get_a_hint(tmp_path: Path) -> None:
    result = run_cli("download", str(tmp_path / "u.parquet"), str(tmp_path / "o"),
                     "--image_size", "256", "--resize_mode", "border")
    assert result.returncode == 2
    assert "did you mean --image-size, --resize-mode?" in result.stderr


def test_verbose_after_the_command(site: LocalSite, url_list, tmp_path: Path) -> None:
    url = site.put(0, "/a.jpg", make_image(40, 40))
    result = run_cli("download", url_list([{"url": url}]), str(tmp_path / "o"),
                     "--allow-private-networks", "--processes", "1", "-v")
    assert result.returncode == 0, result.stderr
    assert " INFO " in result.stderr


def test_download_help_shows_defaults() -> None:
    out = run_cli("download", "--help").stdout
    for default in ("(default: url)", "(default: 256)", "(default: border)",
                    "(default: 10.0)", "(default: strict)"):
        assert default in " ".join(out.split()), default


def test_all_blocked_on_private_addresses_gives_a_hint(site: LocalSite, url_list,
                                                       tmp_path: Path) -> None:
    url = site.put(0, "/a.jpg", make_image(40, 40))
    result = run_cli("download", url_list([{"url": url}]), str(tmp_path / "o"),
                     "--processes", "1")
    assert result.returncode == 0, result.stderr
    assert "blocked_address" in result.stdout and "--allow-private-networks" in result.stdout


def test_a_missing_c2pa_check_is_said_at_the_start(site: LocalSite, url_list,
                                                   tmp_path: Path) -> None:
    """Without c2pa-python the C2PA check cannot run: say so on the terminal, once."""
    url = site.put(0, "/a.jpg", make_image(40, 40))
    args = ["download", url_list([{"url": url}]), str(tmp_path / "o"),
            "--allow-private-networks", "--processes", "1"]
    code = ("import sys; sys.modules['c2pa'] = None\n"  # as if the extra were not installed
            "from consentfetch.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("consentfetch[c2pa]") == 1
    quiet = subprocess.run([sys.executable, "-c", code, *args, "--ignore", "c2pa",
                            "--overwrite"], capture_output=True, text=True, timeout=120)
    assert "consentfetch[c2pa]" not in quiet.stderr


def test_a_header_only_csv_says_the_input_is_empty(tmp_path: Path) -> None:
    src = tmp_path / "urls.csv"
    src.write_text("url,caption\n")
    result = run_cli("download", str(src), str(tmp_path / "o"))
    assert result.returncode == 0, result.stderr
    assert "0 URLs: the input holds no rows" in result.stdout


def test_the_summary_says_how_fast(site: LocalSite, url_list, tmp_path: Path) -> None:
    rows = [{"url": site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i))} for i in range(3)]
    result = run_cli("download", url_list(rows), str(tmp_path / "o"), "--allow-private-networks",
                     "--processes", "1")
    assert result.returncode == 0, result.stderr
    import re
    assert re.search(r"^in \d+ s: [0-9.]+ images/s, [0-9.]+ rows/s$", result.stdout, re.M)
