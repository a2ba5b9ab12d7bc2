"""Origin-file kinds and outcomes and list entry kinds are enums whose values are the
strings written to origins.parquet and the audit, unchanged; no code compares the
bare strings."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from consentfetch.consent.origins import (
    FileKind,
    FileOutcome,
    ai_txt_from_fetch,
    origin_file_from_row,
    policy_from_files,
    robots_from_fetch,
)
from consentfetch.consent.registry import KINDS, EntryKind, ListBuilder
from consentfetch.tables import Record

from .conftest import Answer
from .test_engine import ok

PACKAGE = Path(__file__).resolve().parent.parent / "consentfetch"
ORIGIN = "https://example.com:443"


def test_the_values_are_the_strings_outputs_hold() -> None:
    assert [str(k) for k in FileKind] == ["robots.txt", "ai.txt", "tdmrep.json", "licence"]
    assert [k.path for k in FileKind] == ["/robots.txt", "/ai.txt", "/.well-known/tdmrep.json",
                                         ""]
    assert [str(o) for o in FileOutcome] == ["parsed", "absent", "unreachable"]
    assert [str(k) for k in EntryKind] == list(KINDS) == ["url", "url_prefix", "host", "sha256"]


def test_origins_rows_hold_plain_strings_and_read_back_as_enums() -> None:
    _, robots = robots_from_fetch(ORIGIN, f"{ORIGIN}/robots.txt", Answer(503))
    _, ai = ai_txt_from_fetch(ORIGIN, f"{ORIGIN}/ai.txt", ok("User-agent: *\nDisallow: /\n"),
                              keep_body=True)
    rows = pa.Table.from_pylist([robots.to_row(), ai.to_row()]).to_pylist()
    assert [(type(r["kind"]), r["kind"], r["outcome"]) for r in rows] == [
        (str, "robots.txt", "unreachable"), (str, "ai.txt", "parsed")]
    back = [origin_file_from_row(r) for r in rows]
    assert [(f.kind, f.outcome) for f in back] == [
        (FileKind.ROBOTS_TXT, FileOutcome.UNREACHABLE), (FileKind.AI_TXT, FileOutcome.PARSED)]
    assert back == [robots, ai]
    policy = policy_from_files(ORIGIN, {f.kind: f for f in back})
    assert policy is not None and policy.robots is None  # unreachable: disallow everything


def test_a_list_hit_names_its_entry_kind() -> None:
    builder = ListBuilder(["optout.txt"], role="opt-out")
    lines = ["example.org", "https://example.com/art/*", "a" * 64, "https://example.net/a.jpg"]
    builder.add_file(0, "txt", [Record(f"line {i}", {"line": v})
                            for i, v in enumerate(lines, 1)])
    lists = builder.build()
    hits = [lists.match_url("https://example.org/x.jpg"),
            lists.match_url("https://example.com/art/b.jpg"),
            lists.match_sha256("A" * 64), lists.match_url("https://example.net/a.jpg")]
    assert [hit.kind if hit else None for hit in hits] == [
        EntryKind.HOST, EntryKind.URL_PREFIX, EntryKind.SHA256, EntryKind.URL]
    assert hits[1] is not None
    assert hits[1].evidence == "opt-out list optout.txt: url_prefix https://example.com/art/*"


_VALUES = "|".join(re.escape(str(v)) for enum in (FileKind, FileOutcome) for v in enum)
_COMPARED = re.compile(rf"""(?:[=!]=|\bin\b)\s*\(?["']({_VALUES}|url_prefix|sha256)["']""")


def test_no_module_compares_the_bare_strings() -> None:
    found = [f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
             for path in sorted(PACKAGE.rglob("*.py")) if path.name != "testsite.py"
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if _COMPARED.search(line)]
    assert found == []
