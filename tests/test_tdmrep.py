"""Tests of consentfetch.consent.tdmrep: TDMRep headers, tdmrep.json and precedence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consentfetch.consent.tdmrep import (
    MAX_TDMREP_BYTES,
    MAX_TDMREP_ENTRIES,
    UNSET,
    TdmRepFile,
    TdmVerdict,
    check_tdm_headers,
    combine,
)

POLICY = "https://example.com/policies/tdm.json"

# --- headers ------------------------------------------------------------------------

# (tdm-reservation lines, tdm-policy lines, expected reservation)
HEADER_CASES: list[tuple[list[str], list[str], int | None]] = [
    ([], [], None),
    (["1"], [], 1),
    (["0"], [], 0),
    ([" 1 "], [], 1),
    (["\t0\t"], [], 0),
    ([""], [], None),
    (["true"], [], None),
    (["false"], [], None),
    (["2"], [], None),
    (["-1"], [], None),
    (["01"], [], None),
    (["1.0"], [], None),
    (["yes"], [], None),
    (['"1"'], [], None),
    (["１"], [], None),  # full-width digit
    (["1", "0"], [], 1),  # disagreeing lines: most restrictive
    (["0", "1"], [], 1),
    (["0", "0"], [], 0),
    (["garbage", "0"], [], 0),  # an unset line does not clear a set one
    (["garbage", "1"], [], 1),
    (["0, 1"], [], 1),  # lines joined by an intermediary
    (["1,1"], [], 1),
    ([], [POLICY], None),  # a policy alone reserves nothing
]


@pytest.mark.parametrize(("reservation", "policy", "expected"), HEADER_CASES)
def test_check_tdm_headers(reservation: list[str], policy: list[str],
                           expected: int | None) -> None:
    verdict = check_tdm_headers(reservation, policy)
    assert verdict.reservation == expected
    if expected is None:
        assert verdict == UNSET


def test_header_evidence() -> None:
    assert check_tdm_headers(["1"], []) == TdmVerdict(1, None, "tdm-reservation: 1")
    assert check_tdm_headers(["1"], [f" {POLICY} "]) == TdmVerdict(
        1, POLICY, f"tdm-reservation: 1, tdm-policy: {POLICY}")
    assert check_tdm_headers(["0", "1"], ["", POLICY, "https://other"]) == TdmVerdict(
        1, POLICY, f"tdm-reservation: 1, tdm-policy: {POLICY}")
    assert check_tdm_headers(["0"], []).evidence == "tdm-reservation: 0"


def test_headers_accept_lone_strings() -> None:
    assert check_tdm_headers("1", POLICY) == TdmVerdict(
        1, POLICY, f"tdm-reservation: 1, tdm-policy: {POLICY}")


# --- tdmrep.json ---------------------------------------------------------------------

def _file(entries: Any) -> TdmRepFile:
    parsed = TdmRepFile.parse(json.dumps(entries).encode())
    assert parsed is not None
    return parsed


EXAMPLE = [
    {"location": "/", "tdm-reservation": 1, "tdm-policy": POLICY},
]

ORDERED = [
    {"location": "/img/public/*", "tdm-reservation": 0},
    {"location": "/img/*", "tdm-reservation": 1},
    {"location": "/img/public/secret.jpg", "tdm-reservation": 1},  # never reached
    {"location": "*.png$", "tdm-reservation": 1},
    {"location": "/docs/$", "tdm-reservation": 1},
]

# (entries, url, expected reservation, expected entry number or None)
FILE_CASES: list[tuple[Any, str, int | None, int | None]] = [
    ([], "/a.jpg", None, None),
    (EXAMPLE, "/anything.jpg", 1, 1),
    (EXAMPLE, "https://example.com/x/y.jpg?size=2", 1, 1),
    # the first matching entry in array order wins (not the longest)
    (ORDERED, "/img/public/a.jpg", 0, 1),
    (ORDERED, "/img/public/secret.jpg", 0, 1),
    (ORDERED, "/img/private/a.jpg", 1, 2),
    (ORDERED, "/other/a.jpg", None, None),
    (ORDERED, "/other/a.png", 1, 4),
    (ORDERED, "/other/a.png?x=1", None, None),  # "$" anchors the path+query
    (ORDERED, "/docs/", 1, 5),
    (ORDERED, "/docs/index.html", None, None),
    ([{"location": "/img/", "tdm-reservation": 1}], "/IMG/a.jpg", None, None),  # case-sensitive
    ([{"location": "/img/*.jpg", "tdm-reservation": 1}], "/img/a/b.jpg", 1, 1),
    ([{"location": "/img/*.jpg", "tdm-reservation": 1}], "/img/a.gif", None, None),
    ([{"location": "/%62az/", "tdm-reservation": 1}], "/baz/a.jpg", 1, 1),
    ([{"location": "/a/b", "tdm-reservation": 1}], "/a/b/c.jpg", 1, 1),  # a prefix
    # a location not starting with "/" or "*" is read from the root
    ([{"location": "img/*", "tdm-reservation": 1}], "/img/a.jpg", 1, 1),
    # elements that are no entry are skipped
    ([42, "x", None, [], {"tdm-reservation": 0}, {"location": "", "tdm-reservation": 0},
      {"location": 7, "tdm-reservation": 0}, {"location": "/", "tdm-reservation": 1}],
     "/a.jpg", 1, 8),
    # invalid reservation values: unset for that entry, matching continues
    ([{"location": "/", "tdm-reservation": True}], "/a.jpg", None, None),
    ([{"location": "/", "tdm-reservation": "1"}], "/a.jpg", None, None),
    ([{"location": "/", "tdm-reservation": 1.0}], "/a.jpg", None, None),
    ([{"location": "/", "tdm-reservation": 2}], "/a.jpg", None, None),
    ([{"location": "/", "tdm-reservation": None}], "/a.jpg", None, None),
    ([{"location": "/"}], "/a.jpg", None, None),
    ([{"location": "/", "tdm-reservation": "yes"}, {"location": "/", "tdm-reservation": 1}],
     "/a.jpg", 1, 2),
    # ... but a later 0 is no permission after a matching unreadable entry
    ([{"location": "/", "tdm-reservation": "1"}, {"location": "/", "tdm-reservation": 0}],
     "/a.jpg", None, None),
    # an unreadable entry that does not match changes nothing
    ([{"location": "/other/", "tdm-reservation": "1"}, {"location": "/", "tdm-reservation": 0}],
     "/a.jpg", 0, 2),
]


@pytest.mark.parametrize(("entries", "url", "reservation", "number"), FILE_CASES)
def test_tdmrep_file_check(entries: Any, url: str, reservation: int | None,
                           number: int | None) -> None:
    verdict = _file(entries).check(url)
    assert verdict.reservation == reservation
    if number is None:
        assert verdict == UNSET
    else:
        assert verdict.evidence is not None
        assert verdict.evidence.startswith(f"tdmrep.json entry {number} ")


def test_file_evidence_and_policy() -> None:
    verdict = _file(EXAMPLE).check("/a.jpg")
    assert verdict == TdmVerdict(
        1, POLICY,
        f'tdmrep.json entry 1 {{"location": "/", "tdm-reservation": 1, "tdm-policy": "{POLICY}"}}')
    verdict = _file(ORDERED).check("/img/x.jpg")
    assert verdict == TdmVerdict(
        1, None, 'tdmrep.json entry 2 {"location": "/img/*", "tdm-reservation": 1}')


def test_file_policy_must_be_a_string() -> None:
    verdict = _file([{"location": "/", "tdm-reservation": 1, "tdm-policy": 5}]).check("/a")
    assert (verdict.reservation, verdict.policy) == (1, None)


def test_file_evidence_is_clipped() -> None:
    location = "/" + "a" * 100_000
    verdict = _file([{"location": location, "tdm-reservation": 1}]).check(location)
    assert verdict.reservation == 1
    assert verdict.evidence is not None and len(verdict.evidence) < 2_000


# bodies that are no valid tdmrep.json: "not implemented"
INVALID_BODIES: list[bytes] = [
    b"",
    b"   ",
    b"not json",
    b"<html><body>Not Found</body></html>",
    b"{}",
    b'{"location": "/", "tdm-reservation": 1}',
    b"null",
    b"1",
    b'"[]"',
    b"[{\"location\": \"/\", \"tdm-reservation\": 1}",  # truncated
    b"[{\"location\": \"/\", \"tdm-reservation\": 1}] trailing",
    b'[{"location": "/caf\xe9", "tdm-reservation": 1}]',  # latin-1, not UTF-8
    b"\xff\xfe[\x00]\x00",  # UTF-16
    b"[" * 200_000 + b"]" * 200_000,  # nesting bomb
    b"[" + b"9" * 10_000 + b"]",  # an integer too long to convert
    b"[" + b"{\"location\": \"/\", \"tdm-reservation\": 1}," * 20_000 + b"1]",  # > 512 KiB
]


@pytest.mark.parametrize("body", INVALID_BODIES, ids=lambda b: repr(b[:30]))
def test_invalid_files_are_not_implemented(body: bytes) -> None:
    assert TdmRepFile.parse(body) is None


def test_valid_bodies() -> None:
    assert TdmRepFile.parse(b"[]") is not None
    bom = b"\xef\xbb\xbf" + json.dumps(EXAMPLE).encode()
    parsed = TdmRepFile.parse(bom)
    assert parsed is not None and parsed.check("/a").reservation == 1
    utf8 = json.dumps([{"location": "/café/", "tdm-reservation": 1}], ensure_ascii=False)
    parsed = TdmRepFile.parse(utf8.encode())
    assert parsed is not None
    assert parsed.check("/caf%C3%A9/a.jpg").reservation == 1
    assert parsed.check("/café/a.jpg").reservation == 1
    assert TdmRepFile.parse(bytearray(b"[]")) is not None  # type: ignore[arg-type]


def test_size_limit_is_inclusive() -> None:
    entry = json.dumps({"location": "/", "tdm-reservation": 1}).encode()
    body = b"[" + entry + b"]"
    padded = body + b" " * (MAX_TDMREP_BYTES - len(body))
    assert len(padded) == MAX_TDMREP_BYTES
    assert TdmRepFile.parse(padded) is not None
    assert TdmRepFile.parse(padded + b" ") is None


def test_only_the_first_entries_are_considered() -> None:
    entries = [{"location": f"/d{i}/", "tdm-reservation": 0} for i in range(MAX_TDMREP_ENTRIES)]
    entries.append({"location": "/", "tdm-reservation": 1})
    body = json.dumps(entries, separators=(",", ":")).encode()
    assert len(body) <= MAX_TDMREP_BYTES
    parsed = TdmRepFile.parse(body)
    assert parsed is not None
    assert len(parsed.entries) == MAX_TDMREP_ENTRIES
    assert parsed.check("/d9999/a.jpg").reservation == 0
    assert parsed.check("/elsewhere.jpg") == UNSET  # entry 10,001 is not read


def test_hostile_patterns_stay_fast() -> None:
    location = "/" + "*a" * 20_000 + "$"
    parsed = TdmRepFile.parse(json.dumps([{"location": location, "tdm-reservation": 1}]).encode())
    assert parsed is not None
    assert parsed.check("/" + "a" * 5_000 + "b") == UNSET


# --- precedence ----------------------------------------------------------------------

H1 = TdmVerdict(1, None, "tdm-reservation: 1")
H0 = TdmVerdict(0, None, "tdm-reservation: 0")
F1 = TdmVerdict(1, POLICY, 'tdmrep.json entry 1 {"location": "/", "tdm-reservation": 1}')
F0 = TdmVerdict(0, None, 'tdmrep.json entry 1 {"location": "/", "tdm-reservation": 0}')

COMBINE_CASES: list[tuple[TdmVerdict, TdmVerdict, TdmVerdict]] = [
    (UNSET, UNSET, UNSET),
    (H1, UNSET, H1),
    (H0, UNSET, H0),
    (UNSET, F1, F1),  # a missing header never clears the file
    (UNSET, F0, F0),
    (H0, F1, H0),  # the image's own header supersedes the file
    (H1, F0, H1),
    (H1, F1, H1),
]


@pytest.mark.parametrize(("header", "file", "expected"), COMBINE_CASES)
def test_combine(header: TdmVerdict, file: TdmVerdict, expected: TdmVerdict) -> None:
    assert combine(header, file) == expected


def test_combine_garbage_header_keeps_the_file() -> None:
    header = check_tdm_headers(["true"], [POLICY])
    assert combine(header, _file(EXAMPLE).check("/a.jpg")).reservation == 1
