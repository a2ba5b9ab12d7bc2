"""fetch_shards() end to end against the local site; shards read back with webdataset."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from consentfetch import ConfigError, InputError, fetch_shards, read_audit
from consentfetch.net.client import Fetched
from consentfetch.pipeline import _Shard
from consentfetch.testsite import LocalSite, Resource, make_image
from consentfetch.writer import RowResult

from .conftest import LOCAL, with_local


def _by_url(table) -> dict[str, dict]:
    return {row["url"]: row for row in table.to_pylist()}


def test_every_row_audited_and_shards_match(site: LocalSite, url_list, tmp_path: Path) -> None:
    """The issue's acceptance run: 2,000 URLs, opt-outs on several origins."""
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /private/\n")
    site.put(1, "/robots.txt", "User-agent: consentfetch\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
    site.put(2, "/robots.txt", Resource(b"", status=404))
    site.put(3, "/robots.txt", Resource(b"down", status=503))
    bodies = [make_image(120 + 7 * i, 90 + 5 * i, seed=i) for i in range(8)]
    rows, expected = [], {}
    for i in range(2000):
        host = i % 4
        want: tuple[str, str | None]
        if host == 0 and i % 3 == 0:
            path, want = f"/private/{i}.jpg", ("disallowed", "robots_disallowed")
        elif host == 2 and i % 5 == 0:
            path, want = f"/noai/{i}.jpg", ("disallowed", "x_robots_tag")
            site.put(host, path, Resource(bodies[i % 8], headers={"X-Robots-Tag": "noai"}))
        elif host == 2 and i % 7 == 0:
            path, want = f"/gone/{i}.jpg", ("failed_to_download", "http_error")
        elif host == 1:
            path, want = f"/img/{i}.jpg", ("disallowed", "robots_disallowed")
        elif host == 3:
            path, want = f"/img/{i}.jpg", ("disallowed", "robots_unreachable")
        else:
            path, want = f"/img/{i}.jpg", ("success", None)
        if want[1] not in ("x_robots_tag", "http_error"):
            site.put(host, path, bodies[i % 8])
        url = site.url(host, path)
        rows.append({"url": url, "caption": f"caption {i}", "idx": i})
        expected[url] = want

    out = tmp_path / "out"
    report = fetch_shards(url_list(rows), str(out), caption_col="caption",
                          save_additional_columns=["idx"], shard_size=500, concurrency=32,
                          **with_local({ "processes": 2}))

    audit = read_audit(str(out))
    assert audit.num_rows == 2000
    got = _by_url(audit)
    assert len(got) == 2000
    for url, (status, reason) in expected.items():
        assert (got[url]["status"], got[url]["reason"]) == (status, reason), url
        if status == "disallowed":
            assert got[url]["evidence"], url
    successes = sum(1 for s, _ in expected.values() if s == "success")
    assert report.counts["success"] == successes
    assert report.total == 2000 and report.shards_written == 4

    samples = list(wds.WebDataset(sorted(str(p) for p in out.glob("*.tar")), shardshuffle=False)
                   .decode("pil"))
    assert len(samples) == successes
    for sample in samples:
        meta = sample["json"]
        assert meta["key"] == sample["__key__"]
        assert meta["status"] == "success"
        assert sample["txt"] == meta["caption"] == f"caption {meta['idx']}"
        assert sample["jpg"].size == (256, 256)
    # robots.txt was fetched once per origin per worker process, never per URL.
    for host in range(4):
        assert 1 <= site.hit_count(host, "/robots.txt") <= 2


def test_audit_columns_and_keys(site: LocalSite, url_list, tmp_path: Path) -> None:
    url = site.put(0, "/a.jpg", make_image(400, 200))
    rows = [{"url": url, "caption": "a", "extra": 1.5}, {"url": "not a url", "caption": "b",
                                                           "extra": 2.5}]
    fetch_shards(url_list(rows), str(tmp_path / "o"), caption_col="caption",
                 save_additional_columns="extra", **LOCAL)
    table = pq.read_table(tmp_path / "o" / "00000.parquet")
    assert table.column_names == [
        "key", "url", "caption", "extra", "status", "reason", "evidence", "http_status",
        "width", "height", "original_width", "original_height", "sha256", "decided_at",
        "consent_profile", "ignored_checks", "evidence_signal", "evidence_file",
        "evidence_file_sha256", "evidence_fetched_at", "evidence_line", "evidence_rule",
        "evidence_agent", "redirects", "body_size"]
    first, second = table.to_pylist()
    assert first["key"] == "000000000" and second["key"] == "000000001"
    assert (first["status"], first["width"], first["original_width"]) == ("success", 256, 400)
    assert first["http_status"] == 200 and len(first["sha256"]) == 64
    assert first["extra"] == 1.5
    assert (second["status"], second["reason"]) == ("failed_to_download", "invalid_url")
    assert str(table.schema.field("decided_at").type) == "timestamp[us, tz=UTC]"
    stats = json.loads((tmp_path / "o" / "00000_stats.json").read_text())
    assert stats["count"] == 2 and stats["successes"] == 1
    run = json.loads((tmp_path / "o" / "run.json").read_text())
    assert run["state"] == "complete" and run["consent_profile"] == "strict"
    assert run["user_agent"].startswith("consentfetch/")
    origins = pq.read_table(tmp_path / "o" / "origins.parquet").to_pylist()
    assert sorted((o["kind"], o["outcome"], o["http_status"]) for o in origins) == [
        ("ai.txt", "absent", 404), ("robots.txt", "absent", 404), ("tdmrep.json", "absent", 404)]


def test_honest_user_agent(site: LocalSite, url_list, tmp_path: Path) -> None:
    url = site.put(0, "/a.jpg", make_image(50, 50))
    fetch_shards(url_list([{"url": url}]), str(tmp_path / "o"), user_agent_token="mybot",
                 contact="mailto:data@example.org", **LOCAL)
    (ua,) = {u for u in site.user_agents if u}
    assert ua.startswith("mybot/") and "(+mailto:data@example.org)" in ua
    assert "Mozilla" not in ua


def test_tar_members_and_no_tmp_left(site: LocalSite, url_list, tmp_path: Path) -> None:
    urls = [site.put(0, f"/{i}.png", make_image(64, 48, "png", seed=i)) for i in range(3)]
    out = tmp_path / "o"
    fetch_shards(url_list([{"url": u} for u in urls]), str(out), encode_format="png",
                 encode_quality=6, resize_mode="no", **LOCAL)
    with tarfile.open(out / "00000.tar") as tar:
        names = sorted(tar.getnames())
        assert names == sorted(f"00000000{i}.{ext}" for i in range(3) for ext in ("png", "json"))
        image = Image.open(io.BytesIO(tar.extractfile("000000001.png").read()))
        assert image.format == "PNG" and image.size == (64, 48)
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "txt", "csv.gz"])
def test_text_input_formats(site: LocalSite, tmp_path: Path, fmt: str) -> None:
    import gzip
    urls = [site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i)) for i in range(3)]
    if fmt.startswith("csv"):
        text = "url,caption\n" + "".join(f"{u},cap {i}\n" for i, u in enumerate(urls))
    elif fmt == "tsv":
        text = "url\tcaption\n" + "".join(f"{u}\tcap {i}\n" for i, u in enumerate(urls))
    elif fmt == "jsonl":
        text = "".join(json.dumps({"url": u, "caption": f"cap {i}"}) + "\n"
                       for i, u in enumerate(urls))
    else:
        text = "".join(u + "\n" for u in urls)
    path = tmp_path / f"urls.{fmt}"
    path.write_bytes(gzip.compress(text.encode()) if fmt.endswith(".gz") else text.encode())
    caption = None if fmt == "txt" else "caption"
    report = fetch_shards(str(path), str(tmp_path / "o"), caption_col=caption, **LOCAL)
    assert report.counts == {"success": 3}


def test_bad_options_and_input_raise(tmp_path: Path, url_list) -> None:
    with pytest.raises(ConfigError, match="resize-mode"):
        fetch_shards(url_list([{"url": "http://x/"}]), str(tmp_path / "o"), resize_mode="zoom")
    with pytest.raises(ConfigError, match="unknown option"):
        fetch_shards(url_list([{"url": "http://x/"}]), str(tmp_path / "o"),
                     imagesize=3)  # type: ignore[call-arg]  # the misspelling under test
    with pytest.raises(InputError):
        fetch_shards(str(tmp_path / "missing.parquet"), str(tmp_path / "o"))
    with pytest.raises(InputError, match="link"):
        fetch_shards(url_list([{"url": "http://x/"}]), str(tmp_path / "o"), url_col="link")
    with pytest.raises(ConfigError, match="status"):
        fetch_shards(url_list([{"url": "http://x/", "status": 1}]), str(tmp_path / "o"),
                     save_additional_columns=["status"])


def test_resume_keeps_complete_shards(site: LocalSite, url_list, tmp_path: Path) -> None:
    urls = [site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i)) for i in range(6)]
    path = url_list([{"url": u} for u in urls])
    out = tmp_path / "o"
    fetch_shards(path, str(out), shard_size=2, **LOCAL)
    (out / "00001_stats.json").unlink()  # as if the run died while finishing shard 1
    (out / "00002.tar.tmp").write_bytes(b"half a tar")
    before = site.hit_count(0, "/0.jpg")
    report = fetch_shards(path, str(out), shard_size=2, **LOCAL)
    assert (report.shards_written, report.shards_skipped) == (1, 2)
    assert report.leftovers_removed == ["00002.tar.tmp"]
    assert site.hit_count(0, "/0.jpg") == before  # shard 0 was not fetched again
    assert read_audit(str(out)).num_rows == 6


def test_fsspec_output_and_input(site: LocalSite, tmp_path: Path) -> None:
    """Input and output through fsspec URLs (memory:// stands in for s3:// here)."""
    import fsspec
    import pyarrow as pa
    url = site.put(0, "/a.jpg", make_image(90, 60))
    with fsspec.open("memory://in/urls.parquet", "wb") as f:
        pq.write_table(pa.Table.from_pylist([{"url": url}, {"url": "nope"}]), f)
    report = fetch_shards("memory://in/urls.parquet", "memory://out", **LOCAL)
    assert report.counts == {"failed_to_download": 1, "success": 1}
    fs = fsspec.filesystem("memory")
    assert {p.rsplit("/", 1)[-1] for p in fs.ls("/out", detail=False)} >= {
        "00000.tar", "00000.parquet", "00000_stats.json", "run.json", "origins.parquet"}
    assert read_audit("memory://out").num_rows == 2
    fs.rm("/out", recursive=True)
    fs.rm("/in", recursive=True)


def test_empty_input_says_so(tmp_path: Path, caplog) -> None:
    import logging

    import pyarrow as pa
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"url": pa.array([], pa.string())}), empty)
    with caplog.at_level(logging.WARNING, logger="consentfetch.run"):
        report = fetch_shards(str(empty), str(tmp_path / "o"), **LOCAL)
    assert report.total == 0 and report.shards_written == 0
    assert "holds no rows" in caplog.text


def test_decode_budget_refusal_is_an_audit_row(site: LocalSite, url_list, tmp_path: Path) -> None:
    small = site.put(0, "/small.png", make_image(40, 30, "png"))
    big = site.put(0, "/big.png", make_image(900, 700, "png", seed=1))
    out = tmp_path / "o"
    fetch_shards(url_list([{"url": small}, {"url": big}]), str(out),
                 max_decoded_bytes=3_000_000, **LOCAL)
    rows = _by_url(read_audit(str(out)))
    assert rows[small]["status"] == "success"
    assert (rows[big]["status"], rows[big]["reason"]) == ("failed_to_resize", "image_too_large")
    assert rows[big]["evidence"].startswith("image 900x700 needs ")
    assert rows[big]["evidence"].endswith(" bytes decoded, more than --max-decoded-bytes 3000000")


def test_one_decode_budget_per_process() -> None:
    from consentfetch.workercache import process_cache
    budget = process_cache().decode_budget(5_000_000)
    assert process_cache().decode_budget(5_000_000) is budget
    assert budget.limit == 5_000_000
    assert process_cache().decode_budget(6_000_000).limit == 6_000_000


def test_csv_caption_over_the_field_limit_is_one_audit_row(site: LocalSite,
                                                          tmp_path: Path) -> None:
    """3 input rows, 3 audit rows: a 200,000-character caption holding newlines
    and URLs is never read as more rows, and its URLs are never requested."""
    first = site.put(0, "/first.jpg", make_image(40, 40))
    last = site.put(0, "/last.jpg", make_image(40, 40))
    inside = site.put(1, "/inside.jpg", make_image(40, 40))
    line = f"\n{inside},a caption line {'x' * 60}"
    caption = (line * (200_000 // len(line) + 1))[:200_000]
    path = tmp_path / "urls.csv"
    path.write_text(f'url,caption\n{first},one\n{inside},"{caption}"\n{last},three\n')
    fetch_shards(str(path), str(tmp_path / "out"), caption_col="caption", **LOCAL)
    audit = read_audit(str(tmp_path / "out"))
    assert audit.num_rows == 3
    rows = audit.sort_by("key").to_pylist()
    assert [r["status"] for r in rows] == ["success", "failed_to_download", "success"]
    assert rows[1]["reason"] == "invalid_url"
    assert "line 3: malformed CSV record: field larger than field limit" in rows[1]["evidence"]
    assert site.hit_count(1, "/inside.jpg") == 0


def test_stats_carry_img2datasets_keys(site: LocalSite, url_list, tmp_path: Path) -> None:
    """Scripts written for img2dataset read successes, failed_to_download,
    failed_to_resize and status_dict from every _stats.json."""
    import json
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /private/\n")
    rows = [{"url": site.put(0, "/a.jpg", make_image(40, 40))},
            {"url": site.put(0, "/private/b.jpg", make_image(40, 40))},
            {"url": site.url(0, "/missing.jpg")},
            {"url": site.put(0, "/c.jpg", b"not an image")}]
    fetch_shards(url_list(rows), str(tmp_path / "o"), **LOCAL)
    stats = json.loads((tmp_path / "o" / "00000_stats.json").read_text())
    assert (stats["count"], stats["successes"], stats["failed_to_download"],
            stats["failed_to_resize"]) == (4, 1, 1, 1)
    assert stats["status_dict"] == {"success": 1, "robots_disallowed": 1, "http_error": 1,
                                    "decode_error": 1}


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_verify_hash(site: LocalSite, url_list, tmp_path: Path, algorithm: str) -> None:
    """DataComp ships a digest per URL: a body with another digest is hash_mismatch, its
    bytes not kept; a row without a digest is not checked."""
    import hashlib
    same, changed = make_image(40, 40, seed=1), make_image(40, 40, seed=2)
    digest = getattr(hashlib, algorithm)
    rows = [{"url": site.put(0, "/same.jpg", same), "h": digest(same).hexdigest().upper()},
            {"url": site.put(0, "/changed.jpg", changed), "h": digest(same).hexdigest()},
            {"url": site.put(0, "/none.jpg", changed), "h": None}]
    spec = "h" if algorithm == "sha256" else "h,md5"
    fetch_shards(url_list(rows), str(tmp_path / "o"), verify_hash=spec, **LOCAL)
    audit = _by_url(read_audit(str(tmp_path / "o")))
    assert audit[rows[0]["url"]]["status"] == "success"
    bad = audit[rows[1]["url"]]
    assert (bad["status"], bad["reason"]) == ("failed_to_download", "hash_mismatch")
    assert digest(changed).hexdigest() in bad["evidence"] and rows[1]["h"] in bad["evidence"]
    assert audit[rows[2]["url"]]["status"] == "success"
    import webdataset as wds
    kept = list(wds.WebDataset(str(tmp_path / "o" / "00000.tar"), shardshuffle=False))
    assert len(kept) == 2


def test_verify_hash_is_validated() -> None:
    from consentfetch import ConfigError, make_config
    assert make_config(verify_hash="sha").hash_column == "sha"
    assert make_config(verify_hash="h, MD5").hash_algorithm == "md5"
    with pytest.raises(ConfigError, match="--verify-hash"):
        make_config(verify_hash="h,crc32")


def test_skip_reencode_keeps_what_the_site_served(site: LocalSite, url_list,
                                                  tmp_path: Path) -> None:
    """--resize-mode no re-encoded every image, so the audit's sha256 never matched the
    tar member; with --skip-reencode the tar holds the bytes served, where nothing but
    the encoding would change (img2dataset's skip_reencode)."""
    import hashlib
    import io

    import webdataset as wds
    from PIL import Image

    jpeg = make_image(120, 90, seed=3)
    png = make_image(120, 90, "png", seed=4)
    turned = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90°
    Image.open(io.BytesIO(jpeg)).save(turned, "JPEG", exif=exif)
    rows = [{"url": site.put(0, "/a.jpg", jpeg)}, {"url": site.put(0, "/b.png", png)},
            {"url": site.put(0, "/c.jpg", turned.getvalue())}]
    fetch_shards(url_list(rows), str(tmp_path / "o"), resize_mode="no", skip_reencode=True,
                 **LOCAL)
    audit = {r["key"]: r for r in read_audit(str(tmp_path / "o")).to_pylist()}
    samples = {s["__key__"]: s["jpg"] for s in
               wds.WebDataset(str(tmp_path / "o" / "00000.tar"), shardshuffle=False)}
    kept = {key: hashlib.sha256(data).hexdigest() == audit[key]["sha256"]
            for key, data in samples.items()}
    assert kept == {"000000000": True, "000000001": False, "000000002": False}
    assert samples["000000000"] == jpeg
    assert (audit["000000002"]["width"], audit["000000002"]["height"]) == (90, 120)
    fetch_shards(url_list(rows), str(tmp_path / "p"), resize_mode="no", **LOCAL)
    plain = next(iter(wds.WebDataset(str(tmp_path / "p" / "00000.tar"), shardshuffle=False)))
    assert plain["jpg"] != jpeg  # without the flag, every image is re-encoded, as before


def test_bbox_col_blurs_before_encoding(site: LocalSite, url_list, tmp_path: Path) -> None:
    """DataComp blurs faces from boxes shipped in its parquet ([x0, y0, x1, y1],
    relative): blurred before encoding, the sample .json says how many."""
    import io
    import json

    import webdataset as wds
    from PIL import Image, ImageChops, ImageStat

    sharp = Image.new("RGB", (200, 100), "white")
    for x in range(0, 200, 4):  # stripes: blurring flattens them
        sharp.paste((0, 0, 0), (x, 0, x + 2, 100))
    buf = io.BytesIO()
    sharp.save(buf, "PNG")
    url = site.put(0, "/face.png", buf.getvalue())
    rows = [{"url": url, "boxes": [[0.0, 0.0, 0.5, 1.0]]},
            {"url": site.put(0, "/none.png", buf.getvalue()), "boxes": None},
            {"url": site.put(0, "/bad.png", buf.getvalue()), "boxes": [[0.1, 0.2]]}]
    fetch_shards(url_list(rows), str(tmp_path / "o"), bbox_col="boxes", resize_mode="no",
                 encode_format="png", **LOCAL)
    samples = {s["__key__"]: s for s in
               wds.WebDataset(str(tmp_path / "o" / "00000.tar"), shardshuffle=False)}
    out = Image.open(io.BytesIO(samples["000000000"]["png"])).convert("L")
    left, right = out.crop((10, 10, 90, 90)), out.crop((110, 10, 190, 90))
    assert ImageStat.Stat(left).stddev[0] < ImageStat.Stat(right).stddev[0] / 3
    assert json.loads(samples["000000000"]["json"])["blurred_boxes"] == 1
    assert json.loads(samples["000000001"]["json"])["blurred_boxes"] == 0
    untouched = Image.open(io.BytesIO(samples["000000001"]["png"])).convert("RGB")
    assert ImageChops.difference(untouched, sharp).getbbox() is None
    bad = {r["key"]: r for r in read_audit(str(tmp_path / "o")).to_pylist()}["000000002"]
    assert bad["reason"] == "invalid_url" and "--bbox-col boxes" in bad["evidence"]
    assert site.hit_count(0, "/bad.png") == 0  # faces we cannot blur are never fetched


@pytest.mark.parametrize(("value", "expected"), [
    (None, ()), ([], ()), ("", ()), ("[[0, 0.5, 1, 1]]", ((0.0, 0.5, 1.0, 1.0),)),
    ([[0.1, 0.2, 0.3, 0.4], (0, 0, 1, 1)], ((0.1, 0.2, 0.3, 0.4), (0.0, 0.0, 1.0, 1.0))),
])
def test_to_boxes(value, expected) -> None:
    from consentfetch.reader import to_boxes
    assert to_boxes(value) == expected


@pytest.mark.parametrize("value", ["[[1, 2, 3]]", "nonsense", [[0, 0, 1, "x"]],
                                   [[0, 0, 1, float("nan")]], 7, [5]])
def test_to_boxes_refuses(value) -> None:
    from consentfetch.reader import to_boxes
    with pytest.raises(ValueError):
        to_boxes(value)


def test_audit_records_redirects_and_body_size(site: LocalSite, url_list,
                                                tmp_path: Path) -> None:
    """What a recheck needs to ask again: every origin the body came through, its size."""
    body = make_image(120, 90)
    site.put(1, "/final.jpg", body)
    direct = site.put(0, "/direct.jpg", body)
    hop = site.url(0, f"/fault/redirect?n=2&to={site.url(1, '/final.jpg')}")
    fetch_shards(url_list([{"url": direct}, {"url": hop}]), str(tmp_path / "o"), **LOCAL)
    first, second = pq.read_table(tmp_path / "o" / "00000.parquet").to_pylist()
    assert first["redirects"] is None and first["body_size"] == len(body)
    assert second["status"] == "success" and second["body_size"] == len(body)
    assert second["redirects"] == [
        site.url(0, f"/fault/redirect?n=1&delay=0.0&to={site.url(1, '/final.jpg')}"),
        site.url(1, "/final.jpg")]


def test_a_hosts_next_row_is_requested_while_an_image_is_decoded(
        site: LocalSite, url_list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host's turn ends with its requests, not with the image work after them:
    with one request per host, its second row goes out while the first is decoded."""
    urls = [site.put(0, f"/{i}.jpg", make_image(32, 32, seed=i)) for i in range(2)]
    inspect = _Shard._inspect
    overlapped: list[bool] = []

    def slow_inspect(self: _Shard, fetched: Fetched, *args: Any, **kwargs: Any) -> RowResult:
        if fetched.url.path == "/0.jpg":  # hold the first image until the second is asked
            deadline = time.monotonic() + 5.0
            while not site.hit_count(0, "/1.jpg") and time.monotonic() < deadline:
                time.sleep(0.01)
            overlapped.append(site.hit_count(0, "/1.jpg") > 0)
        return inspect(self, fetched, *args, **kwargs)

    monkeypatch.setattr(_Shard, "_inspect", slow_inspect)
    fetch_shards(url_list([{"url": u} for u in urls]), str(tmp_path / "o"),
                 **with_local({"per_host_concurrency": 1}))
    assert overlapped == [True]
    assert [r["status"] for r in read_audit(str(tmp_path / "o")).to_pylist()] == ["success"] * 2
