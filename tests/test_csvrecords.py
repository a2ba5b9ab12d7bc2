"""csv_records: exactly one result per CSV record, whatever a field holds."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from consentfetch.csvrecords import CsvRecord, csv_records

SMALL_LIMIT = 8


def records(text: str, *, delimiter: str = ",", max_chars: int = 1 << 20) -> list[CsvRecord]:
    return list(csv_records(io.StringIO(text, newline=""), delimiter=delimiter,
                            max_chars=max_chars))


def reference(text: str, delimiter: str = ",") -> list[list[str]]:
    """csv.reader's records."""
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def reference_starts(text: str, delimiter: str = ",") -> list[int]:
    """The line each of csv.reader's records starts on: where it ended the last, plus one."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    starts, last = [], 0
    for _ in reader:
        starts.append(last + 1)
        last = reader.line_num
    return starts


@pytest.fixture
def field_limit() -> Iterator[int]:
    old = csv.field_size_limit(SMALL_LIMIT)
    try:
        yield SMALL_LIMIT
    finally:
        csv.field_size_limit(old)


# Texts built from what matters to the parser: quotes, delimiters, every line break.
texts = st.text(alphabet='"\t,\r\na ', max_size=60)


@settings(max_examples=400, deadline=None)
@given(texts, st.sampled_from([",", "\t"]))
@example('"a""\nb,"\nc\n', ",")  # a doubled quote before a line break inside quotes
@example('"a"b"\nc\n"d\n""\n', ",")  # text after a closing quote; quotes inside it
@example('a\r\n"b\r\rc"\r\n\r\n', "\t")
def test_same_records_as_csv_reader(text: str, delimiter: str) -> None:
    got = records(text, delimiter=delimiter)
    assert [r.cells for r in got] == reference(text, delimiter)
    assert all(r.error is None for r in got)
    # Where each record starts (and so ends) is what the skipping relies on.
    assert [r.line for r in got] == reference_starts(text, delimiter)


@settings(max_examples=400, deadline=None)
@given(texts)
def test_a_field_over_the_limit_is_one_error_never_new_records(text: str) -> None:
    expected = reference(text)
    old = csv.field_size_limit(SMALL_LIMIT)
    try:
        got = records(text)
    finally:
        csv.field_size_limit(old)
    assert len(got) == len(expected)
    for result, cells in zip(got, expected, strict=False):
        too_long = any(len(cell) > SMALL_LIMIT for cell in cells)
        if result.error is None:
            assert result.cells == cells
        else:
            assert too_long and "field larger than field limit" in result.error


@settings(max_examples=400, deadline=None)
@given(texts)
def test_a_record_over_max_chars_is_one_error(text: str) -> None:
    expected = reference(text)
    got = records(text, max_chars=12)
    assert len(got) == len(expected)
    for result, cells in zip(got, expected, strict=False):
        if result.error is None:
            assert result.cells == cells
        else:
            assert result.error == "record longer than 12 characters"


def test_line_numbers_are_where_records_start() -> None:
    text = 'a,b\n"x\ny\nz",1\n\nlast,"q"\r\nend'
    got = records(text)
    assert [(r.line, r.cells) for r in got] == [
        (1, ["a", "b"]), (2, ["x\ny\nz", "1"]), (5, []), (6, ["last", "q"]), (7, ["end"])]


def test_long_quoted_field_with_urls_inside(field_limit: int) -> None:
    inside = "\n".join(f"https://evil/{i}.jpg,x" for i in range(5))
    got = records(f'u,c\nx/1,"{inside}"\nx/2,ok\n')
    assert [r.cells for r in got] == [["u", "c"], None, ["x/2", "ok"]]
    assert got[1].line == 2 and got[1].error is not None
    assert f"field larger than field limit ({field_limit})" in got[1].error


def test_unterminated_quote_runs_to_the_end_like_csv_reader() -> None:
    text = 'u,c\nhttps://a/1,"never closed\nhttps://a/2,ok\n'
    assert [r.cells for r in records(text)] == reference(text)
