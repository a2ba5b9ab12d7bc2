"""Tests of consentfetch.consent.robots: RFC 9309 groups, matching and evidence."""

from __future__ import annotations

import math

import pytest
from protego import Protego

from consentfetch.consent.robots import MAX_ROBOTS_BYTES, CrawlDelay, RobotsPolicy, RobotsVerdict

# RFC 9309 §5.1
RFC_SIMPLE = """\
User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot
"""

# RFC 9309 §5.2
RFC_LONGEST = """\
User-Agent: foobot
Allow: /example/page/
Disallow: /example/page/disallowed.gif
"""

# RFC 9309 §2.2.1: groups naming the same token are merged
RFC_MERGE = """\
user-agent: ExampleBot
disallow: /foo
disallow: /bar

user-agent: ExampleBot
disallow: /baz
"""

STAR_DISALLOW_ALL = "User-agent: *\nDisallow: /\n"

# (robots.txt, token, url or path, allowed)
CASES: list[tuple[str, str, str, bool]] = [
    # --- RFC 9309 §5.1
    (RFC_SIMPLE, "foobot", "/example/page.html", True),
    (RFC_SIMPLE, "foobot", "/example/allowed.gif", True),
    (RFC_SIMPLE, "foobot", "/example/other.html", False),
    (RFC_SIMPLE, "foobot", "/", False),
    (RFC_SIMPLE, "FooBot/1.0", "/example/", False),
    (RFC_SIMPLE, "barbot", "/example/page.html", False),
    (RFC_SIMPLE, "bazbot", "/example/page.html", False),
    (RFC_SIMPLE, "barbot", "/example/other.html", True),
    (RFC_SIMPLE, "barbot", "/picture.gif", True),  # does not inherit "*"
    (RFC_SIMPLE, "quxbot", "/example/", True),  # a group with no rules allows all
    (RFC_SIMPLE, "quxbot", "/picture.gif", True),
    (RFC_SIMPLE, "otherbot", "/picture.gif", False),
    (RFC_SIMPLE, "otherbot", "/picture.gif?size=2", True),  # "$" anchors the end
    (RFC_SIMPLE, "otherbot", "/example/x", False),
    (RFC_SIMPLE, "otherbot", "/publications/x", True),
    (RFC_SIMPLE, "otherbot", "/publications/a.gif", True),  # longer allow wins
    # --- RFC 9309 §5.2
    (RFC_LONGEST, "foobot", "/example/page/", True),
    (RFC_LONGEST, "foobot", "/example/page/disallowed.gif", False),
    (RFC_LONGEST, "foobot", "/example/page/other.gif", True),
    # --- RFC 9309 §2.2.1 merge example
    (RFC_MERGE, "examplebot", "/foo", False),
    (RFC_MERGE, "ExampleBot/1.1", "/baz", False),
    (RFC_MERGE, "examplebot", "/qux", True),
    # --- CONSENT.md examples
    ("User-agent: *\nDisallow: /img/\nAllow: /img/public/\n", "mybot", "/img/public/a.jpg", True),
    ("User-agent: *\nDisallow: /img/\nAllow: /img/public/\n", "mybot", "/img/private/a.jpg", False),
    ("User-agent: *\nDisallow: /\n\nUser-agent: mybot\nDisallow:\n", "mybot", "/a.jpg", True),
    ("User-agent: *\nDisallow: /\n\nUser-agent: mybot\nDisallow:\n", "otherbot", "/a.jpg", False),
    # --- user-agent matching is exact on the product token (protego: substring)
    ("User-agent: gpt\nDisallow: /\n", "GPTBot", "/a", True),
    ("User-agent: gpt\nDisallow: /\n", "gpt", "/a", False),
    ("User-agent: bot\nDisallow: /\n", "mybot", "/a", True),
    ("User-agent: Googlebot\nDisallow: /\n", "Google-Extended", "/a", True),
    ("User-agent: mybot-extended\nDisallow: /\n", "mybot", "/a", True),
    ("User-agent: mybot\nDisallow: /\n", "mybot-extended", "/a", True),
    ("User-agent: MYBOT\nDisallow: /\n", "mybot", "/a", False),
    ("User-agent: mybot/1.0\nDisallow: /\n", "mybot", "/a", False),
    ("User-agent: mybot 2.1 (+https://example.com)\nDisallow: /\n", "mybot", "/a", False),
    ("User-agent: *mybot\nDisallow: /\n", "mybot", "/a", True),  # not "*", names nobody
    ("User-agent:\nDisallow: /\n", "mybot", "/a", True),
    ("User-agent: gpt\nDisallow: /\n\nUser-agent: *\nDisallow: /private\n", "GPTBot", "/a", True),
    # --- an unknown record between user-agent lines does not split the group
    ("User-agent: otherbot\nFoo: bar\nUser-agent: mybot\nDisallow: /private\n", "mybot", "/private", False),
    ("User-agent: otherbot\nFoo: bar\nUser-agent: mybot\nDisallow: /private\n", "otherbot", "/private", False),
    ("User-agent: mybot\nSitemap: https://example.com/s.xml\nUser-agent: x\nDisallow: /\n", "mybot", "/a", False),
    ("User-agent: x\nCrawl-delay: 5\nUser-agent: mybot\nDisallow: /a\n", "mybot", "/a", False),
    ("User-agent: *\nCrawl-delay: 5\n\nUser-agent: mybot\nDisallow: /x\n", "otherbot", "/x", False),
    ("User-agent: mybot\njust some words here\nUser-agent: x\nDisallow: /\n", "mybot", "/a", False),
    # --- records that are not rules do not end a group
    ("User-agent: mybot\nDisallow: /a\nContent-Signal: ai-train=no\nDisallow: /b\n", "mybot", "/b", False),
    ("User-agent: mybot\nDisallow: /a\nSitemap: /s.xml\nCrawl-delay: 1\nDisallow: /b\n", "mybot", "/b", False),
    # --- a rule (Content-Usage too, even empty Disallow) ends the user-agent run
    ("User-agent: x\nContent-Usage: train-ai=n\nUser-agent: mybot\nDisallow: /a\n", "x", "/a", True),
    ("User-agent: x\nContent-Usage: train-ai=n\nUser-agent: mybot\nDisallow: /a\n", "mybot", "/a", False),
    ("User-agent: mybot\nDisallow:\nUser-agent: *\nDisallow: /\n", "mybot", "/a", True),
    ("User-agent: mybot\nDisallow:\nUser-agent: *\nDisallow: /\n", "otherbot", "/a", False),
    # --- groups naming us are merged; "*" groups are merged; no inheritance
    ("User-agent: mybot\nDisallow: /a\n\nUser-agent: x\nDisallow: /\n\nUser-agent: MyBot\nDisallow: /b\n", "mybot", "/b", False),
    ("User-agent: mybot\nDisallow: /a\n\nUser-agent: x\nDisallow: /\n\nUser-agent: MyBot\nDisallow: /b\n", "mybot", "/a", False),
    ("User-agent: mybot\nDisallow: /a\n\nUser-agent: x\nDisallow: /\n\nUser-agent: MyBot\nDisallow: /b\n", "mybot", "/c", True),
    ("User-agent: mybot\nDisallow: /a/\n\nUser-agent: mybot\nAllow: /a/b/\n", "mybot", "/a/b/x", True),
    ("User-agent: mybot\nDisallow: /a/\n\nUser-agent: mybot\nAllow: /a/b/\n", "mybot", "/a/c", False),
    ("User-agent: *\nDisallow: /a\n\nUser-agent: *\nDisallow: /b\n", "otherbot", "/b", False),
    ("User-agent: *\nDisallow: /private\n\nUser-agent: mybot\nDisallow: /tmp\n", "mybot", "/private", True),
    ("User-agent: *\nDisallow: /private\n\nUser-agent: mybot\nDisallow: /tmp\n", "otherbot", "/private", False),
    ("User-agent: mybot\nUser-agent: *\nDisallow: /x\n", "mybot", "/x", False),
    ("User-agent: mybot\nUser-agent: *\nDisallow: /x\n", "otherbot", "/x", False),
    ("User-agent: mybot\nDisallow: /x\n", "*", "/x", True),  # "*" asks as an unnamed crawler
    (STAR_DISALLOW_ALL, "*", "/x", False),
    # --- rules before the first user-agent line are ignored
    ("Disallow: /\nUser-agent: *\nDisallow: /private\n", "mybot", "/public", True),
    ("Disallow: /\nUser-agent: *\nDisallow: /private\n", "mybot", "/private", False),
    ("Disallow: /\n", "mybot", "/", True),
    # --- longest match; equal length: allow
    ("User-agent: *\nAllow: /p\nDisallow: /\n", "mybot", "/page", True),
    ("User-agent: *\nAllow: /p\nDisallow: /\n", "mybot", "/other", False),
    ("User-agent: *\nAllow: /folder\nDisallow: /folder\n", "mybot", "/folder/page", True),
    ("User-agent: *\nDisallow: /folder\nAllow: /folder\n", "mybot", "/folder/page", True),
    ("User-agent: *\nAllow: /page\nDisallow: /*.html\n", "mybot", "/page.html", False),
    ("User-agent: *\nAllow: /$\nDisallow: /\n", "mybot", "/", True),
    ("User-agent: *\nAllow: /$\nDisallow: /\n", "mybot", "/page.htm", False),
    ("User-agent: *\nAllow: /*.php$\nDisallow: /\n", "mybot", "/x.php", True),
    ("User-agent: *\nAllow: /*.php$\nDisallow: /\n", "mybot", "/x.php5", False),
    ("User-agent: *\nDisallow: /a/b\nAllow: /a/*\n", "mybot", "/a/b", True),  # 4 = 4 octets: allow
    ("User-agent: *\nDisallow: /a/bc\nAllow: /a/*\n", "mybot", "/a/bc", False),
    # --- "*" and "$" (Google's documented examples)
    ("User-agent: *\nDisallow: /fish*\n", "mybot", "/fish", False),
    ("User-agent: *\nDisallow: /fish*\n", "mybot", "/fishheads/yummy.html", False),
    ("User-agent: *\nDisallow: /fish*\n", "mybot", "/Fish.asp", True),
    ("User-agent: *\nDisallow: /fish*\n", "mybot", "/catfish", True),
    ("User-agent: *\nDisallow: /*.php\n", "mybot", "/folder/filename.php?parameters", False),
    ("User-agent: *\nDisallow: /*.php\n", "mybot", "/folder/any.php.file.html", False),
    ("User-agent: *\nDisallow: /*.php\n", "mybot", "/windows.PHP", True),
    ("User-agent: *\nDisallow: /*.php$\n", "mybot", "/folder/filename.php", False),
    ("User-agent: *\nDisallow: /*.php$\n", "mybot", "/filename.php?parameters", True),
    ("User-agent: *\nDisallow: /*.php$\n", "mybot", "/filename.php/", True),
    ("User-agent: *\nDisallow: /fish*.php\n", "mybot", "/fishheads/catfish.php?parameters", False),
    ("User-agent: *\nDisallow: /fish*.php\n", "mybot", "/Fish.PHP", True),
    ("User-agent: *\nDisallow: /fish/\n", "mybot", "/fish/?id=anything", False),
    ("User-agent: *\nDisallow: /fish/\n", "mybot", "/fish", True),
    ("User-agent: *\nDisallow: /*/private/*.jpg$\n", "mybot", "/u/private/x.jpg", False),
    ("User-agent: *\nDisallow: /*/private/*.jpg$\n", "mybot", "/u/private/x.jpg?s=1", True),
    ("User-agent: *\nDisallow: /*/private/*.jpg$\n", "mybot", "/private/x.jpg", True),
    ("User-agent: *\nDisallow: /**a\n", "mybot", "/xxa", False),
    ("User-agent: *\nDisallow: /a$b\n", "mybot", "/a$b", False),  # "$" not at the end is literal
    ("User-agent: *\nDisallow: /a$b\n", "mybot", "/a", True),
    ("User-agent: *\nDisallow: *.jpg\n", "mybot", "/art/a.jpg", False),
    ("User-agent: *\nDisallow: a\n", "mybot", "/a", True),  # matching starts at the first octet
    ("User-agent: *\nDisallow: https://example.com/private\n", "mybot", "/private", True),
    ("User-agent: *\nDisallow: /Private\n", "mybot", "/private", True),  # case-sensitive
    ("User-agent: *\nDisallow: /Private\n", "mybot", "/Private/x", False),
    # --- percent-encoding (RFC 9309 §2.2.2 and §2.2.3)
    ("User-agent: *\nDisallow: /foo/bar/%62%61%7A\n", "mybot", "/foo/bar/baz", False),
    ("User-agent: *\nDisallow: /foo/bar/baz\n", "mybot", "/foo/bar/%62%61%7A", False),
    ("User-agent: *\nDisallow: /foo/bar/\u30c4\n", "mybot", "/foo/bar/%E3%83%84", False),
    ("User-agent: *\nDisallow: /foo/bar/\u30c4\n", "mybot", "/foo/bar/%e3%83%84", False),
    ("User-agent: *\nDisallow: /foo/bar/%E3%83%84\n", "mybot", "/foo/bar/\u30c4", False),
    ("User-agent: *\nDisallow: /a%2Fb\n", "mybot", "/a/b", True),  # reserved: stays distinct
    ("User-agent: *\nDisallow: /a%2Fb\n", "mybot", "/a%2fb", False),
    ("User-agent: *\nDisallow: /a/b\n", "mybot", "/a%2Fb", True),
    ("User-agent: *\nDisallow: /x%3Dy\n", "mybot", "/x=y", True),
    ("User-agent: *\nDisallow: /~user/\n", "mybot", "/%7Euser/notes", False),
    ("User-agent: *\nDisallow: /%7euser/\n", "mybot", "/~user/notes", False),
    ("User-agent: *\nDisallow: /path/file-with-a-%2A.html\n", "mybot", "/path/file-with-a-*.html", False),
    ("User-agent: *\nDisallow: /path/foo-%24\n", "mybot", "/path/foo-$", False),
    ("User-agent: *\nDisallow: /foo/bar?baz=https://foo.bar\n", "mybot", "/foo/bar?baz=https%3A%2F%2Ffoo.bar", False),
    ("User-agent: *\nDisallow: /a b\n", "mybot", "/a%20b", False),
    ("User-agent: *\nDisallow: /100%\n", "mybot", "/100%", False),
    ("User-agent: *\nDisallow: /100%\n", "mybot", "/100%25", False),
    # --- query strings
    ("User-agent: *\nDisallow: /*?\n", "mybot", "/page?x=1", False),
    ("User-agent: *\nDisallow: /*?\n", "mybot", "/page", True),
    ("User-agent: *\nDisallow: /search?q=\n", "mybot", "/search?q=cats", False),
    ("User-agent: *\nDisallow: /search?q=\n", "mybot", "/search", True),
    ("User-agent: *\nDisallow: /search?q=\n", "mybot", "https://example.com/search?q=cats", False),
    ("User-agent: *\nAllow: /search?public\nDisallow: /search\n", "mybot", "/search?public=1", True),
    ("User-agent: *\nAllow: /search?public\nDisallow: /search\n", "mybot", "/search?x=1", False),
    ("User-agent: *\nDisallow: /a$\n", "mybot", "https://example.com/a#fragment", False),
    # --- full URLs
    ("User-agent: *\nDisallow: /private\n", "mybot", "https://example.com/private/a.jpg", False),
    ("User-agent: *\nDisallow: /private\n", "mybot", "http://example.com:8080/private", False),
    ("User-agent: *\nDisallow: /private\n", "mybot", "https://user@example.com/private", False),
    ("User-agent: *\nDisallow: /private\n", "mybot", "https://example.com", True),
    ("User-agent: *\nDisallow: /private\n", "mybot", "https://example.com?private", True),
    # --- /robots.txt is always allowed
    (STAR_DISALLOW_ALL, "mybot", "/robots.txt", True),
    (STAR_DISALLOW_ALL, "mybot", "https://example.com/robots.txt", True),
    (STAR_DISALLOW_ALL, "mybot", "/robots.txt?x=1", True),
    (STAR_DISALLOW_ALL, "mybot", "/robots.txt/x", False),
    (STAR_DISALLOW_ALL, "mybot", "/ROBOTS.TXT", False),
    # --- line endings, comments, whitespace, case of keys, lenient keys
    ("User-agent: *\r\nDisallow: /a\r\n", "mybot", "/a", False),
    ("User-agent: *\rDisallow: /a\r", "mybot", "/a", False),
    ("User-agent: mybot\r\nDisallow: /a\rUser-agent: x\nDisallow: /b", "mybot", "/b", True),
    ("User-agent: * # everyone\nDisallow: /a # secret\n# Disallow: /b\n", "mybot", "/a", False),
    ("User-agent: * # everyone\nDisallow: /a # secret\n# Disallow: /b\n", "mybot", "/b", True),
    ("User-agent: *\nDisallow: /a#b\n", "mybot", "/ab", False),
    ("  User-agent:\t*\n\t Disallow :  /a  \n", "mybot", "/a", False),
    ("USER-AGENT: *\nDISALLOW: /a\n", "mybot", "/a", False),
    ("user-AGENT: MyBot\ndisallow:/a\n", "mybot", "/a", False),
    ("User-agent: *\nDissallow: /a\n", "mybot", "/a", False),
    ("Useragent: mybot\nDisallow: /a\n", "mybot", "/a", False),
    ("User-agent: *\nDisallow /a\n", "mybot", "/a", False),  # no colon, two words
    ("User-agent *\nDisallow: /a\n", "mybot", "/a", False),
    ("User-agent: *\nDisallow /a /b\n", "mybot", "/a", True),  # three words: not a record
    ("User-agent: *\nDisallow:\n", "mybot", "/x", True),
    ("User-agent: *\nAllow:\nDisallow: /a\n", "mybot", "/a", False),
    # --- empty, garbage, HTML
    ("", "mybot", "/", True),
    ("# nothing but a comment\n\n", "mybot", "/x", True),
    ("<html><body><h1>Not Found</h1></body></html>", "mybot", "/x", True),
    ("\x00\x01\x02garbage: \x7f\n::::\n", "mybot", "/x", True),
]


@pytest.mark.parametrize(("robots", "token", "target", "allowed"), CASES)
def test_check(robots: str, token: str, target: str, allowed: bool) -> None:
    assert RobotsPolicy.parse(robots).check(target, token).allowed is allowed


@pytest.mark.parametrize(("robots", "token", "target", "allowed"), CASES)
def test_bytes_and_str_agree(robots: str, token: str, target: str, allowed: bool) -> None:
    assert RobotsPolicy.parse(robots.encode()).check(target, token).allowed is allowed


# (robots.txt, token, url, expected verdict)
EVIDENCE: list[tuple[str, str, str, RobotsVerdict]] = [
    (
        "User-agent: *\nDisallow: /img/\nAllow: /img/public/\n", "mybot", "/img/public/a.jpg",
        RobotsVerdict(True, "Allow: /img/public/", 3, "*"),
    ),
    (
        "User-agent: *\nDisallow: /img/\nAllow: /img/public/\n", "mybot", "/img/a.jpg",
        RobotsVerdict(False, "Disallow: /img/", 2, "*"),
    ),
    (
        "User-agent: *\nDisallow: /\n\nUser-agent: ConsentFetch/1.0\nDisallow: /art/\n",
        "consentfetch", "https://example.com/art/a.png",
        RobotsVerdict(False, "Disallow: /art/", 5, "ConsentFetch/1.0"),
    ),
    (
        "User-agent: *\nDisallow: /\n\nUser-agent: consentfetch\nDisallow:\n", "consentfetch", "/a",
        RobotsVerdict(True, None, None, "consentfetch"),
    ),
    (
        "User-agent: mybot\nDisallow: /a\n\nUser-agent: other\nDisallow: /\n\nUser-agent: MyBot\nDisallow: /b\n",
        "mybot", "/b/c",
        RobotsVerdict(False, "Disallow: /b", 8, "MyBot"),
    ),
    (
        "User-agent: other\nDisallow: /\n", "mybot", "/a",
        RobotsVerdict(True, None, None, ""),
    ),
    ("", "mybot", "/a", RobotsVerdict(True, None, None, "")),
    (STAR_DISALLOW_ALL, "mybot", "/robots.txt", RobotsVerdict(True, None, None, "*")),
    (
        "User-agent: *\nDisallow: /folder\nAllow: /folder\n", "mybot", "/folder/x",
        RobotsVerdict(True, "Allow: /folder", 3, "*"),
    ),
    (
        "User-agent: *\nDisallow: /a # the secret bit\n", "mybot", "/a",
        RobotsVerdict(False, "Disallow: /a", 2, "*"),
    ),
    (
        "user-agent: *\ndisallow:/a\n", "mybot", "/a",
        RobotsVerdict(False, "disallow:/a", 2, "*"),
    ),
    (
        "User-agent: *\r\n# one\r\n\r\nDisallow: /a\r\n", "mybot", "/a",
        RobotsVerdict(False, "Disallow: /a", 4, "*"),
    ),
    (
        "User-agent: *\r# one\r\rDisallow: /a\r", "mybot", "/a",
        RobotsVerdict(False, "Disallow: /a", 4, "*"),
    ),
    (
        "User-agent: *\nDisallow: /a\nDisallow: /a\n", "mybot", "/a",
        RobotsVerdict(False, "Disallow: /a", 2, "*"),  # the earlier of equals
    ),
    (
        "User-agent: *\nDisallow: /*.gif$\nDisallow: /\n", "mybot", "/x.gif",
        RobotsVerdict(False, "Disallow: /*.gif$", 2, "*"),
    ),
    (
        "User-agent: *\nDisallow: /%62%61%7A\nDisallow: /ba\n", "mybot", "/baz",
        RobotsVerdict(False, "Disallow: /%62%61%7A", 2, "*"),  # 4 octets once decoded vs 3
    ),
]


@pytest.mark.parametrize(("robots", "token", "target", "verdict"), EVIDENCE)
def test_evidence(robots: str, token: str, target: str, verdict: RobotsVerdict) -> None:
    assert RobotsPolicy.parse(robots).check(target, token) == verdict


def test_bom_does_not_hide_the_first_line() -> None:
    body = b"\xef\xbb\xbfUser-agent: mybot\nDisallow: /\n"
    verdict = RobotsPolicy.parse(body).check("/a", "mybot")
    assert verdict == RobotsVerdict(False, "Disallow: /", 2, "mybot")


def test_bom_in_str_input() -> None:
    policy = RobotsPolicy.parse("\ufeffUser-agent: mybot\nDisallow: /\n")
    assert not policy.check("/a", "mybot").allowed
    assert policy.names_token("mybot")


def test_bytes_input_non_ascii_rule() -> None:
    body = "User-agent: *\nDisallow: /café/\n".encode()
    policy = RobotsPolicy.parse(body)
    assert not policy.check("/caf%C3%A9/menu", "mybot").allowed
    assert not policy.check("/café/menu", "mybot").allowed
    assert policy.check("/cafe/menu", "mybot").allowed


def test_invalid_utf8_is_replaced_and_other_lines_still_count() -> None:
    body = b"User-agent: *\nDisallow: /a\xff\xfe\nDisallow: /b\n"
    policy = RobotsPolicy.parse(body)
    assert not policy.check("/b", "mybot").allowed
    assert policy.check("/a", "mybot").allowed


def test_binary_garbage() -> None:
    body = bytes(range(256)) * 40 + b"\x89PNG\r\n\x1a\n\x00\x00"
    policy = RobotsPolicy.parse(body)
    assert policy.check("/x", "mybot") == RobotsVerdict(True, None, None, "")


def test_bytearray_input() -> None:
    policy = RobotsPolicy.parse(bytearray(STAR_DISALLOW_ALL.encode()))  # type: ignore[arg-type]
    assert not policy.check("/x", "mybot").allowed


def _padded(before: int, rule: str) -> bytes:
    head = b"User-agent: *\nDisallow: /early\n"
    padding = b"# " + b"x" * 97 + b"\n"  # 100-byte comment lines
    body = head + padding * ((before - len(head)) // len(padding))
    return body + rule.encode() + b"\n"


def test_rule_after_600_kb_is_ignored() -> None:
    policy = RobotsPolicy.parse(_padded(600_000, "Disallow: /late"))
    assert policy.check("/late", "mybot").allowed
    assert not policy.check("/early", "mybot").allowed


def test_rule_before_the_limit_counts() -> None:
    policy = RobotsPolicy.parse(_padded(400_000, "Disallow: /late"))
    assert not policy.check("/late", "mybot").allowed


def test_str_input_has_the_same_limit() -> None:
    policy = RobotsPolicy.parse(_padded(600_000, "Disallow: /late").decode())
    assert policy.check("/late", "mybot").allowed


def test_line_cut_by_the_limit_is_dropped() -> None:
    head = b"User-agent: *\nDisallow: /\n"
    filler = b"#" * (MAX_ROBOTS_BYTES - len(head) - len(b"Allow: /ab") - 1) + b"\n"
    body = head + filler + b"Allow: /abcdef/ghi\n"
    # The limit falls inside "Allow: /abcdef/ghi": its first half would allow /ab...
    assert (head + filler + b"Allow: /ab") == body[:MAX_ROBOTS_BYTES]
    policy = RobotsPolicy.parse(body)
    assert not policy.check("/abc", "mybot").allowed


def test_file_of_exactly_the_limit_is_read_whole() -> None:
    head = b"User-agent: *\n"
    tail = b"Disallow: /last\n"
    body = head + b"#" * (MAX_ROBOTS_BYTES - len(head) - len(tail) - 1) + b"\n" + tail
    assert len(body) == MAX_ROBOTS_BYTES
    assert not RobotsPolicy.parse(body).check("/last", "mybot").allowed


def test_allow_all() -> None:
    policy = RobotsPolicy.allow_all()
    assert policy.check("https://example.com/anything", "mybot") == RobotsVerdict(True, None, None, "")
    assert policy.crawl_delay("mybot") is None
    assert not policy.names_token("mybot")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5", 5.0),
        ("0.5", 0.5),
        (" 10 ", 10.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("0", 0.0),
        ("abc", None),
        ("-1", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("10s", None),
        ("", None),
        ("NaN", None),
        ("Infinity", None),
        ("0x10", None),
        ("100000000", 1e8),
        ("1" + "0" * 400, math.inf),  # too large for a float: longer than any cap
        ("1" + "0" * 400 + ".5", math.inf),
        ("0." + "0" * 400 + "1", 0.0),
    ],
)
def test_crawl_delay_values(value: str, expected: float | None) -> None:
    policy = RobotsPolicy.parse(f"User-agent: mybot\nCrawl-delay: {value}\nDisallow: /x\n")
    assert policy.crawl_delay("mybot") == expected


@pytest.mark.parametrize(
    ("robots", "token", "expected"),
    [
        ("User-agent: *\nCrawl-delay: 5\nDisallow: /t\n\nUser-agent: mybot\nDisallow: /x\n", "mybot", None),
        ("User-agent: *\nCrawl-delay: 5\nDisallow: /t\n\nUser-agent: mybot\nDisallow: /x\n", "otherbot", 5.0),
        # Crawl-delay is not a rule: without one in between, both lines start one group.
        ("User-agent: *\nCrawl-delay: 5\n\nUser-agent: mybot\nDisallow: /x\n", "mybot", 5.0),
        ("User-agent: mybot\nCrawl-delay: 2\n\nUser-agent: mybot\nCrawl-delay: 7\n", "mybot", 7.0),
        ("Crawl-delay: 9\nUser-agent: *\nDisallow: /x\n", "mybot", None),
        ("User-agent: a\nCrawl-delay: 3\nUser-agent: mybot\nDisallow:\n", "mybot", 3.0),
        ("User-agent: mybot\nDisallow: /x\nCrawl-delay: 4\n", "MyBot/2.0", 4.0),
        ("User-agent: mybot\nCrawl-delay: nope\nCrawl-delay: 1.5\n", "mybot", 1.5),
        ("crawl-DELAY: 3\n", "mybot", None),
    ],
)
def test_crawl_delay_groups(robots: str, token: str, expected: float | None) -> None:
    assert RobotsPolicy.parse(robots).crawl_delay(token) == expected


@pytest.mark.parametrize(
    ("robots", "token", "expected"),
    [
        ("User-agent: GPTBot\nDisallow: /\n", "gptbot", True),
        ("User-agent: GPTBot\nDisallow: /\n", "GPTBot", True),
        ("User-agent: GPTBot\nDisallow: /\n", "GPTBot/1.1", True),
        ("User-agent: GPTBot\nDisallow: /\n", "gpt", False),
        ("User-agent: gpt\nDisallow: /\n", "GPTBot", False),
        ("User-agent: GPTBot\nDisallow: /\n", "*", False),
        ("User-agent: *\nDisallow: /\n", "*", True),
        ("User-agent: *\nDisallow: /\n", "mybot", False),
        ("User-agent: x\nUnknown: y\nUser-agent: CCBot\nDisallow: /\n", "ccbot", True),
        ("Disallow: /\n", "mybot", False),
        ("User-agent: Google-Extended\nDisallow: /\n", "Google-Extended", True),
        ("User-agent: Google-Extended\nDisallow: /\n", "Google", False),
        ("", "mybot", False),
    ],
)
def test_names_token(robots: str, token: str, expected: bool) -> None:
    assert RobotsPolicy.parse(robots).names_token(token) is expected


AI_ROBOTS = """\
User-agent: GPTBot
User-agent: CCBot
Disallow: /

User-agent: *
Disallow: /admin/
"""


@pytest.mark.parametrize(
    ("token", "target", "allowed", "group"),
    [
        ("GPTBot", "/art/a.jpg", False, "GPTBot"),
        ("ccbot", "/art/a.jpg", False, "CCBot"),
        ("*", "/art/a.jpg", True, "*"),
        ("consentfetch", "/art/a.jpg", True, "*"),
        ("consentfetch", "/admin/x", False, "*"),
    ],
)
def test_same_file_asked_for_several_tokens(token: str, target: str, allowed: bool, group: str) -> None:
    verdict = RobotsPolicy.parse(AI_ROBOTS).check(target, token)
    assert (verdict.allowed, verdict.group) == (allowed, group)


def test_content_usage_lines_are_kept_as_group_rules() -> None:
    robots = (
        "User-agent: *\nContent-Usage: train-ai=n\nContent-Usage: /public/ train-ai=y\n"
        "Disallow: /private/\n\nUser-agent: mybot\nAllow: /\n"
    )
    policy = RobotsPolicy.parse(robots)
    rules = policy.rules("otherbot")
    assert [(r.field, r.value, r.line) for r in rules] == [
        ("content-usage", "train-ai=n", 2),
        ("content-usage", "/public/ train-ai=y", 3),
        ("disallow", "/private/", 4),
    ]
    assert [r.text for r in policy.rules("mybot")] == ["Allow: /"]
    # Content-Usage never decides an Allow/Disallow question.
    assert policy.check("/x", "otherbot") == RobotsVerdict(True, None, None, "*")


# Simple "*" files where protego 0.7.0 is right: both must agree.
PROTEGO_AGREES = [
    ("User-agent: *\nDisallow: /img/\nAllow: /img/public/\n", "/img/public/a.jpg"),
    ("User-agent: *\nDisallow: /img/\nAllow: /img/public/\n", "/img/a.jpg"),
    ("User-agent: *\nDisallow: /*.gif$\n", "/a.gif"),
    ("User-agent: *\nDisallow: /*.gif$\n", "/a.gif?x"),
    ("User-agent: *\nAllow: /p\nDisallow: /\n", "/page"),
    ("User-agent: *\nAllow: /folder\nDisallow: /folder\n", "/folder/x"),
    ("User-agent: *\nDisallow: /fish*.php\n", "/fishheads/catfish.php?x=1"),
    ("User-agent: *\nDisallow: /foo/bar/%62%61%7A\n", "/foo/bar/baz"),
    ("User-agent: *\nDisallow: /foo/bar/\u30c4\n", "/foo/bar/%E3%83%84"),
    ("User-agent: *\nDisallow: /\n", "/robots.txt"),
    ("User-agent: *\nDisallow: /*?\n", "/a?b"),
    ("User-agent: *\nDisallow: /a%2Fb\n", "/a/b"),
]


@pytest.mark.parametrize(("robots", "path"), PROTEGO_AGREES)
def test_agrees_with_protego_where_protego_is_right(robots: str, path: str) -> None:
    expected = Protego.parse(robots).can_fetch(f"https://example.com{path}", "mybot")
    assert RobotsPolicy.parse(robots).check(path, "mybot").allowed is expected


# The deviations of protego 0.7.0 that this module corrects (CONSENT.md).
@pytest.mark.parametrize(
    ("robots", "token", "path", "ours"),
    [
        ("User-agent: gpt\nDisallow: /\n", "GPTBot", "/a", True),
        ("User-agent: x\nFoo: bar\nUser-agent: mybot\nDisallow: /a\n", "x", "/a", False),
        ("\ufeffUser-agent: mybot\nDisallow: /\n", "mybot", "/a", False),
        ("User-agent: *\nDisallow: /a$\n", "mybot", "/a$b", True),  # "$" is only an anchor
        ("User-agent: *\nDisallow: /\nAllow: /index.html\n", "mybot", "/", False),
        ("User-agent: *\nDisallow: /x%3Dy\n", "mybot", "/x=y", True),  # "%3D" is reserved
    ],
)
def test_protego_deviations_are_corrected(robots: str, token: str, path: str, ours: bool) -> None:
    protego_says = Protego.parse(robots).can_fetch(f"https://example.com{path}", token)
    assert protego_says is not ours  # the deviation is real in the pinned version
    assert RobotsPolicy.parse(robots).check(path, token).allowed is ours


def test_protego_rejects_bytes_and_we_do_not() -> None:
    with pytest.raises(TypeError):
        Protego.parse(b"User-agent: *\nDisallow: /\n")  # type: ignore[arg-type]
    assert not RobotsPolicy.parse(b"User-agent: *\nDisallow: /\n").check("/", "mybot").allowed


def test_selection_is_memoised_per_token_spelling() -> None:
    policy = RobotsPolicy.parse("User-agent: MyBot\nDisallow: /a\n")
    first = policy.check("/a", "mybot")
    assert policy.check("/a", "MYBOT/3") == first
    assert policy.check("/a", "otherbot").allowed


@pytest.mark.parametrize(
    ("robots", "token", "expected"),
    [
        ("User-agent: *\nCrawl-delay: 5\n", "mybot", (5.0, "Crawl-delay: 5", 2, "*")),
        # the largest of the merged groups, the first line of equals
        ("User-agent: MyBot/1\nCrawl-delay: 2\nCrawl-delay: 9 # slow\nCrawl-delay: 9\n"
         "User-agent: mybot\nCrawl-delay: 3\n", "mybot",
         (9.0, "Crawl-delay: 9", 3, "MyBot/1")),
        ("User-agent: a\nCrawl-delay: 3\nUser-agent: mybot\nDisallow:\n", "mybot",
         (3.0, "Crawl-delay: 3", 2, "mybot")),
        ("User-agent: *\ncrawl-delay 1" + "0" * 400 + "\n", "mybot",
         (math.inf, "crawl-delay 1" + "0" * 400, 2, "*")),
        ("User-agent: *\nCrawl-delay: nan\nDisallow: /x\n", "mybot", None),
        ("User-agent: other\nCrawl-delay: 5\n", "mybot", None),
    ],
)
def test_crawl_delay_rule_names_its_line(robots: str, token: str,
                                         expected: tuple[float, str, int, str] | None) -> None:
    found = RobotsPolicy.parse(robots).crawl_delay_rule(token)
    assert (found and (found.seconds, found.text, found.line, found.group)) == expected


def test_many_crawl_delay_lines_keep_one() -> None:
    body = "User-agent: *\n" + "".join(f"Crawl-delay: {i % 97}\n" for i in range(20000))
    policy = RobotsPolicy.parse(body)
    assert policy.crawl_delay_rule("x") == CrawlDelay(96.0, "Crawl-delay: 96", 98, "*")
    assert policy.approx_bytes < 10_000


# -- the cost of a question is bounded -------------------------------------------------------

@pytest.mark.parametrize(("value", "parts", "length"), [
    ("/a***b", ("/a", "b"), 6),  # a run of "*" is one "*"; the priority is as written
    ("/a**", ("/a", ""), 4),
    ("***/x", ("", "/x"), 5),
    ("/" + "*" * 300 + "q*z", ("/", "q", "z"), 304),
    ("/a*b*c$", ("/a", "b", "c"), 7),
    ("/plain", ("/plain",), 6),
])
def test_star_runs_collapse(value: str, parts: tuple[str, ...], length: int) -> None:
    from consentfetch.consent.robots import compile_path_pattern
    pattern = compile_path_pattern(value)
    assert (pattern.parts, pattern.length) == (parts, length)


@pytest.mark.parametrize(("robots", "path", "allowed"), [
    ("User-agent: *\nDisallow: /a***b\n", "/a/x/b", False),
    ("User-agent: *\nDisallow: /a***b$\n", "/a/x/bc", True),
    # the priority is the length as written: 302 octets beat Allow: /q
    ("User-agent: *\nDisallow: /" + "*" * 300 + "q\nAllow: /q\n", "/q", False),
    ("User-agent: *\nDisallow: /" + "*" * 300 + "q\nAllow: /q\n", "/xq", False),
    ("User-agent: *\nDisallow: /" + "*" * 300 + "q\nAllow: /q\n", "/x", True),
])
def test_star_runs_match_as_one(robots: str, path: str, allowed: bool) -> None:
    assert RobotsPolicy.parse(robots).check(path, "mybot").allowed is allowed


def test_canonical_fast_path_spells_as_the_slow_one() -> None:
    import random

    from consentfetch.consent.robots import _canonical, _respelled
    alphabet = "aZ09-._~:/?[]@!&'()+,;=*$%2Fé #\x00"
    rng = random.Random(9309)
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
               for _ in range(3000)] + ["/plain/path", "/a*b", "/q?x=1", ""]
    for text in samples:
        for pattern in (False, True):
            assert _canonical(text, pattern=pattern) == _respelled(text, pattern=pattern), text


def test_each_group_is_matched_once_per_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """AI-crawler inference asks about dozens of tokens: a group naming them all is
    matched once for a URL, not once per token."""
    from consentfetch.consent import robots as module
    tokens = [f"bot{i}" for i in range(40)]
    body = "".join(f"User-agent: {t}\n" for t in tokens) + "User-agent: *\n" + "".join(
        f"Disallow: /p{i}/*x\n" for i in range(2000)) + "User-agent: mybot\nAllow: /\n"
    policy = RobotsPolicy.parse(body)
    calls: list[str] = []
    real = module._Matcher.best

    def best(self: object, path: str) -> object:
        calls.append(path)
        return real(self, path)  # type: ignore[arg-type]

    monkeypatch.setattr(module._Matcher, "best", best)
    verdicts = policy.check_tokens("/p7/ax", ["*", *tokens, "mybot"])
    assert [v.allowed for v in verdicts] == [False] * 41 + [True]
    assert verdicts[1].rule == "Disallow: /p7/*x" and verdicts[1].line == 49
    assert len(calls) == 2  # the shared group and mybot's
    policy.check("/p7/ax", "bot3")  # the same URL again: remembered
    assert len(calls) == 2


# --- RSL License lines (an other record) ------------------------------------------------

LICENSED = """License: https://example.com/global.xml
User-agent: Googlebot
License: https://example.com/google.xml
Disallow: /g/

User-agent: *
license: https://example.com/star.xml
Allow: /
"""


def _licence_values(body: str, token: str, strict: bool) -> list[str]:
    return [line.value for line in RobotsPolicy.parse(body).licences(token, strict=strict)]


@pytest.mark.parametrize(("body", "token", "strict", "expected"), [
    # CONSENT.md: a global line above a group that is not ours
    ("License: https://example.com/license.xml\nUser-agent: Googlebot\nDisallow: /x\n",
     "mybot", False, ["https://example.com/license.xml"]),
    # our group (here "*") has lines: standard reads only those, strict both
    (LICENSED, "mybot", False, ["https://example.com/star.xml"]),
    (LICENSED, "mybot", True, ["https://example.com/global.xml",
                               "https://example.com/star.xml"]),
    # another agent's group is ignored
    (LICENSED, "googlebot", False, ["https://example.com/google.xml"]),
    ("User-agent: Googlebot\nLicense: https://example.com/google.xml\n", "mybot", True, []),
    # no lines at all
    ("User-agent: *\nDisallow: /p/\n", "mybot", True, []),
])
def test_licence_lines(body: str, token: str, strict: bool, expected: list[str]) -> None:
    assert _licence_values(body, token, strict) == expected


def test_licence_line_neither_ends_nor_splits_a_group() -> None:
    body = ("User-agent: a\nLicense: https://e.example/l.xml\nUser-agent: mybot\n"
            "Disallow: /private/\n")
    policy = RobotsPolicy.parse(body)
    assert not policy.check("/private/x", "mybot").allowed  # one group for a and mybot
    lines = policy.licences("mybot", strict=False)
    assert [(x.value, x.line, x.group) for x in lines] == [
        ("https://e.example/l.xml", 2, "mybot")]
    assert policy.check("/other", "mybot").allowed  # License never changes Allow/Disallow
