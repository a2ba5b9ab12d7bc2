"""Tests of consentfetch.tables: the one layer that reads URL lists and consent lists."""

from __future__ import annotations

import gzip
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentfetch import tables
from consentfetch.errors import InputError
from consentfetch.tables import Record


def _bytes(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode("utf-8"))


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.parquet", "parquet"), ("a.PQ", "parquet"), ("a.csv.gz", "csv"), ("a.tsv.zst", "tsv"),
    ("a.json", "jsonl"), ("a.ndjson.xz", "jsonl"), ("a.txt.bz2", "txt"), ("a.gz", None),
    ("noext", None), ("a.csv.tar", None),
])
def test_suffix_format(name: str, fmt: str | None) -> None:
    assert tables.suffix_format(name) == fmt


def test_suffix_format_within_a_callers_formats() -> None:
    assert tables.suffix_format("a.tsv", {".csv": "csv"}) is None


def test_undecompressable_suffix_names_the_label(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "infer_compression", lambda name: None)
    with pytest.raises(InputError, match=r"^s3://b/urls: cannot decompress \.zst files"):
        tables.check_compression("part.csv.zst", "s3://b/urls")
    tables.check_compression("part.csv", "s3://b/urls")  # nothing to decompress


def test_txt_records_are_stripped_non_blank_lines() -> None:
    records = list(tables.txt_records(_bytes("\ufeff a \n\n  \r\nb\n"), max_chars=100,
                                      strict=True))
    assert records == [Record("line 1", {tables.LINE: "a"}), Record("line 4", {tables.LINE: "b"})]


def test_long_lines_are_errors_not_held() -> None:
    text = "x" * 50 + "\n" + "ok\n" + "y" * 7
    records = list(tables.txt_records(_bytes(text), max_chars=10, strict=True))
    assert records == [Record("line 1", None, "line longer than 10 characters"),
                       Record("line 2", {tables.LINE: "ok"}),
                       Record("line 3", {tables.LINE: "y" * 7})]


def test_jsonl_records_say_what_is_wrong_with_a_line() -> None:
    text = '{"url": "a"}\n\n{"url": x}\n[1]\n' + "[" * 100_000 + "\n"
    records = list(tables.jsonl_records(_bytes(text), max_chars=1 << 20, strict=False))
    assert records[0] == Record("line 1", {"url": "a"})
    assert records[1].where == "line 3" and records[1].values is None
    assert records[1].error is not None and records[1].error.startswith("invalid JSON: ")
    assert records[1].error.endswith("(column 9)")
    assert records[2] == Record("line 4", None, "not a JSON object (got list)")
    assert records[3] == Record("line 5", None, "invalid JSON: nested too deeply")


def test_strict_text_raises_on_bytes_that_are_not_utf8() -> None:
    with pytest.raises(UnicodeDecodeError):
        list(tables.txt_records(io.BytesIO(b"caf\xe9\n"), max_chars=100, strict=True))
    lenient = list(tables.txt_records(io.BytesIO(b"caf\xe9\n"), max_chars=100, strict=False))
    assert lenient == [Record("line 1", {tables.LINE: "caf\udce9"})]  # surrogateescape


def test_csv_table_header_then_records() -> None:
    text = '\nurl,caption,url\n"a\nb",c,z\n\n   \nshort\n' + "y" * 60 + "\nlast,d\n"
    table = tables.CsvTable(_bytes(text), label="l.csv", delimiter=",", max_chars=50,
                            strict=True)
    assert table.header == ["url", "caption", "url"]
    assert list(table.records()) == [
        Record("line 3", {"url": "a\nb", "caption": "c"}),  # a repeated name: its first column
        Record("line 7", {"url": "short"}),  # blank records skipped; a short one lacks columns
        Record("line 8", None, "record longer than 50 characters"),
        Record("line 9", {"url": "last", "caption": "d"}),
    ]


def test_csv_header_problems() -> None:
    empty = tables.CsvTable(_bytes("\n\n"), label="e.csv", delimiter=",", max_chars=100,
                            strict=True)
    assert empty.header == []
    with pytest.raises(InputError, match="h.csv: cannot parse the header row: record longer"):
        tables.CsvTable(_bytes("u" * 200 + "\n"), label="h.csv", delimiter=",", max_chars=100,
                        strict=True)


def test_parquet_records_stream_a_compressed_file() -> None:
    sink = io.BytesIO()
    pq.write_table(pa.table({"url": ["a", "b", "c"], "n": [1, 2, 3], "x": ["", "", ""]}), sink,
                   row_group_size=2)
    packed = io.BytesIO(gzip.compress(sink.getvalue()))
    with gzip.GzipFile(fileobj=packed) as f:
        source = tables.parquet_file(f)  # type: ignore[arg-type]  # a GzipFile is an IO[bytes]
        records = list(tables.parquet_records(source, ["url", "n"], 2))
    assert records == [Record("row 0", {"url": "a", "n": 1}), Record("row 1", {"url": "b", "n": 2}),
                       Record("row 2", {"url": "c", "n": 3})]


def test_one_layer_reads_both_kinds_of_list() -> None:
    """The URL reader and the consent-list loader read files only through this layer."""
    import consentfetch.lists as lists
    import consentfetch.reader as reader
    for module in (reader, lists):
        source = open(module.__file__ or "", encoding="utf-8").read()
        assert "TextIOWrapper" not in source and "csv_records" not in source
        assert "json.loads" not in source and "ParquetFile(" not in source
