"""Previews of saved images that fit a base64 budget, for a tool result.

Previews are measured the way an MCP client measures them: as base64 text. Claude Desktop
refuses a tool result above 1 MiB, so `make_preview` promises
``base64_len(len(preview.data)) <= max_b64_chars`` and shrinks until it holds. Pillow work
(opening, decoding, modes) is `imaging`'s; this module sizes and encodes. `make_preview` is
slow and meant to run in a worker thread.

A GIF's preview is its first frame, a still; an SVG is first rendered by `svg.rasterise` at
the preview's size (vectors have no pixel size to keep) and then treated as any raster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mcp_images.imaging.formats import (
    SNIFF_BYTES,
    encode,
    load_pixels,
    lowest_value,
    normalise,
    open_image,
    sniff_format,
)

MIN_PREVIEW_SIDE = 64  # px on the long side; below this a preview shows nothing useful
JPEG_QUALITY = 80
JPEG_QUALITY_LOW = 60  # tried before losing pixels: still clear at preview size
_LOW_QUALITY_RATIO = 0.72  # measured: q60 weighs ~0.7x of q80 on photos and noise alike
# Encoded bytes grow as pixels**exponent when an image is scaled (detail gets denser as it
# shrinks). Measured ~0.73 for JPEG and ~0.5-0.6 for palette PNG on photo-like images; the
# lower end is used so that one shrink usually lands under budget.
_JPEG_EXPONENT = 0.7
_PNG_EXPONENT = 0.55
_SAFETY = 0.92  # aim this far under budget when shrinking
_MIN_STEP = 0.9  # every shrink loses at least 10% of the long side, so the loop ends
_MIN_BYTES_PER_PIXEL = 0.02  # flattest previews seen (~0.023 B/px): caps the first size
_PLAIN_OVER_PALETTE = 3.0  # a plain RGBA PNG weighs >= ~3x its 256-colour version
_PALETTE_PNG_LEVEL = 4
_GROW_BELOW = 0.6  # a shrunk preview under 60% of the budget gets one try at a bigger size
_RESAMPLE = Image.Resampling.BILINEAR  # antialiased in Pillow; ~2x faster than LANCZOS
_REDUCING_GAP = 2.0  # big downscales go through a fast integer reduce() first

# EXIF orientation -> the transpose that shows the picture upright.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Preview:
    """An encoded preview and its pixel size."""

    data: bytes
    mime_type: str
    width: int
    height: int


def base64_len(n_bytes: int) -> int:
    """Length of the padded base64 text for `n_bytes` raw bytes.

    Raises:
        ValueError: `n_bytes` is negative.
    """
    if n_bytes < 0:
        raise ValueError(f"n_bytes must be >= 0, got {n_bytes}")
    return 4 * ((n_bytes + 2) // 3)


def make_preview(source: Path | bytes, *, max_b64_chars: int, max_side: int = 1024) -> Preview:
    """Encode a preview whose base64 text fits in `max_b64_chars`.

    The long side is at most `max_side` (a raster is never upscaled; an SVG is rendered at
    its own size within `MIN_PREVIEW_SIDE` .. `max_side`). Opaque images become JPEG (quality
    80, then 60, then fewer pixels); images with real transparency become PNG, plain when it
    fits, else a 256-colour palette PNG that keeps alpha, then fewer pixels. The first size
    is the largest allowed, and each retry is sized from the bytes just measured, so a
    typical image takes one or two encodes.

    Raises:
        InputError: the source is not a readable image.
        ValueError: not even a `MIN_PREVIEW_SIDE` preview fits the budget, or `max_side` < 1.
    """
    budget = (max_b64_chars // 4) * 3  # largest raw size whose base64 fits
    if budget <= 0 or max_side < 1:
        raise ValueError(f"no preview fits max_b64_chars={max_b64_chars}, max_side={max_side}")
    max_pixels = budget / _MIN_BYTES_PER_PIXEL
    if _is_svg(source):
        source = _render_svg(source, max_side, max_pixels)
    with open_image(source) as im:
        # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale, still at least this size.
        im.draft(None, _fit(im.size, max_side, max_pixels))
        load_pixels(im, source)
        orientation = _orientation(im)
        # Everything happens inside the `with`: closing `im` frees pixels `frame` may share.
        frame = _resize(normalise(im), _fit(im.size, max_side, max_pixels))
        if orientation in _ORIENTATION:
            frame = frame.transpose(_ORIENTATION[orientation])
        if frame.mode == "RGBA" and lowest_value(frame, "A") == 255:
            frame = frame.convert("RGB")  # alpha that hides nothing: JPEG is far smaller
        if frame.mode == "RGBA":
            return _png_preview(frame, budget)
        return _jpeg_preview(frame, budget)


def _is_svg(source: Path | bytes) -> bool:
    if isinstance(source, bytes):
        return sniff_format(source[:SNIFF_BYTES]) == "svg"
    try:
        with source.open("rb") as fp:
            return sniff_format(fp.read(SNIFF_BYTES)) == "svg"
    except OSError:
        return False  # open_image names the problem


def _render_svg(source: Path | bytes, max_side: int, max_pixels: float) -> bytes:
    """The SVG as a PNG at its preview size: its own size, at least `MIN_PREVIEW_SIDE` on the
    long side (a 24 px icon would show nothing) and within `max_side` and `max_pixels`.

    Raises:
        InputError: the document is refused by `svg.parse_svg` or cannot be rendered.
    """
    from mcp_images.imaging.svg import MAX_SVG_BYTES, parse_svg, rasterise

    if isinstance(source, bytes):
        data = source
    else:
        with source.open("rb") as fp:
            data = fp.read(MAX_SVG_BYTES + 1)  # parse_svg refuses anything longer
    doc = parse_svg(data)
    width, height = doc.width, doc.height
    long_side = max(width, height)
    scale = min(max(1.0, MIN_PREVIEW_SIDE / long_side), max_side / long_side, math.sqrt(max_pixels / (width * height)))
    return rasterise(doc, max(1, round(width * scale)), max(1, round(height * scale)))


# --- encoding within the budget ---------------------------------------------------------


def _jpeg_preview(frame: Image.Image, budget: int) -> Preview:
    """JPEG at quality 80; over budget: quality 60, then fewer pixels until it fits."""
    data = encode(frame, "JPEG", quality=JPEG_QUALITY)
    if len(data) > budget:
        frame, data = _fit_by_size(
            frame,
            budget,
            lambda f: encode(f, "JPEG", quality=JPEG_QUALITY_LOW),
            _JPEG_EXPONENT,
            estimate=len(data) * _LOW_QUALITY_RATIO,
        )
    return Preview(data, "image/jpeg", frame.width, frame.height)


def _png_preview(frame: Image.Image, budget: int) -> Preview:
    """PNG keeping alpha: plain if it fits, else 256 colours, then fewer pixels.

    The palette version is encoded first because it is cheap (~10 ms at 1024 px) and
    predicts the plain one: when even 3x its size is over budget, the plain encode (~100 ms
    for 1024 px of photo) would be wasted.
    """
    data = _palette_png(frame)
    if len(data) * _PLAIN_OVER_PALETTE <= budget:
        plain = encode(frame, "PNG")
        if len(plain) <= budget:
            return Preview(plain, "image/png", frame.width, frame.height)
    frame, data = _fit_by_size(frame, budget, _palette_png, _PNG_EXPONENT, estimate=len(data), data=data)
    return Preview(data, "image/png", frame.width, frame.height)


def _palette_png(frame: Image.Image) -> bytes:
    # FASTOCTREE is the built-in quantizer that keeps alpha; zlib level 4 costs half of
    # level 6 for ~10% more bytes.
    palette = frame.quantize(256, method=Image.Quantize.FASTOCTREE)
    return encode(palette, "PNG", compress_level=_PALETTE_PNG_LEVEL)


def _fit_by_size(
    frame: Image.Image,
    budget: int,
    encode: Callable[[Image.Image], bytes],
    exponent: float,
    *,
    estimate: float,
    data: bytes | None = None,
) -> tuple[Image.Image, bytes]:
    """Shrink `frame` until `encode(frame)` fits in `budget` bytes.

    `estimate` is the encoded size at `frame` as it is: measured (then `data` holds the
    bytes) or predicted (an encode predicted to fail is skipped).

    Raises:
        ValueError: not even a `MIN_PREVIEW_SIDE` frame fits.
    """
    above: tuple[Image.Image, float] | None = None  # last frame over budget, for _grow
    if data is None and estimate <= budget:
        data = encode(frame)
        estimate = len(data)
    while data is None or len(data) > budget:
        above = (frame, estimate)
        frame = _shrink(frame, estimate / budget, exponent)
        data = encode(frame)
        estimate = len(data)
    if above is not None and len(data) < budget * _GROW_BELOW:
        return _grow(above, (frame, data), budget, encode)
    return frame, data


def _grow(
    above: tuple[Image.Image, float],
    fits: tuple[Image.Image, bytes],
    budget: int,
    encode: Callable[[Image.Image], bytes],
) -> tuple[Image.Image, bytes]:
    """One try at a size between a frame over budget and one far under it.

    Noise and fine texture lose bytes much faster than pixels when scaled down (the
    resampling averages them away), so the first shrink can overshoot. Two measured
    points give the real exponent for this image.
    """
    big, big_bytes = above
    small, small_data = fits
    big_pixels, small_pixels = big.width * big.height, small.width * small.height
    exponent = math.log(big_bytes / len(small_data)) / math.log(big_pixels / small_pixels)
    exponent = min(3.0, max(0.3, exponent))
    pixels = small_pixels * (budget * _SAFETY / len(small_data)) ** (1 / exponent)
    linear = min(_MIN_STEP, math.sqrt(pixels / big_pixels))
    size = _fit(big.size, math.floor(max(big.size) * linear))
    if size[0] * size[1] <= small_pixels:
        return fits
    candidate = _resize(big, size)
    data = encode(candidate)
    return (candidate, data) if len(data) <= budget else fits


def _shrink(frame: Image.Image, excess: float, exponent: float) -> Image.Image:
    """A smaller copy expected to weigh `_SAFETY / excess` times as much.

    Raises:
        ValueError: the frame is already at the smallest preview size.
    """
    long_side = max(frame.size)
    if long_side <= MIN_PREVIEW_SIDE:
        raise ValueError(f"even a {frame.width}x{frame.height} preview is over the budget; raise max_b64_chars")
    linear = min(_MIN_STEP, (_SAFETY / excess) ** (0.5 / exponent))
    target = max(MIN_PREVIEW_SIDE, math.floor(long_side * linear))
    return _resize(frame, _fit(frame.size, target))


def _fit(size: tuple[int, int], max_side: int, max_pixels: float = math.inf) -> tuple[int, int]:
    """`size` scaled down (never up) to a long side <= max_side and <= max_pixels."""
    width, height = size
    scale = min(1.0, max_side / max(width, height), math.sqrt(max_pixels / (width * height)))
    if scale >= 1.0:
        return size
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(frame: Image.Image, size: tuple[int, int]) -> Image.Image:
    if frame.size == size:
        return frame
    return frame.resize(size, _RESAMPLE, reducing_gap=_REDUCING_GAP)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright); broken EXIF counts as upright."""
    try:
        value = im.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):
        return 1
    return value if isinstance(value, int) else 1
