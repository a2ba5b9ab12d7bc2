"""``recheck_shards`` / ``consentfetch recheck``: consent decided again, as of now.

End to end on the local site: a run is downloaded, the site changes (robots.txt,
tdmrep.json, a noai header, an opt-out list naming a stored sample's sha256),
and the recheck must see each change, with one fetch of each origin's files,
and never read an image body.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.parquet as pq
import pytest
from multidict import CIMultiDict

from consentfetch import ConfigError, OutputError, explain_url, fetch_shards, recheck_shards
from consentfetch.audit.report import render_report
from consentfetch.cli import main
from consentfetch.recheck.decide import changed_evidence
from consentfetch.recheck.settings import recheck_settings
from consentfetch.recheck.table import recheck_file, summary_file
from consentfetch.testsite import Delivery, LocalSite, Resource, make_image, running_site

from .conftest import LOCAL

ALLOW_ALL = "User-agent: *\nAllow: /\n"
NET: dict[str, Any] = {"allow_private_networks": True}
SLOW = Delivery(piece=256, pause=0.01)  # a body that takes ~0.5 s to write


def _sample_site(site: LocalSite) -> dict[str, str]:
    """Four origins, every one allowing everything; returns {name: URL}."""
    for host in range(4):
        site.put(host, "/robots.txt", ALLOW_ALL)
    urls = {
        "a": site.put(0, "/art/a.jpg", make_image(80, 60, seed=1)),
        "b": site.put(0, "/art/b.jpg", make_image(81, 60, seed=2)),
        "c": site.put(0, "/pub/c.jpg", make_image(82, 60, seed=3)),
        "d": site.put(1, "/img/d.jpg", make_image(83, 60, seed=4)),
        "e": site.put(1, "/img/e.jpg", make_image(84, 60, seed=5)),
        "f": site.put(2, "/x/f.jpg", make_image(85, 60, seed=6)),
        "g": site.put(2, "/x/g.jpg", make_image(86, 60, seed=7)),
        "n": site.put(2, "/x/nohead.jpg", Resource(make_image(160, 120, seed=9), head=False,
                                                   delivery=SLOW)),
    }
    site.put(3, "/final/h.jpg", make_image(87, 60, seed=8))
    # h: requested on origin 0, served by origin 3 after a redirect
    urls["h"] = site.url(0, f"/fault/redirect?n=1&to={site.url(3, '/final/h.jpg')}")
    return urls


def _download(site: LocalSite, url_list: Any, out: Path) -> dict[str, dict[str, Any]]:
    urls = _sample_site(site)
    rows = [{"url": u, "caption": name} for name, u in urls.items()]
    report = fetch_shards(url_list(rows), str(out), caption_col="caption", shard_size=5,
                          **LOCAL)
    assert report.counts == {"success": len(urls)}, report.reasons
    audit = pq.read_table(out / "00000.parquet").to_pylist() + \
        pq.read_table(out / "00001.parquet").to_pylist()
    return {row["caption"]: row for row in audit}


def _change_site(site: LocalSite, audit: dict[str, dict[str, Any]], lists: Path) -> str:
    """What a month may bring; returns an opt-out list naming e's stored sha256."""
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /art/\n")
    site.put(1, "/.well-known/tdmrep.json",
             json.dumps([{"location": "/img/d.jpg", "tdm-reservation": 1}]))
    site.put(2, "/x/g.jpg", Resource(make_image(86, 60, seed=7),
                                     headers={"X-Robots-Tag": "noai"}))
    site.put(2, "/x/f.jpg", make_image(300, 200, seed=66))  # other bytes now
    site.put(3, "/robots.txt", "User-agent: *\nDisallow: /final/\n")
    lists.write_text(audit["e"]["sha256"] + "\n")
    return str(lists)


def _rows(out: Path, stamp: str) -> dict[str, dict[str, Any]]:
    table = pq.read_table(out / recheck_file(stamp))
    return {row["url"]: row for row in table.to_pylist()}


def _robots_hits(site: LocalSite) -> list[int]:
    return [site.hit_count(host, "/robots.txt") for host in range(4)]


def _image_gets(site: LocalSite) -> int:
    return sum(n for (_, path, method), n in site.methods.items()
               if method == "GET" and path.endswith(".jpg"))


def test_recheck_end_to_end(site: LocalSite, url_list: Any, tmp_path: Path) -> None:
    out = tmp_path / "run"
    audit = _download(site, url_list, out)
    run_files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    # Nothing changed: nothing withdrawn, nothing requested but the origin files.
    same = recheck_shards(str(out), **NET)
    assert same.counts == {"success": 9, "disallowed": 0, "changed": 0,
                           "failed_to_download": 0}
    assert same.hops_rechecked and same.origin_loads == 4

    lists = _change_site(site, audit, tmp_path / "optout.txt")
    robots_before, gets_before = _robots_hits(site), _image_gets(site)
    report = recheck_shards(str(out), opt_out_lists=[lists], **NET)
    # One robots.txt fetch per origin (origin 0 twice over: it has three samples
    # and the redirect's first hop), and no image requested at all.
    assert [n - m for n, m in zip(_robots_hits(site), robots_before, strict=True)] == [1] * 4
    assert _image_gets(site) == gets_before
    assert report.requests["robots.txt"] == 4 and "headers_head" not in report.requests

    rows = _rows(out, report.stamp)
    by_name = {name: rows[audit[name]["url"]] for name in audit}
    expect = {"a": ("disallowed", "robots_disallowed"), "b": ("disallowed", "robots_disallowed"),
              "c": ("success", None), "d": ("disallowed", "tdm_reserved"),
              "e": ("disallowed", "registry_opt_out"), "f": ("success", None),
              "g": ("success", None), "n": ("success", None),
              "h": ("disallowed", "robots_disallowed")}
    assert {n: (r["status"], r["reason"]) for n, r in by_name.items()} == expect
    for name, row in by_name.items():
        assert row["previous_status"] == "success" and row["key"] == audit[name]["key"]
        assert row["sha256"] == audit[name]["sha256"] and row["decided_at"] is not None
    assert by_name["a"]["evidence_rule"] == "Disallow: /art/"
    assert by_name["a"]["evidence_file"] == site.url(0, "/robots.txt")
    assert by_name["h"]["evidence_file"] == site.url(3, "/robots.txt")  # the hop's origin
    assert by_name["d"]["evidence_signal"] == "tdmrep.json"
    assert by_name["e"]["evidence_signal"] == "list" and lists in by_name["e"]["evidence"]
    assert report.counts["disallowed"] == 5 and report.reasons["robots_disallowed"] == 3

    summary = json.loads((out / summary_file(report.stamp)).read_text())
    assert summary["counts"] == report.counts and summary["hops_rechecked"] is True
    assert summary["reasons"]["disallowed"]["robots_disallowed"] == 3
    assert summary["consent_profile"] == "strict" and summary["requests"]["robots.txt"] == 4

    # --headers: one header request per sample left after the origin phase, no body.
    gets_before, nohead = _image_gets(site), site.bodies_sent[(site.hosts[2], "/x/nohead.jpg")]
    heads = recheck_shards(str(out), opt_out_lists=[lists], headers=True, **NET)
    rows = _rows(out, heads.stamp)
    by_name = {name: rows[audit[name]["url"]] for name in audit}
    assert (by_name["g"]["status"], by_name["g"]["reason"]) == ("disallowed", "x_robots_tag")
    assert by_name["g"]["evidence_rule"] == "X-Robots-Tag: noai"
    assert by_name["f"]["status"] == "changed" and "Content-Length" in by_name["f"]["evidence"]
    assert by_name["c"]["status"] == "success" and by_name["c"]["http_status"] == 200
    assert by_name["n"]["status"] == "success"  # HEAD refused: asked with GET instead
    assert heads.requests["headers_head"] == 4 and heads.requests["headers_get"] == 1
    assert _image_gets(site) == gets_before + 1  # that one GET, closed after its headers
    assert site.bodies_sent[(site.hosts[2], "/x/nohead.jpg")] == nohead

    # The run itself was never touched.
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == run_files


def test_recheck_unreachable_origin_keeps_the_sample(site: LocalSite, url_list: Any,
                                                     tmp_path: Path) -> None:
    site.put(0, "/robots.txt", ALLOW_ALL)
    site.put(1, "/robots.txt", ALLOW_ALL)
    good = site.put(0, "/a.jpg", make_image(64, 64))
    down = site.put(1, "/b.jpg", make_image(65, 64))
    out = tmp_path / "run"
    fetch_shards(url_list([{"url": good}, {"url": down}]), str(out), **LOCAL)
    site.put(1, "/robots.txt", Resource(b"busy", status=503))
    report = recheck_shards(str(out), **NET)
    rows = _rows(out, report.stamp)
    assert (rows[down]["status"], rows[down]["reason"]) == ("disallowed", "robots_unreachable")
    assert rows[good]["status"] == "success"
    assert "robots.txt could not be fetched" in report.summary["robots_unreachable_note"]


def test_tighten_allowed_loosen_refused(tmp_path: Path) -> None:
    run = {"config": {"consent": "strict", "ignore": ["ai_txt"], "user_agent_token":
                      "consentfetch", "processes": 8, "opt_out_lists": ["gone.txt"]}}
    assert recheck_settings(run).config.consent == "strict"
    tight = recheck_settings(run, consent="opt-in", ignore=[])
    assert tight.config.consent == "opt-in" and tight.config.ignore == ()
    assert recheck_settings(run).lists_missing == ("gone.txt",)
    with pytest.raises(ConfigError, match="looser than this run's profile strict"):
        recheck_settings(run, consent="standard")
    with pytest.raises(ConfigError, match="--ignore robots_txt: this run performed"):
        recheck_settings(run, ignore=["ai_txt", "robots_txt"])
    with pytest.raises(ConfigError, match="no config"):
        recheck_settings({})


def test_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="no output folder"):
        recheck_shards(str(tmp_path / "missing"))
    with pytest.raises(OutputError, match="no run.json"):
        recheck_shards(str(tmp_path))


def test_changed_rule() -> None:
    body = b"x" * 100
    digest = hashlib.sha256(body).hexdigest()
    b64 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    same = CIMultiDict({"Repr-Digest": f"sha-256=:{b64}:", "Content-Length": "5"})
    assert changed_evidence(same, digest, 100) is None  # the digest settles it
    other = CIMultiDict({"Repr-Digest": f"sha-256=:{base64.b64encode(b'1' * 32).decode()}:"})
    assert "Repr-Digest" in (changed_evidence(other, digest, 100) or "")
    assert changed_evidence(CIMultiDict({"Content-Length": "100"}), digest, 100) is None
    assert changed_evidence(CIMultiDict({"Content-Length": "99"}), digest, 100)
    gz = CIMultiDict({"Content-Length": "99", "Content-Encoding": "gzip"})
    assert changed_evidence(gz, digest, 100) is None
    assert changed_evidence(CIMultiDict({"Content-Length": "99"}), digest, None) is None


def test_remote_source_into_local_output(site: LocalSite, url_list: Any,
                                         tmp_path: Path) -> None:
    site.put(0, "/robots.txt", ALLOW_ALL)
    url = site.put(0, "/a.jpg", make_image(64, 64))
    source = f"memory://recheck-{uuid.uuid4().hex}"
    fetch_shards(url_list([{"url": url}]), source, **LOCAL)
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /\n")
    fs = fsspec.filesystem("memory")
    before = sorted(fs.find(source))
    report = recheck_shards(source, output=str(tmp_path / "r"), **NET)
    assert report.counts["disallowed"] == 1
    assert _rows(tmp_path / "r", report.stamp)[url]["reason"] == "robots_disallowed"
    assert sorted(fs.find(source)) == before  # the source was only read
    remote = f"memory://recheck-out-{uuid.uuid4().hex}"
    again = recheck_shards(source, output=remote, **NET)
    with fs.open(f"{remote}/{recheck_file(again.stamp)}", "rb") as f:
        assert pq.ParquetFile(f).read().column("reason").to_pylist() == ["robots_disallowed"]
    assert fs.exists(f"{remote}/{summary_file(again.stamp)}")
    assert not [p for p in fs.find(remote) if p.endswith(".tmp")]


def test_cli_recheck(site: LocalSite, url_list: Any, tmp_path: Path) -> None:
    site.put(0, "/robots.txt", ALLOW_ALL)
    kept = site.put(0, "/a.jpg", make_image(64, 64))
    gone = site.put(0, "/b/c.jpg", make_image(65, 64))
    out = tmp_path / "run"
    fetch_shards(url_list([{"url": kept}, {"url": gone}]), str(out), **LOCAL)
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /b/\n")
    done = subprocess.run([sys.executable, "-m", "consentfetch", "recheck", str(out),
                           "--allow-private-networks"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "withdrawn" in done.stdout and "robots_disallowed" in done.stdout
    assert "kept" in done.stdout and list((out / "rechecks").iterdir())
    missing = subprocess.run([sys.executable, "-m", "consentfetch", "recheck",
                              str(tmp_path / "nothing")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "no output folder" in missing.stderr


def test_why_audit_and_report_show_the_latest_recheck(site: LocalSite, url_list: Any,
                                                     tmp_path: Path, capsys: Any) -> None:
    site.put(0, "/robots.txt", ALLOW_ALL)
    kept = site.put(0, "/a.jpg", make_image(64, 64))
    gone = site.put(0, "/b/c.jpg", make_image(65, 64))
    out = tmp_path / "run"
    fetch_shards(url_list([{"url": kept}, {"url": gone}]), str(out), **LOCAL)
    assert "recheck" not in explain_url(str(out), gone)[0]  # none yet
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /b/\n")
    report = recheck_shards(str(out), **NET)

    (row,) = explain_url(str(out), gone)
    assert row["recheck"]["status"] == "disallowed"
    assert row["recheck"]["reason"] == "robots_disallowed"
    text = row["explanation"]
    assert "; on 20" in text and " the site opted out: " in text and "Disallow: /b/" in text
    assert text.index("Downloaded on") < text.index("the site opted out")
    assert "consent still held" in explain_url(str(out), kept)[0]["explanation"]

    assert main(["audit", str(out)]) == 0
    shown = capsys.readouterr().out
    assert f"latest recheck {report.stamp}: 1 kept, 1 withdrawn (robots_disallowed 1)" in shown
    page = render_report(str(out))
    assert "Consent checked again: the latest recheck" in page
    assert "robots_disallowed 1" in page


def test_origin_gone_keeps_the_sample_unchecked(url_list: Any, tmp_path: Path) -> None:
    """A site that cannot be reached now said nothing new: failed_to_download, kept."""
    out = tmp_path / "run"
    with running_site(("127.0.0.6",)) as site:
        site.put(0, "/robots.txt", ALLOW_ALL)
        url = site.put(0, "/a.jpg", make_image(64, 64))
        fetch_shards(url_list([{"url": url}]), str(out), **LOCAL)
    report = recheck_shards(str(out), **NET)  # the site is gone: connection refused
    row = _rows(out, report.stamp)[url]
    assert (row["status"], row["reason"]) == ("failed_to_download", "connection_error")
    assert report.withdrawn == 0 and report.counts["failed_to_download"] == 1


def test_the_runs_own_list_is_read_as_it_is_now(site: LocalSite, url_list: Any,
                                                tmp_path: Path) -> None:
    site.put(0, "/robots.txt", ALLOW_ALL)
    url = site.put(0, "/a.jpg", make_image(64, 64))
    lists = tmp_path / "optout.txt"
    lists.write_text("https://elsewhere.example/x.jpg\n")
    out = tmp_path / "run"
    fetch_shards(url_list([{"url": url}]), str(out), opt_out_lists=[str(lists)], **LOCAL)
    lists.write_text("https://elsewhere.example/x.jpg\n" + url + "\n# added later\n")
    report = recheck_shards(str(out), **NET)
    row = _rows(out, report.stamp)[url]
    assert (row["status"], row["reason"]) == ("disallowed", "registry_opt_out")
    assert report.summary["opt_out_lists"] == [str(lists)]


def _members(tar_paths: list[Path]) -> dict[str, bytes]:
    import tarfile
    members: dict[str, bytes] = {}
    for path in tar_paths:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member)
                assert data is not None
                members[member.name] = data.read()
    return members


def test_cli_recheck_apply_end_to_end(site: LocalSite, url_list: Any, tmp_path: Path) -> None:
    """The monthly routine of README: recheck --apply in place, then a filtered copy
    with --output; withdrawn samples gone, every other member byte-identical."""
    import webdataset as wds

    site.put(0, "/robots.txt", ALLOW_ALL)
    urls = [site.put(0, f"/{d}/{i}.jpg", make_image(64 + i, 64, seed=i))
            for d in ("keep", "gone") for i in range(3)]
    out = tmp_path / "run"
    fetch_shards(url_list([{"url": u} for u in urls]), str(out), shard_size=4, **LOCAL)
    before = _members(sorted(out.glob("*.tar")))
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /gone/\n")
    copy = tmp_path / "published"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "consentfetch", "recheck", *args,
                               "--allow-private-networks"], capture_output=True, text=True,
                              timeout=120)

    filtered = cli(str(out), "--apply", "--output", str(copy))
    assert filtered.returncode == 0, filtered.stderr
    assert "3 sample(s) withdrawn" in filtered.stdout
    assert _members(sorted(out.glob("*.tar"))) == before  # the source untouched
    done = cli(str(out), "--apply")
    assert done.returncode == 0, done.stderr
    assert "3 sample(s) withdrawn" in done.stdout and "robots_disallowed" in done.stdout

    for folder in (out, copy):
        after = _members(sorted(folder.glob("*.tar")))
        kept = {name: data for name, data in before.items()
                if json.loads(before[name.split(".")[0] + ".json"])["url"] in urls[:3]}
        assert after == kept  # same names (keys), same bytes, nothing else
        samples = list(wds.WebDataset([str(p) for p in sorted(folder.glob("*.tar"))],
                                      shardshuffle=False))
        assert sorted(json.loads(s["json"])["url"] for s in samples) == urls[:3]
        audit = pq.read_table(folder / "00000.parquet").to_pylist() + \
            pq.read_table(folder / "00001.parquet").to_pylist()
        assert len(audit) == 6
        gone = [r for r in audit if "/gone/" in r["url"]]
        assert {(r["status"], r["reason"]) for r in gone} == {("disallowed", "robots_disallowed")}
        assert all(r["withdrawn_at"] is not None for r in gone)
        run = json.loads((folder / "run.json").read_text())
        assert run["consent_checked_as_of"] and len(run["rechecks"]) == 1

    again = cli(str(out), "--apply", "latest")
    assert again.returncode == 0 and "already applied" in again.stdout
    why = subprocess.run([sys.executable, "-m", "consentfetch", "why", urls[3], str(out)],
                         capture_output=True, text=True, timeout=60)
    assert why.returncode == 0, why.stderr
    assert "Withdrawn from the dataset on" in why.stdout and "opted out" in why.stdout
    assert "Disallow: /gone/" in why.stdout and "never requested" not in why.stdout


def test_overwrite_removes_the_rechecks_of_the_run_it_replaces(site: LocalSite, url_list: Any,
                                                                 tmp_path: Path) -> None:
    """A recheck names samples by key; a new run reuses the keys, so an old recheck
    left behind would be shown by `why` for samples it never saw."""
    site.put(0, "/robots.txt", ALLOW_ALL)
    url = site.put(0, "/a.jpg", make_image(64, 64))
    out = tmp_path / "run"
    fetch_shards(url_list([{"url": url}]), str(out), **LOCAL)
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /\n")
    recheck_shards(str(out), **NET)
    assert (out / "rechecks").is_dir()
    site.put(0, "/robots.txt", ALLOW_ALL)
    fetch_shards(url_list([{"url": url}]), str(out), overwrite=True, **LOCAL)
    assert not (out / "rechecks").exists()
    assert "recheck" not in explain_url(str(out), url)[0]
