"""Tests of consentfetch.consent.headers: X-Robots-Tag parsing and denial."""

from __future__ import annotations

import pytest

from consentfetch.consent.headers import (
    AI_DIRECTIVES,
    SEARCH_DIRECTIVES,
    XRobotsVerdict,
    check_x_robots_tag,
    parse_x_robots_tag,
)

DATE = "Sunday, 01 Jan 2030 00:00:00 GMT"

PARSE_CASES: list[tuple[list[str], dict[str, set[str]]]] = [
    ([], {}),
    (["", "   "], {}),
    (["noindex"], {"*": {"noindex"}}),
    (["noindex, nofollow"], {"*": {"noindex", "nofollow"}}),
    (["NoAI, NoImageAI, NOML"], {"*": {"noai", "noimageai", "noml"}}),
    (["  noai  ,  ,noml "], {"*": {"noai", "noml"}}),
    (["noindex nofollow"], {"*": {"noindex", "nofollow"}}),
    (["all"], {"*": {"all"}}),
    (["googlebot: noindex, nofollow"], {"googlebot": {"noindex", "nofollow"}}),
    (["GoogleBot: NoIndex"], {"googlebot": {"noindex"}}),
    (
        ["noindex, googlebot: nofollow, mybot: noai"],
        {"*": {"noindex"}, "googlebot": {"nofollow"}, "mybot": {"noai"}},
    ),
    (["googlebot-news: nosnippet"], {"googlebot-news": {"nosnippet"}}),
    (["noindex", "mybot: noai"], {"*": {"noindex"}, "mybot": {"noai"}}),
    (["mybot: noai", "noimageai"], {"mybot": {"noai"}, "*": {"noimageai"}}),  # no leak across lines
    ([f"unavailable_after: {DATE}"], {"*": {"unavailable_after:sunday, 01 jan 2030 00:00:00 gmt"}}),
    (
        [f"unavailable_after: {DATE}, noai"],
        {"*": {"unavailable_after:sunday, 01 jan 2030 00:00:00 gmt", "noai"}},
    ),
    (
        [f"unavailable_after: {DATE}, mybot: noai"],
        {"*": {"unavailable_after:sunday, 01 jan 2030 00:00:00 gmt"}, "mybot": {"noai"}},
    ),
    (["unavailable_after: 2030-01-01T00:00:00Z, noai"], {"*": {"unavailable_after:2030-01-01t00:00:00z", "noai"}}),
    (["unavailable_after: 25 Jun 2010 15:00:00 PST"], {"*": {"unavailable_after:25 jun 2010 15:00:00 pst"}}),
    (
        ["unavailable_after: Sunday, 01-Jan-30 00:00:00 GMT"],
        {"*": {"unavailable_after:sunday, 01-jan-30 00:00:00 gmt"}},
    ),
    (
        [f"googlebot: unavailable_after: {DATE}, noai"],
        {"googlebot": {"unavailable_after:sunday, 01 jan 2030 00:00:00 gmt", "noai"}},
    ),
    (["max-image-preview:large, noai"], {"*": {"max-image-preview:large", "noai"}}),
    (["max-snippet:20, max-video-preview:-1"], {"*": {"max-snippet:20", "max-video-preview:-1"}}),
    (["Max-Image-Preview: None"], {"*": {"max-image-preview:none"}}),
    (
        ["googlebot: max-image-preview:large, mybot: noai"],
        {"googlebot": {"max-image-preview:large"}, "mybot": {"noai"}},
    ),
    (["mybot:"], {}),
    (["noai:"], {"*": {"noai"}}),
    (["*: noai"], {"*": {"noai"}}),
    (["ConsentFetch/1.0: NoAI"], {"consentfetch/1.0": {"noai"}}),
    (["two words: noai"], {}),  # not a crawler name, not a directive
    (["noindex", "NOINDEX", "googlebot: noindex"], {"*": {"noindex"}, "googlebot": {"noindex"}}),
]


@pytest.mark.parametrize(("lines", "expected"), PARSE_CASES)
def test_parse(lines: list[str], expected: dict[str, set[str]]) -> None:
    assert parse_x_robots_tag(lines) == {bot: frozenset(d) for bot, d in expected.items()}


# (header lines, token, strict, denied, directive, index of the evidence line)
CHECK_CASES: list[tuple[list[str], str, bool, bool, str | None, int | None]] = [
    # AI directives deny in both profiles
    (["noai"], "mybot", False, True, "noai", 0),
    (["noimageai"], "mybot", False, True, "noimageai", 0),
    (["noml"], "mybot", False, True, "noml", 0),
    (["NoAI"], "mybot", False, True, "noai", 0),
    (["noai"], "mybot", True, True, "noai", 0),
    (["noindex, nofollow, noai"], "mybot", False, True, "noai", 0),
    (["noindex nofollow noimageai"], "mybot", False, True, "noimageai", 0),
    (["max-snippet:0, noml"], "mybot", False, True, "noml", 0),
    # search directives deny only in strict
    (["noindex"], "mybot", False, False, None, None),
    (["noindex"], "mybot", True, True, "noindex", 0),
    (["noimageindex"], "mybot", False, False, None, None),
    (["noimageindex"], "mybot", True, True, "noimageindex", 0),
    (["none"], "mybot", False, False, None, None),
    (["none"], "mybot", True, True, "none", 0),
    (["NoIndex"], "mybot", True, True, "noindex", 0),
    # other directives never deny
    (["nofollow"], "mybot", True, False, None, None),
    (["all"], "mybot", True, False, None, None),
    (["noarchive, nosnippet, notranslate"], "mybot", True, False, None, None),
    (["max-image-preview:large"], "mybot", True, False, None, None),
    (["max-image-preview: none"], "mybot", True, False, None, None),  # "none" is a value here
    ([f"unavailable_after: {DATE}"], "mybot", True, False, None, None),
    (["something-new, noai-ish"], "mybot", True, False, None, None),
    ([], "mybot", True, False, None, None),
    # bot scopes: ours or all
    (["noindex, mybot: noai"], "mybot", False, True, "noai", 0),
    (["googlebot: nofollow, mybot: noimageai"], "mybot", False, True, "noimageai", 0),
    (["MyBot: NoAI"], "mybot", False, True, "noai", 0),
    (["mybot: noai"], "MyBot", False, True, "noai", 0),
    (["mybot/1.0: noai"], "mybot", False, True, "noai", 0),
    (["consentfetch: noml"], "consentfetch/0.1", False, True, "noml", 0),
    (["mybot: noindex"], "mybot", True, True, "noindex", 0),
    (["mybot: noindex"], "mybot", False, False, None, None),
    (["*: noai"], "mybot", False, True, "noai", 0),
    # bot scopes: someone else
    (["otherbot: noai"], "mybot", False, False, None, None),
    (["otherbot: noindex"], "mybot", True, False, None, None),
    (["googlebot: noindex, noai"], "mybot", True, False, None, None),  # noai is googlebot's too
    (["noindex, otherbot: noai"], "mybot", False, False, None, None),
    (["noindex, otherbot: noai"], "mybot", True, True, "noindex", 0),
    (["mybots: noai"], "mybot", False, False, None, None),  # exact, not a prefix
    (["mybot-extended: noai"], "mybot", False, False, None, None),
    (["bot: noai"], "mybot", False, False, None, None),  # exact, not a substring
    (["mybot: noai"], "bot", False, False, None, None),
    # colon-bearing directives are not bot names
    ([f"unavailable_after: {DATE}, noai"], "mybot", False, True, "noai", 0),
    (["unavailable_after: 2030-01-01T00:00:00+00:00, noml"], "mybot", False, True, "noml", 0),
    (["max-image-preview:large, noai"], "mybot", False, True, "noai", 0),
    (["max-image-preview: large, noimageai"], "mybot", False, True, "noimageai", 0),
    (["otherbot: max-snippet:20, mybot: noai"], "mybot", False, True, "noai", 0),
    # several header lines combine; the evidence is the line that denies
    (["nofollow", "noai"], "mybot", False, True, "noai", 1),
    (["otherbot: noai", "noindex"], "mybot", True, True, "noindex", 1),
    (["otherbot: noai", "noindex"], "mybot", False, False, None, None),
    (["noindex", "otherbot: noai", "mybot: noml"], "mybot", False, True, "noml", 2),
    (["noindex", "noai"], "mybot", True, True, "noai", 1),  # an AI directive is the better evidence
    (["mybot: nofollow", "noimageindex"], "mybot", True, True, "noimageindex", 1),
]


@pytest.mark.parametrize(("lines", "token", "strict", "denied", "directive", "index"), CHECK_CASES)
def test_check(
    lines: list[str], token: str, strict: bool, denied: bool, directive: str | None, index: int | None
) -> None:
    header = None if index is None else lines[index]
    assert check_x_robots_tag(lines, token, strict=strict) == XRobotsVerdict(denied, directive, header)


def test_header_evidence_is_the_line_as_received() -> None:
    line = "  NoIndex,  MyBot: NoAI  "
    verdict = check_x_robots_tag(["nofollow", line], "mybot", strict=False)
    assert verdict == XRobotsVerdict(True, "noai", line)


def test_a_lone_string_is_one_header_line() -> None:
    verdict = check_x_robots_tag("noindex, mybot: noai", "mybot", strict=False)
    assert verdict == XRobotsVerdict(True, "noai", "noindex, mybot: noai")
    assert parse_x_robots_tag("noai") == {"*": frozenset({"noai"})}


def test_tuple_of_lines() -> None:
    assert check_x_robots_tag(("nofollow", "noml"), "mybot", strict=False).denied


def test_directive_sets() -> None:
    assert AI_DIRECTIVES == {"noai", "noimageai", "noml"}
    assert SEARCH_DIRECTIVES == {"noindex", "noimageindex", "none"}
    assert not AI_DIRECTIVES & SEARCH_DIRECTIVES
