"""consentfetch.image: decode, check, resize, encode. Images are made in memory."""

from __future__ import annotations

import dataclasses
import io
import resource
import struct
import subprocess
import sys
import time
import types
import warnings
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageOps, ImageStat, JpegImagePlugin

from consentfetch import image as image_mod
from consentfetch.config import make_config
from consentfetch.consent.decision import Denial, Reason, Status
from consentfetch.errors import ConfigError
from consentfetch.image import ResizedImage, ResizeOptions, process_image, resize_options_from

from .conftest import png_bomb

RED = (255, 0, 0)
GREEN = (0, 255, 0)
WHITE = (255, 255, 255)
PNG = dict(encode_format="png", encode_quality=1)  # lossless output: exact pixels


# --------------------------------------------------------------------- helpers

def encode(im: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def solid(size: tuple[int, int], colour: tuple[int, ...] | int = RED, mode: str = "RGB",
          fmt: str = "PNG", **params: object) -> bytes:
    return encode(Image.new(mode, size, colour), fmt, **params)


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def ok(data: bytes, **options: object) -> ResizedImage:
    result = process_image(data, ResizeOptions(**options))  # type: ignore[arg-type]
    assert isinstance(result, ResizedImage), result
    return result


def denied(data: bytes, **options: object) -> Denial:
    result = process_image(data, ResizeOptions(**options))  # type: ignore[arg-type]
    assert isinstance(result, Denial), result
    return result


def decoded(result: ResizedImage) -> Image.Image:
    im = Image.open(io.BytesIO(result.data))
    im.load()
    return im


def close(a: object, b: tuple[int, ...], tol: int = 3) -> bool:
    """A pixel (as ``getpixel`` returns it) within ``tol`` of ``b`` in every band."""
    assert isinstance(a, tuple), a
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (8-bit RGB) and whose data is bogus."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A real, valid 30000x30000 1-bit PNG (900 Mpx) of a few hundred KB."""
    return png_bomb(30_000)


# ------------------------------------------------------------ output sizes

SIZES = [
    # (input size, resize_mode, resize_only_if_bigger, expected output size)
    # landscape, larger than the target
    ((1000, 500), "no", False, (1000, 500)),
    ((1000, 500), "border", False, (256, 256)),
    ((1000, 500), "keep_ratio", False, (512, 256)),
    ((1000, 500), "keep_ratio_largest", False, (256, 128)),
    ((1000, 500), "center_crop", False, (256, 256)),
    # portrait, larger
    ((500, 1000), "no", False, (500, 1000)),
    ((500, 1000), "border", False, (256, 256)),
    ((500, 1000), "keep_ratio", False, (256, 512)),
    ((500, 1000), "keep_ratio_largest", False, (128, 256)),
    ((500, 1000), "center_crop", False, (256, 256)),
    # square, larger
    ((300, 300), "no", False, (300, 300)),
    ((300, 300), "border", False, (256, 256)),
    ((300, 300), "keep_ratio", False, (256, 256)),
    ((300, 300), "keep_ratio_largest", False, (256, 256)),
    ((300, 300), "center_crop", False, (256, 256)),
    # smaller than the target: upscaled
    ((100, 50), "no", False, (100, 50)),
    ((100, 50), "border", False, (256, 256)),
    ((100, 50), "keep_ratio", False, (512, 256)),
    ((100, 50), "keep_ratio_largest", False, (256, 128)),
    ((100, 50), "center_crop", False, (256, 256)),
    ((50, 100), "keep_ratio", False, (256, 512)),
    ((50, 100), "keep_ratio_largest", False, (128, 256)),
    # resize_only_if_bigger, smaller: untouched, not even padded or cropped
    ((100, 50), "border", True, (100, 50)),
    ((100, 50), "keep_ratio", True, (100, 50)),
    ((100, 50), "keep_ratio_largest", True, (100, 50)),
    ((100, 50), "center_crop", True, (100, 50)),
    ((100, 50), "no", True, (100, 50)),
    # resize_only_if_bigger, larger: as without it
    ((1000, 500), "border", True, (256, 256)),
    ((1000, 500), "keep_ratio", True, (512, 256)),
    ((1000, 500), "keep_ratio_largest", True, (256, 128)),
    ((1000, 500), "center_crop", True, (256, 256)),
    # resize_only_if_bigger looks at the smallest side for keep_ratio/center_crop...
    ((400, 200), "keep_ratio", True, (400, 200)),
    ((400, 200), "center_crop", True, (400, 200)),
    # ... and at the largest side for border/keep_ratio_largest
    ((400, 200), "border", True, (256, 256)),
    ((400, 200), "keep_ratio_largest", True, (256, 128)),
    # exactly the target size is not "bigger"
    ((256, 100), "border", True, (256, 100)),
    ((256, 100), "border", False, (256, 256)),
    ((100, 256), "keep_ratio", True, (100, 256)),
    ((256, 256), "center_crop", True, (256, 256)),
    # rounding: round(side * image_size / ref), Python's round (half to even)
    ((333, 200), "keep_ratio_largest", False, (256, 154)),  # 153.75
    ((1000, 300), "keep_ratio_largest", False, (256, 77)),  # 76.8
    ((512, 5), "keep_ratio_largest", False, (256, 2)),  # 2.5 -> 2
    ((512, 7), "keep_ratio_largest", False, (256, 4)),  # 3.5 -> 4
    ((3, 1), "keep_ratio_largest", False, (256, 85)),  # 85.33
    ((1000, 1), "keep_ratio_largest", False, (256, 1)),  # 0.256 -> at least 1
    ((1000, 1), "border", False, (256, 256)),
    ((999, 1000), "keep_ratio", False, (256, 256)),  # 256.256
    ((1000, 999), "keep_ratio_largest", False, (256, 256)),  # 255.744
]


@pytest.mark.parametrize(("size", "mode", "only_bigger", "expected"), SIZES)
def test_output_size(size: tuple[int, int], mode: str, only_bigger: bool,
                     expected: tuple[int, int]) -> None:
    result = ok(solid(size), resize_mode=mode, resize_only_if_bigger=only_bigger, **PNG)
    assert (result.width, result.height) == expected
    assert decoded(result).size == expected
    assert (result.original_width, result.original_height) == size


@pytest.mark.parametrize(("image_size", "size", "mode", "expected"), [
    (64, (1000, 500), "keep_ratio", (128, 64)),
    (64, (1000, 500), "border", (64, 64)),
    (64, (1000, 500), "center_crop", (64, 64)),
    (512, (1000, 500), "keep_ratio_largest", (512, 256)),
    (1, (30, 20), "keep_ratio_largest", (1, 1)),
    (1, (30, 20), "keep_ratio", (2, 1)),  # 1.5 -> 2 (half to even)
])
def test_other_image_sizes(image_size: int, size: tuple[int, int], mode: str,
                           expected: tuple[int, int]) -> None:
    result = ok(solid(size), image_size=image_size, resize_mode=mode, **PNG)
    assert (result.width, result.height) == expected


def test_border_pads_white_top_and_bottom() -> None:
    out = decoded(ok(solid((1000, 500), RED), resize_mode="border", **PNG))
    # 256x128 pasted at y = 64
    assert [out.getpixel((128, y)) for y in (0, 63, 64, 128, 191, 192, 255)] == [
        WHITE, WHITE, RED, RED, RED, WHITE, WHITE]
    assert out.getpixel((0, 128)) == RED and out.getpixel((255, 128)) == RED


def test_border_pads_white_left_and_right_odd_padding() -> None:
    out = decoded(ok(solid((300, 1000), RED), resize_mode="border", **PNG))
    # 77x256 (76.8) pasted at x = (256 - 77) // 2 = 89: 89 columns left, 90 right
    assert [out.getpixel((x, 128)) for x in (0, 88, 89, 165, 166, 255)] == [
        WHITE, WHITE, RED, RED, WHITE, WHITE]


def test_border_jpeg_output_padding_is_white() -> None:
    out = decoded(ok(solid((1000, 500), RED), resize_mode="border"))
    assert out.format == "JPEG"
    assert close(out.getpixel((128, 5)), WHITE, 4)
    assert close(out.getpixel((128, 128)), RED, 6)


def test_center_crop_keeps_the_centre() -> None:
    im = Image.new("RGB", (1000, 500), GREEN)
    im.paste(RED, (250, 0, 750, 500))  # green outer quarters, red centre half
    out = decoded(ok(encode(im), resize_mode="center_crop", **PNG))
    assert out.size == (256, 256)
    # scaled to 512x256, the green quarters are 128 px wide: the crop is all red.
    # (The outermost column touches the red/green edge, which the downscale
    # filter's 2-pixel support blends; a mis-centred crop would be 128 px off.)
    assert {out.getpixel((x, y)) for x in (2, 3, 128, 252, 253) for y in (0, 128, 255)} == {RED}


def test_center_crop_portrait() -> None:
    im = Image.new("RGB", (500, 1000), GREEN)
    im.paste(RED, (0, 250, 500, 750))
    out = decoded(ok(encode(im), resize_mode="center_crop", **PNG))
    assert {out.getpixel((x, y)) for x in (0, 255) for y in (2, 253)} == {RED}


def test_keep_ratio_content_is_not_padded() -> None:
    out = decoded(ok(solid((1000, 500), RED), resize_mode="keep_ratio", **PNG))
    assert out.getextrema() == ((255, 255), (0, 0), (0, 0))


def test_upscale_keeps_content() -> None:
    im = Image.new("RGB", (20, 10), GREEN)
    im.paste(RED, (10, 0, 20, 10))
    out = decoded(ok(encode(im), resize_mode="keep_ratio_largest", **PNG))
    assert out.size == (256, 128)
    assert out.getpixel((10, 64)) == GREEN and out.getpixel((245, 64)) == RED


def test_resize_mode_no_keeps_pixels() -> None:
    im = Image.effect_noise((37, 23), 50).convert("RGB")
    out = decoded(ok(encode(im), resize_mode="no", **PNG))
    assert ImageChops.difference(out, im).getbbox() is None


# ------------------------------------------------------------ JPEG draft

def photo(size: tuple[int, int]) -> Image.Image:
    """Gradients and noise: compresses like a photo, not like a flat colour."""
    return Image.merge("RGB", [Image.linear_gradient("L").resize(size),
                               Image.radial_gradient("L").resize(size),
                               Image.effect_noise(size, 30)])


@pytest.mark.parametrize(("size", "mode", "expected"), [
    ((1200, 800), "border", (256, 256)),
    ((1200, 800), "keep_ratio", (384, 256)),
    ((1200, 800), "keep_ratio_largest", (256, 171)),
    ((2100, 2100), "center_crop", (256, 256)),
    ((4001, 1003), "keep_ratio", (1021, 256)),  # 1021.2
    ((4001, 1003), "keep_ratio_largest", (256, 64)),  # 64.17
])
def test_draft_gives_exact_sizes_and_same_picture(
        monkeypatch: pytest.MonkeyPatch, size: tuple[int, int], mode: str,
        expected: tuple[int, int]) -> None:
    data = encode(photo(size), "JPEG", quality=90)
    drafted = ok(data, resize_mode=mode, **PNG)
    monkeypatch.setattr(image_mod, "_DRAFT_GAP", 10**6)  # draft asks for more than the image
    full = ok(data, resize_mode=mode, **PNG)
    assert (drafted.width, drafted.height) == (full.width, full.height) == expected
    assert (drafted.original_width, drafted.original_height) == size
    assert mean_diff(decoded(drafted), decoded(full)) < 3


def test_draft_is_used_for_big_jpegs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[tuple[int, int] | None, tuple[int, int]]] = []
    real = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None,
            size: tuple[int, int] | None) -> object:
        result = real(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    ok(encode(photo((1200, 800)), "JPEG"), resize_mode="border")
    # asks for 2x the 256x171 target; libjpeg then decodes at 1/2 scale
    assert calls == [((512, 342), (600, 400))]
    calls.clear()
    ok(encode(photo((2100, 1400)), "JPEG"), resize_mode="keep_ratio_largest", image_size=128)
    assert calls == [((256, 170), (263, 175))]  # 1/8 scale, still >= 2x the 128x85 target
    calls.clear()
    ok(encode(photo((200, 100)), "JPEG"), resize_mode="border")  # upscale: no draft
    assert calls == []


# ------------------------------------------------------------ orientation

@pytest.mark.parametrize(("orientation", "swapped"), [
    (1, False), (2, False), (3, False), (4, False),
    (5, True), (6, True), (7, True), (8, True),
])
def test_exif_orientation_matches_pillow(orientation: int, swapped: bool) -> None:
    im = Image.new("RGB", (40, 20), GREEN)
    im.paste(RED, (0, 0, 10, 5))  # a corner marker
    data = encode(im, "PNG", exif=exif_with_orientation(orientation))
    result = ok(data, resize_mode="no", **PNG)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert (result.original_width, result.original_height) == ((20, 40) if swapped else (40, 20))
    assert ImageChops.difference(decoded(result), expected).getbbox() is None


@pytest.mark.parametrize(("orientation", "expected"), [
    (6, (171, 256)), (8, (171, 256)), (1, (256, 171)), (3, (256, 171))])
def test_exif_orientation_jpeg_with_draft(orientation: int, expected: tuple[int, int]) -> None:
    im = photo((1200, 800))
    im.paste(RED, (0, 0, 300, 200))  # top-left marker in the stored frame
    data = encode(im, "JPEG", quality=90, exif=exif_with_orientation(orientation))
    result = ok(data, resize_mode="keep_ratio_largest", **PNG)
    assert (result.width, result.height) == expected
    assert (result.original_width, result.original_height) == (
        (800, 1200) if orientation in (6, 8) else (1200, 800))
    out = decoded(result)
    w, h = out.size
    marker = {1: (5, 5), 3: (w - 6, h - 6), 6: (w - 6, 5), 8: (5, h - 6)}[orientation]
    assert close(out.getpixel(marker), RED, 40)


def test_exif_orientation_affects_size_checks_evidence() -> None:
    data = solid((20, 15), fmt="JPEG", exif=exif_with_orientation(6))
    assert denied(data, min_image_size=64).evidence == (
        "image 15x20 is smaller than --min-image-size 64")


@pytest.mark.parametrize("exif", [b"Exif\x00\x00garbage-garbage", b"Exif\x00\x00MM\x00*\xff\xff"])
def test_unreadable_exif_is_ignored(exif: bytes) -> None:
    result = ok(solid((60, 40), fmt="JPEG", exif=exif), resize_mode="no")
    assert (result.width, result.height) == (60, 40)


def test_out_of_range_orientation_is_ignored() -> None:
    result = ok(solid((60, 40), exif=exif_with_orientation(9)), resize_mode="no")
    assert (result.original_width, result.original_height) == (60, 40)


# ------------------------------------------------------------ colour modes

@pytest.mark.parametrize(("mode", "colour", "expected"), [
    ("RGBA", (0, 0, 0, 0), WHITE),  # fully transparent: white, whatever its colour
    ("RGBA", (255, 0, 0, 255), RED),
    ("RGBA", (255, 0, 0, 128), (255, 127, 127)),
    ("RGBA", (0, 0, 0, 128), (127, 127, 127)),
    ("LA", (0, 0), WHITE),
    ("LA", (0, 255), (0, 0, 0)),
    ("LA", (100, 255), (100, 100, 100)),
    ("L", 77, (77, 77, 77)),
    ("1", 0, (0, 0, 0)),
    ("1", 1, WHITE),
    ("P", 0, (0, 0, 0)),
])
def test_modes_become_rgb_on_white(mode: str, colour: object, expected: tuple[int, ...]) -> None:
    out = decoded(ok(encode(Image.new(mode, (8, 8), colour)),  # type: ignore[arg-type]
                          resize_mode="no", **PNG))
    assert out.mode == "RGB"
    assert close(out.getpixel((4, 4)), expected, 1)


def test_palette_with_transparency() -> None:
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (4, 0, 8, 8))
    for fmt in ("PNG", "GIF"):
        out = decoded(ok(encode(im, fmt, transparency=0), resize_mode="no", **PNG))
        assert out.getpixel((0, 0)) == WHITE and out.getpixel((7, 7)) == RED, fmt


def test_rgb_png_with_trns_colour() -> None:
    im = Image.new("RGB", (8, 8), (0, 0, 0))
    im.paste(RED, (4, 0, 8, 8))
    out = decoded(ok(encode(im, transparency=(0, 0, 0)), resize_mode="no", **PNG))
    assert out.getpixel((0, 0)) == WHITE and out.getpixel((7, 7)) == RED


def test_transparent_pixels_white_after_downscale() -> None:
    im = Image.new("RGBA", (1000, 500), (0, 0, 0, 0))
    out = decoded(ok(encode(im), resize_mode="keep_ratio", **PNG))
    assert out.getextrema() == ((255, 255),) * 3


def test_webp_with_alpha() -> None:
    data = encode(Image.new("RGBA", (30, 20), (0, 0, 255, 0)), "WEBP", lossless=True)
    out = decoded(ok(data, resize_mode="no", **PNG))
    assert out.getpixel((5, 5)) == WHITE


def test_cmyk_jpeg() -> None:
    data = solid((64, 48), (0, 255, 255, 0), mode="CMYK", fmt="JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    result = ok(data, resize_mode="border")
    out = decoded(result)
    assert out.mode == "RGB" and out.size == (256, 256)
    assert close(out.getpixel((128, 128)), RED, 8)


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (32768, 128), (65535, 255), (1000, 3)])
def test_16_bit_grayscale_png(value: int, expected: int) -> None:
    data = solid((40, 30), value, mode="I;16")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = decoded(ok(data, resize_mode="border", **PNG))
    assert out.mode == "RGB"
    assert out.getpixel((128, 128)) == (expected,) * 3


def test_16_bit_tiff() -> None:
    data = solid((40, 30), 65535, mode="I;16", fmt="TIFF")
    out = decoded(ok(data, resize_mode="no", **PNG))
    assert out.getpixel((0, 0)) == WHITE


@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF", "WEBP", "PPM", "ICO"])
def test_other_input_formats(fmt: str) -> None:
    result = ok(solid((48, 48), RED, fmt=fmt), resize_mode="keep_ratio_largest", **PNG)
    assert (result.width, result.height) == (256, 256)
    assert close(decoded(result).getpixel((128, 128)), RED, 4)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in (RED, GREEN)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = decoded(ok(buf.getvalue(), resize_mode="no", **PNG))
    assert out.getpixel((10, 10)) == RED


# ------------------------------------------------------------ encoding

@pytest.mark.parametrize(("fmt", "pil_format", "quality"), [
    ("jpg", "JPEG", 95), ("jpg", "JPEG", 10), ("png", "PNG", 0), ("png", "PNG", 9),
    ("webp", "WEBP", 80), ("webp", "WEBP", 5),
])
def test_output_format(fmt: str, pil_format: str, quality: int) -> None:
    result = ok(encode(photo((300, 200))), encode_format=fmt, encode_quality=quality)
    out = decoded(result)
    assert out.format == pil_format and out.mode == "RGB"
    assert out.size == (result.width, result.height) == (256, 256)


def test_png_compress_level_is_honoured() -> None:
    data = encode(Image.linear_gradient("L").convert("RGB"))
    level0 = ok(data, encode_format="png", encode_quality=0).data
    level9 = ok(data, encode_format="png", encode_quality=9).data
    assert len(level0) > 3 * len(level9)
    # the raw IDAT of level 0 holds stored (uncompressed) deflate blocks
    assert len(level0) > 256 * 256 * 3


def test_jpeg_and_webp_quality_is_honoured() -> None:
    data = encode(photo((300, 200)))
    for fmt in ("jpg", "webp"):
        high = ok(data, encode_format=fmt, encode_quality=95).data
        low = ok(data, encode_format=fmt, encode_quality=10).data
        assert len(low) < len(high), fmt


def test_output_carries_no_metadata() -> None:
    im = Image.new("RGB", (30, 20), RED)
    data = encode(im, "PNG", exif=exif_with_orientation(1), icc_profile=b"fake-icc",
                  dpi=(300, 300))
    for fmt in ("png", "jpg", "webp"):
        out = decoded(ok(data, resize_mode="no", encode_format=fmt,
                         encode_quality=1 if fmt == "png" else 90))
        assert "icc_profile" not in out.info and "exif" not in out.info, fmt


def test_output_is_deterministic() -> None:
    data = encode(photo((640, 480)), "JPEG")
    for fmt, q in (("jpg", 90), ("png", 6), ("webp", 90)):
        opts = dict(encode_format=fmt, encode_quality=q)
        assert ok(data, **opts).data == ok(data, **opts).data


# ------------------------------------------------------------ denials

@pytest.mark.parametrize("data", [
    b"",
    b"\x00garbage\xff\xfe",
    b"<!DOCTYPE html><html><head><title>404</title></head><body>Not found</body></html>",
    b'{"error": "not an image"}',
    b"\xff\xd8",  # a JPEG's first two bytes only
    b"\x89PNG\r\n\x1a\n",  # a PNG signature only
    b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # EPS: refused on purpose
])
def test_not_an_image(data: bytes) -> None:
    d = denied(data)
    assert d.reason is Reason.DECODE_ERROR and d.status is Status.FAILED_TO_RESIZE
    assert d.evidence.startswith("cannot ")
    assert len(d.evidence) <= 200


def test_unidentified_evidence_is_short() -> None:
    assert denied(b"not an image").evidence == "cannot identify image file"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_image(fmt: str, keep: float) -> None:
    data = encode(Image.effect_noise((300, 200), 60).convert("RGB"), fmt)
    d = denied(data[: int(len(data) * keep)], resize_mode="no")
    assert d.reason is Reason.DECODE_ERROR
    assert d.evidence.startswith("cannot ")


def test_truncated_jpeg_evidence_names_the_problem() -> None:
    data = encode(Image.effect_noise((300, 200), 60).convert("RGB"), "JPEG")
    d = denied(data[: len(data) // 2])
    assert d.evidence.startswith("cannot decode image: ")
    assert "truncated" in d.evidence.lower()


def test_truncated_jpeg_with_draft() -> None:
    data = encode(photo((2000, 1500)), "JPEG")
    assert denied(data[: len(data) // 2]).reason is Reason.DECODE_ERROR


def test_corrupt_data_after_valid_header() -> None:
    data = bytearray(encode(Image.effect_noise((100, 100), 60).convert("RGB")))
    data[60:] = b"\x00" * (len(data) - 60)
    assert denied(bytes(data)).reason is Reason.DECODE_ERROR


def test_bogus_png_data_is_a_decode_error() -> None:
    assert denied(png_header_only(50, 50)).reason is Reason.DECODE_ERROR


@pytest.mark.parametrize(("size", "min_size", "accepted"), [
    ((20, 15), 64, False), ((20, 15), 15, True), ((20, 15), 16, False),
    ((64, 64), 64, True), ((1000, 63), 64, False), ((20, 15), 0, True),
])
def test_min_image_size(size: tuple[int, int], min_size: int, accepted: bool) -> None:
    result = process_image(solid(size), ResizeOptions(min_image_size=min_size))
    if accepted:
        assert isinstance(result, ResizedImage)
    else:
        assert isinstance(result, Denial) and result.reason is Reason.IMAGE_TOO_SMALL
        w, h = size
        assert result.evidence == f"image {w}x{h} is smaller than --min-image-size {min_size}"


def test_min_image_size_evidence() -> None:
    assert denied(solid((20, 15)), min_image_size=64).evidence == (
        "image 20x15 is smaller than --min-image-size 64")


@pytest.mark.parametrize(("size", "max_ratio", "accepted"), [
    ((300, 100), 2.0, False), ((300, 150), 2.0, True), ((100, 300), 2.0, False),
    ((301, 150), 2.0, False), ((5000, 1), float("inf"), True), ((100, 100), 1.0, True),
])
def test_max_aspect_ratio(size: tuple[int, int], max_ratio: float, accepted: bool) -> None:
    result = process_image(solid(size), ResizeOptions(max_aspect_ratio=max_ratio))
    if accepted:
        assert isinstance(result, ResizedImage)
    else:
        assert isinstance(result, Denial) and result.reason is Reason.ASPECT_RATIO_TOO_LARGE
        assert "--max-aspect-ratio 2" in result.evidence


def test_too_small_is_checked_before_aspect_ratio() -> None:
    assert denied(solid((300, 10)), min_image_size=64,
                  max_aspect_ratio=2.0).reason is Reason.IMAGE_TOO_SMALL


@pytest.mark.parametrize(("size", "limit", "accepted"), [
    ((100, 100), 10_000, True), ((100, 100), 9_999, False), ((101, 99), 9_999, True)])
def test_max_image_pixels(size: tuple[int, int], limit: int, accepted: bool) -> None:
    result = process_image(solid(size), ResizeOptions(max_image_pixels=limit))
    assert isinstance(result, ResizedImage) == accepted
    if not accepted:
        assert result == Denial(Reason.IMAGE_TOO_LARGE,
                                f"image 100x100 = 10000 pixels exceeds --max-image-pixels {limit}")


def test_pixel_limit_is_checked_before_decoding() -> None:
    # the pixel data is bogus: a decoder would fail, the header check answers first
    d = denied(png_header_only(20_000, 20_000))
    assert d == Denial(Reason.IMAGE_TOO_LARGE,
                       "image 20000x20000 = 400000000 pixels exceeds --max-image-pixels 100000000")


def test_decompression_bomb_never_allocates(bomb_png: bytes) -> None:
    assert len(bomb_png) < 1_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.perf_counter()
    d = denied(bomb_png)
    elapsed = time.perf_counter() - start
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert d == Denial(Reason.IMAGE_TOO_LARGE,
                       "image 30000x30000 = 900000000 pixels exceeds --max-image-pixels 100000000")
    assert elapsed < 0.5
    assert grown_mib < 50  # decoding would take 900 MB


def test_pillow_bomb_guard_reported_as_too_large(bomb_png: bytes) -> None:
    # our limit above Pillow's own (2 x 89 Mpx): Pillow refuses at open
    d = denied(bomb_png, max_image_pixels=10**12)
    assert d == Denial(Reason.IMAGE_TOO_LARGE, "image 30000x30000 = 900000000 pixels "
                       "exceeds Pillow's decompression-bomb limit")


def test_pillow_bomb_warning_as_error_is_too_large() -> None:
    # 90 Mpx: under our default limit, over Pillow's warning threshold (89.5 Mpx)
    data = png_header_only(10_000, 9_000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        d = denied(data)
    assert d == Denial(Reason.IMAGE_TOO_LARGE, "image 10000x9000 = 90000000 pixels "
                       "exceeds Pillow's decompression-bomb limit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        assert denied(data).reason is Reason.DECODE_ERROR  # header fine, pixels bogus


def test_pillow_global_limit_is_not_touched(bomb_png: bytes) -> None:
    before = Image.MAX_IMAGE_PIXELS
    denied(bomb_png, max_image_pixels=10)
    ok(solid((30, 30)), max_image_pixels=10**12)
    assert Image.MAX_IMAGE_PIXELS == before


def test_encoder_side_limit() -> None:
    d = denied(solid((16_384, 1)), resize_mode="no", encode_format="webp")
    assert d.reason is Reason.IMAGE_TOO_LARGE
    assert d.evidence == "image 16384x1 exceeds the 16383-pixel side limit of webp"
    assert isinstance(process_image(solid((16_384, 1)), ResizeOptions(resize_mode="no")),
                      ResizedImage)


# ------------------------------------------------------------ threads

def _case(i: int) -> tuple[bytes, ResizeOptions]:
    modes = ("no", "border", "keep_ratio", "keep_ratio_largest", "center_crop")
    formats = (("jpg", 90), ("png", 3), ("webp", 80))
    w, h = 120 + 37 * i, 90 + 23 * (i % 7)
    im = photo((w, h))
    if i % 5 == 0:
        data = b"garbage" * i
    elif i % 3 == 0:
        data = encode(im.convert("RGBA"), "PNG")
    else:
        data = encode(im, "JPEG", exif=exif_with_orientation(1 + i % 8))
    fmt, q = formats[i % 3]
    return data, ResizeOptions(image_size=64 + 8 * (i % 4), resize_mode=modes[i % 5],
                               encode_format=fmt, encode_quality=q, min_image_size=i % 2 * 100)


def test_thread_safety_smoke() -> None:
    cases = [_case(i) for i in range(50)]
    expected = [process_image(data, opts) for data, opts in cases]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda c: process_image(*c), cases))
    assert got == expected
    assert sum(isinstance(r, ResizedImage) for r in got) > 20
    assert {r.reason for r in got if isinstance(r, Denial)} == {
        Reason.DECODE_ERROR, Reason.IMAGE_TOO_SMALL}


# ------------------------------------------------------------ options

def test_defaults_match_img2dataset() -> None:
    assert ResizeOptions() == ResizeOptions(
        image_size=256, resize_mode="border", resize_only_if_bigger=False,
        encode_format="jpg", encode_quality=95, min_image_size=0,
        max_aspect_ratio=float("inf"), max_image_pixels=100_000_000)


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ResizeOptions().image_size = 3  # type: ignore[misc]


def test_resize_options_from_fetch_config() -> None:
    cfg = make_config(image_size=128, resize_mode="center_crop", resize_only_if_bigger=True,
                      encode_format="png", encode_quality=7, min_image_size=10,
                      max_aspect_ratio=3, max_image_pixels=5_000_000, shard_size=5)
    assert resize_options_from(cfg) == ResizeOptions(
        image_size=128, resize_mode="center_crop", resize_only_if_bigger=True,
        encode_format="png", encode_quality=7, min_image_size=10,
        max_aspect_ratio=3.0, max_image_pixels=5_000_000)
    assert resize_options_from(make_config()) == ResizeOptions()


def test_resize_options_from_any_object() -> None:
    fields = {f.name: getattr(ResizeOptions(), f.name) for f in dataclasses.fields(ResizeOptions)}
    ns = types.SimpleNamespace(**{**fields, "image_size": 99, "extra": 1})
    assert resize_options_from(ns).image_size == 99
    with pytest.raises(AttributeError):
        resize_options_from(types.SimpleNamespace(image_size=1))


@pytest.mark.parametrize("options", [
    dict(resize_mode="stretch"), dict(encode_format="gif"), dict(image_size=0),
    dict(encode_format="png"),  # quality 95 is not a zlib level
    dict(encode_format="png", encode_quality=10),
])
def test_bad_options_raise(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        ResizeOptions(**options)  # type: ignore[arg-type]


# ------------------------------------------------------------ output quality

def _detailed_photo(width: int, height: int, seed: int) -> bytes:
    """A photo-like JPEG: fractal structure plus fine blurred noise."""
    import numpy as np
    rng = np.random.default_rng(seed)
    base = Image.effect_mandelbrot((width, height), (-2.0 + seed * 0.01, -1.2, 0.8, 1.2),
                                   120).convert("RGB")
    grain = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    out = io.BytesIO()
    Image.blend(base, grain.filter(ImageFilter.GaussianBlur(1.2)), 0.35).save(
        out, "JPEG", quality=92)
    return out.getvalue()


@pytest.mark.parametrize("size,seed", [((640, 480), 0), ((1200, 800), 1), ((500, 700), 2),
                                       ((900, 900), 3)])
def test_downscale_quality_against_a_lanczos_reference(size: tuple[int, int],
                                                       seed: int) -> None:
    """Output as sharp as img2dataset's: PSNR against a full-resolution LANCZOS resize.

    HAMMING scores 44.8-45.5 dB on these images; BOX (faster, softer) scores
    40.7-44.1 dB and fails this bound.
    """
    import numpy as np
    data = _detailed_photo(*size, seed)
    result = process_image(data, ResizeOptions(image_size=256, resize_mode="keep_ratio_largest",
                                               encode_format="png", encode_quality=1))
    assert isinstance(result, ResizedImage)
    w, h = size
    scale = 256 / max(w, h)
    expected = (round(w * scale), round(h * scale))
    assert (result.width, result.height) == expected
    reference = Image.open(io.BytesIO(data)).convert("RGB").resize(expected, Image.Resampling.LANCZOS)
    got = np.asarray(Image.open(io.BytesIO(result.data)).convert("RGB"), dtype=np.float64)
    mse = ((got - np.asarray(reference, dtype=np.float64)) ** 2).mean()
    assert 10 * np.log10(255 ** 2 / mse) >= 43.5


# ------------------------------------------------------------ decode memory

def ico_with_frame(frame: bytes) -> bytes:
    """An ICO whose one directory entry says 256x256 and whose frame is ``frame``."""
    return (struct.pack("<HHH", 0, 1, 1)
            + struct.pack("<BBBBHHII", 0, 0, 0, 0, 1, 32, len(frame), 6 + 16) + frame)


def _no_open(*args: object, **kwargs: object) -> Image.Image:
    raise AssertionError("Image.open must not see this")


def test_ico_bomb_refused_before_image_open(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow decodes an ICO's largest frame inside Image.open: 576 MB for this one
    data = ico_with_frame(png_header_only(12_000, 12_000))
    monkeypatch.setattr(Image, "open", _no_open)
    assert denied(data) == Denial(Reason.IMAGE_TOO_LARGE, "image 12000x12000 = 144000000 "
                                  "pixels exceeds --max-image-pixels 100000000")


def test_ico_frame_above_the_format_limit_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    # a real 600x600 PNG frame, within --max-image-pixels, but no ICO frame is over 256
    data = ico_with_frame(solid((600, 600), RED, mode="RGBA"))
    monkeypatch.setattr(Image, "open", _no_open)
    assert denied(data) == Denial(Reason.IMAGE_TOO_LARGE, "ICO frame 600x600 is larger than "
                                  "the 256x256 the ICO format allows")


@pytest.mark.parametrize("bitmap_format", ["png", "bmp"])
def test_ico_frame_sizes_are_read_from_the_frames(bitmap_format: str) -> None:
    data = encode(Image.new("RGBA", (64, 64), RED), "ICO", sizes=[(16, 16), (32, 32), (64, 64)],
                  bitmap_format=bitmap_format)
    assert sorted(image_mod.ico_frame_sizes(data) or []) == [(16, 16), (32, 32), (64, 64)]
    result = ok(data, resize_mode="no", **PNG)
    assert (result.width, result.height) == (64, 64)
    assert decoded(result).getpixel((32, 32)) == RED


@pytest.mark.parametrize("data", [
    b"\x00\x00\x01\x00\x05\x00",  # five entries, no directory
    ico_with_frame(b"\x89PNG"),  # a frame cut short
])
def test_unreadable_ico_is_a_decode_error(data: bytes) -> None:
    assert denied(data) == Denial(Reason.DECODE_ERROR,
                                  "cannot decode image: unreadable ICO frame header")


@pytest.mark.parametrize("params", [dict(lossless=True), dict(quality=80),
                                    dict(quality=80, exif=b"Exif\x00\x00II*\x00")])
@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_webp_size_matches_pillow(mode: str, params: dict[str, object]) -> None:
    data = solid((301, 77), RED, mode=mode, fmt="WEBP", **params)
    assert image_mod.webp_size(data) == Image.open(io.BytesIO(data)).size == (301, 77)


def test_webp_canvas_bomb_refused_before_image_open(monkeypatch: pytest.MonkeyPatch) -> None:
    # libwebp allocates two canvases of the declared size when Pillow opens the file
    data = bytearray(solid((30, 30), RED, mode="RGBA", fmt="WEBP", exif=b"Exif\x00\x00II*\x00"))
    assert data[12:16] == b"VP8X"
    data[24:30] = (16_000 - 1).to_bytes(3, "little") + (16_000 - 1).to_bytes(3, "little")
    monkeypatch.setattr(Image, "open", _no_open)
    assert denied(bytes(data)) == Denial(Reason.IMAGE_TOO_LARGE, "image 16000x16000 = "
                                         "256000000 pixels exceeds --max-image-pixels 100000000")


def test_image_alone_above_the_budget_is_too_large() -> None:
    data = solid((100, 100), (*RED, 128), mode="RGBA")
    need = image_mod.decoded_bytes((100, 100), "RGBA", "PNG", (100, 100), ResizeOptions())
    budget = image_mod.DecodeBudget(need - 1)
    result = process_image(data, ResizeOptions(), budget=budget)
    assert result == Denial(Reason.IMAGE_TOO_LARGE, f"image 100x100 needs {need} bytes "
                            f"decoded, more than --max-decoded-bytes {need - 1}")
    assert isinstance(process_image(data, ResizeOptions(), budget=image_mod.DecodeBudget(need)),
                      ResizedImage)


def test_decoded_bytes_counts_pixels_load_copies_and_output() -> None:
    options = ResizeOptions(resize_mode="no")
    rgba = image_mod.decoded_bytes((1000, 1000), "RGBA", "PNG", (1000, 1000), options)
    grey = image_mod.decoded_bytes((1000, 1000), "L", "PNG", (1000, 1000), options)
    webp = image_mod.decoded_bytes((1000, 1000), "RGBA", "WEBP", (1000, 1000), options)
    assert rgba - grey == 3_000_000  # 4 bytes a pixel against 1
    assert webp - rgba == 16_000_000  # libwebp's canvases and Pillow's copy
    small = image_mod.decoded_bytes((1000, 1000), "RGBA", "PNG", (1000, 1000), ResizeOptions())
    assert small < rgba  # a 256x256 result instead of a 1000x1000 one


def test_the_budget_is_given_back_whatever_happens() -> None:
    budget = image_mod.DecodeBudget(10**9)
    for data in (png_header_only(1000, 1000), solid((300, 200), mode="RGBA"),
                 solid((30, 20)), b"junk"):
        process_image(data, ResizeOptions(min_image_size=100), budget=budget)
        assert budget.in_use == 0


def test_an_image_waits_for_the_budget_and_proceeds() -> None:
    data = solid((300, 200), (*GREEN, 200), mode="RGBA")
    need = image_mod.decoded_bytes((300, 200), "RGBA", "PNG", (300, 200), ResizeOptions())
    budget = image_mod.DecodeBudget(need + 10)
    assert budget.take(20)  # another image holds part of it
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(process_image, data, ResizeOptions(), budget=budget)
        _wait_until(lambda: budget.waiting == 1)
        assert not future.done()
        budget.give(20)
        assert isinstance(future.result(timeout=10), ResizedImage)
    assert budget.in_use == 0


def test_the_wait_for_the_budget_is_bounded() -> None:
    data = solid((300, 200), mode="RGBA")
    need = image_mod.decoded_bytes((300, 200), "RGBA", "PNG", (300, 200), ResizeOptions())
    budget = image_mod.DecodeBudget(need, max_wait=0.01)
    assert budget.take(1)
    result = process_image(data, ResizeOptions(), budget=budget)
    assert result == Denial(Reason.IMAGE_TOO_LARGE, f"image 300x200 needs {need} bytes decoded; "
                            f"--max-decoded-bytes {need} stayed in use by other images for 0.01 s")
    assert budget.in_use == 1 and budget.waiting == 0


def test_budget_waiters_are_served_in_order() -> None:
    budget = image_mod.DecodeBudget(100)
    assert budget.take(60)
    order: list[str] = []

    def take(name: str, size: int) -> None:
        assert budget.take(size)
        order.append(name)

    with ThreadPoolExecutor(2) as pool:
        big = pool.submit(take, "big", 50)  # does not fit yet
        _wait_until(lambda: budget.waiting == 1)
        small = pool.submit(take, "small", 10)  # would fit, but arrived later
        _wait_until(lambda: budget.waiting == 2)
        assert order == []
        budget.give(60)
        big.result(timeout=10)
        small.result(timeout=10)
    assert order == ["big", "small"] and budget.in_use == 60


def test_budget_refuses_what_can_never_fit() -> None:
    with pytest.raises(ValueError):
        image_mod.DecodeBudget(10).take(11)
    with pytest.raises(ConfigError):
        image_mod.DecodeBudget(0)


def _wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):  # at most ~10 s
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "I;16", "CMYK"])
@pytest.mark.parametrize(("size", "out", "resample"), [
    ((300, 200), (77, 51), image_mod._DOWNSCALE),
    ((300, 217), (40, 29), image_mod._DOWNSCALE),
    ((300, 200), (256, 171), image_mod._DOWNSCALE),
    ((300, 200), (300, 200), image_mod._DOWNSCALE),
    ((60, 41), (256, 175), image_mod._UPSCALE),
])
def test_banded_conversion_equals_whole_image_conversion(
        monkeypatch: pytest.MonkeyPatch, mode: str, size: tuple[int, int],
        out: tuple[int, int], resample: Image.Resampling) -> None:
    import numpy as np
    rng = np.random.default_rng(sum(size) + len(mode))
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    if mode == "P":
        im = im.convert("RGB").quantize(64)
        im.info["transparency"] = 3
    elif mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (size[1], size[0])).astype(np.uint16))
    else:
        im = im.convert(mode)
    whole = image_mod.to_rgb(im)
    whole = whole if whole.size == out else whole.resize(out, resample)
    monkeypatch.setattr(image_mod, "_BAND_BYTES", 4 * size[0] * 7)  # bands of 7 rows
    banded = image_mod.to_rgb_resized(im, out, resample)
    assert ImageChops.difference(whole, banded).getbbox() is None  # pixel for pixel


_MEASURE = r"""
import io, sys
from PIL import Image
from consentfetch import image
side = int(sys.argv[1])
im = Image.linear_gradient("L").resize((side, side))
data = io.BytesIO()
Image.merge("RGBA", [im, im.transpose(Image.Transpose.ROTATE_90), im, im]).save(data, "PNG")
del im
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
base = hwm()
result = image.process_image(data.getvalue(), image.ResizeOptions())
assert isinstance(result, image.ResizedImage), result
need = image.decoded_bytes((side, side), "RGBA", "PNG", (side, side), image.ResizeOptions())
print(hwm() - base, need)
"""


def test_alpha_image_peak_memory_is_what_the_budget_counts() -> None:
    # 3000x3000 RGBA: 36 MB decoded. Compositing on the whole image took five
    # full-size copies (180 MB); now the decoded image and bands of rows.
    out = subprocess.run([sys.executable, "-c", _MEASURE, "3000"], capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    grown, need = int(out[0]), int(out[1])
    decoded_size = 3000 * 3000 * 4
    assert grown <= need
    assert grown < 3 * decoded_size


@pytest.mark.parametrize(("fmt", "options", "kept"), [
    ("jpg", {"resize_mode": "no"}, True),
    ("jpg", {"resize_mode": "border", "image_size": 64}, False),  # resized
    ("jpg", {"resize_mode": "keep_ratio", "image_size": 500, "resize_only_if_bigger": True},
     True),  # smaller than the target: not resized
    ("png", {"resize_mode": "no"}, False),  # png, but jpg wanted
    ("png", {"resize_mode": "no", "encode_format": "png", "encode_quality": 9}, True),
    ("webp", {"resize_mode": "no", "encode_format": "webp"}, True),
])
def test_skip_reencode_keeps_the_bytes_only_when_nothing_else_changes(
        fmt: str, options: dict, kept: bool) -> None:
    from consentfetch.testsite import make_image
    data = make_image(120, 90, fmt)
    out = process_image(data, ResizeOptions(skip_reencode=True, **options))
    assert not isinstance(out, Denial)
    assert (out.data == data) is kept
    assert (out.original_width, out.original_height) == (120, 90)
    plain = process_image(data, ResizeOptions(**options))
    assert not isinstance(plain, Denial) and plain.data != data


def test_skip_reencode_still_refuses_a_corrupt_file() -> None:
    from consentfetch.testsite import make_image
    data = make_image(120, 90)[:400]
    assert isinstance(process_image(data, ResizeOptions(resize_mode="no", skip_reencode=True)),
                      Denial)
