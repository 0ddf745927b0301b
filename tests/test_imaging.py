"""imaging: sniffing, header probes, previews under a base64 budget, conversions."""

from __future__ import annotations

import base64
import io
import random
import struct
from pathlib import Path
from typing import Literal

import pytest
from PIL import Image, ImageDraw

from mcp_images.errors import InputError
from mcp_images.imaging.formats import (
    FORMAT_MIME,
    bw_mask_to_alpha,
    probe,
    sniff_format,
    to_png,
)
from mcp_images.imaging.previews import base64_len, make_preview

PIL_NAMES = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP"}
PIL_NAMES |= {"tiff": "TIFF"}


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    if fmt == "bmp" and image.mode == "RGBA":
        return bmp_with_alpha(image)
    buffer = io.BytesIO()
    image.save(buffer, PIL_NAMES.get(fmt, fmt), **params)
    return buffer.getvalue()


def bmp_with_alpha(image: Image.Image) -> bytes:
    """A 32-bit BMP with an alpha mask (V4 header); Pillow only writes BMPs without alpha."""
    width, height = image.size
    pixels = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM).tobytes("raw", "BGRA")
    info = struct.pack("<IiiHHIIiiII", 108, width, height, 1, 32, 3, len(pixels), 2835, 2835, 0, 0)
    info += struct.pack("<IIII", 0x00FF0000, 0x0000FF00, 0x000000FF, 0xFF000000)
    info += b"sRGB" + bytes(48)  # colour space, then unused endpoints and gamma
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + pixels


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def noisy_rgb(width: int, height: int, seed: int = 1) -> Image.Image:
    """Gradients under random noise: compresses about as badly as a detailed photo."""
    gradient = Image.linear_gradient("L")
    across = gradient.transpose(Image.Transpose.ROTATE_90).resize((width, height))
    down = gradient.resize((width, height))
    base = Image.merge("RGB", (down, across, down))
    noise = Image.frombytes("RGB", (width, height), random.Random(seed).randbytes(width * height * 3))
    return Image.blend(base, noise, 0.4)


def noisy_rgba(width: int, height: int) -> Image.Image:
    """A noisy picture inside an ellipse, fully transparent around it."""
    image = noisy_rgb(width, height).convert("RGBA")
    alpha = Image.new("L", (width, height), 0)
    ImageDraw.Draw(alpha).ellipse((50, 50, width - 50, height - 50), fill=255)
    image.putalpha(alpha)
    return image


def lowest_alpha(image: Image.Image) -> int:
    low, _ = image.convert("RGBA").getchannel("A").getextrema()
    assert isinstance(low, int)
    return low


def palette_with_transparency() -> Image.Image:
    image = Image.new("P", (40, 30), 0)
    image.putpalette([255, 0, 0, 0, 0, 255])
    image.paste(1, (0, 0, 20, 30))
    image.info["transparency"] = 0
    return image


@pytest.fixture(scope="module")
def noisy_rgb_png() -> bytes:
    return encode(noisy_rgb(1024, 1024), "png", compress_level=1)


@pytest.fixture(scope="module")
def noisy_rgba_png() -> bytes:
    return encode(noisy_rgba(1536, 1024), "png", compress_level=1)


# --- sniff_format -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp", "gif", "bmp", "tiff"])
def test_sniff_format_names_each_supported_format_from_its_first_32_bytes(fmt: str) -> None:
    data = encode(Image.new("RGB", (8, 8), "red"), fmt)
    assert sniff_format(data[:32]) == fmt
    assert fmt in FORMAT_MIME


@pytest.mark.parametrize(
    "head",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b'\xef\xbb\xbf\n  <?xml version="1.0" encoding="UTF-8" standalone="no"?>\n<svg>',
        b'<?xml version="1.0"?>\n<!-- Generator: a model -->\n<!-- two comments -->\n<svg\n  width="1">',
        b'<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "svg11.dtd"><svg>',
    ],
)
def test_sniff_format_names_an_svg_after_a_bom_declaration_or_comments(head: bytes) -> None:
    assert sniff_format(head) == "svg"
    assert FORMAT_MIME["svg"] == "image/svg+xml"


@pytest.mark.parametrize(
    "head",
    [b"<html><svg></svg></html>", b"<svgfoo/>", b"text before <svg>", b'<?xml version="1.0"?><rss/>'],
)
def test_sniff_format_does_not_call_other_markup_svg(head: bytes) -> None:
    assert sniff_format(head) is None


def test_sniff_format_reads_only_the_ftyp_box_of_a_long_head() -> None:
    video = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00\x00\x00\x08freeheic" + bytes(64)
    assert sniff_format(video) is None


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "heic"),
        (b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic", "heic"),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", "avif"),
        (b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf", "avif"),
    ],
)
def test_sniff_format_names_heic_and_avif_so_callers_can_refuse_them(head: bytes, expected: str) -> None:
    assert sniff_format(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello, world",
        b"%PDF-1.7\n",
        b"BM" + bytes(30),  # "BM" without a real BMP header after it
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",  # an MP4 video
    ],
)
def test_sniff_format_returns_none_for_anything_else(head: bytes) -> None:
    assert sniff_format(head) is None


# --- probe ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "image", "has_alpha"),
    [
        ("png", Image.new("RGB", (40, 30)), False),
        ("png", Image.new("RGBA", (40, 30)), True),
        ("png", Image.new("LA", (40, 30)), True),
        ("png", Image.new("L", (40, 30)), False),
        ("png", palette_with_transparency(), True),
        ("jpeg", Image.new("RGB", (40, 30)), False),
        ("webp", Image.new("RGB", (40, 30)), False),
        ("webp", Image.new("RGBA", (40, 30), (1, 2, 3, 0)), True),
        ("gif", Image.new("P", (40, 30)), False),
        ("gif", palette_with_transparency(), True),
        ("bmp", Image.new("RGB", (40, 30)), False),
        ("bmp", Image.new("RGBA", (40, 30)), True),
        ("tiff", Image.new("RGB", (40, 30)), False),
        ("tiff", Image.new("RGBA", (40, 30)), True),
    ],
)
def test_probe_reads_format_size_alpha_and_byte_count(fmt: str, image: Image.Image, has_alpha: bool) -> None:
    data = encode(image, fmt)
    info = probe(data)
    assert (info.format, info.width, info.height) == (fmt, 40, 30)
    assert info.has_alpha is has_alpha
    assert info.bytes == len(data)


def test_probe_of_a_path_counts_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "picture.jpg"
    path.write_bytes(encode(noisy_rgb(300, 200), "jpeg"))
    info = probe(path)
    assert (info.format, info.width, info.height) == ("jpeg", 300, 200)
    assert info.bytes == path.stat().st_size


def _png_bytes() -> bytes:
    return encode(noisy_rgb(64, 64), "png")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"not an image at all, just text", id="text"),
        pytest.param(_png_bytes()[:20], id="png-cut-in-header"),
        pytest.param(_png_bytes()[: len(_png_bytes()) // 2], id="png-cut-in-pixels"),
        pytest.param(_png_bytes()[:-12], id="png-without-its-end-chunk"),
    ],
)
def test_probe_refuses_data_that_is_not_a_complete_image(data: bytes) -> None:
    with pytest.raises(InputError):
        probe(data)


def test_probe_names_heic_when_it_refuses_one() -> None:
    with pytest.raises(InputError, match="HEIC"):
        probe(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100))


def test_probe_names_svg_when_it_refuses_one() -> None:
    with pytest.raises(InputError, match="SVG"):
        probe(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')


def test_probe_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        probe(tmp_path / "missing.png")


# --- base64_len -------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 6, 100, 104_999])
def test_base64_len_matches_the_real_encoding(n: int) -> None:
    assert base64_len(n) == len(base64.b64encode(bytes(n)))


# --- make_preview -----------------------------------------------------------------------


@pytest.mark.parametrize("budget", [140_000, 85_000])
def test_make_preview_of_an_opaque_photo_is_a_jpeg_within_the_budget(noisy_rgb_png: bytes, budget: int) -> None:
    preview = make_preview(noisy_rgb_png, max_b64_chars=budget)
    assert len(base64.b64encode(preview.data)) <= budget
    assert preview.mime_type == "image/jpeg"
    shown = decode(preview.data)
    assert shown.format == "JPEG"
    assert shown.size == (preview.width, preview.height)
    assert preview.width == preview.height  # square stays square
    assert preview.width >= 256  # shrunk to fit, not to a thumbnail


@pytest.mark.parametrize("budget", [140_000, 85_000])
def test_make_preview_of_a_transparent_image_is_a_png_that_keeps_alpha(noisy_rgba_png: bytes, budget: int) -> None:
    preview = make_preview(noisy_rgba_png, max_b64_chars=budget)
    assert len(base64.b64encode(preview.data)) <= budget
    assert preview.mime_type == "image/png"
    shown = decode(preview.data)
    assert shown.format == "PNG"
    assert shown.size == (preview.width, preview.height)
    assert lowest_alpha(shown) == 0
    assert abs(preview.width / preview.height - 1.5) < 0.02
    assert preview.width <= 1024


def test_make_preview_never_upscales_a_small_image() -> None:
    preview = make_preview(encode(noisy_rgb(200, 100), "png"), max_b64_chars=140_000)
    assert (preview.width, preview.height) == (200, 100)


def large_gradient(fmt: str) -> bytes:
    """A 4000x3000 gradient: JPEG goes through draft(), RGBA PNG through a full decode."""
    gradient = Image.linear_gradient("L").resize((4000, 3000))
    if fmt == "jpeg":
        return encode(Image.merge("RGB", (gradient, gradient, gradient)), "jpeg")
    alpha = Image.new("L", gradient.size, 255)
    alpha.paste(0, (0, 0, 400, 300))
    return encode(Image.merge("RGBA", (gradient, gradient, gradient, alpha)), "png", compress_level=1)


@pytest.mark.parametrize(
    ("fmt", "max_side", "expected"),
    [
        ("jpeg", 1024, (1024, 768)),
        ("jpeg", 300, (300, 225)),
        ("png", 1024, (1024, 768)),
    ],
)
def test_make_preview_brings_a_large_image_down_to_max_side(fmt: str, max_side: int, expected: tuple[int, int]) -> None:
    preview = make_preview(large_gradient(fmt), max_b64_chars=85_000, max_side=max_side)
    assert (preview.width, preview.height) == expected
    assert base64_len(len(preview.data)) <= 85_000
    assert preview.mime_type == FORMAT_MIME[fmt]


def test_make_preview_fits_a_large_noisy_image_into_a_small_budget() -> None:
    data = encode(noisy_rgb(4000, 3000), "jpeg", quality=95)
    preview = make_preview(data, max_b64_chars=20_000)
    assert base64_len(len(preview.data)) <= 20_000
    assert max(preview.width, preview.height) >= 64


def test_make_preview_sends_an_image_whose_alpha_hides_nothing_as_jpeg() -> None:
    data = encode(noisy_rgb(300, 200).convert("RGBA"), "png")
    assert make_preview(data, max_b64_chars=85_000).mime_type == "image/jpeg"


def test_make_preview_shows_a_phone_photo_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    data = encode(noisy_rgb(200, 100), "jpeg", exif=exif)
    preview = make_preview(data, max_b64_chars=85_000)
    assert (preview.width, preview.height) == (100, 200)


def test_make_preview_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "picture.webp"
    path.write_bytes(encode(noisy_rgb(320, 240), "webp"))
    preview = make_preview(path, max_b64_chars=85_000)
    assert (preview.width, preview.height) == (320, 240)


def test_make_preview_raises_value_error_when_no_preview_can_fit(noisy_rgb_png: bytes) -> None:
    with pytest.raises(ValueError):
        make_preview(noisy_rgb_png, max_b64_chars=200)


def test_make_preview_refuses_a_non_image() -> None:
    with pytest.raises(InputError):
        make_preview(b"GIF89a but then nothing", max_b64_chars=85_000)


# --- to_png -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "image", "has_alpha"),
    [
        ("bmp", noisy_rgb(64, 48), False),
        ("bmp", noisy_rgba(160, 120), True),
        ("gif", palette_with_transparency(), True),
        ("gif", Image.new("P", (64, 48)), False),
        ("tiff", noisy_rgb(64, 48), False),
        ("tiff", noisy_rgba(160, 120), True),
        ("tiff", Image.new("CMYK", (64, 48), (0, 255, 255, 0)), False),
    ],
)
def test_to_png_gives_a_png_of_the_same_size_keeping_alpha(fmt: str, image: Image.Image, has_alpha: bool) -> None:
    converted = decode(to_png(encode(image, fmt)))
    assert converted.format == "PNG"
    assert converted.size == image.size
    assert (lowest_alpha(converted) == 0) is has_alpha


def test_to_png_takes_the_first_frame_of_an_animated_gif() -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    data = encode(frames[0], "gif", save_all=True, append_images=frames[1:])
    converted = decode(to_png(data)).convert("RGB")
    assert converted.getpixel((5, 5)) == (255, 0, 0)


# --- bw_mask_to_alpha -------------------------------------------------------------------


def half_white_mask() -> bytes:
    """Left half white, right half black."""
    mask = Image.new("RGB", (100, 80), "black")
    mask.paste((255, 255, 255), (0, 0, 50, 80))
    return encode(mask, "png")


@pytest.mark.parametrize(("edit_area", "left_alpha", "right_alpha"), [("white", 0, 255), ("black", 255, 0)])
def test_bw_mask_to_alpha_makes_the_edit_area_transparent(
    edit_area: Literal["white", "black"], left_alpha: int, right_alpha: int
) -> None:
    mask = decode(bw_mask_to_alpha(half_white_mask(), edit_area=edit_area))
    assert (mask.format, mask.mode, mask.size) == ("PNG", "RGBA", (100, 80))
    alpha = mask.getchannel("A")
    assert alpha.getpixel((10, 40)) == left_alpha
    assert alpha.getpixel((90, 40)) == right_alpha


def test_bw_mask_to_alpha_refuses_a_mask_that_marks_nothing() -> None:
    with pytest.raises(InputError):
        bw_mask_to_alpha(encode(Image.new("L", (20, 20), 0), "png"), edit_area="white")


def test_bw_mask_to_alpha_refuses_a_mask_that_already_has_transparency() -> None:
    with pytest.raises(InputError):
        bw_mask_to_alpha(encode(Image.new("RGBA", (20, 20), (255, 255, 255, 0)), "png"))
