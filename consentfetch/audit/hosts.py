"""Hosts and URLs of audit rows: a vectorised hostname column, URL normalisation, lookup."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc

from ..safetext import redact_userinfo

# Scheme, optional userinfo, then the host (a bracketed IPv6 literal or up to
# the port, path, query or fragment), like urlsplit().hostname but vectorised.
_HOST_RE = r"^[A-Za-z][A-Za-z0-9+.\-]*://(?:[^@/?#]*@)?(?P<host>\[[^\]]*\]|[^:/?#]*)"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_column(table: pa.Table) -> pa.Array:
    """The lower-cased hostname of every row's URL (null when it has none).

    Agrees with ``urlsplit(url).hostname``: userinfo and port dropped, IPv6
    brackets removed.
    """
    if table.num_rows == 0 or "url" not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    urls = table["url"].combine_chunks()
    if not pa.types.is_string(urls.type):
        urls = urls.cast(pa.string())
    found = pc.extract_regex(urls, _HOST_RE)
    hosts = pc.utf8_lower(pc.struct_field(found, [0]))
    hosts = pc.utf8_trim(hosts, "[]")
    empty = pc.equal(hosts, "")
    return pc.if_else(pc.or_kleene(pc.invert(found.is_valid()), empty),
                      pa.scalar(None, pa.string()), hosts)


def norm_host(host: str) -> str:
    return host.strip().lower().strip("[]")


def normalize_url(url: str) -> str:
    """``url`` with scheme and host lower-cased and a default port dropped.

    An empty path becomes ``/``. Path, query and fragment are kept as
    written. A string that does not parse as a URL is returned unchanged::

        >>> normalize_url("HTTPS://Example.COM:443/Art/A.jpg")
        'https://example.com/Art/A.jpg'
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return url
    if not parts.scheme or parts.hostname is None:
        return url
    scheme = parts.scheme.lower()
    host = parts.hostname  # lower-cased by urlsplit
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = (f"{userinfo}@" if userinfo else "") + host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, parts.fragment))


def hostname(url: str | None) -> str | None:
    """The lower-cased hostname of ``url``, or None."""
    if not url:
        return None
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def find_url(table: pa.Table, url: str) -> pa.Table:
    """The rows of ``table`` for ``url``: exact string matches, or else the
    rows whose URL is the same after :func:`normalize_url`."""
    if table.num_rows == 0:
        return table
    url = redact_userinfo(url)  # stored URLs hold ***@ in place of credentials
    exact = table.filter(pc.fill_null(pc.equal(table["url"], url), False))
    if exact.num_rows:
        return exact
    wanted = normalize_url(url)
    host = hostname(wanted)
    if host is None:
        return exact
    same_host = table.filter(pc.fill_null(pc.equal(host_column(table), host), False))
    mask = [u is not None and normalize_url(u) == wanted for u in same_host["url"].to_pylist()]
    return same_host.filter(pa.array(mask, pa.bool_()))



def origin_of(url: Any) -> str | None:
    """``scheme://host:port`` of ``url`` (default port made explicit), or None."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if parts.hostname is None:
        return None
    return f"{parts.scheme.lower()}://{parts.hostname}:{port}"
