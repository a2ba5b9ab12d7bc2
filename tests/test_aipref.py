"""Tests of consentfetch.consent.aipref: Content-Usage in headers and robots.txt."""

from __future__ import annotations

import pytest

from consentfetch.consent.aipref import (
    NO_SIGNAL,
    UsageVerdict,
    check_content_usage_header,
    check_robots_content_usage,
    parse_content_usage,
    usage_decision,
)
from consentfetch.consent.robots import RobotsPolicy, RobotsRule

TOKEN = "consentfetch"

# (field value, parsed dictionary or None for a parse failure)
PARSE_CASES: list[tuple[str, dict[str, str] | None]] = [
    ("", {}),
    ("   ", {}),
    ("train-ai=n", {"train-ai": "n"}),
    ("train-ai=y", {"train-ai": "y"}),
    ("  train-ai=n  ", {"train-ai": "n"}),
    ("train-ai=n, search=y", {"train-ai": "n", "search": "y"}),
    ("train-ai=n,search=y", {"train-ai": "n", "search": "y"}),
    ("train-ai=n,\tsearch=y", {"train-ai": "n", "search": "y"}),
    ("search=n", {"search": "n"}),
    # only bare tokens y / n are values
    ('train-ai="n"', {}),
    ("train-ai=?0", {}),
    ("train-ai=?1", {}),
    ("train-ai=1", {}),
    ("train-ai=0", {}),
    ("train-ai=no", {}),
    ("train-ai=N", {}),
    ("train-ai=(n)", {}),
    ("train-ai=:bg==:", {}),
    ("train-ai", {}),  # Boolean true
    ('train-ai="n", search=n', {"search": "n"}),
    # parameters are ignored
    ("train-ai=n;q=1", {"train-ai": "n"}),
    ("train-ai=n;reason=\"see policy\";x", {"train-ai": "n"}),
    ("train-ai=y;exp=@1700000000", {"train-ai": "y"}),
    # duplicates: the last wins
    ("train-ai=n, train-ai=y", {"train-ai": "y"}),
    ("train-ai=y, train-ai=n", {"train-ai": "n"}),
    ('train-ai=n, train-ai="n"', {}),
    ("train-ai=n, train-ai", {}),
    # unknown labels are kept (their value is y/n); others dropped
    ("foo-bar=n, train-ai=y", {"foo-bar": "n", "train-ai": "y"}),
    ("train-genai=n", {"train-genai": "n"}),
    # parse failures
    ("train-ai=n,,", None),
    ("train-ai=n,", None),
    (",train-ai=n", None),
    ("train-ai=n;", None),
    ("train-ai=n search=y", None),
    ("Train-AI=n", None),
    ("train-ai=n, Search=y", None),
    ("train-ai='n'", None),
    ("train-ai=", None),
    ("=n", None),
    ("train-ai=n; search=y", {"train-ai": "n"}),  # "search=y" is a parameter here
    ("train-ai=\"unterminated", None),
    ("train-ai=n, x=\"é\"", None),  # not ASCII
    ("train-ai=né", None),
    ("trаin-ai=n", None),  # Cyrillic "а"
    ("\ttrain-ai=n", {"train-ai": "n"}),  # outer HTAB trimmed like OWS
    ("train-ai=%\"caf%c3%a9\"", {}),  # a display string is not a token
]


@pytest.mark.parametrize(("value", "expected"), PARSE_CASES)
def test_parse_content_usage(value: str, expected: dict[str, str] | None) -> None:
    assert parse_content_usage(value) == expected


# (prefs, strict, expected decision)
DECISION_CASES: list[tuple[dict[str, str], bool, tuple[bool | None, str | None]]] = [
    ({}, True, (None, None)),
    ({"train-ai": "n"}, False, (False, "train-ai")),
    ({"train-ai": "y"}, False, (True, "train-ai")),
    ({"search": "n"}, True, (None, None)),
    ({"search": "y"}, False, (None, None)),
    ({"train-genai": "n"}, False, (None, None)),
    ({"train-genai": "n"}, True, (False, "train-genai")),
    ({"ai": "n"}, True, (False, "ai")),
    ({"genai": "n"}, True, (False, "genai")),
    ({"ai": "n"}, False, (None, None)),
    ({"train-genai": "y"}, True, (True, "train-genai")),
    ({"train-ai": "y", "train-genai": "n"}, True, (False, "train-genai")),
    ({"train-ai": "y", "train-genai": "n"}, False, (True, "train-ai")),
    ({"train-genai": "y", "train-ai": "n"}, True, (False, "train-ai")),
    ({"train-ai": "n", "genai": "n"}, True, (False, "train-ai")),
    ({"train-ai": "y", "ai": "y"}, True, (True, "train-ai")),
    ({"train-ai": "maybe"}, True, (None, None)),
]


@pytest.mark.parametrize(("prefs", "strict", "expected"), DECISION_CASES)
def test_usage_decision(prefs: dict[str, str], strict: bool,
                        expected: tuple[bool | None, str | None]) -> None:
    assert usage_decision(prefs, strict=strict) == expected


# (header lines, strict, denied, allowed, label)
HEADER_CASES: list[tuple[list[str], bool, bool, bool, str | None]] = [
    ([], True, False, False, None),
    ([""], True, False, False, None),
    (["train-ai=n"], False, True, False, "train-ai"),
    (["train-ai=y"], False, False, True, "train-ai"),
    (["search=n"], True, False, False, None),
    (["search=y, train-ai=n"], False, True, False, "train-ai"),
    (['train-ai="n"'], True, False, False, None),
    (["train-ai=?0"], True, False, False, None),
    (["train-ai=n;src=robots"], True, True, False, "train-ai"),
    (["train-ai=n,,"], True, False, False, None),
    (["train-ai=n;"], True, False, False, None),
    (["train-genai=n"], False, False, False, None),
    (["train-genai=n"], True, True, False, "train-genai"),
    (["genai=n"], True, True, False, "genai"),
    (["ai=y"], True, False, True, "ai"),
    # several lines combine into one dictionary (last wins across lines)
    (["search=y", "train-ai=n"], False, True, False, "train-ai"),
    (["train-ai=n", "train-ai=y"], False, False, True, "train-ai"),
    (["train-ai=y", "train-ai=n"], False, True, False, "train-ai"),
    # one unparseable line voids the whole field
    (["train-ai=n", "search=y,"], True, False, False, None),
    (["train-ai=n", "Bad=1"], True, False, False, None),
    (["train-ai=n", "x=\"é\""], True, False, False, None),
    # empty lines carry no value
    (["train-ai=n", ""], True, True, False, "train-ai"),
    (["", "  ", "train-ai=n"], True, True, False, "train-ai"),
]


@pytest.mark.parametrize(("lines", "strict", "denied", "allowed", "label"), HEADER_CASES)
def test_check_content_usage_header(lines: list[str], strict: bool, denied: bool,
                                    allowed: bool, label: str | None) -> None:
    verdict = check_content_usage_header(lines, strict=strict)
    assert (verdict.denied, verdict.allowed, verdict.label) == (denied, allowed, label)
    assert not (verdict.denied and verdict.allowed)
    if label is None:
        assert verdict == NO_SIGNAL


def test_header_evidence_is_the_field_as_received() -> None:
    assert check_content_usage_header(["train-ai=n"], strict=False) == UsageVerdict(
        True, False, "train-ai", "Content-Usage: train-ai=n")
    verdict = check_content_usage_header(["search=y", " train-ai=n;x=1 "], strict=True)
    assert verdict.evidence == "Content-Usage: search=y, train-ai=n;x=1"


def test_header_accepts_a_lone_string() -> None:
    assert check_content_usage_header("train-ai=n", strict=True).denied


# --- robots.txt Content-Usage rules --------------------------------------------------

def _rules(*values: str) -> list[RobotsRule]:
    return [RobotsRule("content-usage", v, f"Content-Usage: {v}", n, None)
            for n, v in enumerate(values, start=1)]


# (rule values, url, strict, denied, allowed, line of the deciding rule)
ROBOTS_CASES: list[tuple[tuple[str, ...], str, bool, bool, bool, int | None]] = [
    ((), "/a.jpg", True, False, False, None),
    (("train-ai=n",), "/a.jpg", False, True, False, 1),
    (("train-ai=y",), "https://example.com/x/y.png?q=1", False, False, True, 1),
    (("/art/ train-ai=n",), "/art/a.jpg", False, True, False, 1),
    (("/art/ train-ai=n",), "/photos/a.jpg", False, False, False, None),
    (("/art/ train-ai=n",), "/Art/a.jpg", False, False, False, None),  # case-sensitive
    (("/art/\ttrain-ai=n",), "/art/a.jpg", False, True, False, 1),
    (("/art/   train-ai=n, search=y",), "/art/a.jpg", False, True, False, 1),
    # the longest path wins, whatever the order
    (("train-ai=n", "/art/ train-ai=y"), "/art/a.jpg", False, False, True, 2),
    (("/art/ train-ai=y", "train-ai=n"), "/art/a.jpg", False, False, True, 1),
    (("/art/ train-ai=y", "train-ai=n"), "/blog/a.jpg", False, True, False, 2),
    (("/ train-ai=y", "/art/private/ train-ai=n", "/art/ train-ai=y"),
     "/art/private/x.jpg", False, True, False, 2),
    (("/ train-ai=y", "/art/private/ train-ai=n", "/art/ train-ai=y"),
     "/art/public/x.jpg", False, False, True, 3),
    # "/" beats a rule without a path
    (("/ train-ai=y", "train-ai=n"), "/a.jpg", False, False, True, 1),
    # ties: the later line wins
    (("/art/ train-ai=n", "/art/ train-ai=y"), "/art/a.jpg", False, False, True, 2),
    (("/art/ train-ai=y", "/art/ train-ai=n"), "/art/a.jpg", False, True, False, 2),
    (("train-ai=y", "train-ai=n"), "/a.jpg", False, True, False, 2),
    # wildcards and anchors
    (("*.jpg$ train-ai=n",), "/img/a.jpg", False, True, False, 1),
    (("*.jpg$ train-ai=n",), "/img/a.jpg?size=2", False, False, False, None),
    (("/*.png train-ai=n",), "/x/y.png?v=1", False, True, False, 1),
    (("/art$ train-ai=n",), "/art", False, True, False, 1),
    (("/art$ train-ai=n",), "/art/", False, False, False, None),
    (("/art/ train-ai=y", "/art/*.jpg train-ai=n"), "/art/a.jpg", False, True, False, 2),
    # percent-encoding normalised on both sides
    (("/%62%61%7A/ train-ai=n",), "/baz/a.jpg", False, True, False, 1),
    (("/baz/ train-ai=n",), "/%62az/a.jpg", False, True, False, 1),
    (("/caf%C3%A9/ train-ai=n",), "/café/a.jpg", False, True, False, 1),
    # the winning rule is used whole: no train-ai in it = no signal there
    (("train-ai=n", "/art/ search=y"), "/art/a.jpg", True, False, False, None),
    # a rule that says nothing we can read takes no part
    (("train-ai=n", '/art/ train-ai="y"'), "/art/a.jpg", False, True, False, 1),
    (("train-ai=n", "/art/"), "/art/a.jpg", False, True, False, 1),
    (("train-ai=n", "/art/ train-ai=y,"), "/art/a.jpg", False, True, False, 1),
    (("train-ai=n,,",), "/a.jpg", True, False, False, None),
    # legacy labels
    (("/art/ train-genai=n",), "/art/a.jpg", False, False, False, None),
    (("/art/ train-genai=n",), "/art/a.jpg", True, True, False, 1),
    (("/art/ train-ai=y, ai=n",), "/art/a.jpg", True, True, False, 1),
    (("/art/ train-ai=y, ai=n",), "/art/a.jpg", False, False, True, 1),
    (("search=n",), "/a.jpg", True, False, False, None),
    (("train-ai=n, train-ai=y",), "/a.jpg", True, False, True, 1),  # duplicate: last wins
]


@pytest.mark.parametrize(("values", "url", "strict", "denied", "allowed", "line"), ROBOTS_CASES)
def test_check_robots_content_usage(values: tuple[str, ...], url: str, strict: bool,
                                    denied: bool, allowed: bool, line: int | None) -> None:
    verdict = check_robots_content_usage(_rules(*values), url, strict=strict)
    assert (verdict.denied, verdict.allowed) == (denied, allowed)
    if line is None:
        assert verdict == NO_SIGNAL
    else:
        assert verdict.evidence == f"robots.txt line {line}: Content-Usage: {values[line - 1]}"


def test_robots_ignores_allow_and_disallow_rules() -> None:
    policy = RobotsPolicy.parse("User-agent: *\nDisallow: /private/\nAllow: /\n")
    assert check_robots_content_usage(policy.rules(TOKEN), "/private/a", strict=True) == NO_SIGNAL


ROBOTS_TXT = """\
# comment line
User-agent: *
Disallow: /private/
Content-Usage: train-ai=n

User-agent: ConsentFetch/1.0
Allow: /
Content-Usage: train-ai=y
Content-Usage: /art/ train-ai=n   # the artists opted out
Content-Usage: /art/commons/ train-ai=y
Content-Usage: *.psd$ train-genai=n

User-agent: OtherBot
Content-Usage: train-ai=y
"""

# (url, strict, denied, allowed, evidence)
REAL_ROBOTS_CASES: list[tuple[str, bool, bool, bool, str | None]] = [
    ("https://example.com/photo.jpg", True, False, True,
     "robots.txt line 8: Content-Usage: train-ai=y"),
    ("https://example.com/art/a.jpg", True, True, False,
     "robots.txt line 9: Content-Usage: /art/ train-ai=n"),
    ("/art/commons/a.jpg", False, False, True,
     "robots.txt line 10: Content-Usage: /art/commons/ train-ai=y"),
    ("/work/x.psd", True, True, False, "robots.txt line 11: Content-Usage: *.psd$ train-genai=n"),
    ("/work/x.psd", False, False, False, None),  # not strict: the legacy label is no signal
]


@pytest.mark.parametrize(("url", "strict", "denied", "allowed", "evidence"), REAL_ROBOTS_CASES)
def test_rules_from_the_robots_parser(url: str, strict: bool, denied: bool, allowed: bool,
                                      evidence: str | None) -> None:
    policy = RobotsPolicy.parse(ROBOTS_TXT)
    verdict = check_robots_content_usage(policy.rules(TOKEN), url, strict=strict)
    assert (verdict.denied, verdict.allowed, verdict.evidence) == (denied, allowed, evidence)


def test_star_group_applies_when_no_group_names_us() -> None:
    policy = RobotsPolicy.parse(ROBOTS_TXT)
    verdict = check_robots_content_usage(policy.rules("somebot"), "/a.jpg", strict=False)
    assert verdict == UsageVerdict(True, False, "train-ai",
                                   "robots.txt line 4: Content-Usage: train-ai=n")


def test_content_usage_belongs_to_the_group_it_stands_in() -> None:
    text = "User-agent: consentfetch\nContent-Usage: train-ai=n\nUser-agent: *\nAllow: /\n"
    policy = RobotsPolicy.parse(text)
    assert check_robots_content_usage(policy.rules(TOKEN), "/a", strict=False).denied
    assert check_robots_content_usage(policy.rules("other"), "/a", strict=False) == NO_SIGNAL


def test_content_usage_before_any_group_is_ignored() -> None:
    policy = RobotsPolicy.parse("Content-Usage: train-ai=n\nUser-agent: *\nAllow: /\n")
    assert check_robots_content_usage(policy.rules(TOKEN), "/a", strict=True) == NO_SIGNAL


def test_many_rules_stay_linear() -> None:
    values = [f"/dir{i}/ train-ai=y" for i in range(5000)] + ["/dir42/deep/ train-ai=n"]
    verdict = check_robots_content_usage(_rules(*values), "/dir42/deep/a.jpg", strict=True)
    assert verdict.denied
    assert verdict.evidence is not None and "line 5001" in verdict.evidence
