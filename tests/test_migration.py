"""README's migration table: every img2dataset option has a row, every flag named exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from consentfetch.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"

# The parameters of img2dataset 1.47.0's download() (img2dataset/main.py), in order.
IMG2DATASET_1_47_0 = (
    "url_list", "image_size", "output_folder", "processes_count", "resize_mode",
    "resize_only_if_bigger", "upscale_interpolation", "downscale_interpolation",
    "encode_quality", "encode_format", "skip_reencode", "output_format", "input_format",
    "url_col", "caption_col", "bbox_col", "thread_count", "number_sample_per_shard",
    "extract_exif", "save_additional_columns", "timeout", "enable_wandb", "wandb_project",
    "oom_shard_count", "compute_hash", "verify_hash", "distributor", "subjob_size",
    "retries", "disable_all_reencoding", "min_image_size", "max_image_area",
    "max_aspect_ratio", "incremental_mode", "max_shard_retry", "user_agent_token",
    "disallowed_header_directives",
)


def migration_rows() -> list[tuple[str, str]]:
    """(img2dataset cell, consentfetch cell) of each row of the table."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Migrating from img2dataset", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 2 and cells[0].startswith("`--"):
            rows.append((cells[0], cells[1]))
    return rows


def download_flags() -> set[str]:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {flag for action in sub.choices["download"]._actions
            for flag in action.option_strings}


def test_every_img2dataset_option_has_a_row() -> None:
    rows = migration_rows()
    named = [name for left, _ in rows for name in re.findall(r"`--([a-z_]+)", left)]
    assert sorted(set(named)) == sorted(IMG2DATASET_1_47_0)
    assert len(rows) >= len(IMG2DATASET_1_47_0)


def test_every_consentfetch_flag_named_exists() -> None:
    flags = download_flags()
    named = {flag for _, right in migration_rows()
             for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", right)}
    assert named, "the table names no consentfetch flag"
    assert sorted(named - flags) == []
    assert not [f for f in named if "_" in f]
