"""The public option surface: ``FetchOptions`` (the typed ``**options``) and ``FetchConfig``
kept in step, and a ``FetchConfig`` accepted wherever options are."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import consentfetch
from consentfetch import (
    ConfigError,
    FetchConfig,
    FetchOptions,
    check_url,
    fetch_shards,
    make_config,
)
from consentfetch.check import check_urls
from consentfetch.testsite import LocalSite, Resource, make_image


def _option_type(field_type: object) -> object:
    """The type ``FetchOptions`` gives a ``FetchConfig`` field: make_config turns any
    sequence of strings, or one string, into the field's tuple."""
    if typing.get_origin(field_type) is tuple:
        assert typing.get_args(field_type) == (str, ...)
        return Sequence[str] | str
    return field_type


def test_options_and_config_fields_are_the_same_names_and_types() -> None:
    fields = typing.get_type_hints(FetchConfig)
    options = typing.get_type_hints(FetchOptions)
    assert list(options) == [f.name for f in dataclasses.fields(FetchConfig)]
    assert {name: _option_type(t) for name, t in fields.items()} == options
    assert FetchOptions.__required_keys__ == frozenset()  # every option may be left out


def test_type_checkers_see_the_options(tmp_path: Path) -> None:
    """A misspelt option or a value of the wrong type is a type error, not only a
    ConfigError at run time."""
    pytest.importorskip("mypy")
    snippet = tmp_path / "uses_options.py"
    snippet.write_text(
        "from consentfetch import check_url, fetch_shards, make_config\n"
        "fetch_shards('in.parquet', 'out', image_size='big')\n"
        "check_url('https://example.org/a.jpg', consent=3)\n"
        "make_config(imagesize=3)\n"
        "make_config(make_config(), ignore=('c2pa',), timeout=2)\n")
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", str(snippet)],
                            cwd=root, capture_output=True, text=True, timeout=240)
    errors = [line.split(": error: ")[0].rsplit(":", 1)[1]
              for line in result.stdout.splitlines() if ": error: " in line]
    assert errors == ["2", "3", "4"], result.stdout  # line 5 type-checks; it fails at run time


def test_public_names_are_exactly_all() -> None:
    """``__all__`` is every public name of the package, sorted (httpx's pinning test)."""
    public = sorted(name for name, value in vars(consentfetch).items()
                    if not name.startswith("_") and not isinstance(value, types.ModuleType))
    assert consentfetch.__all__ == sorted([*public, "__version__"])


def test_make_config_takes_a_config_and_validates_it() -> None:
    config = make_config(image_size=64)
    assert make_config(config) is config
    with pytest.raises(ConfigError, match="--image-size"):  # built directly: not yet checked
        make_config(FetchConfig(image_size=0))
    with pytest.raises(ConfigError, match="FetchConfig"):
        make_config({"image_size": 64})  # type: ignore[arg-type]


def test_a_config_and_options_together_are_refused(tmp_path: Path) -> None:
    config = make_config(image_size=64)
    with pytest.raises(ConfigError, match="not both.*image_size"):
        make_config(config, image_size=32)
    with pytest.raises(ConfigError, match="not both.*retries"):
        check_url("http://127.0.0.2/a.jpg", config, retries=1)
    with pytest.raises(ConfigError, match="not both.*shard_size"):  # before reading the input
        fetch_shards(str(tmp_path / "absent.parquet"), str(tmp_path / "o"), config,
                     shard_size=2)
    assert not (tmp_path / "o").exists()


def _audit(out: Path) -> list[tuple[str, str, str | None]]:
    rows = pq.read_table(out / "00000.parquet").to_pylist()
    return [(r["key"], r["status"], r["reason"]) for r in rows]


def test_fetch_shards_with_a_config_is_the_run_its_options_make(
        site: LocalSite, url_list, tmp_path: Path) -> None:
    urls = [site.put(0, f"/{i}.jpg", make_image(40, 30, seed=i)) for i in range(3)]
    site.put(0, "/robots.txt", "User-agent: *\nDisallow: /1.jpg\n")
    path = url_list([{"url": u} for u in urls])
    options: FetchOptions = {"allow_private_networks": True, "processes": 1, "retries": 1,
                             "timeout": 5, "image_size": 32, "encode_format": "png"}
    by_options = fetch_shards(path, str(tmp_path / "a"), **options)
    by_config = fetch_shards(path, str(tmp_path / "b"), make_config(**options))
    assert by_config.counts == by_options.counts == {"disallowed": 1, "success": 2}
    assert _audit(tmp_path / "b") == _audit(tmp_path / "a")


def test_a_checks_config_keeps_its_retries(site: LocalSite) -> None:
    """A check asks once by default; a config given to it is used as it is."""
    url = site.put(0, "/busy.jpg", Resource(b"busy", status=500))
    fast: FetchOptions = {"allow_private_networks": True, "retry_backoff": 0.01, "timeout": 5}
    assert check_url(url, **fast).reason == "http_error"
    assert site.hit_count(0, "/busy.jpg") == 1
    patient: FetchOptions = {**fast, "retries": 1}
    [result] = check_urls([url], make_config(**patient))
    assert (result.reason, result.http_status) == ("http_error", 500)
    assert site.hit_count(0, "/busy.jpg") == 3
