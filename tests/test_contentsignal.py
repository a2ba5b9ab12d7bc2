"""Tests of consentfetch.consent.contentsignal: Cloudflare Content Signals in robots.txt."""

from __future__ import annotations

import pytest

from consentfetch.consent.contentsignal import (
    NO_SIGNAL,
    check_content_signals,
    parse_content_signal,
    read_content_signals,
)
from consentfetch.consent.robots import RobotsPolicy

TOKEN = "mybot"

# (value as written, known keys read)
PARSE_CASES: list[tuple[str, dict[str, str]]] = [
    ("", {}),
    ("search=yes, ai-train=no", {"search": "yes", "ai-train": "no"}),
    ("search=yes,ai-train=no,use=reference",
     {"search": "yes", "ai-train": "no", "use": "reference"}),
    ("  AI-Train = NO ,Search=Yes  ", {"ai-train": "no", "search": "yes"}),
    ("ai-input=no", {"ai-input": "no"}),
    ("use=immediate", {"use": "immediate"}),
    ("use=FULL", {"use": "full"}),
    # unknown keys, unknown values, items without "=" are ignored
    ("ai-train=maybe, train-ai=no, foo=bar", {}),
    ("ai-train", {}),
    ("ai-train=", {}),
    ("use=everything", {}),
    ('ai-train="no"', {}),
    ("ai-train=no;x", {}),
    (",,ai-train=no,,", {"ai-train": "no"}),
    # a key given twice: the most restrictive value
    ("ai-train=yes, ai-train=no", {"ai-train": "no"}),
    ("ai-train=no, ai-train=yes", {"ai-train": "no"}),
    ("use=full, use=reference, use=immediate", {"use": "immediate"}),
]


@pytest.mark.parametrize(("value", "expected"), PARSE_CASES, ids=[c[0] or "empty" for c in PARSE_CASES])
def test_parse(value: str, expected: dict[str, str]) -> None:
    assert parse_content_signal(value) == expected


def verdict(robots: str, *, strict: bool, token: str = TOKEN) -> tuple[bool, bool, str | None]:
    policy = RobotsPolicy.parse(robots)
    result = check_content_signals(policy.derived_records(token, read_content_signals),
                                   policy.derived_preamble(read_content_signals), strict=strict)
    return result.denied, result.allowed, result.item


DENY_NO = (True, False, "ai-train=no")
QUIET = (False, False, None)
ALLOW = "User-agent: *\nAllow: /\n"

# (name, robots.txt, strict verdict, standard verdict)
FILES: list[tuple[str, str, tuple[bool, bool, str | None], tuple[bool, bool, str | None]]] = [
    ("ai-train=no in the * group",
     "User-Agent: *\nContent-signal: search=yes, ai-train=no\nAllow: /\n", DENY_NO, DENY_NO),
    ("search=yes only: no signal",
     "User-agent: *\nContent-Signal: search=yes\nAllow: /\n", QUIET, QUIET),
    ("* says no, our group allows only: a named group does not inherit",
     "User-agent: *\nContent-Signal: ai-train=no\nAllow: /\n\nUser-agent: mybot\nAllow: /\n",
     QUIET, QUIET),
    ("our group says no, * says yes",
     "User-agent: *\nContent-Signal: ai-train=yes\nAllow: /\n\nUser-agent: mybot\n"
     "Content-Signal: ai-train=no\nAllow: /\n", DENY_NO, DENY_NO),
    ("another bot's group says no",
     "User-agent: otherbot\nContent-Signal: ai-train=no\nDisallow:\n\nUser-agent: *\n"
     "Allow: /\n",
     QUIET, QUIET),
    ("use=reference: strict only",
     "User-agent: mybot\nContent-Signal: use=reference\nAllow: /\n",
     (True, False, "use=reference"), QUIET),
    ("use=immediate: strict only",
     "User-agent: *\nContent-Signal: search=yes, use=immediate\n",
     (True, False, "use=immediate"), QUIET),
    ("use=full: no signal",
     "User-agent: *\nContent-Signal: use=full\n", QUIET, QUIET),
    ("a line before the first group: strict reads it as addressed to everyone",
     "Content-Signal: ai-train=no\n\nUser-agent: *\nAllow: /\n", DENY_NO, QUIET),
    ("a line before the first group does not permit",
     "Content-Signal: ai-train=yes\n\nUser-agent: *\nAllow: /\n", QUIET, QUIET),
    ("ai-train=yes: a permission",
     "User-agent: mybot\nContent-Signal: ai-train=yes, search=no\nAllow: /\n",
     (False, True, "ai-train=yes"), (False, True, "ai-train=yes")),
    ("ai-train=yes but use=reference: strict denies",
     "User-agent: *\nContent-Signal: ai-train=yes, use=reference\n",
     (True, False, "use=reference"), (False, True, "ai-train=yes")),
    ("two lines in the group: any refusal wins",
     "User-agent: *\nContent-Signal: ai-train=yes\nContent-Signal: ai-train=no\n",
     DENY_NO, DENY_NO),
    ("merged groups naming our token: both lines count",
     "User-agent: mybot\nContent-Signal: search=yes\nAllow: /\n\nUser-agent: otherbot\n"
     "Disallow: /\n\nUser-agent: MyBot/2.0\nContent-Signal: ai-train=no\n", DENY_NO, DENY_NO),
    ("the line does not end the group: the next User-agent line joins it",
     "User-agent: otherbot\nContent-Signal: ai-train=no\nUser-agent: mybot\nAllow: /\n",
     DENY_NO, DENY_NO),
    ("field name in any case",
     "User-agent: *\nCONTENT-SIGNAL: AI-TRAIN=NO\n", DENY_NO, DENY_NO),
    ("a commented-out line says nothing",
     "User-agent: *\n# Content-Signal: ai-train=no\nAllow: /\n", QUIET, QUIET),
    ("a comment after the value is not part of it",
     "User-agent: *\nContent-Signal: ai-train=no # not for search\n", DENY_NO, DENY_NO),
    ("unknown key and value only",
     "User-agent: *\nContent-Signal: train-ai=no, ai-train=maybe\n", QUIET, QUIET),
]


@pytest.mark.parametrize(("name", "robots", "strict", "standard"), FILES,
                         ids=[f[0] for f in FILES])
def test_files(name: str, robots: str, strict: tuple[bool, bool, str | None],
               standard: tuple[bool, bool, str | None]) -> None:
    assert verdict(robots, strict=True) == strict, name
    assert verdict(robots, strict=False) == standard, name


def test_the_line_ends_no_group_and_decides_no_path() -> None:
    robots = "User-agent: *\nContent-Signal: ai-train=no\nDisallow: /private/\n"
    policy = RobotsPolicy.parse(robots)
    assert [r.text for r in policy.rules("mybot")] == ["Disallow: /private/"]
    assert [(r.field, r.line) for r in policy.records("mybot")] == [("content-signal", 2)]
    assert policy.check("/a.jpg", "mybot").allowed
    assert not policy.check("/private/a.jpg", "mybot").allowed


def test_a_line_before_the_first_group_is_kept_apart() -> None:
    policy = RobotsPolicy.parse("Content-Signal: ai-train=no\nUser-agent: *\nDisallow: /x\n")
    assert [(r.text, r.line) for r in policy.preamble] == [("Content-Signal: ai-train=no", 1)]
    assert policy.records("mybot") == ()


# The managed robots.txt Cloudflare serves (2026 form, with `use=`), as captured from
# a Cloudflare site (github api-evangelist/matchory, well-known/matchory-robots.txt,
# commit 863b2d9), verbatim up to the end of the managed part. Its comment block
# itself says "Content-Signal = no": a reader that greps would see a refusal twice.
CLOUDFLARE_MANAGED = """\
# As a condition of accessing this website, you agree to abide by the following
# content signals:

# (a)  If a Content-Signal = yes, you may collect content for the corresponding
#      use.
# (b)  If a Content-Signal = no, you may not collect content for the
#      corresponding use.
# (c)  If the website operator does not include a Content-Signal for a
#      corresponding use, the website operator neither grants nor restricts
#      permission via Content-Signal with respect to the corresponding use.

# The content signals and their meanings are:

# search:   building a search index and providing search results (e.g., returning
#           hyperlinks and short excerpts from your website's contents). Search does not
#           include providing AI-generated search summaries.
# ai-input: inputting content into one or more AI models (e.g., retrieval
#           augmented generation, grounding, or other real-time taking of content for
#           generative AI search answers).
# ai-train: training or fine-tuning AI models.
# use:      how AI systems may consume the content (immediate, reference, or full).

# ANY RESTRICTIONS EXPRESSED VIA CONTENT SIGNALS ARE EXPRESS RESERVATIONS OF
# RIGHTS UNDER ARTICLE 4 OF THE EUROPEAN UNION DIRECTIVE 2019/790 ON COPYRIGHT
# AND RELATED RIGHTS IN THE DIGITAL SINGLE MARKET.

# BEGIN Cloudflare Managed content

User-agent: *
Content-Signal: search=yes,ai-train=no,use=reference
Allow: /

User-agent: Amazonbot
Disallow: /

User-agent: Applebot-Extended
Disallow: /

User-agent: Bytespider
Disallow: /

User-agent: CCBot
Disallow: /

User-agent: ClaudeBot
Disallow: /

User-agent: CloudflareBrowserRenderingCrawler
Disallow: /

User-agent: Google-Extended
Disallow: /

User-agent: GPTBot
Disallow: /

User-agent: meta-externalagent
Disallow: /

# END Cloudflare Managed Content
"""

# What a Free-plan zone gets: the comment block only (contentsignals.org, 2025
# wording, lower-case "content-signal = no"), which "does not express your preferences".
FREE_ZONE_COMMENTS = """\
# As a condition of accessing this website, you agree to abide by
# the following content signals:
# (a) If a content-signal = yes, you may collect content for the
# corresponding use.
# (b) If a content-signal = no, you may not collect content for
# the corresponding use.
# (c) If the website operator does not include a content signal
# for a corresponding use, the website operator neither grants nor
# restricts permission via content signal with respect to the
# corresponding use.
User-agent: *
Allow: /
"""


def test_cloudflare_managed_file() -> None:
    policy = RobotsPolicy.parse(CLOUDFLARE_MANAGED)
    for strict in (True, False):
        result = check_content_signals(policy.derived_records(TOKEN, read_content_signals),
                                       policy.derived_preamble(read_content_signals),
                                       strict=strict)
        assert result.denied and result.item == "ai-train=no"
        assert result.record is not None and result.record.line == 30
        assert result.record.text == "Content-Signal: search=yes,ai-train=no,use=reference"
    assert policy.selected_by(TOKEN) == "*"
    # The named AI crawlers' groups carry no line; they do not inherit "*"'s.
    assert policy.records("GPTBot") == ()
    assert policy.check("/a.jpg", TOKEN).allowed


def test_free_zone_comment_block_says_nothing() -> None:
    assert verdict(FREE_ZONE_COMMENTS, strict=True) == QUIET
    assert "content-signal = no" in FREE_ZONE_COMMENTS  # what a grep would have read


def test_no_lines_no_signal() -> None:
    assert check_content_signals((), (), strict=True) == NO_SIGNAL
    assert verdict(ALLOW, strict=True) == QUIET
