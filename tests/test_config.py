"""Options are validated once, with messages naming the flag."""

from __future__ import annotations

import math

import pytest

import consentfetch
from consentfetch import ConfigError, make_config


def test_defaults_match_the_contract() -> None:
    cfg = make_config()
    assert (cfg.image_size, cfg.resize_mode, cfg.encode_format, cfg.encode_quality) == \
        (256, "border", "jpg", 95)
    assert (cfg.shard_size, cfg.timeout, cfg.max_bytes, cfg.consent) == \
        (10_000, 10.0, 20_000_000, "strict")
    assert cfg.max_aspect_ratio == math.inf and not cfg.allow_private_networks
    assert cfg.user_agent.startswith("consentfetch/") and "Mozilla" not in cfg.user_agent


@pytest.mark.parametrize("options,flag", [
    ({"resize_mode": "zoom"}, "--resize-mode"),
    ({"encode_format": "gif"}, "--encode-format"),
    ({"encode_format": "png", "encode_quality": 95}, "--encode-quality"),
    ({"encode_quality": 0}, "--encode-quality"),
    ({"image_size": 0}, "--image-size"),
    ({"shard_size": -1}, "--shard-size"),
    ({"processes": 0}, "--processes"),
    ({"timeout": 0}, "--timeout"),
    ({"retries": -1}, "--retries"),
    ({"consent": "lax"}, "--consent"),
    ({"user_agent_token": "my bot/1.0"}, "--user-agent-token"),
    ({"max_aspect_ratio": 0.5}, "--max-aspect-ratio"),
    ({"input_format": "xlsx"}, "--input-format"),
    ({"caption_col": "url"}, "--caption-col"),
    ({"max_decoded_bytes": 0}, "--max-decoded-bytes"),
])
def test_bad_values_name_the_flag(options: dict, flag: str) -> None:
    with pytest.raises(ConfigError, match=flag):
        make_config(**options)


def test_config_is_frozen_and_serialisable() -> None:
    cfg = make_config(save_additional_columns="a")
    assert cfg.save_additional_columns == ("a",)
    with pytest.raises(AttributeError):
        cfg.image_size = 3  # type: ignore[misc]
    assert cfg.to_dict()["max_aspect_ratio"] is None


def test_custom_token_keeps_product_name() -> None:
    ua = make_config(user_agent_token="LabBot", contact="mailto:a@example.org").user_agent
    assert ua.startswith("LabBot/") and "(+mailto:a@example.org)" in ua and "consentfetch/" in ua


def test_public_api_is_sorted_and_importable() -> None:
    assert consentfetch.__all__ == sorted(consentfetch.__all__)
    for name in consentfetch.__all__:
        assert hasattr(consentfetch, name)
    assert issubclass(consentfetch.ConfigError, ValueError)
    assert issubclass(consentfetch.OutputError, OSError)


@pytest.mark.parametrize(("fmt", "quality"), [("jpg", 95), ("webp", 95), ("png", 9)])
def test_encode_quality_defaults_to_the_formats_own(fmt: str, quality: int) -> None:
    """``fetch_shards(..., encode_format="png")`` used to raise: the png default lived in
    the CLI only."""
    assert make_config(encode_format=fmt).encode_quality == quality
    assert make_config(encode_format=fmt,  # None: "the default", as for every option
                       encode_quality=None).encode_quality == quality  # type: ignore[arg-type]


def test_png_from_python_end_to_end(site, url_list, tmp_path) -> None:
    from consentfetch import fetch_shards
    from consentfetch.testsite import make_image

    from .conftest import LOCAL
    url = site.put(0, "/a.jpg", make_image(40, 30))
    report = fetch_shards(url_list([{"url": url}]), str(tmp_path / "o"), encode_format="png",
                          **LOCAL)
    assert report.counts == {"success": 1}
