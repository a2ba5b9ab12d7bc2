"""Known AI-training crawler tokens, and the strict profile's inference from them.

Many sites refuse AI training not with a signal addressed to everyone but by
blocking the crawlers known to gather training data in robots.txt
(``User-agent: GPTBot`` / ``Disallow: /``). The strict profile reads that as
a refusal addressed to us too: a URL is ``ai_crawler_blocked`` when robots.txt
disallows it to a known AI-training crawler token that a group names, while
allowing it to a crawler no group names (``*``).

The tokens ship as data, ``data/ai_crawlers.txt`` (where they come from, what
is in and what is left out, is written at its top), and users add their own.

Reading choices:

* Tokens are RFC 9309 product tokens, ``[A-Za-z_-]+``, compared
  case-insensitively and exactly, never by substring (``User-agent: gpt`` does
  not name ``GPTBot``). A crawler name that is not a token (``AI2Bot``,
  ``Kangaroo Bot``) is listed as the token robots.txt parsers read a
  ``User-agent`` line carrying it as — its leading letters, ``_`` and ``-``
  (``AI``, ``Kangaroo``) — so it matches what sites write. A user token that
  is not a product token is refused (:class:`ConfigError`), with that hint.
* Only groups that *name* a token count: the token must not fall back to the
  ``*`` group, or every path ``*`` disallows would look like an AI block.
  A path disallowed to ``*`` as well is a plain ``robots_disallowed`` denial,
  not an inference.
* The inference applies only when no group names our own token: a site that
  writes a group for us has spoken to us directly (ARCHITECTURE.md §6).
* When several AI tokens are blocked, the first in list order is reported.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .robots import RobotsPolicy, RobotsVerdict

__all__ = ["ai_crawler_blocked", "is_product_token", "load_ai_crawler_tokens"]

_DATA_PACKAGE = "consentfetch.consent"
_DATA_FILE = ("data", "ai_crawlers.txt")
_PRODUCT_TOKEN = re.compile(r"[A-Za-z_-]+")
_LEADING_TOKEN = re.compile(r"[A-Za-z_-]*")


def is_product_token(name: str) -> bool:
    """Is ``name`` an RFC 9309 product token (letters, ``_`` and ``-``)?"""
    return _PRODUCT_TOKEN.fullmatch(name) is not None


def load_ai_crawler_tokens(extra: Iterable[str] = (), *, path: str | None = None
                           ) -> tuple[str, ...]:
    """The shipped AI-crawler tokens (or those of the file ``path``), then ``extra``.

    Deduplicated case-insensitively, keeping the first spelling and the
    order. A token that is not an RFC 9309 product token, in ``extra`` or in
    the file, raises :class:`ConfigError` naming it; so does an unreadable
    ``path``. The file format: one token a line, ``#`` starts a comment.
    """
    listed = _shipped_tokens() if path is None else _file_tokens(path)
    extras = [extra] if isinstance(extra, str) else list(extra)
    tokens: dict[str, str] = {}
    for token in (*listed, *(_checked(str(e).strip(), "AI crawler token") for e in extras)):
        tokens.setdefault(token.lower(), token)
    return tuple(tokens.values())


def ai_crawler_blocked(policy: RobotsPolicy, url: str, our_token: str,
                       ai_tokens: Sequence[str]) -> tuple[str, RobotsVerdict] | None:
    """The AI token robots.txt blocks ``url`` for while allowing unnamed crawlers.

    ``None`` when a group names ``our_token``, when ``url`` is disallowed to
    ``*`` too, or when no group naming a token of ``ai_tokens`` disallows it.
    Otherwise ``(token as given in ai_tokens, its verdict)`` for the first
    such token: the verdict holds the rule, its line and the group's
    ``User-agent`` value, the evidence.
    """
    named = [t for t in ai_tokens if t.lower() in policy.named_tokens] \
        if policy.named_tokens else []
    if not named:  # the common case, decided without matching any path
        return None
    if policy.names_token(our_token):
        return None
    anyone, *verdicts = policy.check_tokens(url, ("*", *named))  # each group matched once
    if not anyone.allowed:
        return None
    for token, verdict in zip(named, verdicts, strict=True):
        if not verdict.allowed:
            return token, verdict
    return None


# ------------------------------------------------------------------ reading


@functools.cache
def _shipped_tokens() -> tuple[str, ...]:
    folder, name = _DATA_FILE
    text = resources.files(_DATA_PACKAGE).joinpath(folder).joinpath(name).read_text(
        encoding="utf-8")
    return tuple(_parse(text, f"{folder}/{name}"))


def _file_tokens(path: str) -> tuple[str, ...]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the AI crawler list: {exc}") from exc
    return tuple(_parse(text, path))


def _parse(text: str, name: str) -> Iterator[str]:
    for lineno, line in enumerate(text.splitlines(), start=1):
        token = line.partition("#")[0].strip()
        if token:
            yield _checked(token, f"{name}: line {lineno}: AI crawler token")


def _checked(token: str, what: str) -> str:
    if is_product_token(token):
        return token
    hint = ""
    read_as = _LEADING_TOKEN.match(token)
    if read_as and read_as.group():
        hint = (f"; robots.txt parsers read a 'User-agent: {token}' line as the token "
                f"{read_as.group()!r}, which you may give instead")
    raise ConfigError(f"{what} {token!r} is not an RFC 9309 product token "
                      f"(letters, '_' and '-' only){hint}")
