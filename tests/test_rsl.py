"""Tests of consentfetch.consent.rsl: RSL 1.0 licences, parsed safely and evaluated."""

from __future__ import annotations

import pytest

from consentfetch.consent import rsl
from consentfetch.consent.rsl import (
    MAX_LICENCE_BYTES,
    RslDocument,
    absolute_licence_url,
    content_matches,
    evaluate,
    licence_urls,
    parse_licence,
    rsl_link_urls,
)

NS = 'xmlns="https://rslstandard.org/rsl"'


def doc(*contents: str) -> str:
    return f"<rsl {NS}>{''.join(contents)}</rsl>"


def content(url: str, *licenses: str, attrs: str = "") -> str:
    return f'<content url="{url}"{attrs}>{"".join(licenses)}</content>'


def lic(*terms: str) -> str:
    return f"<license>{''.join(terms)}</license>"


PERMIT_ALL = '<permits type="usage">all</permits>'
NO_TRAIN = '<prohibits type="usage">ai-train</prohibits>'

# rslstandard.org/guide/ai-preferences, "define the licensing terms for train-ai in
# the corresponding RSL license file" (verbatim, but for its placeholder host
# your-website.com, renamed to a reserved example domain): train-ai for a subscription.
RSL_GUIDE_EXAMPLE = """<rsl xmlns="https://rslstandard.org/rsl">
  <content url="/">
    <license>
      <permits type="usage">train-ai</permits>
      <payment type="subscription">
        <custom>https://example.com/contact-form.html</custom>
      </payment>
    </license>
  </content>
</rsl>"""


def _parsed(body: str) -> RslDocument:
    parsed = parse_licence(body.encode())
    assert isinstance(parsed, RslDocument), parsed
    return parsed


# (licence, URL decided, licensed: True / False / None = no RSL signal, term contains)
CASES: list[tuple[str, str, bool | None, str]] = [
    # CONSENT.md's examples
    (doc(content("/", lic(NO_TRAIN))), "https://example.com/a.jpg", False,
     '<prohibits type="usage">ai-train</prohibits>'),
    (doc(content("/", lic('<permits type="usage">search</permits>'))),
     "https://example.com/a.jpg", False, "does not permit AI training"),
    (doc(content("/", lic('<permits type="usage">ai-train</permits>'),
                  attrs=' server="https://ls.example/"')),
     "https://example.com/a.jpg", False, 'server="https://ls.example/"'),
    (doc(content("/", lic(PERMIT_ALL)), content("/articles/", lic(NO_TRAIN))),
     "https://example.com/articles/a.jpg", False, "ai-train"),
    (doc(content("/", lic(PERMIT_ALL)), content("/articles/", lic(NO_TRAIN))),
     "https://example.com/news/a.jpg", True, "all"),
    # RSL's own guide example: permitted for a subscription only
    (RSL_GUIDE_EXAMPLE, "https://example.com/img.png", False, "subscription"),
    # no usage permits: everything not prohibited
    (doc(content("/", lic())), "https://example.com/a.jpg", True, "no usage permits"),
    (doc(content("/", lic('<payment type="free"/>', PERMIT_ALL))),
     "https://example.com/a.jpg", True, ""),
    (doc(content("/", lic("<payment/>", PERMIT_ALL))), "https://example.com/a.jpg", True, ""),
    (doc(content("/", lic('<payment type="attribution"/>', PERMIT_ALL))),
     "https://example.com/a.jpg", False, "attribution"),
    (doc(content("/", lic("<reporting>https://r.example/</reporting>", PERMIT_ALL))),
     "https://example.com/a.jpg", False, "<reporting>"),
    (doc(content("/", lic(PERMIT_ALL), attrs=' encrypted="true"')),
     "https://example.com/a.jpg", False, "encrypted"),
    # prohibition beats permission, in any licence of the content
    (doc(content("/", lic(PERMIT_ALL), lic('<prohibits type="usage">ai-all</prohibits>'))),
     "https://example.com/a.jpg", False, "ai-all"),
    # one free licence among paid alternatives licenses it
    (doc(content("/", lic('<payment type="purchase"/>'), lic(PERMIT_ALL))),
     "https://example.com/a.jpg", True, ""),
    # train-ai (aipref label) and 0.9 comma lists
    (doc(content("/", lic('<prohibits type="usage">search,train-ai</prohibits>'))),
     "https://example.com/a.jpg", False, "train-ai"),
    (doc(content("/", lic('<permits type="usage">search, ai-all</permits>'))),
     "https://example.com/a.jpg", True, "ai-all"),
    # user and geo terms are recorded, not evaluated
    (doc(content("/", lic('<permits type="user">non-commercial</permits>',
                          '<prohibits type="geo">us</prohibits>'))),
     "https://example.com/a.jpg", True, ""),
    # matching: no matching content is no signal
    (doc(content("/private/", lic(NO_TRAIN))), "https://example.com/a.jpg", None, ""),
    (doc(content("/*.png$", lic(NO_TRAIN))), "https://example.com/a.png", False, ""),
    (doc(content("/*.png$", lic(NO_TRAIN))), "https://example.com/a.png?x=1", None, ""),
    (doc(content("https://example.com/img/*", lic(NO_TRAIN))),
     "https://example.com/img/a.jpg", False, ""),
    (doc(content("https://example.com/img/*", lic(NO_TRAIN))),
     "https://other.example/img/a.jpg", None, ""),
    (doc(content("https://example.com/", lic(NO_TRAIN))),
     "http://example.com/a.jpg", None, ""),
    (doc(content("https://example.com:8443/", lic(NO_TRAIN))),
     "https://example.com/a.jpg", None, ""),
    (doc(content("", lic(NO_TRAIN))), "https://example.com/a.jpg", None, ""),
    (doc(content("relative/path", lic(NO_TRAIN))), "https://example.com/relative/path",
     None, ""),
    # elements of another namespace are not RSL's
    (doc(content("/", lic('<x:prohibits xmlns:x="urn:x" type="usage">all</x:prohibits>'))),
     "https://example.com/a.jpg", True, ""),
    # a content with no license does not license training
    (doc(content("/")), "https://example.com/a.jpg", False, "no <license>"),
]


@pytest.mark.parametrize(("body", "url", "licensed", "term"), CASES)
def test_evaluate(body: str, url: str, licensed: bool | None, term: str) -> None:
    decision = evaluate(_parsed(body), url)
    if licensed is None:
        assert decision.denied is None and decision.permitted is None
        return
    verdict = decision.permitted if licensed else decision.denied
    assert verdict is not None, decision
    assert verdict.licensed is licensed
    assert term in verdict.term
    if licensed:
        assert decision.denied is None


def test_empty_content_url_only_for_a_link_licence() -> None:
    document = _parsed(doc(content("", lic(NO_TRAIN))))
    assert evaluate(document, "https://e.example/a.jpg").denied is None
    denied = evaluate(document, "https://e.example/a.jpg", from_link=True).denied
    assert denied is not None and denied.content_url == ""


def test_content_matching_uses_robots_normalisation() -> None:
    assert content_matches("/a%62c/", "https://e.example/abc/x.jpg", from_link=False)
    assert not content_matches("/ABC/", "https://e.example/abc/x.jpg", from_link=False)


INVALID: list[tuple[bytes, str]] = [
    (b"", "not well-formed"),
    (b"<rsl xmlns='https://rslstandard.org/rsl'><content>", "not well-formed"),
    (b"<rsl><content url='/'/></rsl>", "namespace"),
    (b"<license xmlns='https://rslstandard.org/rsl'/>", "not <rsl>"),
    (b"<rsl xmlns='https://rslstandard.org/rsl/'/>", "namespace"),
    (b"<html><body>Not found</body></html>", "not <rsl>"),
    # a DTD, internal or external, and entity declarations are refused unparsed
    (b'<?xml version="1.0"?><!DOCTYPE rsl [<!ENTITY a "aaaa">]>'
     b"<rsl xmlns='https://rslstandard.org/rsl'>&a;</rsl>", "DTD"),
    (b'<!DOCTYPE rsl SYSTEM "http://127.0.0.1:9/x.dtd"><rsl/>', "DTD"),
    ('<?xml version="1.0" encoding="utf-16"?><!DOCTYPE r [<!ENTITY a "a">]><r/>'
     .encode("utf-16"), "DTD"),
    # an undeclared entity is not expanded: not well-formed
    (b"<rsl xmlns='https://rslstandard.org/rsl'>&x;</rsl>", "not well-formed"),
]


@pytest.mark.parametrize(("body", "why"), INVALID)
def test_invalid_licences(body: bytes, why: str) -> None:
    result = parse_licence(body)
    assert isinstance(result, str)
    assert why in result


def test_billion_laughs_is_refused_quickly() -> None:
    lol = b"".join(b'<!ENTITY lol%d "&lol%d;&lol%d;&lol%d;&lol%d;">' % (i, i - 1, i - 1, i - 1,
                                                                        i - 1)
                   for i in range(1, 10))
    body = (b'<?xml version="1.0"?><!DOCTYPE rsl [<!ENTITY lol0 "lol">' + lol
            + b"]><rsl xmlns='https://rslstandard.org/rsl'>&lol9;</rsl>")
    assert "DTD" in str(parse_licence(body))


@pytest.mark.parametrize("body", [
    b'<!DOCTYPE rsl [<!ENTITY a "x">]><rsl xmlns="https://rslstandard.org/rsl">&a;</rsl>',
    b'<!DOCTYPE rsl SYSTEM "http://127.0.0.1:9/x.dtd"><rsl/>',
])
def test_expat_refuses_declarations_without_the_byte_scan(
        body: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # The parser's own handlers are the second line: with the scan off they still refuse.
    monkeypatch.setattr(rsl, "_DECLARATIONS", ())
    assert "DTD or entity" in str(parse_licence(body))


def test_huge_licence_is_refused() -> None:
    body = doc(content("/", lic(PERMIT_ALL))).encode()
    huge = body.replace(b"</rsl>", b" " * MAX_LICENCE_BYTES + b"</rsl>")
    assert "longer than" in str(parse_licence(huge))


def test_deep_nesting_is_parsed_without_recursion() -> None:
    deep = b"<a>" * 20_000 + b"</a>" * 20_000
    body = b"<rsl xmlns='https://rslstandard.org/rsl'>" + deep + b"</rsl>"
    assert isinstance(parse_licence(body), RslDocument)


@pytest.mark.parametrize(("value", "expected"), [
    ("https://example.com/license.xml", "https://example.com/license.xml"),
    (" http://e.example/l.xml ", "http://e.example/l.xml"),
    ("https://e.example/l.xml#frag", "https://e.example/l.xml"),
    ("/license.xml", None),
    ("license.xml", None),
    ("ftp://e.example/l.xml", None),
    ("https:///l.xml", None),
    ("https://e.example/a b.xml", None),
    ("", None),
])
def test_absolute_licence_url(value: str, expected: str | None) -> None:
    assert absolute_licence_url(value) == expected


def test_licence_urls_once_each() -> None:
    assert licence_urls(["https://a.example/l.xml", "/x", "https://a.example/l.xml"]) == \
        ["https://a.example/l.xml"]


@pytest.mark.parametrize(("values", "expected"), [
    (['<https://l.example/rsl.xml>; rel="license"; type="application/rsl+xml"'],
     ["https://l.example/rsl.xml"]),
    (['</licence.xml>; rel="license"; type="application/rsl+xml"'],
     ["https://img.example/licence.xml"]),
    (['<https://l.example/a.xml>; rel="license"; type="text/html", '
      '<https://l.example/b.xml>; type="application/rsl+xml"; rel="alternate license"'],
     ["https://l.example/b.xml"]),
    (['<https://l.example/cc>; rel="license"'], []),
    (['<https://l.example/a.xml>; rel=license; type=application/rsl+xml'],
     ["https://l.example/a.xml"]),
    (['<https://l.example/a.xml>; rel="preload"; type="application/rsl+xml"'], []),
    (["garbage"], []),
    (['<ftp://l.example/a.xml>; rel="license"; type="application/rsl+xml"'], []),
])
def test_rsl_link_urls(values: list[str], expected: list[str]) -> None:
    assert rsl_link_urls(values, "https://img.example/a/b.jpg") == expected
