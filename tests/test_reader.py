"""Tests of consentfetch.reader: formats, shards, keys, malformed input, memory."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import tracemalloc
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentfetch import reader
from consentfetch.errors import ConfigError, ConsentFetchError, InputError
from consentfetch.layout import compute_key, shard_name
from consentfetch.reader import (
    FORMATS,
    InputRow,
    InputSource,
    ShardInput,
    detect_format,
)

# ---------------------------------------------------------------- helpers


@pytest.fixture
def mem() -> Iterator[str]:
    """A fresh memory:// folder, removed afterwards."""
    root = f"memory://reader-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


def write_bytes(path: str | Path, data: bytes) -> str:
    """Write ``data`` to a local path or fsspec URL, compressing by suffix."""
    with fsspec.open(str(path), "wb", compression="infer") as f:
        f.write(data)
    return str(path)


def write_parquet(path: str | Path, table: pa.Table, **kwargs: Any) -> str:
    with fsspec.open(str(path), "wb", compression="infer") as f:
        pq.write_table(table, f, **kwargs)
    return str(path)


def all_rows(source: InputSource) -> list[InputRow]:
    return [row for shard in source.shards() for row in shard.rows]


def urls(source: InputSource) -> list[str | None]:
    return [row.url for row in all_rows(source)]


SAMPLE = [(f"https://example.com/{i}.jpg", f"caption {i}", i) for i in range(5)]


def csv_text(delimiter: str = ",") -> str:
    lines = [delimiter.join(["url", "caption", "n"])]
    lines += [delimiter.join([u, c, str(n)]) for u, c, n in SAMPLE]
    return "\n".join(lines) + "\n"


def jsonl_text() -> str:
    return "".join(json.dumps({"url": u, "caption": c, "n": n}) + "\n" for u, c, n in SAMPLE)


def txt_text() -> str:
    return "".join(u + "\n" for u, _, _ in SAMPLE)


def sample_table() -> pa.Table:
    return pa.table({
        "url": [u for u, _, _ in SAMPLE],
        "caption": [c for _, c, _ in SAMPLE],
        "n": pa.array([n for _, _, n in SAMPLE], pa.int64()),
    })


# ----------------------------------------------------------- detect_format


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.parquet", "parquet"), ("a.pq", "parquet"), ("a.parquet.gz", "parquet"),
    ("a.csv", "csv"), ("a.csv.gz", "csv"), ("a.CSV", "csv"), ("a.csv.bz2", "csv"),
    ("a.tsv", "tsv"), ("a.tsv.gz", "tsv"), ("a.tsv.zst", "tsv"), ("a.tsv.xz", "tsv"),
    ("a.txt", "txt"), ("a.txt.gz", "txt"),
    ("a.jsonl", "jsonl"), ("a.json", "jsonl"), ("a.ndjson", "jsonl"), ("a.jsonl.gz", "jsonl"),
    ("s3://bucket/part-0.snappy.parquet", "parquet"), ("dir.v2/urls.tsv", "tsv"),
])
def test_detect_format_from_suffix(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_format_explicit_wins(fmt: str) -> None:
    assert detect_format("whatever.csv", fmt) == fmt


@pytest.mark.parametrize("name", ["a.xlsx", "a.gz", "noext", "a.csv.tar"])
def test_detect_format_unknown_suffix(tmp_path: Path, name: str) -> None:
    path = write_bytes(tmp_path / name, b"x\n")
    with pytest.raises(InputError, match="unknown input format"):
        detect_format(path)


def test_detect_format_unknown_explicit() -> None:
    with pytest.raises(InputError, match="'xml'"):
        detect_format("a.csv", "xml")


def test_detect_format_directory(mem: str) -> None:
    write_bytes(f"{mem}/d/b.tsv.gz", b"url\n")
    write_bytes(f"{mem}/d/a.tsv", b"url\n")
    write_bytes(f"{mem}/d/_SUCCESS", b"")
    assert detect_format(f"{mem}/d") == "tsv"
    assert detect_format(f"{mem}/d/") == "tsv"


def test_detect_format_directory_mixed(mem: str) -> None:
    write_bytes(f"{mem}/d/a.tsv", b"url\n")
    write_bytes(f"{mem}/d/b.csv", b"url\n")
    with pytest.raises(InputError, match="mixes formats"):
        detect_format(f"{mem}/d")


def test_input_error_is_a_value_error() -> None:
    assert issubclass(InputError, ValueError)
    assert issubclass(InputError, ConsentFetchError)


# ------------------------------------------------------------------ formats


EXPECTED_URLS = [u for u, _, _ in SAMPLE]


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2"])
@pytest.mark.parametrize(("fmt", "make"), [
    ("csv", lambda: csv_text(",").encode()),
    ("tsv", lambda: csv_text("\t").encode()),
    ("jsonl", lambda: jsonl_text().encode()),
])
def test_text_formats_with_caption_and_extra(
    tmp_path: Path, fmt: str, make: Any, suffix: str,
) -> None:
    path = write_bytes(tmp_path / f"in.{fmt}{suffix}", make())
    source = InputSource(path, caption_col="caption", additional_columns=["n"])
    assert source.format == fmt
    # counted when local and uncompressed; compressed: unknown
    assert source.total_rows == (len(SAMPLE) if suffix == "" else None)
    assert source.total_is_estimate is False
    assert source.extra_fields == [pa.field("n", pa.string())]
    rows = all_rows(source)
    assert [r.url for r in rows] == EXPECTED_URLS
    assert [r.caption for r in rows] == [c for _, c, _ in SAMPLE]
    assert [r.extra for r in rows] == [{"n": str(n)} for _, _, n in SAMPLE]
    assert all(r.error is None for r in rows)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_txt(tmp_path: Path, suffix: str) -> None:
    data = "  https://a.example/1.jpg  \n\n   \nhttps://a.example/2.jpg\r\nlast-no-newline"
    path = write_bytes(tmp_path / f"urls.txt{suffix}", data.encode())
    source = InputSource(path, url_col="ignored")
    assert source.format == "txt"
    assert source.extra_fields == []
    rows = all_rows(source)
    assert [r.url for r in rows] == ["https://a.example/1.jpg", "https://a.example/2.jpg",
                                    "last-no-newline"]
    assert all(r.caption is None and r.extra == {} and r.error is None for r in rows)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_parquet(tmp_path: Path, suffix: str) -> None:
    path = write_parquet(tmp_path / f"in.parquet{suffix}", sample_table())
    source = InputSource(path, caption_col="caption", additional_columns=["n"])
    assert source.format == "parquet"
    assert source.total_rows == len(SAMPLE)
    assert source.extra_fields == [pa.field("n", pa.int64())]
    rows = all_rows(source)
    assert [r.url for r in rows] == EXPECTED_URLS
    assert [r.extra["n"] for r in rows] == [0, 1, 2, 3, 4]


def test_parquet_types_preserved(mem: str) -> None:
    table = pa.table({
        "url": ["u1", "u2"],
        "i": pa.array([1, None], pa.int64()),
        "f": pa.array([0.5, 2.0], pa.float64()),
        "b": pa.array([True, False], pa.bool_()),
        "s": pa.array(["x", None], pa.string()),
        "i32": pa.array([7, 8], pa.int32()),
    })
    path = write_parquet(f"{mem}/t.parquet", table)
    source = InputSource(path, additional_columns=["i", "f", "b", "s", "i32"])
    assert [(f.name, f.type) for f in source.extra_fields] == [
        ("i", pa.int64()), ("f", pa.float64()), ("b", pa.bool_()),
        ("s", pa.string()), ("i32", pa.int32()),
    ]
    rows = all_rows(source)
    assert rows[0].extra == {"i": 1, "f": 0.5, "b": True, "s": "x", "i32": 7}
    assert rows[1].extra == {"i": None, "f": 2.0, "b": False, "s": None, "i32": 8}


def test_parquet_reads_only_needed_columns(mem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_parquet(f"{mem}/t.parquet", sample_table().append_column("big", pa.array(
        ["x" * 100] * len(SAMPLE))))
    seen: list[list[str] | None] = []
    original = pq.ParquetFile.iter_batches

    def spy(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("columns"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    assert urls(InputSource(path, caption_col="caption")) == EXPECTED_URLS
    assert seen == [["url", "caption"]]


def test_parquet_value_conversion(mem: str) -> None:
    table = pa.table({
        "url": pa.array([" https://x/a ", None, "", "\thttps://x/b\n"], pa.string()),
        "caption": pa.array([None, "c", "", "d"]),
    })
    path = write_parquet(f"{mem}/t.parquet", table)
    rows = all_rows(InputSource(path, caption_col="caption"))
    assert [r.url for r in rows] == ["https://x/a", None, "", "https://x/b"]
    assert [r.caption for r in rows] == [None, "c", "", "d"]


def test_parquet_non_string_url_and_caption(mem: str) -> None:
    table = pa.table({"url": pa.array([123, None, 7], pa.int64()),
                      "caption": pa.array([1.5, float("nan"), None])})
    rows = all_rows(InputSource(write_parquet(f"{mem}/t.parquet", table), caption_col="caption"))
    assert [r.url for r in rows] == ["123", None, "7"]
    assert [r.caption for r in rows] == ["1.5", None, None]


def test_parquet_nan_url_and_binary_url(mem: str) -> None:
    nan_path = write_parquet(f"{mem}/f.parquet", pa.table({"url": [1.0, float("nan")]}))
    assert urls(InputSource(nan_path)) == ["1.0", None]
    bin_path = write_parquet(f"{mem}/b.parquet", pa.table(
        {"url": pa.array([b"https://x/\xc3\xa9", b"\xff"], pa.binary())}))
    assert urls(InputSource(bin_path)) == ["https://x/\u00e9", "\udcff"]  # surrogateescape


def test_url_col_also_kept_as_extra(mem: str) -> None:
    path = write_parquet(f"{mem}/t.parquet", sample_table())
    rows = all_rows(InputSource(path, additional_columns=["url", "n", "n"]))
    assert rows[0].extra == {"url": EXPECTED_URLS[0], "n": 0}


def test_custom_column_names(mem: str) -> None:
    table = pa.table({"URL": ["a", "b"], "TEXT": ["x", "y"]})
    source = InputSource(write_parquet(f"{mem}/t.parquet", table),
                         url_col="URL", caption_col="TEXT")
    assert [(r.url, r.caption) for r in all_rows(source)] == [("a", "x"), ("b", "y")]


def test_local_path_file_url_and_pathlike(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    write_bytes(path, csv_text().encode())
    assert urls(InputSource(path)) == EXPECTED_URLS
    assert urls(InputSource(str(path))) == EXPECTED_URLS
    assert urls(InputSource(f"file://{path}")) == EXPECTED_URLS


def test_explicit_format_overrides_name(mem: str) -> None:
    path = write_bytes(f"{mem}/urls.list", b"https://x/1\nhttps://x/2\n")
    assert urls(InputSource(path, input_format="txt")) == ["https://x/1", "https://x/2"]
    path = write_bytes(f"{mem}/data.csv", jsonl_text().encode())
    assert urls(InputSource(path, input_format="jsonl")) == EXPECTED_URLS


def test_shards_can_be_read_twice(mem: str) -> None:
    source = InputSource(write_bytes(f"{mem}/a.csv", csv_text().encode()), shard_size=2)
    assert [len(s.rows) for s in source.shards()] == [2, 2, 1]
    assert [len(s.rows) for s in source.shards()] == [2, 2, 1]


def test_empty_inputs_give_no_shards(mem: str) -> None:
    assert list(InputSource(write_bytes(f"{mem}/a.csv", b"url,caption\n")).shards()) == []
    assert list(InputSource(write_bytes(f"{mem}/a.txt", b"")).shards()) == []
    assert list(InputSource(write_bytes(f"{mem}/a.jsonl", b"\n \n")).shards()) == []
    empty = pa.table({"url": pa.array([], pa.string())})
    source = InputSource(write_parquet(f"{mem}/a.parquet", empty))
    assert source.total_rows == 0
    assert list(source.shards()) == []


# --------------------------------------------------------------- csv / tsv


def test_csv_quoting_bom_crlf_and_short_rows(mem: str) -> None:
    data = ('\ufeffurl,caption,n\r\n'
            '"https://x/1","a, quoted ""caption""\nover two lines",1\r\n'
            'https://x/2\r\n'              # short row: caption and n missing
            '\r\n'                         # blank line: skipped
            'https://x/3,c,3,surplus,more\r\n'  # extra fields: ignored
            ',,\r\n'                       # empty url: kept as ""
            '  https://x/4  ,  spaced  ,4\r\n')
    source = InputSource(write_bytes(f"{mem}/a.csv", data.encode()),
                         caption_col="caption", additional_columns=["n"])
    rows = all_rows(source)
    assert [r.url for r in rows] == ["https://x/1", "https://x/2", "https://x/3", "",
                                    "https://x/4"]
    assert [r.caption for r in rows] == ['a, quoted "caption"\nover two lines', None, "c", "",
                                        "  spaced  "]
    assert [r.extra for r in rows] == [{"n": "1"}, {"n": None}, {"n": "3"}, {"n": ""},
                                      {"n": "4"}]
    assert all(r.error is None for r in rows)


def test_tsv_columns_in_any_order(mem: str) -> None:
    data = "caption\tother\turl\nhello, world\tz\thttps://x/1\n"
    rows = all_rows(InputSource(write_bytes(f"{mem}/a.tsv", data.encode()),
                                caption_col="caption"))
    assert rows == [InputRow("https://x/1", "hello, world", {})]


def test_csv_bytes_that_are_not_utf8_are_kept_as_escapes(mem: str) -> None:
    """Kept as lone surrogates (surrogateescape), not replaced by U+FFFD: a URL holding
    one is then refused with its bytes shown instead of requested as another URL."""
    data = b"url,caption\nhttps://x/1,caf\xe9\n"
    rows = all_rows(InputSource(write_bytes(f"{mem}/a.csv", data), caption_col="caption"))
    assert rows[0].caption == "caf\udce9"


def test_csv_malformed_record_becomes_error_row(mem: str) -> None:
    limit = csv.field_size_limit()
    data = f"url,caption\nhttps://x/1,ok\nhttps://x/2,{'y' * (limit + 10)}\nhttps://x/3,ok\n"
    rows = all_rows(InputSource(write_bytes(f"{mem}/a.csv", data.encode()),
                                caption_col="caption", additional_columns=["caption"]))
    assert [r.url for r in rows] == ["https://x/1", None, "https://x/3"]
    bad = rows[1]
    assert bad.error is not None and bad.error.startswith("line 3: malformed CSV record")
    assert bad.extra == {"caption": None}


def _huge_caption(delimiter: str) -> str:
    """200,000 characters over many lines, with URLs, delimiters and quotes:
    the shape that made the reader resume inside the quoted field."""
    line = f'https://evil.example/inside.jpg{delimiter}caption ""quoted"" {"z" * 80}\n'
    return (line * (200_000 // len(line) + 1))[:200_000]


@pytest.mark.parametrize("fmt, delimiter", [("csv", ","), ("tsv", "\t")])
def test_csv_long_quoted_field_is_one_row_never_several(mem: str, fmt: str,
                                                         delimiter: str) -> None:
    caption = _huge_caption(delimiter)
    assert len(caption) > csv.field_size_limit()
    data = (f"url{delimiter}caption\nhttps://x/1{delimiter}ok\n"
            f'https://x/2{delimiter}"{caption}"\nhttps://x/3{delimiter}"also\nok"\n')
    rows = all_rows(InputSource(write_bytes(f"{mem}/a.{fmt}", data.encode()),
                                caption_col="caption"))
    assert [r.url for r in rows] == ["https://x/1", None, "https://x/3"]
    assert rows[2].caption == "also\nok"
    assert rows[1].error == (f"line 3: malformed CSV record: field larger than field limit "
                             f"({csv.field_size_limit()})")


def test_csv_record_longer_than_the_cap_is_one_error_row(
        mem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "_MAX_LINE_CHARS", 1000)
    data = ('url,caption\nhttps://x/1,ok\n'
            f'https://x/2,"{"a,b" * 600}\n{"x" * 5000}\n""end"""\n'  # quoted, multi-line
            f'https://x/3,{"u" * 3000}\n'  # one unquoted long line
            'https://x/4,ok\n')
    rows = all_rows(InputSource(write_bytes(f"{mem}/a.csv", data.encode()),
                                caption_col="caption"))
    assert [r.url for r in rows] == ["https://x/1", None, None, "https://x/4"]
    assert rows[1].error == "line 3: record longer than 1000 characters"
    assert rows[2].error == "line 6: record longer than 1000 characters"


def test_csv_without_header_rows(mem: str) -> None:
    with pytest.raises(InputError, match="empty file"):
        InputSource(write_bytes(f"{mem}/a.csv", b""))
    with pytest.raises(InputError, match="empty file"):
        InputSource(write_bytes(f"{mem}/a.csv.gz", b"\n\n"))


# -------------------------------------------------------------------- jsonl


def test_jsonl_malformed_lines_become_error_rows(mem: str) -> None:
    lines = [
        '{"url": "https://x/1", "caption": "a", "n": 1}',
        "",                                   # blank: skipped
        "{not json",                          # invalid JSON
        '["https://x/2", "an array"]',         # valid JSON, not an object
        '"just a string"',
        "   ",                                # whitespace-only: skipped
        '{"caption": "no url"}',               # missing key: url None, no error
        '{"url": null, "caption": 5, "n": {"deep": [1, 2]}}',
        '{"url": 42, "n": "text"}',
        '{"url": "https://x/3"}',
    ]
    source = InputSource(write_bytes(f"{mem}/a.jsonl", "\n".join(lines).encode()),
                         caption_col="caption", additional_columns=["n"])
    rows = all_rows(source)
    assert rows[0] == InputRow("https://x/1", "a", {"n": "1"})
    assert rows[1].url is None and rows[1].error is not None
    assert rows[1].error.startswith("line 3: invalid JSON: ")
    assert rows[1].extra == {"n": None}
    assert rows[2] == InputRow(None, None, {"n": None}, "line 4: not a JSON object (got list)")
    assert rows[3].error == "line 5: not a JSON object (got str)"
    assert rows[4] == InputRow(None, "no url", {"n": None})
    assert rows[5] == InputRow(None, "5", {"n": '{"deep": [1, 2]}'})
    assert rows[6] == InputRow("42", None, {"n": "text"})
    assert rows[7] == InputRow("https://x/3", None, {"n": None})
    assert len(rows) == 8


def test_jsonl_bom_and_unicode(mem: str) -> None:
    data = '\ufeff{"url": "https://x/\u00e9", "caption": "\u2028sep"}\n'.encode()
    rows = all_rows(InputSource(write_bytes(f"{mem}/a.jsonl", data), caption_col="caption"))
    assert rows == [InputRow("https://x/\u00e9", "\u2028sep", {})]


def test_jsonl_deep_nesting_is_an_error_row(mem: str) -> None:
    data = ("[" * 100_000 + "\n" + '{"url": "u"}\n').encode()
    rows = all_rows(InputSource(write_bytes(f"{mem}/a.jsonl", data)))
    assert rows[0].error is not None and rows[0].error.startswith("line 1: invalid JSON")
    assert rows[1].url == "u"


def test_overlong_line_is_an_error_row(mem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "_MAX_LINE_CHARS", 64)
    data = ('{"url": "a"}\n' + '{"url": "' + "x" * 500 + '"}\n' + '{"url": "b"}\n').encode()
    rows = all_rows(InputSource(write_bytes(f"{mem}/a.jsonl", data)))
    assert [r.url for r in rows] == ["a", None, "b"]
    assert rows[1].error == "line 2: line longer than 64 characters"
    txt = write_bytes(f"{mem}/a.txt", ("a\n" + "y" * 300 + "\nb").encode())
    assert urls(InputSource(txt)) == ["a", None, "b"]


# --------------------------------------------------------------- directories


def test_directory_of_three_parquet_files(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    for name in ["part-2.parquet", "part-0.parquet", "part-1.parquet"]:
        part = int(name[5])
        table = pa.table({"url": [f"u{part}-{j}" for j in range(4)],
                          "n": pa.array([part * 10 + j for j in range(4)], pa.int32())})
        write_parquet(folder / name, table)
    write_bytes(folder / "_SUCCESS", b"")
    write_bytes(folder / ".part-0.parquet.crc", b"junk")
    source = InputSource(folder, additional_columns=["n"], shard_size=5)
    assert source.format == "parquet"
    assert source.total_rows == 12
    assert source.extra_fields == [pa.field("n", pa.int32())]
    shards = list(source.shards())
    assert [s.shard_id for s in shards] == [0, 1, 2]
    assert [len(s.rows) for s in shards] == [5, 5, 2]
    flat = [r.url for s in shards for r in s.rows]
    assert flat == [f"u{p}-{j}" for p in range(3) for j in range(4)]


def test_directory_of_jsonl_in_memory(mem: str) -> None:
    write_bytes(f"{mem}/d/b.jsonl.gz", b'{"url": "b1"}\nnope\n')
    write_bytes(f"{mem}/d/a.jsonl", b'{"url": "a1"}\n')
    write_bytes(f"{mem}/d/c.json", b'{"url": "c1"}\n')
    rows = all_rows(InputSource(f"{mem}/d"))
    assert [r.url for r in rows] == ["a1", "b1", None, "c1"]
    assert rows[2].error is not None and rows[2].error.startswith("b.jsonl.gz line 2: ")


def test_directory_with_explicit_format_and_plain_names(mem: str) -> None:
    write_bytes(f"{mem}/d/part-00001", b"https://x/2\n")
    write_bytes(f"{mem}/d/part-00000", b"https://x/1\n")
    assert urls(InputSource(f"{mem}/d", input_format="txt")) == ["https://x/1", "https://x/2"]
    with pytest.raises(InputError, match="no file of a known format"):
        InputSource(f"{mem}/d")


def test_directory_csv_headers_checked_per_file(mem: str) -> None:
    write_bytes(f"{mem}/d/a.csv", b"url,caption\nx,y\n")
    write_bytes(f"{mem}/d/b.csv", b"link,caption\nx,y\n")
    with pytest.raises(InputError, match=r"b\.csv.*'url'"):
        InputSource(f"{mem}/d", caption_col="caption")


def test_directory_parquet_schemas_unified(mem: str) -> None:
    write_parquet(f"{mem}/d/a.parquet", pa.table({"url": ["a"], "n": pa.array([None], pa.null())}))
    write_parquet(f"{mem}/d/b.parquet", pa.table({"url": ["b"], "n": pa.array([3], pa.int64())}))
    source = InputSource(f"{mem}/d", additional_columns=["n"])
    assert source.extra_fields == [pa.field("n", pa.int64())]
    assert [r.extra for r in all_rows(source)] == [{"n": None}, {"n": 3}]
    write_parquet(f"{mem}/e/a.parquet", pa.table({"url": ["a"], "n": ["text"]}))
    write_parquet(f"{mem}/e/b.parquet", pa.table({"url": ["b"], "n": [1]}))
    with pytest.raises(InputError, match="schemas conflict"):
        InputSource(f"{mem}/e", additional_columns=["n"])


def test_empty_directory(mem: str) -> None:
    fsspec.filesystem("memory").mkdir(f"{mem}/empty")
    with pytest.raises(InputError, match="no file of a known format"):
        InputSource(f"{mem}/empty")


# ------------------------------------------------------------ shard slicing


@pytest.mark.parametrize("fmt", FORMATS)
def test_25_rows_in_shards_of_10(mem: str, fmt: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "_PARQUET_BATCH", 7)  # batches cross shard boundaries
    expected = [f"https://x/{i}" for i in range(25)]
    path = f"{mem}/in.{fmt}"
    if fmt == "parquet":
        write_parquet(path, pa.table({"url": expected}), row_group_size=4)
    elif fmt == "jsonl":
        write_bytes(path, "".join(json.dumps({"url": u}) + "\n" for u in expected).encode())
    else:
        write_bytes(path, ("" if fmt == "txt" else "url\n").encode()
                    + "".join(u + "\n" for u in expected).encode())
    shards = list(InputSource(path, shard_size=10).shards())
    assert all(isinstance(s, ShardInput) for s in shards)
    assert [s.shard_id for s in shards] == [0, 1, 2]
    assert [len(s.rows) for s in shards] == [10, 10, 5]
    assert [r.url for s in shards for r in s.rows] == expected


@pytest.mark.parametrize(("n", "size", "lengths"), [
    (10, 10, [10]), (11, 10, [10, 1]), (3, 1, [1, 1, 1]), (5, 100, [5]), (0, 10, []),
])
def test_shard_lengths(mem: str, n: int, size: int, lengths: list[int]) -> None:
    path = write_parquet(f"{mem}/a.parquet",
                         pa.table({"url": pa.array([str(i) for i in range(n)], pa.string())}))
    assert [len(s.rows) for s in InputSource(path, shard_size=size).shards()] == lengths


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_shard_size(mem: str, bad: Any) -> None:
    path = write_bytes(f"{mem}/a.txt", b"x\n")
    with pytest.raises(ConfigError, match="shard-size"):
        InputSource(path, shard_size=bad)


# -------------------------------------------------------------------- keys


@pytest.mark.parametrize(("shard_id", "index", "shard_size", "key"), [
    (0, 0, 10_000, "000000000"),
    (3, 17, 10_000, "000030017"),
    (0, 9_999, 10_000, "000009999"),
    (12, 345, 10_000, "000120345"),
    (99_999, 9_999, 10_000, "999999999"),
    (100_000, 0, 10_000, "1000000000"),
    (0, 0, 1_000, "00000000"),
    (7, 999, 1_000, "00007999"),
    (0, 0, 10, "000000"),
    (4, 9, 10, "000049"),
    (0, 0, 1, "000000"),
    (5, 0, 1, "000050"),
    (0, 0, 100_000, "0000000000"),
    (2, 99_999, 100_000, "0000299999"),
    (0, 0, 12_345, "0000000000"),
    (1, 12_344, 12_345, "0000112344"),
    (1, 99_999, 12_345, "0000199999"),  # fits the digits, so allowed
    (0, 10, 11, "0000010"),
])
def test_compute_key(shard_id: int, index: int, shard_size: int, key: str) -> None:
    assert compute_key(shard_id, index, shard_size) == key


@pytest.mark.parametrize(("index", "shard_size"), [
    (10, 10), (10_000, 10_000), (10, 1), (100_000, 12_345), (-1, 10),
])
def test_compute_key_index_out_of_range(index: int, shard_size: int) -> None:
    with pytest.raises(ValueError, match="index"):
        compute_key(0, index, shard_size)


def test_compute_key_bad_arguments() -> None:
    with pytest.raises(ValueError):
        compute_key(0, 0, 0)
    with pytest.raises(ValueError):
        compute_key(-1, 0, 10)


def test_keys_sort_like_input_order() -> None:
    keys = [compute_key(s, i, 100) for s in range(3) for i in range(100)]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(("shard_id", "name"), [
    (0, "00000"), (12, "00012"), (99_999, "99999"), (100_000, "100000"), (1_234_567, "1234567"),
])
def test_shard_name(shard_id: int, name: str) -> None:
    assert shard_name(shard_id) == name


def test_shard_name_negative() -> None:
    with pytest.raises(ValueError):
        shard_name(-1)


# ---------------------------------------------------------- input errors


def test_missing_file(tmp_path: Path, mem: str) -> None:
    with pytest.raises(InputError, match="not found") as info:
        InputSource(tmp_path / "nope.parquet")
    assert "nope.parquet" in str(info.value)
    with pytest.raises(InputError, match="not found"):
        InputSource(f"{mem}/nope.csv")
    with pytest.raises(InputError, match="not found"):
        detect_format(f"{mem}/nodir")


def test_unknown_extension(mem: str) -> None:
    path = write_bytes(f"{mem}/urls.xlsx", b"x")
    with pytest.raises(InputError, match="unknown input format") as info:
        InputSource(path)
    assert "urls.xlsx" in str(info.value)


def test_unknown_explicit_format(mem: str) -> None:
    path = write_bytes(f"{mem}/urls.csv", b"url\n")
    with pytest.raises(InputError, match="unknown input format 'excel'"):
        InputSource(path, input_format="excel")


@pytest.mark.parametrize(("kwargs", "column"), [
    ({"url_col": "link"}, "link"),
    ({"caption_col": "text"}, "text"),
    ({"additional_columns": ["n", "width"]}, "width"),
])
@pytest.mark.parametrize("fmt", ["parquet", "csv", "tsv"])
def test_missing_column(mem: str, fmt: str, kwargs: dict[str, Any], column: str) -> None:
    if fmt == "parquet":
        path = write_parquet(f"{mem}/in.parquet", sample_table())
    else:
        path = write_bytes(f"{mem}/in.{fmt}", csv_text("," if fmt == "csv" else "\t").encode())
    with pytest.raises(InputError, match=f"'{column}'") as info:
        InputSource(path, **kwargs)
    assert "in." + fmt in str(info.value)
    assert "missing column" in str(info.value)


def test_jsonl_missing_columns_are_not_checked_up_front(mem: str) -> None:
    path = write_bytes(f"{mem}/a.jsonl", b'{"url": "a"}\n')
    rows = all_rows(InputSource(path, caption_col="c", additional_columns=["x"]))
    assert rows == [InputRow("a", None, {"x": None})]


def test_txt_has_no_columns(mem: str) -> None:
    path = write_bytes(f"{mem}/a.txt", b"https://x/1\n")
    with pytest.raises(InputError, match="'caption'"):
        InputSource(path, caption_col="caption")
    with pytest.raises(InputError, match="'n'"):
        InputSource(path, additional_columns=["n"])


def test_not_a_parquet_file(mem: str) -> None:
    path = write_bytes(f"{mem}/a.parquet", b"url\nhttps://x/1\n")
    with pytest.raises(InputError, match="not a readable parquet file"):
        InputSource(path)


def test_truncated_gzip_raises_input_error_while_streaming(tmp_path: Path) -> None:
    whole = gzip.compress(("url\n" + "https://x/aaaaaaaaaaaaaaaa\n" * 20_000).encode())
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    source = InputSource(path)  # the header is readable
    with pytest.raises(InputError, match="cut.csv.gz: cannot read"):
        for _ in source.shards():
            pass


def test_corrupt_bz2_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt.bz2"
    path.write_bytes(bz2.compress(b"https://x/1\n")[:10] + b"garbage" * 10)
    with pytest.raises(InputError, match="bad.txt.bz2"):
        list(InputSource(path).shards())


def test_zst_without_codec_is_an_input_error(mem: str) -> None:
    from fsspec.utils import infer_compression

    if infer_compression("a.zst") is not None:
        pytest.skip("zstandard is installed; .zst is readable")
    path = write_bytes(f"{mem}/a.csv.zst", b"not really zstd")
    with pytest.raises(InputError, match="zst"):
        InputSource(path)


def test_unknown_protocol() -> None:
    with pytest.raises(InputError, match="cannot open"):
        InputSource("nosuchproto://bucket/a.csv")


# ----------------------------------------------------------------- memory


def _generate_csv_gz(path: Path, rows: int) -> int:
    """Write a csv.gz row by row; return its uncompressed size in bytes."""
    size = 0
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
        for i in range(-1, rows):
            line = ("url,caption,n\n" if i < 0 else
                    f"https://images.example.com/some/path/{i:09d}.jpg,"
                    f"a reasonably long caption for image number {i},{i}\n")
            f.write(line)
            size += len(line)
    return size


def test_csv_gz_first_shard_memory_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.csv.gz"
    uncompressed = _generate_csv_gz(path, 200_000)
    tracemalloc.start()
    try:
        source = InputSource(path, caption_col="caption", additional_columns=["n"],
                             shard_size=10_000)
        first = next(iter(source.shards()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert first.shard_id == 0 and len(first.rows) == 10_000
    assert first.rows[-1].url == "https://images.example.com/some/path/000009999.jpg"
    # Loading the file whole would take more than its ~21 MB of text (and ~100 MB
    # as rows). One shard is 1/20 of the rows: ~500 bytes a row in Python objects
    # (InputRow, url, caption, extra dict), ~5 MB, measured 5.1 MB peak. The bound,
    # 40% of the text, leaves room for interpreter differences and still fails if
    # the reader held more than a couple of shards or the whole text.
    assert uncompressed > 20_000_000
    assert peak < uncompressed * 0.4, (peak, uncompressed)


def _generate_parquet(path: Path, rows: int, group: int) -> None:
    schema = pa.schema([("url", pa.string()), ("caption", pa.string()),
                        ("width", pa.int64()), ("unused", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, group):
            ids = range(start, min(start + group, rows))
            writer.write_table(pa.table({
                "url": [f"https://images.example.com/p/{i:09d}.jpg" for i in ids],
                "caption": [f"caption number {i} of a large generated input" for i in ids],
                "width": list(ids),
                "unused": ["z" * 50] * len(ids),
            }, schema=schema))


def test_parquet_streamed_fully_memory_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    total = 300_000
    _generate_parquet(path, total, group=50_000)
    arrow_base = pa.total_allocated_bytes()
    arrow_peak = 0
    count = 0
    tracemalloc.start()
    try:
        source = InputSource(path, caption_col="caption", additional_columns=["width"],
                             shard_size=10_000)
        for shard in source.shards():
            count += len(shard.rows)
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - arrow_base)
            del shard
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == total == source.total_rows
    # Bound: one shard of 10,000 rows is ~5 MB in Python (InputRow, url, caption,
    # extra dict: ~500 bytes a row), plus the Python lists of one 10,000-row arrow
    # batch being turned into rows (~2.5 MB); measured ~10 MB. 20 MB allows for
    # interpreter differences and still fails if two shards were kept at once
    # plus slack, and is far below the ~150 MB the 300,000 rows take as rows.
    assert peak < 20_000_000, peak
    # Arrow buffers are not seen by tracemalloc: sample them between shards. They
    # stay at about one row group's pages of the needed columns (measured ~7 MB),
    # while those columns take ~32 MB in the whole file.
    needed = _uncompressed_bytes(path, ("url", "caption", "width"))
    assert needed > 30_000_000
    assert arrow_peak < needed / 2, (arrow_peak, needed)


def _uncompressed_bytes(path: Path, columns: Sequence[str]) -> int:
    meta = pq.ParquetFile(path).metadata
    groups = (meta.row_group(g) for g in range(meta.num_row_groups))
    return sum(chunk.total_uncompressed_size for group in groups
               for chunk in (group.column(c) for c in range(group.num_columns))
               if chunk.path_in_schema in columns)


def test_bytes_that_are_not_utf8_are_never_requested_as_another_url(site, tmp_path) -> None:
    """A URL with a byte that is not UTF-8 used to become U+FFFD and be requested under a
    URL the input never held; it is invalid_url, its bytes in the evidence. A caption with
    such a byte is kept, escaped."""
    from consentfetch import fetch_shards, read_audit
    from consentfetch.testsite import make_image

    from .conftest import LOCAL

    good = site.put(0, "/ok.jpg", make_image(40, 40))
    bad = site.url(0, "/caf").encode() + b"\xe9.jpg"
    src = tmp_path / "urls.csv"
    src.write_bytes(b"url,caption\n" + bad + b",plain\n" + good.encode() + b",caf\xe9\n")
    fetch_shards(str(src), str(tmp_path / "o"), caption_col="caption", **LOCAL)
    rows = sorted(read_audit(str(tmp_path / "o")).to_pylist(), key=lambda r: r["key"])
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("failed_to_download", "invalid_url"), ("success", None)]
    assert "not valid UTF-8" in rows[0]["evidence"] and "\\xe9" in rows[0]["evidence"]
    assert rows[1]["caption"] == "caf\\udce9"
    assert [path for _, _, path in site.log if "caf" in path] == []


def test_a_json_array_is_refused_with_a_way_out(tmp_path) -> None:
    """A .json file holding one JSON array used to be read as one bad JSON Lines row."""
    path = tmp_path / "urls.json"
    path.write_text('[\n  {"url": "https://x/1"},\n  {"url": "https://x/2"}\n]\n')
    with pytest.raises(InputError, match="JSON array, not JSON Lines.*jq -c"):
        all_rows(InputSource(str(path)))


def test_ragged_csv_records_are_counted_in_a_warning(tmp_path, caplog) -> None:
    path = tmp_path / "urls.csv"
    path.write_text("url,caption\nhttps://x/1,a,EXTRA,MORE\nhttps://x/2\nhttps://x/3,c\n")
    with caplog.at_level("WARNING"):
        rows = all_rows(InputSource(str(path), caption_col="caption"))
    assert [r.caption for r in rows] == ["a", None, "c"]
    assert "1 record(s) with more fields than the header's 2" in caplog.text
    assert "1 with fewer" in caplog.text


# ------------------------------------------------------------- row counts


def test_csv_with_a_newline_in_a_field_gives_an_estimated_total(tmp_path: Path) -> None:
    text = 'url,caption\nu1,"two\nlines"\nu2,plain\n"u3","a ""quoted"" word"\n'
    source = InputSource(write_bytes(tmp_path / "in.csv", text.encode()),
                         caption_col="caption")
    assert (source.total_rows, source.total_is_estimate) == (3, True)
    assert len(all_rows(source)) == 3


def test_quotes_without_newlines_keep_the_count_exact(tmp_path: Path) -> None:
    text = 'url,caption\nu1,"a, b"\n\n  \nu2,"c ""d"""\n'
    source = InputSource(write_bytes(tmp_path / "in.csv", text.encode()),
                         caption_col="caption")
    assert (source.total_rows, source.total_is_estimate) == (2, False)
    assert len(all_rows(source)) == 2


def test_a_directory_of_text_files_sums_their_counts(tmp_path: Path) -> None:
    for i in range(3):
        write_bytes(tmp_path / "d" / f"part-{i}.jsonl",
                    "".join(f'{{"url": "u{i}-{j}"}}\n' for j in range(i + 1)).encode())
    source = InputSource(tmp_path / "d")
    assert (source.total_rows, source.total_is_estimate) == (6, False)


def test_a_text_input_past_the_scan_is_estimated(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the first bytes are read; the rest is extrapolated from the size."""
    monkeypatch.setattr(reader, "_COUNT_BYTES", 1000)
    monkeypatch.setattr(reader, "_COUNT_SAMPLE", 1000)
    lines = [f"https://a.example/{i:06d}.jpg\n" for i in range(2000)]  # 30 bytes each
    source = InputSource(write_bytes(tmp_path / "in.txt", "".join(lines).encode()))
    assert source.total_is_estimate is True
    assert source.total_rows is not None and abs(source.total_rows - 2000) <= 40


def test_lone_carriage_returns_leave_the_total_unknown(tmp_path: Path) -> None:
    """Universal newlines make a lone CR end a line; the byte scan would not see it."""
    source = InputSource(write_bytes(tmp_path / "in.txt", b"u1\ru2\ru3\r"))
    assert source.total_rows is None
    assert [r.url for r in all_rows(source)] == ["u1", "u2", "u3"]


def test_a_compressed_text_input_is_not_counted(tmp_path: Path) -> None:
    assert InputSource(write_bytes(tmp_path / "in.jsonl.gz", b'{"url": "u"}\n')
                       ).total_rows is None


def test_input_identity_is_what_the_input_is(tmp_path: Path, monkeypatch) -> None:
    """Resume compares it: one input however it is spelled, two inputs stay two."""
    path = tmp_path / "urls.parquet"
    path.write_bytes(b"")
    (tmp_path / "link.parquet").symlink_to(path)
    monkeypatch.chdir(tmp_path)
    spellings = ("urls.parquet", "./urls.parquet", str(path), f"file://{path}",
                 "link.parquet", f"{tmp_path}/../{tmp_path.name}/urls.parquet")
    assert {reader.input_identity(s) for s in spellings} == {str(path.resolve())}
    assert reader.input_identity("memory://d/urls.parquet") == \
        reader.input_identity("memory:///d/urls.parquet") == "memory:///d/urls.parquet"
    assert reader.input_identity("memory://d/other.parquet") != \
        reader.input_identity("memory://d/urls.parquet")
