"""An output folder as img2dataset 1.47.0 writes it, built without img2dataset.

Its shard parquet has the input columns (url, caption) and then key, status,
error_message, width, height, original_width, original_height, exif and sha256;
its stats file has count, successes, failed_to_download, failed_to_resize,
duration, start_time, end_time and status_dict; there is no run.json.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# (url, status, error_message), as img2dataset words them.
ROWS = (
    ("https://a.example/ok.jpg", "success", None),
    ("https://a.example/gone.jpg", "failed_to_download", "HTTP Error 404: Not Found"),
    ("https://b.example/slow.jpg", "failed_to_download", "The read operation timed out"),
    ("https://c.example/x.jpg", "failed_to_download",
     "<urlopen error [Errno -2] Name or service not known>"),
    ("https://a.example/tiny.jpg", "failed_to_resize", "image too small"),
    ("https://a.example/odd.jpg", "failed_to_download", "something nobody foresaw"),
)
SCHEMA = pa.schema([
    ("url", pa.string()), ("caption", pa.string()), ("key", pa.string()),
    ("status", pa.string()), ("error_message", pa.string()), ("width", pa.int32()),
    ("height", pa.int32()), ("original_width", pa.int32()), ("original_height", pa.int32()),
    ("exif", pa.string()), ("sha256", pa.string()),
])


def write_img2dataset_folder(folder: Path) -> Path:
    """Write one img2dataset shard (00000.tar, .parquet, _stats.json) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (url, status, error) in enumerate(ROWS):
        ok = status == "success"
        rows.append({"url": url, "caption": f"caption {i}", "key": f"{i:09d}", "status": status,
                     "error_message": error, "width": 256 if ok else None,
                     "height": 256 if ok else None, "original_width": 512 if ok else None,
                     "original_height": 512 if ok else None, "exif": "{}" if ok else None,
                     "sha256": "ab" * 32 if ok else None})
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), folder / "00000.parquet")
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for row in rows[:1]:
            for ext, data in (("jpg", b"\xff\xd8fake"), ("txt", row["caption"].encode()),
                              ("json", json.dumps(row).encode())):
                info = tarfile.TarInfo(f"{row['key']}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    failures = [r for r in rows if r["error_message"]]
    status_dict: dict[str, int] = {"success": 1}
    for r in failures:
        message = str(r["error_message"])
        status_dict[message] = status_dict.get(message, 0) + 1
    (folder / "00000_stats.json").write_text(json.dumps({
        "count": len(rows), "successes": 1,
        "failed_to_download": sum(r["status"] == "failed_to_download" for r in rows),
        "failed_to_resize": sum(r["status"] == "failed_to_resize" for r in rows),
        "duration": 1.5, "start_time": 1700000000.0, "end_time": 1700000001.5,
        "status_dict": status_dict}, indent=4))
    return folder
