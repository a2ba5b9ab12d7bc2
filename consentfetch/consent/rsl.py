"""RSL 1.0 licences (Really Simple Licensing), read for an AI-training downloader.

Pure: plain values in (a licence body, URLs, header values), verdicts with
their proof out. Fetching lives next to the origin files
(:mod:`consentfetch.consent.origins`); the profile rules in the engine.

Reading (ARCHITECTURE.md §6, "RSL licences"):

* A licence is valid when it is well-formed XML without a DTD or entity
  declaration, at most :data:`MAX_LICENCE_BYTES`, whose root is ``rsl`` in the
  namespace :data:`RSL_NAMESPACE`. The body is refused before parsing when it
  holds ``<!DOCTYPE`` or ``<!ENTITY`` in any encoding we can see, and the expat
  parser refuses them again while parsing (no entity is ever expanded).
* Every ``<content>`` whose ``url`` matches the URL being decided counts: a
  path is matched as a robots.txt rule path is (RFC 9309, ``*`` and ``$``); a
  full URL needs the same scheme, host and port, then its path; ``url=""``
  matches only for a licence named by the response's own ``Link`` header.
* A matching ``<content>`` licenses AI training when no ``<license>`` in it
  prohibits ``all``, ``ai-all``, ``ai-train`` or ``train-ai``, and at least one
  ``<license>`` permits one of them (or has no usage permits), is free, asks
  no ``<reporting>``, and the content has no ``server`` nor
  ``encrypted="true"``. Token lists split on whitespace and commas.
  ``user`` and ``geo`` terms are recorded, not evaluated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from xml.parsers import expat

from yarl import URL

from .robots import compile_path_pattern, match_target

__all__ = [
    "MAX_LICENCE_BYTES",
    "RSL_MEDIA_TYPE",
    "RSL_NAMESPACE",
    "RslContent",
    "RslDecision",
    "RslDocument",
    "RslLicense",
    "RslVerdict",
    "absolute_licence_url",
    "evaluate",
    "parse_licence",
    "rsl_link_urls",
]

RSL_NAMESPACE = "https://rslstandard.org/rsl"
RSL_MEDIA_TYPE = "application/rsl+xml"
MAX_LICENCE_BYTES = 512_000  # the origin files' limit: 500 KiB, read whole
#: usage tokens that cover AI training (``train-ai``: the aipref label RSL templates use)
TRAINING_TOKENS = frozenset({"all", "ai-all", "ai-train", "train-ai"})
_FREE_PAYMENTS = frozenset({"", "free"})
_MAX_ELEMENTS = 100_000  # far more than 500 KiB of real licence needs
_TOKEN_SPLIT = re.compile(r"[\s,]+")
_NS = RSL_NAMESPACE + " "
# "<!DOCTYPE" / "<!ENTITY" as ASCII, UTF-16 (both orders) and UTF-32 would spell them.
_DECLARATIONS = tuple(
    word.encode(codec) for word in ("<!DOCTYPE", "<!ENTITY", "<!doctype", "<!entity")
    for codec in ("ascii", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"))


@dataclass(frozen=True, slots=True)
class RslLicense:
    """One ``<license>``: an alternative set of terms."""

    #: usage tokens of its ``<permits type="usage">`` elements; None when it has none
    permits_usage: tuple[str, ...] | None
    prohibits_usage: tuple[str, ...]
    #: the ``type`` of each ``<payment>`` ("" for one without a type)
    payments: tuple[str, ...]
    #: whether each payment is empty (no type, no child, no text)
    empty_payments: tuple[bool, ...]
    reporting: bool
    #: ``user`` and ``geo`` terms as written (recorded, not evaluated)
    other_terms: tuple[str, ...] = ()

    @property
    def free(self) -> bool:
        return all(kind in _FREE_PAYMENTS or empty
                   for kind, empty in zip(self.payments, self.empty_payments, strict=True))

    @property
    def permits_training(self) -> bool:
        return self.permits_usage is None or bool(TRAINING_TOKENS & set(self.permits_usage))

    @property
    def prohibited(self) -> tuple[str, ...]:
        """The training tokens it prohibits."""
        return tuple(t for t in self.prohibits_usage if t in TRAINING_TOKENS)


@dataclass(frozen=True, slots=True)
class RslContent:
    """One ``<content>``: the assets its ``url`` names and their licences."""

    url: str
    server: str | None
    encrypted: bool
    licenses: tuple[RslLicense, ...]


@dataclass(frozen=True, slots=True)
class RslDocument:
    contents: tuple[RslContent, ...]


@dataclass(frozen=True, slots=True)
class RslVerdict:
    """What one matching ``<content>`` says about AI training."""

    licensed: bool
    content_url: str
    #: the deciding term, e.g. ``<prohibits type="usage">ai-train</prohibits>``
    term: str


@dataclass(frozen=True, slots=True)
class RslDecision:
    """A licence's answer for one URL: the first refusal, else a permission, else nothing."""

    denied: RslVerdict | None = None
    permitted: RslVerdict | None = None
    matched: tuple[RslVerdict, ...] = field(default_factory=tuple)


class _Refused(ValueError):
    """The body is not a licence we may read."""


def parse_licence(body: bytes) -> RslDocument | str:
    """The licence in ``body``, or why it is not a valid RSL licence (a sentence)."""
    if len(body) > MAX_LICENCE_BYTES:
        return f"longer than {MAX_LICENCE_BYTES} bytes"
    if any(word in body for word in _DECLARATIONS):
        return "holds a DTD or entity declaration (refused unparsed)"
    try:
        root = _parse_tree(body)
    except _Refused as exc:
        return str(exc)
    except expat.ExpatError as exc:
        return f"not well-formed XML ({exc})"
    if root.tag != _NS + "rsl":
        return f"root element is not <rsl> in namespace {RSL_NAMESPACE}"
    return RslDocument(tuple(_content(c) for c in root.children if c.tag == _NS + "content"))


@dataclass(slots=True)
class _Element:
    tag: str
    attrs: dict[str, str]
    children: list[_Element] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def attr(self, name: str) -> str | None:
        return self.attrs.get(name)

    @property
    def content(self) -> str:
        return "".join(self.text).strip()


def _parse_tree(body: bytes) -> _Element:
    """A namespace-aware tree; any DTD or entity declaration raises :class:`_Refused`."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Element] = []
    roots: list[_Element] = []
    count = [0]

    def refuse(*_: object) -> None:
        raise _Refused("holds a DTD or entity declaration")

    def start(tag: str, attrs: dict[str, str]) -> None:
        count[0] += 1
        if count[0] > _MAX_ELEMENTS:
            raise _Refused(f"more than {_MAX_ELEMENTS} elements")
        element = _Element(tag, attrs)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(_: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text.append(data)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse  # type: ignore[assignment]
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(body, True)
    return roots[0]


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(t.lower() for t in _TOKEN_SPLIT.split(text) if t)


def _content(element: _Element) -> RslContent:
    licenses = tuple(_license(e) for e in element.children if e.tag == _NS + "license")
    encrypted = (element.attr("encrypted") or "").strip().lower() == "true"
    return RslContent(element.attr("url") or "", element.attr("server") or None, encrypted,
                      licenses)


def _license(element: _Element) -> RslLicense:
    permits: list[str] | None = None
    prohibits: list[str] = []
    payments: list[str] = []
    empty: list[bool] = []
    other: list[str] = []
    reporting = False
    for child in element.children:
        if not child.tag.startswith(_NS):
            continue  # another vocabulary: not RSL's
        name = child.tag.removeprefix(_NS)
        kind = (child.attr("type") or "").strip().lower()
        if name == "permits" and kind == "usage":
            permits = [*(permits or []), *_tokens(child.content)]
        elif name == "prohibits" and kind == "usage":
            prohibits.extend(_tokens(child.content))
        elif name in ("permits", "prohibits"):
            other.append(f'<{name} type="{kind}">{child.content}</{name}>')
        elif name == "payment":
            payments.append(kind)
            empty.append(not kind and not child.children and not child.content)
        elif name == "reporting":
            reporting = True
    return RslLicense(tuple(permits) if permits is not None else None, tuple(prohibits),
                      tuple(payments), tuple(empty), reporting, tuple(other))


# -- which contents apply ---------------------------------------------------------------

_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)


def _same_origin(left: URL, right: URL) -> bool:
    return (left.scheme.lower(), (left.host or "").lower(), left.port) == \
        (right.scheme.lower(), (right.host or "").lower(), right.port)


def content_matches(content_url: str, url: str, *, from_link: bool) -> bool:
    """Does a ``<content url>`` name ``url``? (see the module docstring)"""
    value = content_url.strip()
    if not value:
        return from_link
    if value.startswith(("/", "*")):
        return compile_path_pattern(value).matches(match_target(url))
    absolute = _ABSOLUTE.fullmatch(value)
    if absolute is None:
        return False
    try:
        base, target = URL(f"{absolute[1]}://{absolute[2]}/"), URL(url)
    except ValueError:
        return False
    if not _same_origin(base, target):
        return False
    return compile_path_pattern(absolute[3] or "/").matches(match_target(url))


def _verdict(content: RslContent) -> RslVerdict:
    """Does this content license AI training for us? With the term that decided."""
    url = content.url
    for lic in content.licenses:
        if lic.prohibited:
            tokens = " ".join(lic.prohibits_usage)
            return RslVerdict(False, url, f'<prohibits type="usage">{tokens}</prohibits>')
    if content.server:
        return RslVerdict(False, url, f'<content server="{content.server}"> (a licence '
                                      "token from a licence server is required)")
    if content.encrypted:
        return RslVerdict(False, url, '<content encrypted="true">')
    if not content.licenses:
        return RslVerdict(False, url, "no <license> in the <content>")
    reasons = []
    for lic in content.licenses:
        why = _license_refusal(lic)
        if why is None:
            permits = "(no usage permits)" if lic.permits_usage is None else \
                f'<permits type="usage">{" ".join(lic.permits_usage)}</permits>'
            return RslVerdict(True, url, permits)
        reasons.append(why)
    return RslVerdict(False, url, "; ".join(reasons))


def _license_refusal(lic: RslLicense) -> str | None:
    if not lic.permits_training:
        return f'<permits type="usage">{" ".join(lic.permits_usage or ())}</permits> ' \
               "does not permit AI training"
    if not lic.free:
        kinds = ", ".join(k for k in lic.payments if k not in _FREE_PAYMENTS) or "(untyped)"
        return f'<payment type="{kinds}"> asks for payment'
    if lic.reporting:
        return "<reporting> asks for usage reporting"
    return None


def evaluate(document: RslDocument, url: str, *, from_link: bool = False) -> RslDecision:
    """What ``document`` says about AI training on ``url``; no matching content = nothing."""
    verdicts = tuple(_verdict(c) for c in document.contents
                     if content_matches(c.url, url, from_link=from_link))
    denied = next((v for v in verdicts if not v.licensed), None)
    permitted = verdicts[0] if verdicts and denied is None else None
    return RslDecision(denied, permitted, verdicts)


# -- discovery ----------------------------------------------------------------------------

def absolute_licence_url(value: str) -> str | None:
    """``value`` when it is an absolute http(s) URL with a host, else None."""
    value = value.strip()
    if not re.match(r"(?i)https?://[^/?#\s]+", value) or any(c.isspace() for c in value):
        return None
    try:
        url = URL(value)
    except ValueError:
        return None
    return str(url.with_fragment(None)) if url.host else None


def rsl_link_urls(values: Iterable[str], base: str) -> list[str]:
    """The RSL licence URLs of ``Link`` header values: ``rel`` containing ``license`` and
    ``type`` ``application/rsl+xml``; relative targets resolved against ``base``."""
    found: list[str] = []
    for value in values:
        for target, params in _link_values(value):
            rels = _tokens(params.get("rel", ""))
            if "license" not in rels or params.get("type", "").lower() != RSL_MEDIA_TYPE:
                continue
            try:
                resolved = absolute_licence_url(str(URL(base).join(URL(target))))
            except ValueError:
                continue
            if resolved is not None and resolved not in found:
                found.append(resolved)
    return found


_LINK_VALUE = re.compile(r'\s*<([^>]*)>((?:\s*;\s*[^;,="]+\s*(?:=\s*(?:"[^"]*"|[^;,"]*))?)*)')
_LINK_PARAM = re.compile(r'\s*;\s*([^;,="\s]+)\s*(?:=\s*(?:"([^"]*)"|([^;,"]*)))?')


def _link_values(header: str) -> list[tuple[str, dict[str, str]]]:
    """``<target>; key=value ...`` values of one ``Link`` header (RFC 8288), best effort:
    the first of a repeated parameter wins (RFC 8288 §3.3)."""
    out: list[tuple[str, dict[str, str]]] = []
    pos = 0
    while pos < len(header):
        match = _LINK_VALUE.match(header, pos)
        if match is None:
            break
        params: dict[str, str] = {}
        for param in _LINK_PARAM.finditer(match[2]):
            params.setdefault(param[1].lower(), (param[2] or param[3] or "").strip())
        out.append((match[1].strip(), params))
        pos = match.end()
        comma = header.find(",", pos)
        if comma < 0:
            break
        pos = comma + 1
    return out


def licence_urls(values: Sequence[str]) -> list[str]:
    """The absolute http(s) licence URLs among robots.txt ``License`` values, once each."""
    found: list[str] = []
    for value in values:
        url = absolute_licence_url(value)
        if url is not None and url not in found:
            found.append(url)
    return found
