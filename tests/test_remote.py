"""Input, output and opt-out lists on S3, against a local S3-compatible server.

moto's server runs on 127.0.0.1 (a free port) in this process; s3fs reaches it
through ``storage_options`` (endpoint_url, dummy key and secret). On an object
store a rename is a copy, so shard files are uploaded under their final names,
stats last; a resumed run removes shards without a consistent stats file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentfetch import fetch_shards, read_audit
from consentfetch.testsite import LocalSite, make_image

from .conftest import LOCAL
from .test_resume import check_invariants

BUCKET = "consentfetch-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """storage_options for a moto S3 server on 127.0.0.1, with a fresh bucket."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                 "region_name": "us-east-1"}}
    with pytest.MonkeyPatch.context() as mp:
        # Never ask an instance-metadata service for credentials or a region.
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        import boto3  # comes with moto
        boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                     aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        yield options
    server.stop()


def _fs(options: dict[str, Any]) -> Any:
    import s3fs
    fs = s3fs.S3FileSystem(**options)
    fs.invalidate_cache()
    return fs


def _put_parquet(fs: Any, path: str, rows: list[dict[str, Any]]) -> None:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    fs.pipe_file(path, sink.getvalue())


def _local_copy(fs: Any, prefix: str, dest: Path) -> Path:
    dest.mkdir()
    for key in fs.find(prefix):  # origins.parquet is a folder of parts
        target = dest / key.removeprefix(prefix).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(key, str(target))
    return dest


def test_s3_input_output_and_resume(s3: dict[str, Any], site: LocalSite,
                                    tmp_path: Path) -> None:
    fs = _fs(s3)
    rows = [{"url": site.put(i % 2, f"/{i}.jpg", make_image(40, 40, seed=i)), "caption": f"c{i}"}
            for i in range(9)]
    refused = rows[4]["url"]
    _put_parquet(fs, f"{BUCKET}/in/urls.parquet", rows)
    fs.pipe_file(f"{BUCKET}/lists/optout.txt", f"{refused}\n".encode())
    source, out = f"s3://{BUCKET}/in/urls.parquet", f"s3://{BUCKET}/out"
    options: dict[str, Any] = {**LOCAL, "shard_size": 3, "caption_col": "caption",
               "opt_out_lists": [f"s3://{BUCKET}/lists/optout.txt"]}

    report = fetch_shards(source, out, storage_options=s3, **options)
    assert report.counts == {"disallowed": 1, "success": 8}
    names = sorted(k.rsplit("/", 1)[-1] for k in fs.ls(f"{BUCKET}/out", detail=False))
    assert names == sorted(["origins.parquet", "run.json"] + [
        f"0000{i}{suffix}" for i in range(3) for suffix in (".tar", ".parquet", "_stats.json")])
    audit = read_audit(out, storage_options=s3).to_pylist()
    assert len(audit) == 9
    assert {r["url"]: r["reason"] for r in audit}[refused] == "registry_opt_out"
    check_invariants(_local_copy(fs, f"{BUCKET}/out", tmp_path / "first"), 9)
    stats = json.loads(fs.cat_file(f"{BUCKET}/out/00001_stats.json"))
    assert stats["bytes"]["tar"] == fs.size(f"{BUCKET}/out/00001.tar")

    # A crash mid-upload: shard 1 has a tar (and parquet) but no stats; shard 2's
    # tar is not the one its stats describe. The resume redoes both, and only them.
    fs.rm(f"{BUCKET}/out/00001_stats.json")
    fs.pipe_file(f"{BUCKET}/out/00001.tar", b"partial")
    fs.pipe_file(f"{BUCKET}/out/00002.tar", b"\0" * 1024)
    hits_before = [site.hit_count(i % 2, f"/{i}.jpg") for i in range(9)]
    again = fetch_shards(source, out, storage_options=s3, **options)
    assert (again.shards_written, again.shards_skipped) == (2, 1)
    assert again.counts == {"disallowed": 1, "success": 8}
    hits_after = [site.hit_count(i % 2, f"/{i}.jpg") for i in range(9)]
    assert [a - b for a, b in zip(hits_after, hits_before, strict=False)] == [0, 0, 0, 1, 0, 1, 1, 1, 1]
    check_invariants(_local_copy(fs, f"{BUCKET}/out", tmp_path / "second"), 9)
    run = json.loads(fs.cat_file(f"{BUCKET}/out/run.json"))
    assert run["state"] == "complete" and run["output"] == out
