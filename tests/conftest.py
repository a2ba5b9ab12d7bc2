"""Shared fixtures: a live multi-origin site on 127.0.0.x and URL-list helpers.

No test reaches the internet: every URL points at the :class:`LocalSite`
started here, on loopback addresses, port chosen by the OS.
"""

from __future__ import annotations

import signal
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentfetch.consent.decision import Denial
from consentfetch.testsite import RUDE, Delivery, LocalSite, running_site


def sigint_default() -> None:
    """``preexec_fn`` of a child that a test sends SIGINT (Ctrl-C): restore the default
    disposition, so Python in the child installs its KeyboardInterrupt handler. A
    shell starts background jobs (``.ci/run &``) with SIGINT ignored, and children
    inherit that; the child would then ignore the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

SITE_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")

# Options every end-to-end test uses: the site is on loopback, and failures
# should retry quickly.
LOCAL: dict[str, Any] = {"allow_private_networks": True, "processes": 1, "retries": 1,
         "retry_backoff": 0.01, "timeout": 5}


@pytest.fixture
def site() -> Iterator[LocalSite]:
    with running_site(SITE_HOSTS) as s:
        yield s


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


@pytest.fixture
def url_list(tmp_path: Path):
    """``url_list(rows)`` writes rows to a parquet file and returns its path."""
    def make(rows: list[dict[str, Any]], name: str = "urls.parquet") -> str:
        return write_parquet(tmp_path / name, rows)
    return make


def png_bomb(side: int) -> bytes:
    """A real, valid side x side 1-bit PNG (a decompression bomb) of a few hundred KB.

    Built block of rows by block of rows, so the test never holds the pixels.
    """
    row = b"\x00" + b"\x00" * (side // 8)  # filter byte + packed bits
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row * 1000) for _ in range(side // 1000)) + z.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def with_local(options: dict[str, Any]) -> dict[str, Any]:
    """:data:`LOCAL` with ``options`` on top."""
    return {**LOCAL, **options}


# Each consent end-to-end test runs against a polite site (every body in one write,
# plain HTTP) and a rude one (HTTPS from a test authority, every body chunked and
# written a TCP window at a time), as real links deliver them.
DELIVERIES = ("polite", "rude-https")


@contextmanager
def delivered_site(hosts: tuple[str, ...], delivery: str) -> Iterator[LocalSite]:
    """A started site on ``hosts``, delivering as ``delivery`` (one of DELIVERIES) says."""
    rude = delivery == "rude-https"
    with running_site(hosts, delivery=RUDE if rude else Delivery(), tls=rude) as site:
        yield site


@dataclass
class Answer:
    """An origin-file fetch outcome, shaped like net.client.SmallFetch."""

    http_status: int | None
    body: bytes = b""
    error: Denial | None = None
    truncated: bool = False
    reached: bool = True
