"""Shared fixtures: a live multi-origin site on 127.0.0.x and URL-list helpers.

No test reaches the internet: every URL points at the :class:`LocalSite`
started here, on loopback addresses, port chosen by the OS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from consentfetch.testsite import LocalSite, running_site

SITE_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")

# Options every end-to-end test uses: the site is on loopback, and failures
# should retry quickly.
LOCAL = {"allow_private_networks": True, "processes": 1, "retries": 1,
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
