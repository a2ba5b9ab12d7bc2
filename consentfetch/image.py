"""Decode, check, resize and encode one image: img2dataset's resizer on Pillow.

:func:`process_image` turns downloaded bytes into a :class:`ResizedImage`, or
into a :class:`~consentfetch.consent.decision.Denial` when the bytes are not a
usable image. It never raises for bad image data, and it keeps no state, so
it is safe to call from many threads at once.

The steps, in img2dataset's order:

1. read the size from the header and refuse more than ``max_image_pixels``
   pixels before any pixel is decoded; for the formats Pillow decodes (ICO)
   or allocates for (WebP) inside ``Image.open``, we read the declared sizes
   from the bytes ourselves first, so a decompression bomb never allocates;
2. reserve the image's decoded bytes in the process's :class:`DecodeBudget`
   (waiting, bounded, for other images to finish), or refuse an image that
   alone needs more than the whole budget;
3. decode, draft-decoding JPEGs at a reduced scale when we downscale a lot;
4. ``min(w, h) < min_image_size`` and ``max/min > max_aspect_ratio`` checks
   (sizes after the EXIF orientation);
5. convert to RGB, compositing transparency on white, and resize, a band of
   rows at a time, so no full-size copy is made beside the decoded image
   (``keep_ratio``/``center_crop`` scale the smallest side to ``image_size``;
   ``border``/``keep_ratio_largest`` the largest side);
6. apply the EXIF orientation to the resized image, crop the centre or pad
   with white;
7. encode as jpg, png or webp.

Pillow's own bomb guard (``Image.MAX_IMAGE_PIXELS``, global) is left alone:
an image above twice its limit (~179 Mpx) is refused by Pillow itself, which
we report as ``image_too_large`` as well.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from PIL import Image, ImageFilter, UnidentifiedImageError

from .config import DEFAULT_MAX_DECODED_BYTES, ENCODE_FORMATS, RESIZE_MODES
from .consent.decision import Denial, Reason
from .errors import ConfigError

log = logging.getLogger(__name__)

# Import every plugin once, now, so that no thread does it lazily mid-run.
Image.init()

# Raster formats a web image can reasonably be in (what OpenCV, img2dataset's
# decoder, reads, plus GIF and ICO). Left out on purpose: EPS (runs
# Ghostscript), PSD, WMF, FITS and the other exotic plugins.
_FORMATS: Final = tuple(
    f for f in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF", "ICO",
                "AVIF", "JPEG2000", "PPM", "SUN")
    if f in Image.OPEN
)

WHITE: Final = (255, 255, 255)

# Downscaling uses HAMMING. Measured on the benchmark photo corpus against a
# full-resolution LANCZOS reference at 256 px, HAMMING scores a median PSNR of
# 39.8 dB and OpenCV's INTER_AREA (img2dataset's filter) 39.7 dB. BOX is
# 0.4 ms faster per image but scores 35.8 dB: visibly softer output than
# img2dataset's. Upscaling uses LANCZOS, as img2dataset does (INTER_LANCZOS4).
_DOWNSCALE: Final = Image.Resampling.HAMMING
_UPSCALE: Final = Image.Resampling.LANCZOS

# JPEG draft: libjpeg decodes at 1/2, 1/4 or 1/8 scale in its DCT, which costs
# a fraction of a full decode. We ask for at least this many times the target
# size, so the final resampling still spans >= 2x2 pixels per output
# pixel (Pillow's thumbnail() uses the same "reducing gap" of 2).
_DRAFT_GAP: Final = 2

# Conversion to RGB (and alpha compositing) runs a band of rows at a time; a
# band is at most this many bytes per copy (at 4 bytes a pixel), or one row.
# A band goes through up to _BAND_COPIES copies: crop, white background,
# composite, RGB, resized rows.
_BAND_BYTES: Final = 16 * 2**20
_BAND_COPIES: Final = 5

# Decoders that hold more than the image while loading it, in multiples of the
# image: libwebp decodes into canvases of its own, libavif and openjpeg into
# buffers, and Pillow copies the pixels from there. Measured (peak RSS growth
# while loading 2000x2000 and 3000x3000 RGBA images): WebP 4.2-4.5, AVIF
# 3.2-3.5, JPEG 2000 6.3-6.6, GIF 1.8 (a P image); PNG, BMP, TIFF 1.1-1.2.
_LOAD_COPIES: Final = {"WEBP": 5, "AVIF": 4, "JPEG2000": 7, "GIF": 2}

# How long an image waits for room in the decode budget. Images in flight hold
# the budget only while they are decoded, resized and encoded, in this process.
DEFAULT_BUDGET_WAIT: Final = 60.0

# ICO: Pillow decodes the largest frame inside Image.open, so the frames'
# sizes are read from the bytes first. The format's own limit is 256x256.
_ICO_MAGIC: Final = b"\x00\x00\x01\x00"
_ICO_MAX_SIDE: Final = 256
_PNG_MAGIC: Final = b"\x89PNG\r\n\x1a\n"

_ALPHA_MODES: Final = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_16BIT_MODES: Final = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES: Final = frozenset({5, 6, 7, 8})

# (Pillow format, name of the quality argument, largest side the format allows)
_ENCODERS: Final = {
    "jpg": ("JPEG", "quality", 65_500),
    "png": ("PNG", "compress_level", 2**31 - 1),
    "webp": ("WEBP", "quality", 16_383),
}

# What Pillow's decoders raise on bad data. UnidentifiedImageError is an
# OSError; DecompressionBomb* are handled before these.
_DECODE_ERRORS: Final = (
    OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError,
    EOFError, ZeroDivisionError, struct.error,
)
_EVIDENCE_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class ResizeOptions:
    """How to resize and encode; the same-named ``download`` flags."""

    image_size: int = 256
    resize_mode: str = "border"  # one of config.RESIZE_MODES
    resize_only_if_bigger: bool = False
    encode_format: str = "jpg"  # "jpg" | "png" | "webp"
    encode_quality: int = 95  # for png: zlib compression level 0-9 (img2dataset's meaning)
    min_image_size: int = 0
    max_aspect_ratio: float = math.inf
    max_image_pixels: int = 100_000_000
    # keep the downloaded bytes when no resize is needed and they are already in
    # encode_format (img2dataset's skip_reencode): the tar holds what the site served
    skip_reencode: bool = False

    def __post_init__(self) -> None:
        _validate(self)


@dataclass(frozen=True, slots=True)
class ResizedImage:
    """The encoded image and its sizes."""

    data: bytes = field(repr=False)  # encoded output
    width: int
    height: int
    original_width: int  # after EXIF orientation, before resize
    original_height: int
    blurred: int = 0  # --bbox-col boxes blurred


class DecodeBudget:
    """Bytes of decoded images in flight in one process, shared by its image threads.

    An image reserves what decoding, converting, resizing and encoding it will
    need (:func:`decoded_bytes`, from its header) before any pixel is decoded,
    and gives it back when done. Waiters are served first come, first served,
    so a big image is not starved by a stream of small ones; a wait lasts at
    most ``max_wait`` seconds.
    """

    def __init__(self, limit: int, *, max_wait: float = DEFAULT_BUDGET_WAIT) -> None:
        if limit < 1:
            raise ConfigError(f"the decode budget must be a positive number of bytes, "
                              f"got {limit!r}")
        #: the most bytes in flight at once
        self.limit = limit
        #: seconds an image waits for room before it is refused
        self.max_wait = max_wait
        self._used = 0
        self._queue: deque[object] = deque()  # one ticket per waiting thread
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        """Bytes reserved now."""
        with self._changed:
            return self._used

    @property
    def waiting(self) -> int:
        """Threads waiting for room now."""
        with self._changed:
            return len(self._queue)

    def take(self, size: int) -> bool:
        """Reserve ``size`` bytes (at most :attr:`limit`), waiting for room up to
        :attr:`max_wait` seconds; False if there was none by then."""
        if size > self.limit:
            raise ValueError(f"{size} bytes can never fit a budget of {self.limit}")
        deadline = time.monotonic() + self.max_wait
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self._used + size > self.limit:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(left)
                self._used += size
                return True
            finally:
                self._queue.remove(ticket)  # at most one ticket per image thread
                self._changed.notify_all()

    def give(self, size: int) -> None:
        """Return ``size`` bytes taken with :meth:`take`."""
        with self._changed:
            self._used -= size
            self._changed.notify_all()


class _Scale(NamedTuple):
    size: tuple[int, int]  # the whole image scaled, before crop or pad
    downscale: bool


def resize_options_from(config: Any) -> ResizeOptions:
    """The :class:`ResizeOptions` of any object with the same-named fields."""
    names = (f.name for f in dataclasses.fields(ResizeOptions))
    return ResizeOptions(**{name: getattr(config, name) for name in names})


def process_image(data: bytes, options: ResizeOptions, *, budget: DecodeBudget | None = None,
                  boxes: Sequence[Box] = ()) -> ResizedImage | Denial:
    """Decode, check, resize and encode ``data``; a Denial if it cannot be used.

    ``budget`` is the process's :class:`DecodeBudget`, shared by every thread
    that calls this; without one, the image gets a budget of its own of
    ``DEFAULT_MAX_DECODED_BYTES``. ``boxes`` (``--bbox-col``: relative
    ``(x0, y0, x1, y1)`` of the upright image) are blurred before encoding.
    """
    if budget is None:
        budget = DecodeBudget(DEFAULT_MAX_DECODED_BYTES)
    try:
        return _process(data, options, budget, tuple(boxes))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _bomb_denial(data, exc, options.max_image_pixels)
    except UnidentifiedImageError:
        return Denial(Reason.DECODE_ERROR, "cannot identify image file")
    except _DECODE_ERRORS as exc:
        return Denial(Reason.DECODE_ERROR, _short(f"cannot decode image: {_describe(exc)}"))


def _process(data: bytes, options: ResizeOptions, budget: DecodeBudget,
             boxes: tuple[Box, ...]) -> ResizedImage | Denial:
    denial = check_declared(data, options.max_image_pixels)
    if denial is not None:
        return denial
    im = Image.open(io.BytesIO(data), formats=_FORMATS)
    header = im.size
    denial = check_pixels(header, options.max_image_pixels)
    if denial is not None:
        return denial
    _draft_jpeg(im, options)
    need = decoded_bytes(im.size, im.mode, im.format, header, options)
    denial = check_budget(header, need, budget.limit)
    if denial is not None:
        return denial
    if not budget.take(need):
        w, h = header
        return Denial(Reason.IMAGE_TOO_LARGE,
                      f"image {w}x{h} needs {need} bytes decoded; --max-decoded-bytes "
                      f"{budget.limit} stayed in use by other images for {budget.max_wait:g} s")
    try:
        return _decode_and_resize(im, header, options, data, boxes)
    finally:
        budget.give(need)


def _decode_and_resize(im: Image.Image, header: tuple[int, int], options: ResizeOptions,
                       data: bytes, boxes: tuple[Box, ...] = ()) -> ResizedImage | Denial:
    im.load()  # decoded even when kept as it is: a corrupt file is never kept
    orientation = _orientation(im)
    original = _oriented(header, orientation)
    denial = check_shape(original, options.min_image_size, options.max_aspect_ratio)
    if denial is not None:
        return denial
    if not boxes and keeps_original(im.format, header, orientation, options):
        return ResizedImage(data, *original, *original)
    out, blurred = fit(im, header, orientation, options, boxes)
    encoded = _encode(out, original, options)
    return dataclasses.replace(encoded, blurred=blurred) if boxes \
        and isinstance(encoded, ResizedImage) else encoded


def keeps_original(fmt: str | None, size: tuple[int, int], orientation: int,
                   options: ResizeOptions) -> bool:
    """``--skip-reencode``: whether the downloaded bytes are kept as they are, because
    nothing would change but the encoding: no resize, no EXIF turn, and already in
    ``encode_format``."""
    return (options.skip_reencode and orientation == 1
            and fmt == _ENCODERS[options.encode_format][0]
            and _scale(size, options.image_size, options.resize_mode,
                       options.resize_only_if_bigger) is None)


def check_pixels(size: tuple[int, int], max_pixels: int) -> Denial | None:
    """Refuse an image with more than ``max_pixels`` pixels."""
    w, h = size
    if w * h > max_pixels:
        return Denial(Reason.IMAGE_TOO_LARGE,
                      f"image {w}x{h} = {w * h} pixels exceeds --max-image-pixels {max_pixels}")
    return None


def check_budget(size: tuple[int, int], need: int, limit: int) -> Denial | None:
    """Refuse an image that alone needs more than the whole decode budget."""
    if need > limit:
        w, h = size
        return Denial(Reason.IMAGE_TOO_LARGE,
                      f"image {w}x{h} needs {need} bytes decoded, more than "
                      f"--max-decoded-bytes {limit}")
    return None


def decoded_bytes(size: tuple[int, int], mode: str, fmt: str | None,
                  header: tuple[int, int], options: ResizeOptions) -> int:
    """What decoding an image of ``size`` and ``mode`` (after any draft), converting
    and resizing it, and encoding the result holds at most, in bytes.

    ``header`` is the full-resolution size the output size is computed from.
    """
    w, h = size
    decoded = w * h * _pixel_bytes(mode) * _LOAD_COPIES.get(fmt or "", 1)
    (out_w, out_h), _ = _target(header, options)
    band = _BAND_COPIES * 4 * w * min(h, _band_rows(w))
    wide = 4 * out_w * h if out_h != h else 0  # rows resized, columns not yet
    padded = options.image_size ** 2 if options.resize_mode == "border" else 0
    # the result, its EXIF transposition, a padded canvas; 4 bytes a pixel
    out = 4 * (2 * out_w * out_h + padded)
    return decoded + band + wide + out


def _pixel_bytes(mode: str) -> int:
    """Bytes a pixel of ``mode`` takes in Pillow's memory (RGB is stored in 4)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode in _16BIT_MODES else 4


def check_declared(data: bytes, max_pixels: int) -> Denial | None:
    """For the formats Pillow decodes (ICO) or allocates for (WebP) inside
    Image.open, check the sizes declared in ``data`` before it may."""
    if data[:4] == _ICO_MAGIC:
        return _check_ico(data, max_pixels)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        size = webp_size(data)
        if size is None:
            return Denial(Reason.DECODE_ERROR, "cannot decode image: unreadable WebP header")
        return check_pixels(size, max_pixels)
    return None


def webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP file declares (VP8X, or its one VP8/VP8L frame)."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return (int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def ico_frame_sizes(data: bytes) -> list[tuple[int, int]] | None:
    """The size of every frame of an ICO file, read from the frames' own headers
    (PNG IHDR or BMP info header), not from the directory; None if unreadable."""
    if len(data) < 6:
        return None
    (count,) = struct.unpack_from("<H", data, 4)
    if len(data) < 6 + 16 * count:
        return None
    sizes = []
    for i in range(count):
        (offset,) = struct.unpack_from("<I", data, 6 + 16 * i + 12)
        size = _ico_frame_size(data[offset:offset + 24])
        if size is None:
            return None
        sizes.append(size)
    return sizes


def _ico_frame_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] == _PNG_MAGIC and len(head) >= 24:
        w, h = struct.unpack_from(">II", head, 16)
        return w, h
    if len(head) >= 12 and struct.unpack_from("<I", head)[0] == 12:  # OS/2 core header
        w, h = struct.unpack_from("<HH", head, 4)
        return w, h // 2  # an ICO bitmap holds the image and its mask, one above the other
    if len(head) >= 12:
        w, h = struct.unpack_from("<ii", head, 4)
        return abs(w), abs(h) // 2
    return None


def _check_ico(data: bytes, max_pixels: int) -> Denial | None:
    sizes = ico_frame_sizes(data)
    if sizes is None:
        return Denial(Reason.DECODE_ERROR, "cannot decode image: unreadable ICO frame header")
    for w, h in sizes:
        denial = check_pixels((w, h), max_pixels)
        if denial is not None:
            return denial
        if max(w, h) > _ICO_MAX_SIDE:
            return Denial(Reason.IMAGE_TOO_LARGE,
                          f"ICO frame {w}x{h} is larger than the {_ICO_MAX_SIDE}x"
                          f"{_ICO_MAX_SIDE} the ICO format allows")
    return None


def _bomb_denial(data: bytes, exc: Exception, max_pixels: int) -> Denial:
    """Pillow's own guard refused the image before we saw its size: find the
    size so that the evidence reads like ours."""
    size = _header_size(data)
    if size is None:
        return Denial(Reason.IMAGE_TOO_LARGE, _short(str(exc)))
    w, h = size
    return check_pixels(size, max_pixels) or Denial(
        Reason.IMAGE_TOO_LARGE,
        f"image {w}x{h} = {w * h} pixels exceeds Pillow's decompression-bomb limit")


def _header_size(data: bytes) -> tuple[int, int] | None:
    """The size in the header, read as Image.open does but without its bomb
    check. Only used to explain a refusal; nothing is decoded."""
    for fmt in _FORMATS:
        factory, accept = Image.OPEN[fmt]
        if accept is not None and accept(data[:16]) is not True:
            continue
        try:
            return factory(io.BytesIO(data), "").size
        except (*_DECODE_ERRORS, Image.DecompressionBombError):
            continue
    return None


def check_shape(size: tuple[int, int], min_size: int, max_ratio: float) -> Denial | None:
    """img2dataset's checks, in its order: too small, then aspect ratio."""
    w, h = size
    if min(w, h) < min_size:
        return Denial(Reason.IMAGE_TOO_SMALL,
                      f"image {w}x{h} is smaller than --min-image-size {min_size}")
    if max(w, h) / max(1, min(w, h)) > max_ratio:
        return Denial(Reason.ASPECT_RATIO_TOO_LARGE,
                      f"image {w}x{h} has aspect ratio {max(w, h) / max(1, min(w, h)):.3g} "
                      f"above --max-aspect-ratio {max_ratio:g}")
    return None


def _scale(size: tuple[int, int], image_size: int, resize_mode: str,
           only_if_bigger: bool) -> _Scale | None:
    if resize_mode == "no":
        return None
    w, h = size
    side = min(w, h) if resize_mode in ("keep_ratio", "center_crop") else max(w, h)
    downscale = side > image_size
    if only_if_bigger and not downscale:
        return None
    # albumentations' smallest/longest_max_size arithmetic, as img2dataset uses it
    factor = image_size / float(side)
    return _Scale((max(1, round(w * factor)), max(1, round(h * factor))), downscale)


def fit(im: Image.Image, size: tuple[int, int], orientation: int, options: ResizeOptions,
        boxes: Sequence[Box] = ()) -> tuple[Image.Image, int]:
    """``im`` (decoded; full-resolution size ``size``, both as stored, before the
    EXIF ``orientation``) as RGB on white, resized, turned upright, ``boxes``
    blurred, then cropped or padded; and how many boxes were blurred.

    The output size is the same whether computed before or after turning (the
    scale depends on the smaller or larger side only), so the image is resized
    as stored and only the small result is turned. The boxes are relative to the
    upright image, so they are blurred after the turn and before a crop or pad.
    """
    target, resample = _target(size, options)
    rgb = to_rgb_resized(im, target, resample)
    im = _transpose(rgb, orientation)
    blurred = blur_boxes(im, boxes)
    if _scale(size, options.image_size, options.resize_mode,
              options.resize_only_if_bigger) is None:
        return im, blurred
    if options.resize_mode == "center_crop":
        return _center_crop(im, options.image_size), blurred
    if options.resize_mode == "border":
        return _pad(im, options.image_size), blurred
    return im, blurred


Box = tuple[float, float, float, float]  # relative x0, y0, x1, y1 (img2dataset's format)


def blur_boxes(im: Image.Image, boxes: Sequence[Box]) -> int:
    """Blur each relative box of ``im`` in place (faces, as DataComp ships them): a
    Gaussian blur whose radius grows with the box, strong enough that a face is not
    recognisable. Returns how many boxes covered at least one pixel."""
    w, h = im.size
    done = 0
    for x0, y0, x1, y1 in boxes:
        left, top = max(0, math.floor(x0 * w)), max(0, math.floor(y0 * h))
        right, bottom = min(w, math.ceil(x1 * w)), min(h, math.ceil(y1 * h))
        if right <= left or bottom <= top:
            continue
        region = im.crop((left, top, right, bottom))
        radius = max(2.0, max(right - left, bottom - top) / 4)
        im.paste(region.filter(ImageFilter.GaussianBlur(radius)), (left, top))
        done += 1
    return done


def _target(size: tuple[int, int],
            options: ResizeOptions) -> tuple[tuple[int, int], Image.Resampling]:
    """The resized size of an image of ``size`` (itself when not resized), and the filter."""
    scale = _scale(size, options.image_size, options.resize_mode, options.resize_only_if_bigger)
    if scale is None:
        return size, _DOWNSCALE
    return scale.size, _DOWNSCALE if scale.downscale else _UPSCALE


def to_rgb_resized(im: Image.Image, size: tuple[int, int],
                   resample: Image.Resampling) -> Image.Image:
    """``im`` as RGB, transparency composited on white, resized to ``size``.

    Pillow resizes in two passes, each row first, then each column. We do the
    same, converting and resizing a band of rows at a time into an image as
    tall as ``im`` and as wide as the result, which the column pass then
    resizes. The result is the same, pixel for pixel, as converting and
    resizing the whole image, and no full-size copy of ``im`` is ever made.
    """
    if im.mode == "RGB" and "transparency" not in im.info:
        return im if im.size == size else im.resize(size, resample)
    w, h = im.size
    rows = _band_rows(w)
    if rows >= h:  # one band: the whole image
        rgb = to_rgb(im)
        return rgb if rgb.size == size else rgb.resize(size, resample)
    wide = Image.new("RGB", (size[0], h))
    for top in range(0, h, rows):
        band = to_rgb(im.crop((0, top, w, min(h, top + rows))))
        if band.width != size[0]:
            band = band.resize((size[0], band.height), resample)
        wide.paste(band, (0, top))
    return wide if wide.size == size else wide.resize(size, resample)


def _band_rows(width: int) -> int:
    """Rows of an image ``width`` pixels wide converted at a time."""
    return max(1, _BAND_BYTES // (4 * width))


def _center_crop(im: Image.Image, side: int) -> Image.Image:
    w, h = im.size
    left, top = (w - side) // 2, (h - side) // 2
    return im.crop((left, top, left + side, top + side))


def _pad(im: Image.Image, side: int) -> Image.Image:
    w, h = im.size
    if (w, h) == (side, side):
        return im
    canvas = Image.new("RGB", (side, side), WHITE)
    canvas.paste(im, ((side - w) // 2, (side - h) // 2))
    return canvas


def _draft_jpeg(im: Image.Image, options: ResizeOptions) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale when we downscale enough.

    ``draft`` never goes below the size asked for, and we ask for
    ``_DRAFT_GAP`` times the target, so the result is never smaller than needed.
    """
    if im.format not in ("JPEG", "MPO"):
        return
    orientation = _orientation(im)  # JPEG EXIF is in the header: no decode
    scale = _scale(_oriented(im.size, orientation), options.image_size,
                   options.resize_mode, options.resize_only_if_bigger)
    if scale is None or not scale.downscale:
        return
    w, h = _oriented(scale.size, orientation)  # back to the stored frame
    im.draft(None, (w * _DRAFT_GAP, h * _DRAFT_GAP))


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8); 1 when absent or unreadable."""
    try:
        value = im.getexif().get(0x0112, 1)  # ExifTags.Base.Orientation
    except _DECODE_ERRORS as exc:
        log.debug("ignoring unreadable EXIF: %s", _describe(exc))
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _oriented(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    w, h = size
    return (h, w) if orientation in _SWAPS_AXES else (w, h)


def _transpose(im: Image.Image, orientation: int) -> Image.Image:
    """What ImageOps.exif_transpose does, without rewriting the EXIF we drop."""
    method = _TRANSPOSE.get(orientation)
    return im if method is None else im.transpose(method)


def to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white."""
    if im.mode in _16BIT_MODES:
        im = im.convert("I").point(lambda v: v / 256).convert("L")
    has_alpha = im.mode in _ALPHA_MODES or "transparency" in im.info
    if not has_alpha:
        return im if im.mode == "RGB" else im.convert("RGB")
    rgba = im if im.mode == "RGBA" else im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*WHITE, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _encode(im: Image.Image, original: tuple[int, int],
            options: ResizeOptions) -> ResizedImage | Denial:
    fmt, quality_arg, max_side = _ENCODERS[options.encode_format]
    w, h = im.size
    if max(w, h) > max_side:
        return Denial(Reason.IMAGE_TOO_LARGE,
                      f"image {w}x{h} exceeds the {max_side}-pixel side limit of "
                      f"{options.encode_format}")
    im.info = {}  # no ICC profile, EXIF or transparency carried into the output
    buf = io.BytesIO()
    try:
        im.save(buf, fmt, **{quality_arg: options.encode_quality})
    except (OSError, ValueError) as exc:
        return Denial(Reason.DECODE_ERROR,
                      _short(f"cannot encode as {options.encode_format}: {_describe(exc)}"))
    return ResizedImage(buf.getvalue(), w, h, *original)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


def _short(text: str) -> str:
    return text if len(text) <= _EVIDENCE_MAX else text[: _EVIDENCE_MAX - 3] + "..."


def _validate(options: ResizeOptions) -> None:
    if options.resize_mode not in RESIZE_MODES:
        raise ConfigError(f"resize_mode must be one of {', '.join(RESIZE_MODES)}, "
                          f"got {options.resize_mode!r}")
    if options.encode_format not in ENCODE_FORMATS:
        raise ConfigError(f"encode_format must be one of {', '.join(ENCODE_FORMATS)}, "
                          f"got {options.encode_format!r}")
    if options.image_size < 1:
        raise ConfigError(f"image_size must be positive, got {options.image_size!r}")
    if options.encode_format == "png" and not 0 <= options.encode_quality <= 9:
        raise ConfigError(f"for png, encode_quality is a zlib level 0-9, "
                          f"got {options.encode_quality!r}")
