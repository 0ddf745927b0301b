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
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from mcp_images.imaging.formats import (
    SNIFF_BYTES,
    ImageInfo,
    encode,
    load_pixels,
    lowest_value,
    normalise,
    open_image,
    sniff_format,
)

MIN_PREVIEW_SIDE = 64  # px on the long side; below this a preview shows nothing useful
JPEG_QUALITY = 80
JPEG_QUALITY_LOW = 60  # the quality the rare shrink encodes at: still clear at preview size
# JPEG bytes at quality q over bytes at quality 80, same pixels (measured on photo-like images
# at 512-1024 px; noise and flat images stay within ~10% of these). An over-budget preview is
# re-encoded at the best quality whose ratio fits, which costs an encode (~2 ms), not a resize.
_QUALITY_RATIOS = ((75, 0.88), (70, 0.77), (65, 0.71), (60, 0.65), (55, 0.61), (50, 0.57))
_PLAN_STEPS = 3  # probes when shrinking: each ~0.5-1 ms, against ~10 ms for a resize of the whole
_SHRINK_SLOPE = 1.8  # bytes ~ long side**1.8 at a fixed quality: measured 1.9 on photos, 3+ on noise
_GOOD_ENOUGH = 0.75  # a probe predicting 75-100% of the aim ends the search
_LOW_QUALITY_RATIO = 0.65  # q60 over q80, as above
# Encoded bytes grow as pixels**exponent when an image is scaled (detail gets denser as it
# shrinks). Measured ~0.7-1.1 for JPEG (grain averages away fast) and ~0.5-0.6 for palette
# PNG on photo-like images; the lower end is used so that one shrink usually lands under budget.
_JPEG_EXPONENT = 0.7
_PNG_EXPONENT = 0.55
_SAFETY = 0.92  # aim this far under budget
_MIN_STEP = 0.9  # every shrink loses at least 10% of the long side, so the loop ends
_MIN_BYTES_PER_PIXEL = 0.02  # flattest previews seen (~0.023 B/px): caps the first size
_PLAIN_OVER_PALETTE = 3.0  # a plain RGBA PNG weighs >= ~3x its 256-colour version
_PALETTE_PNG_LEVEL = 4
# The JPEG preview's size and quality are chosen before any resize from a probe: a mosaic of
# regions resized as the whole would be and encoded at quality 80 (~0.5 ms for 256x256 px)
# gives the bytes per pixel at that scale.
_PROBE_TILE = 96  # px; 2x2 tiles from the four quarters of the image
_PROBE_MIN_PIXELS = 16 * _PROBE_TILE * _PROBE_TILE  # below this, encoding the whole is as cheap
_JPEG_HEADER_BYTES = 600  # quality-80 tables and markers: not part of the per-pixel cost
# BOX (area average) is ~25% cheaper than BILINEAR at 1024 -> 768 px and within ~2/255 RMS of
# LANCZOS there, under the JPEG's own error; large factors go through integer reduce() first.
_RESAMPLE = Image.Resampling.BOX
_REDUCING_GAP = 2.0

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
    """An encoded preview and its pixel size; `source` is what the decode learnt of the original."""

    data: bytes
    mime_type: str
    width: int
    height: int
    source: ImageInfo | None = None


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
    its own size within `MIN_PREVIEW_SIDE` .. `max_side`). Opaque images become JPEG;
    images with real transparency become PNG, plain when it fits, else a 256-colour
    palette PNG that keeps alpha, then fewer pixels.

    One pass for a JPEG preview: decode once (a JPEG source at a reduced scale), choose the
    size from a probe of the full-resolution pixels, resize once, encode once at quality
    80. Only an overshoot is retried: first at a lower quality (another encode, no resize),
    then, when even quality 50 is too big (noise), with fewer pixels.

    The returned `Preview.source` holds the original's format, size and alpha, read by the
    same decode (the pixels decoded whole, so the file is not truncated).

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
        return replace(make_preview(source, max_b64_chars=max_b64_chars, max_side=max_side), source=None)
    with open_image(source) as im:
        info = ImageInfo.of(im, source)
        # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale, still at least this size.
        im.draft(None, _fit(im.size, max_side, max_pixels))
        load_pixels(im, source)
        orientation = _orientation(im)
        # Everything happens inside the `with`: closing `im` frees pixels `frame` may share.
        frame = normalise(im)
        if frame.mode == "RGBA" and lowest_value(frame, "A") == 255:
            frame = frame.convert("RGB")  # alpha that hides nothing: JPEG is far smaller
        target = _fit(frame.size, max_side, max_pixels)
        if frame.mode == "RGBA":
            preview = _png_preview(_upright(_resize(frame, target), orientation), budget)
        else:
            target, quality = _jpeg_plan(frame, target, budget)
            preview = _jpeg_preview(_upright(_resize(frame, target), orientation), budget, quality)
    return replace(preview, source=info)


def _upright(frame: Image.Image, orientation: int) -> Image.Image:
    return frame.transpose(_ORIENTATION[orientation]) if orientation in _ORIENTATION else frame


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


def _jpeg_plan(frame: Image.Image, target: tuple[int, int], budget: int) -> tuple[tuple[int, int], int]:
    """The size (within `target`) and quality of a JPEG preview predicted to fit `budget`.

    Quality 80 at `target` when it fits; else the best quality down to 60 at `target` (the
    pixels matter more than the last quality steps); else fewer pixels at quality 60. Each
    guess is measured on a probe (`_probe_bytes_per_pixel`) at that very scale, not
    extrapolated: how fast bytes fall with pixels varies too much (noise loses bytes ~2x
    faster than a photo when shrunk).
    """
    if frame.width * frame.height <= _PROBE_MIN_PIXELS:
        return target, JPEG_QUALITY  # small enough that the encode itself is the cheapest probe
    aim = budget * _SAFETY
    size = target
    predicted = _probe_bytes_per_pixel(frame, size) * size[0] * size[1]
    if predicted <= aim:
        return size, JPEG_QUALITY
    for quality, ratio in _QUALITY_RATIOS:
        if quality >= JPEG_QUALITY_LOW and predicted * ratio <= aim:
            return size, quality
    return _shrunk_size(frame, (max(size), predicted * _LOW_QUALITY_RATIO), aim), JPEG_QUALITY_LOW


def _shrunk_size(frame: Image.Image, over: tuple[float, float], aim: float) -> tuple[int, int]:
    """The largest size whose quality-60 JPEG is predicted to come within `aim`, by probes.

    ``over`` is (long side, predicted bytes) of a size over the aim. Bytes go as the long
    side**slope; the slope starts at `_SHRINK_SLOPE` and is re-measured from the last two
    probes (a secant on the logs), so 1-3 probes land within ~25% under the aim.
    """
    fits: tuple[float, float] | None = None
    slope = _SHRINK_SLOPE
    last = over
    for _ in range(_PLAN_STEPS):
        if fits is None:
            side = over[0] * (aim / over[1]) ** (1 / slope)
        else:  # between the two, on the line through them in log-log
            slope = math.log(over[1] / fits[1]) / math.log(over[0] / fits[0]) if over[0] != fits[0] else slope
            side = fits[0] * (aim / fits[1]) ** (1 / max(slope, 0.5))
        side = max(MIN_PREVIEW_SIDE, min(math.floor(side), math.floor(over[0] * _MIN_STEP ** 0.5)))
        if fits is not None and side <= fits[0]:
            break
        size = _fit(frame.size, side)
        point = (float(max(size)), _probe_bytes_per_pixel(frame, size) * size[0] * size[1] * _LOW_QUALITY_RATIO)
        if point[1] <= aim:
            fits = point
            if point[1] >= aim * _GOOD_ENOUGH or side <= MIN_PREVIEW_SIDE:
                break
        else:
            over = point
            if side <= MIN_PREVIEW_SIDE:
                break
        if last[0] != point[0]:
            slope = min(4.0, max(0.5, math.log(last[1] / point[1]) / math.log(last[0] / point[0])))
        last = point
    return _fit(frame.size, math.floor(fits[0] if fits else MIN_PREVIEW_SIDE))


def _probe_bytes_per_pixel(frame: Image.Image, size: tuple[int, int]) -> float:
    """Quality-80 JPEG bytes per pixel of `frame` resized to `size`, from a probe.

    The probe: four regions of the frame, from the centres of its quarters (so neither one
    flat corner nor a detailed middle decides alone), each resized as the whole would be to
    a `_PROBE_TILE` square, encoded together as one 2x2 mosaic (~0.5 ms).
    """
    tile = _PROBE_TILE
    scale = min(1.0, size[0] / frame.width)
    span = min(math.ceil(tile / scale), frame.width, frame.height)
    mosaic = Image.new(frame.mode, (2 * tile, 2 * tile))
    for i, (qx, qy) in enumerate(((1, 1), (3, 1), (1, 3), (3, 3))):
        left = max(0, min(frame.width - span, frame.width * qx // 4 - span // 2))
        top = max(0, min(frame.height - span, frame.height * qy // 4 - span // 2))
        region = (left, top, left + span, top + span)
        piece = frame.resize((tile, tile), _RESAMPLE, box=region) if span != tile else frame.crop(region)
        mosaic.paste(piece, ((i % 2) * tile, (i // 2) * tile))
    encoded = len(encode(mosaic, "JPEG", quality=JPEG_QUALITY)) - _JPEG_HEADER_BYTES
    return max(encoded, 0) / (4 * tile * tile)


def _jpeg_preview(frame: Image.Image, budget: int, quality: int = JPEG_QUALITY) -> Preview:
    """JPEG at `quality`; over budget (a probe that guessed low): the best lower quality
    that fits, then fewer pixels until it fits."""
    data = encode(frame, "JPEG", quality=quality)
    if len(data) > budget:
        base = dict(_QUALITY_RATIOS).get(quality, 1.0)  # relative to quality 80
        need = base * budget * _SAFETY / len(data)
        lower = next((q for q, ratio in _QUALITY_RATIOS if q < quality and ratio <= need), None)
        if lower is not None:
            data = encode(frame, "JPEG", quality=lower)
        if len(data) > budget:
            at_low = lower == JPEG_QUALITY_LOW or (lower is None and quality <= JPEG_QUALITY_LOW)
            frame, data = _fit_by_size(
                frame,
                budget,
                lambda f: encode(f, "JPEG", quality=JPEG_QUALITY_LOW),
                _JPEG_EXPONENT,
                estimate=len(data) if at_low else len(data) * _LOW_QUALITY_RATIO / base,
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
    if data is None and estimate <= budget:
        data = encode(frame)
        estimate = len(data)
    while data is None or len(data) > budget:
        frame = _shrink(frame, estimate / budget, exponent)
        data = encode(frame)
        estimate = len(data)
    return frame, data


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
