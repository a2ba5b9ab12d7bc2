"""Tests of consentfetch.consent.registry: user-supplied opt-out / opt-in lists."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import pickle
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentfetch.consent.registry import KINDS, ConsentList, EntryKind, ListHit
from consentfetch.errors import ConfigError, ConsentFetchError, InputError
from consentfetch.lists import load_lists

SHA = "ab" * 32
SHA_UPPER = "AB" * 32
SHA2 = "0123456789abcdef" * 4


# ---------------------------------------------------------------- helpers


def _txt(tmp_path: Path, text: str, name: str = "list.txt") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _csv(tmp_path: Path, rows: list[dict[str, str]], name: str = "list.csv") -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [",".join(columns)]
    lines += [",".join(row.get(c, "") for c in columns) for row in rows]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _jsonl(tmp_path: Path, rows: list[Any], name: str = "list.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def _parquet(tmp_path: Path, table: pa.Table, name: str = "list.parquet") -> str:
    path = tmp_path / name
    pq.write_table(table, path)
    return str(path)


def _load_txt(tmp_path: Path, text: str) -> ConsentList:
    return load_lists([_txt(tmp_path, text)])


@pytest.fixture
def mem() -> Iterator[str]:
    """A fresh memory:// folder, removed afterwards."""
    root = f"memory://registry-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


# ------------------------------------------------------------- txt entries


def test_txt_classifies_each_line(tmp_path: Path) -> None:
    lists = _load_txt(tmp_path, "\n".join([
        "# my opt-outs",
        "",
        SHA,
        "https://example.com/a.jpg",
        "https://example.com/art/*",
        "Artist.Example",
        "   ",
        "  # an indented comment",
    ]))
    assert len(lists) == 4
    assert lists.has_sha256
    assert lists.match_sha256(SHA) == ListHit(lists.names[0], EntryKind("sha256"), SHA, None)
    assert lists.match_url("https://example.com/a.jpg").kind == "url"
    assert lists.match_url("https://example.com/art/b.jpg").kind == "url_prefix"
    assert lists.match_url("http://artist.example/x.png").kind == "host"
    assert lists.match_url("https://example.com/other.jpg") is None


def test_txt_inline_comment_after_whitespace(tmp_path: Path) -> None:
    lists = _load_txt(tmp_path, "example.com   # asked by mail\nhttps://a.example/x#frag\n")
    hit = lists.match_url("https://example.com/p")
    assert hit is not None and hit.entry == "example.com"
    # a "#" inside an entry is a fragment, not a comment
    assert lists.match_url("https://a.example/x").entry == "https://a.example/x#frag"


def test_txt_star_only_makes_prefixes_of_urls(tmp_path: Path) -> None:
    lists = _load_txt(tmp_path, "https://example.com/a*\n")
    assert lists.match_url("https://example.com/abc").entry == "https://example.com/a*"
    assert lists.match_url("https://example.com/b") is None


def test_txt_host_with_path_or_port_is_malformed(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="consentfetch.consent.registry"):
        lists = _load_txt(tmp_path, "example.com/art/\nexample.org:8080\ntwo words\nok.example\n")
    assert len(lists) == 1
    assert lists.match_url("https://example.com/art/x") is None
    assert "skipped 3 malformed entries" in caplog.text
    assert "line 1" in caplog.text


def test_wildcard_host_is_malformed_not_silently_dead(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="consentfetch.consent.registry"):
        lists = _load_txt(tmp_path, "*.example.com\nexample.com*\n")
    assert len(lists) == 0
    assert "skipped 2 malformed entries" in caplog.text and "no wildcards" in caplog.text


def test_txt_with_bom_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfexample.com\r\nhttps://a.example/x\r\n")
    lists = load_lists([str(path)])
    assert lists.match_url("https://example.com/").entry == "example.com"
    assert lists.match_url("https://a.example/x") is not None


# ---------------------------------------------------------- table formats


def test_csv_all_columns_and_source(tmp_path: Path) -> None:
    path = _csv(tmp_path, [
        {"url": "https://example.com/a.jpg", "source": "artist request 2026-03"},
        {"url_prefix": "https://example.com/art/"},
        {"host": "Example.org", "source": "site owner"},
        {"sha256": SHA_UPPER},
    ])
    lists = load_lists([path])
    assert len(lists) == 4
    hit = lists.match_url("https://example.com/a.jpg")
    assert hit == ListHit(path, EntryKind("url"), "https://example.com/a.jpg", "artist request 2026-03")
    # a url_prefix cell needs no trailing "*"
    assert lists.match_url("https://example.com/art/deep/b.png").entry == "https://example.com/art/"
    assert lists.match_url("https://EXAMPLE.org:8443/").source == "site owner"
    assert lists.match_sha256(SHA).entry == SHA_UPPER


def test_csv_row_with_several_entries(tmp_path: Path) -> None:
    path = _csv(tmp_path, [{"host": "a.example", "sha256": SHA, "source": "both"}])
    lists = load_lists([path])
    assert len(lists) == 2
    assert lists.match_url("https://a.example/").source == "both"
    assert lists.match_sha256(SHA).source == "both"


def test_jsonl_keys(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [
        {"url": "https://example.com/a.jpg", "source": "form #12"},
        {"url_prefix": "https://example.com/art/*"},
        {"host": "example.net", "other": 1},
        {"sha256": SHA},
        {},  # a record without entries: nothing to add, not malformed
    ])
    lists = load_lists([path])
    assert len(lists) == 4
    assert lists.match_url("https://example.com/a.jpg").source == "form #12"
    assert lists.match_url("https://example.com/art/x").kind == "url_prefix"
    assert lists.match_url("http://example.net/").kind == "host"
    assert lists.match_sha256(SHA) is not None


def test_parquet_columns_nulls_and_source(tmp_path: Path) -> None:
    table = pa.table({
        "url": ["https://example.com/a.jpg", None, None],
        "host": [None, "example.org", None],
        "sha256": [None, None, SHA],
        "source": ["one", None, "three"],
        "ignored": [1, 2, 3],
    })
    lists = load_lists([_parquet(tmp_path, table)])
    assert len(lists) == 3
    assert lists.match_url("https://example.com/a.jpg").source == "one"
    assert lists.match_url("https://example.org/z").source is None
    assert lists.match_sha256(SHA).source == "three"


def test_parquet_binary_sha256(tmp_path: Path) -> None:
    table = pa.table({"sha256": pa.array([bytes.fromhex(SHA2)], pa.binary())})
    lists = load_lists([_parquet(tmp_path, table)])
    assert lists.match_sha256(SHA2.upper()).entry == SHA2


@pytest.mark.parametrize("fmt", ["txt", "csv", "jsonl", "parquet"])
def test_gzip_of_every_format(tmp_path: Path, fmt: str) -> None:
    plain = {
        "txt": lambda: _txt(tmp_path, "example.com\n", "l.txt"),
        "csv": lambda: _csv(tmp_path, [{"host": "example.com"}], "l.csv"),
        "jsonl": lambda: _jsonl(tmp_path, [{"host": "example.com"}], "l.jsonl"),
        "parquet": lambda: _parquet(tmp_path, pa.table({"host": ["example.com"]}), "l.parquet"),
    }[fmt]()
    packed = Path(plain + ".gz")
    packed.write_bytes(gzip.compress(Path(plain).read_bytes()))
    lists = load_lists([str(packed)])
    assert lists.match_url("https://example.com/").list_name == str(packed)


def test_bz2_txt(tmp_path: Path) -> None:
    path = tmp_path / "l.txt.bz2"
    path.write_bytes(bz2.compress(b"example.com\n"))
    assert load_lists([str(path)]).match_url("http://example.com/") is not None


def test_memory_fsspec_urls(mem: str) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{mem}/optout.txt", b"example.com\n")
    fs.pipe(f"{mem}/optout.csv.gz", gzip.compress(b"sha256,source\n" + SHA.encode() + b",x\n"))
    table = pa.table({"url": ["https://example.org/a"]})
    with fs.open(f"{mem}/optout.parquet", "wb") as f:
        pq.write_table(table, f)
    names = [f"{mem}/optout.txt", f"{mem}/optout.csv.gz", f"{mem}/optout.parquet"]
    lists = load_lists(names, storage_options={})
    assert lists.names == tuple(names)
    assert lists.match_url("https://example.com/").list_name == names[0]
    assert lists.match_sha256(SHA).list_name == names[1]
    assert lists.match_url("https://example.org/a").list_name == names[2]


def test_several_files_first_entry_wins(tmp_path: Path) -> None:
    first = _csv(tmp_path, [{"host": "example.com", "source": "first"}], "a.csv")
    second = _txt(tmp_path, "EXAMPLE.com\nother.example\n", "b.txt")
    lists = load_lists([first, second])
    assert len(lists) == 2  # distinct entries after normalisation
    assert lists.match_url("https://example.com/").source == "first"
    assert lists.match_url("https://other.example/").list_name == second


# ----------------------------------------------------------------- matching

URL_CASES: list[tuple[str, str, bool]] = [
    # (list entry (txt), URL, matches?)
    ("example.com", "https://example.com/a", True),
    ("example.com", "https://EXAMPLE.COM/a", True),
    ("EXAMPLE.com", "http://example.com:8080/a", True),  # host: any port, any scheme
    ("example.com", "ftp://example.com/a", True),
    ("example.com", "https://www.example.com/a", False),  # exactly, not subdomains
    ("www.example.com", "https://example.com/a", False),
    ("example.com", "https://example.com.evil.test/a", False),
    ("example.com", "https://user:pw@example.com/a", True),
    ("example.com", "https://evil.test/?u=https://example.com/", False),
    ("example.com.", "https://example.com/a", True),  # trailing dot of an FQDN
    ("example.com", "https://example.com./a", True),
    ("[::1]", "http://[::1]:8080/a", True),
    ("::1", "http://[::1]/a", True),
    ("127.0.0.1", "http://127.0.0.1:9/a", True),
    ("bücher.example", "https://bücher.example/a", True),
    ("bücher.example", "https://xn--bcher-kva.example/a", False),  # IDNA: as written
    # url: scheme and host case, default ports, fragment, empty path
    ("https://example.com/a.jpg", "https://example.com/a.jpg", True),
    ("https://example.com/a.jpg", "HTTPS://Example.COM/a.jpg", True),
    ("https://example.com/a.jpg", "https://example.com:443/a.jpg", True),
    ("https://example.com:443/a.jpg", "https://example.com/a.jpg", True),
    ("http://example.com:80/a.jpg", "http://example.com/a.jpg", True),
    ("http://example.com/a.jpg", "http://example.com:8080/a.jpg", False),
    ("https://example.com:80/a.jpg", "https://example.com/a.jpg", False),  # 80 is not https's
    ("http://example.com/a.jpg", "https://example.com/a.jpg", False),  # scheme counts
    ("https://example.com/a.jpg", "https://example.com/a.jpg#top", True),
    ("https://example.com/a.jpg#x", "https://example.com/a.jpg", True),
    ("https://example.com/a.jpg", "https://example.com/A.jpg", False),  # path case-sensitive
    ("https://example.com/a.jpg", "https://example.com/a.jpg?x=1", False),
    ("https://example.com/a?x=1", "https://example.com/a?x=1", True),
    ("https://example.com/a?x=1", "https://example.com/a?X=1", False),
    ("https://example.com/a%20b", "https://example.com/a b", False),  # escapes as written
    ("https://example.com", "https://example.com/", True),  # empty path is "/"
    ("https://example.com/", "https://example.com", True),
    ("https://example.com/a", "https://u@example.com/a", True),  # user info dropped
    ("https://example.com:0443/a", "https://example.com/a", True),  # port read as a number
    # url_prefix
    ("https://example.com/art/*", "https://example.com/art/", True),
    ("https://example.com/art/*", "https://example.com/art/x/y.jpg", True),
    ("https://example.com/art/*", "https://example.com/art", False),
    ("https://example.com/art/*", "https://EXAMPLE.com:443/art/x", True),
    ("https://example.com/art/*", "http://example.com/art/x", False),
    ("https://example.com/art/*", "https://example.com:8443/art/x", False),
    ("https://example.com/art/*", "https://example.com/ART/x", False),
    ("https://example.com/art*", "https://example.com/artist/x", True),  # a text prefix
    ("https://example.com*", "https://example.com/anything", True),  # the whole origin
    ("https://example.com*", "https://example.com.evil.test/", False),  # never another host
    ("https://example.com/s?q=*", "https://example.com/s?q=cats", True),
    ("https://example.com/s?q=*", "https://example.com/s", False),
    ("https://example.com/a/*", "https://example.com/a/#frag", True),
    # URLs we cannot parse match nothing
    ("example.com", "example.com/a", False),
    ("example.com", "https://example.com:99999/a", False),
    ("example.com", "", False),
]


@pytest.mark.parametrize(("entry", "url", "matches"), URL_CASES)
def test_url_matching(tmp_path: Path, entry: str, url: str, matches: bool) -> None:
    lists = _load_txt(tmp_path, entry + "\n")
    assert len(lists) == 1
    hit = lists.match_url(url)
    assert (hit is not None) == matches, (entry, url, hit)
    if hit is not None:
        assert hit.entry == entry


def test_url_before_prefix_before_host(tmp_path: Path) -> None:
    lists = _load_txt(tmp_path, "example.com\nhttps://example.com/art/*\n"
                                "https://example.com/art/a.jpg\n")
    assert lists.match_url("https://example.com/art/a.jpg").kind == "url"
    assert lists.match_url("https://example.com/art/b.jpg").kind == "url_prefix"
    assert lists.match_url("https://example.com/other").kind == "host"


def test_shortest_matching_prefix_is_reported(tmp_path: Path) -> None:
    lists = _load_txt(tmp_path, "https://example.com/art/2026/*\nhttps://example.com/art/*\n"
                                "https://example.com/b*\n")
    assert len(lists) == 3
    assert lists.match_url("https://example.com/art/2026/x").entry == "https://example.com/art/*"
    assert lists.match_url("https://example.com/bz").entry == "https://example.com/b*"
    assert lists.match_url("https://example.com/a") is None


def test_prefix_matcher_agrees_with_a_scan(tmp_path: Path) -> None:
    rng = random.Random(7)
    alphabet = "abcd/"
    prefixes = {"/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(2, 6)))
                for _ in range(150)}
    lists = _load_txt(tmp_path, "".join(f"https://h.example{p}*\n" for p in prefixes))
    outcomes = set()
    for _ in range(3000):
        path = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        expected = any(path.startswith(p) for p in prefixes)
        hit = lists.match_url(f"https://h.example{path}")
        assert (hit is not None) == expected, path
        if hit is not None:  # the shortest matching prefix is the one reported
            shortest = min((p for p in prefixes if path.startswith(p)), key=len)
            assert hit.entry == f"https://h.example{shortest}*"
        outcomes.add(expected)
    assert outcomes == {True, False}


@pytest.mark.parametrize("digest", [SHA, SHA_UPPER, " " + SHA + "\n", "Ab" * 32])
def test_sha256_any_case(tmp_path: Path, digest: str) -> None:
    lists = _load_txt(tmp_path, SHA_UPPER + "\n")
    hit = lists.match_sha256(digest)
    assert hit is not None and hit.entry == SHA_UPPER and hit.kind == "sha256"
    assert lists.match_sha256(SHA2) is None


# ----------------------------------------------------------------- evidence


def test_evidence_names_list_entry_and_source(tmp_path: Path) -> None:
    path = _csv(tmp_path, [{"url_prefix": "https://example.com/art/",
                            "source": "artist request 2026-03"}], "optout.csv")
    hit = load_lists([path], role="opt-out").match_url("https://example.com/art/x.jpg")
    assert hit is not None
    assert hit.evidence == (f"opt-out list {path}: url_prefix https://example.com/art/ "
                            "(source: artist request 2026-03)")


def test_evidence_without_role_or_source(tmp_path: Path) -> None:
    path = _txt(tmp_path, "Example.COM\n", "optout.txt")
    hit = load_lists([path]).match_url("https://example.com/")
    assert hit is not None
    assert hit.evidence == f"list {path}: host Example.COM"
    hit = load_lists([path], role="opt-in").match_url("https://example.com/")
    assert hit is not None and hit.evidence.startswith(f"opt-in list {path}: host")


def test_unknown_role_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="role"):
        load_lists([_txt(tmp_path, "a.example\n")], role="optout")
    with pytest.raises(ConfigError, match="role"):  # before any file is read
        load_lists([str(tmp_path / "absent.txt")], role="optin")


# ---------------------------------------------------------------- bad files


def test_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="nope.txt: list file not found"):
        load_lists([missing])


def test_missing_memory_file(mem: str) -> None:
    with pytest.raises(InputError, match="not found"):
        load_lists([f"{mem}/absent.csv"])


@pytest.mark.parametrize("name", ["list.xlsx", "list", "list.gz", "list.tsv"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("example.com\n")
    with pytest.raises(InputError, match="unknown list format") as info:
        load_lists([str(path)])
    assert name in str(info.value)


def test_csv_without_a_known_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, [{"URL": "https://example.com/", "source": "x"}])
    with pytest.raises(InputError, match="no url, url_prefix, host or sha256 column") as info:
        load_lists([path])
    assert path in str(info.value) and "'URL'" in str(info.value)


def test_empty_csv_has_no_known_column(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no url"):
        load_lists([_txt(tmp_path, "", "empty.csv")])


def test_parquet_without_a_known_column(tmp_path: Path) -> None:
    path = _parquet(tmp_path, pa.table({"link": ["https://example.com/"]}))
    with pytest.raises(InputError, match="no url.*'link'"):
        load_lists([path])


def test_jsonl_without_a_known_key(tmp_path: Path) -> None:
    path = _jsonl(tmp_path, [{"link": "https://example.com/"}, {"href": "x"}])
    with pytest.raises(InputError, match="list.jsonl: no url"):
        load_lists([path])


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = _txt(tmp_path, "url\nhttps://example.com/\n", "fake.parquet")
    with pytest.raises(InputError, match="fake.parquet: cannot read"):
        load_lists([path])


def test_not_utf8_text(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9.example\n")
    with pytest.raises(InputError, match="latin.txt: cannot read"):
        load_lists([str(path)])


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "broken.txt.gz"
    path.write_bytes(gzip.compress(b"example.com\n" * 1000)[:-40])
    with pytest.raises(InputError, match="broken.txt.gz"):
        load_lists([str(path)])


def test_unknown_protocol() -> None:
    with pytest.raises(InputError, match="nosuchproto://x/list.txt"):
        load_lists(["nosuchproto://x/list.txt"])


def test_bad_file_errors_are_in_the_tree(tmp_path: Path) -> None:
    with pytest.raises(ConsentFetchError):
        load_lists([str(tmp_path / "absent.jsonl")])
    with pytest.raises(ValueError):
        load_lists([str(tmp_path / "absent.jsonl")])


# ------------------------------------------------------- malformed entries


def test_malformed_csv_entries_are_skipped_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _csv(tmp_path, [
        {"sha256": "a" * 63},  # 63 hex digits
        {"sha256": "g" * 64},  # not hex
        {"url": "example.com/a.jpg"},  # no scheme
        {"url": "https:///a.jpg"},  # no host
        {"url_prefix": "/art/*"},
        {"host": "example.com/art"},
        {"url": "https://ok.example/a.jpg", "sha256": SHA},
    ])
    with caplog.at_level(logging.WARNING, logger="consentfetch.consent.registry"):
        lists = load_lists([path])
    assert len(lists) == 2
    assert lists.match_url("https://ok.example/a.jpg") is not None
    records = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert len(records) == 1
    message = records[0].getMessage()
    assert path in message and "skipped 6 malformed entries" in message
    assert "line 2" in message and "not 64 hex digits" in message


def test_malformed_jsonl_lines_are_counted(tmp_path: Path,
                                           caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "l.jsonl"
    path.write_text('{"host": "a.example"}\nnot json\n[1, 2]\n{"url": 5}\n'
                    '{"url": "https://b.example/x"}\n')
    with caplog.at_level(logging.WARNING, logger="consentfetch.consent.registry"):
        lists = load_lists([str(path)])
    assert len(lists) == 2
    assert "skipped 3 malformed entries" in caplog.text
    assert "line 2: invalid JSON" in caplog.text


def test_parquet_cell_that_is_not_text(tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    table = pa.table({"url": pa.array([1, 2], pa.int64()), "host": ["a.example", "b.example"]})
    with caplog.at_level(logging.WARNING, logger="consentfetch.consent.registry"):
        lists = load_lists([_parquet(tmp_path, table)])
    assert len(lists) == 2
    assert "skipped 2 malformed entries" in caplog.text and "row 0" in caplog.text


def test_one_malformed_entry_wording(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="consentfetch.consent.registry"):
        _load_txt(tmp_path, "https://exa mple.com/x\na.example\n")
    assert "skipped 1 malformed entry " in caplog.text


def test_empty_list_warns_but_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="consentfetch.consent.registry"):
        lists = _load_txt(tmp_path, "# nothing yet\n")
    assert len(lists) == 0 and not lists.has_sha256
    assert lists.match_url("https://example.com/") is None
    assert "holds no entry" in caplog.text


# ------------------------------------------------------------------- misc


def test_kinds_and_empty_list() -> None:
    assert KINDS == ("url", "url_prefix", "host", "sha256")
    empty = ConsentList()
    assert len(empty) == 0 and empty.names == () and not empty.has_sha256
    assert empty.match_url("https://example.com/") is None
    assert empty.match_sha256(SHA) is None


def test_a_single_path_string_is_one_file(tmp_path: Path) -> None:
    path = _txt(tmp_path, "example.com\n")
    lists = load_lists(path)
    assert lists.names == (path,)


def test_pickles_for_worker_processes(tmp_path: Path) -> None:
    lists = _load_txt(tmp_path, f"example.com\nhttps://a.example/p/*\n{SHA}\n")
    copy = pickle.loads(pickle.dumps(lists))
    assert len(copy) == 3 and copy.names == lists.names
    assert copy.match_url("https://a.example/p/x") == lists.match_url("https://a.example/p/x")
    assert copy.match_sha256(SHA) == lists.match_sha256(SHA)


# ------------------------------------------------------------------ scaling


def test_scaling_200k_prefixes_10k_urls(tmp_path: Path) -> None:
    rng = random.Random(1)
    hosts = [f"h{i}.example" for i in range(50)]
    lines = []
    for i in range(200_000):
        # a quarter of the prefixes on one host: the per-origin index must not scan
        host = hosts[0] if i % 4 == 0 else rng.choice(hosts)
        lines.append(f"https://{host}/u{i}/p{rng.randrange(1000)}/*")
    path = _txt(tmp_path, "\n".join(lines) + "\n")

    started = time.perf_counter()
    lists = load_lists([path])
    loaded = time.perf_counter() - started
    assert len(lists) == 200_000

    urls = []
    for i in range(10_000):
        if i % 2:  # a listed prefix + more path
            urls.append(lines[rng.randrange(len(lines))][:-1] + f"img{i}.jpg")
        else:
            urls.append(f"https://{hosts[0]}/u{rng.randrange(200_000)}/q{i}.jpg")
    started = time.perf_counter()
    hits = sum(lists.match_url(url) is not None for url in urls)
    matched = time.perf_counter() - started
    assert hits >= 5_000
    assert matched < 5.0, f"10k URLs against 200k prefixes took {matched:.2f}s"
    assert loaded < 20.0, f"loading 200k prefixes took {loaded:.2f}s"


def test_csv_long_quoted_source_invents_no_entries(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    # A source note over csv's field limit, holding lines that look like records:
    # the reader used to resume inside it and load them as entries.
    inside = "".join(f"\nhttps://victim.example/{i}.jpg,https://victim.example/" for i in range(4000))
    path = tmp_path / "long.csv"
    path.write_text(f'url,url_prefix,source\nhttps://a.example/1.jpg,,"{inside}"\n'
                    "https://b.example/2.jpg,,ok\n")
    assert len(inside) > 131_072
    with caplog.at_level(logging.WARNING, logger="consentfetch.consent.registry"):
        lists = load_lists([str(path)])
    assert lists.match_url("https://victim.example/1.jpg") is None
    assert lists.match_url("https://victim.example/x") is None
    assert lists.match_url("https://b.example/2.jpg") is not None
    assert "skipped 1 malformed entry" in caplog.text and "line 2" in caplog.text


# ------------------------------------------------------------- bounded lines


@pytest.mark.parametrize("name", ["long.txt", "long.jsonl"])
def test_a_line_too_long_to_hold_is_one_malformed_entry(
        tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture) -> None:
    """A list line is read within the same bound as a CSV record (4 MiB): longer, it
    is skipped without being held, counted and warned about, and the next line loads."""
    long = "a" * ((4 << 20) + 10)
    lines = [long, "b.example"] if name.endswith(".txt") else \
        [json.dumps({"host": long}), json.dumps({"host": "b.example"})]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="consentfetch.consent.registry"):
        lists = load_lists([str(path)])
    assert len(lists) == 1 and lists.match_url("https://b.example/x") is not None
    assert "skipped 1 malformed entry (first: line 1: line longer than 4194304 characters)" \
        in caplog.text
