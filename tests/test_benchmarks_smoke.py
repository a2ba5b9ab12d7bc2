"""Every benchmark runs end to end at a tiny size (the real runs are by hand).

The benchmarks build their photo corpus from wheels downloaded from PyPI; if
PyPI cannot be reached, these tests are skipped with that reason.
compare_img2dataset runs without img2dataset here (installing it would
dominate CI's time); its own img2dataset path is exercised by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                            text=True, timeout=600,
                            env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    if result.returncode != 0 and "downloading" in result.stdout + result.stderr \
            and ("pip" in result.stderr and "Could not" in result.stderr):
        pytest.skip(f"PyPI not reachable for the corpus wheels: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_scale_smoke() -> None:
    out = run("scale.py", "--rows", "300", "600")
    assert "600 rows" in out and "peak RSS x" in out


def test_floor_smoke() -> None:
    out = run("floor.py", "--n", "30", "--repeats", "1")
    assert "image floor" in out and "fetch ceiling" in out
    assert "startup to first request, 2 process(es)" in out
    assert "of the floor's speed" in out


def test_compare_smoke() -> None:
    out = run("compare_img2dataset.py", "--n", "30", "--repeat", "1", "--rounds", "1",
              "--no-img2dataset")
    assert "round 1 consentfetch " in out and "consent overhead" in out
    assert "consentfetch-checks-off" in out


def test_image_memory_smoke() -> None:
    out = run("image_memory.py", "--side", "600", "--ico-side", "600")
    assert "| 600x600 RGBA PNG" in out and "two at once, --max-decoded-bytes" in out
    assert "ICO frame 600x600 is larger than the 256x256" in out


def test_hostile_smoke() -> None:
    """Every fault of the hostile site in one run: the script exits non-zero if the run
    breaks a promise (completes, one audit row per row, no opted-out bytes, memory)."""
    out = run("hostile.py", "--rounds", "1", "--quick", "--processes", "1")
    assert "promises kept" in out and "BROKEN" not in out


def test_webshape_smoke() -> None:
    out = run("webshape.py", "--rows", "200", "--rounds", "1", "--no-img2dataset")
    assert "200 rows over" in out and "requests per origin" in out and "tail" in out


def test_apply_smoke() -> None:
    out = run("apply.py", "--samples", "60", "--shard-size", "20", "--kb", "1", "--every", "7")
    assert "60 samples of 1 kB" in out and "9 withdrawn from 3 shard(s)" in out
    assert "apply into a new folder" in out


def test_recheck_smoke() -> None:
    out = run("recheck.py", "--n", "40", "--origins", "4", "--repeats", "1")
    assert "download: 40 URLs on 4 origins" in out
    assert "recheck: 40 samples, 0 withdrawn, 12 requests" in out
    assert "recheck --headers: 40 samples, 0 withdrawn, 52 requests" in out


def test_seeding_smoke() -> None:
    out = run("seeding.py", "--parts", "1", "3", "--per-part", "200", "--hits", "50",
              "--new", "20")
    assert "3 parts (600 origins): 50 seeded" in out
