"""Pillow helpers: sniff formats, probe headers, previews under a base64 budget, conversions.

Nothing here knows about MCP or HTTP. Every function takes a path or the raw bytes, and the
slow ones (`make_preview`, `to_png`, `bw_mask_to_alpha`) are meant to run in a worker thread.

Previews are measured the way an MCP client measures them: as base64 text. Claude Desktop
refuses a tool result above 1 MiB, so `make_preview` promises
``base64_len(len(preview.data)) <= max_b64_chars`` and shrinks until it holds.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

from PIL import Image, UnidentifiedImageError

from mcp_images.errors import InputError

FORMAT_MIME: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}

# Pillow plugins we let Image.open try: the formats above and nothing else (no EPS, PSD, ...).
_OPEN_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
# Pillow format name -> ours. MPO is a camera JPEG carrying extra pictures.
_FORMAT_NAMES = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "WEBP": "webp", "GIF": "gif"}
_FORMAT_NAMES |= {"BMP": "bmp", "TIFF": "tiff"}
_SUPPORTED_TEXT = "PNG, JPEG, WebP, GIF, BMP or TIFF"

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_TRNS_MODES = frozenset({"P", "L", "RGB"})  # alpha only through info["transparency"]
_RGB_MODES = frozenset({"RGB", "RGBA", "RGBa", "P", "PA"})

# ISO-BMFF major/compatible brands (the box after "ftyp").
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
# BMP info-header sizes (offset 14) that real files use; "BM" alone is too weak a signal.
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

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
class ImageInfo:
    """What the header says about an image; `bytes` is the size of the file or data."""

    format: str
    width: int
    height: int
    has_alpha: bool
    bytes: int


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


def sniff_format(head: bytes) -> str | None:
    """Name an image format from its first bytes (32 are enough), or None.

    Returns one of ``png jpeg webp gif bmp tiff`` or ``heic``/``avif``, which Pillow cannot
    read here but which callers should name when they refuse them.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[:2] == b"BM" and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "bmp"
    if head[4:8] == b"ftyp":
        return _sniff_bmff(head)
    return None


def _sniff_bmff(head: bytes) -> str | None:
    """HEIC or AVIF from an ISO-BMFF ftyp box: the major brand, then compatible brands."""
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, len(head) - 3, 4)]
    if any(brand in _AVIF_BRANDS for brand in brands):
        return "avif"  # checked first: AVIF files often list mif1 too
    if any(brand in _HEIC_BRANDS for brand in brands):
        return "heic"
    return None


def probe(source: Path | bytes) -> ImageInfo:
    """Read format, size and alpha from the header, without decoding the pixels.

    PNG chunks are also walked and CRC-checked (cheap, no decoding) so that a truncated
    download is refused here rather than later.

    Raises:
        InputError: the file cannot be read, or is not a complete image in a known format.
    """
    n_bytes = len(source) if isinstance(source, bytes) else _file_size(source)
    with _open(source) as im:
        info = ImageInfo(
            format=_FORMAT_NAMES.get(im.format or "", (im.format or "unknown").lower()),
            width=im.width,
            height=im.height,
            has_alpha=_has_alpha(im),
            bytes=n_bytes,
        )
        try:
            im.verify()
        except (OSError, SyntaxError, EOFError) as exc:
            raise InputError(f"{_describe(source)} is truncated or corrupt ({exc})") from exc
    return info


def make_preview(source: Path | bytes, *, max_b64_chars: int, max_side: int = 1024) -> Preview:
    """Encode a preview whose base64 text fits in `max_b64_chars`.

    The long side is at most `max_side` (never upscaled). Opaque images become JPEG (quality
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
    with _open(source) as im:
        max_pixels = budget / _MIN_BYTES_PER_PIXEL
        # JPEG only: libjpeg decodes at 1/2, 1/4 or 1/8 scale, still at least this size.
        im.draft(None, _fit(im.size, max_side, max_pixels))
        _load(im, source)
        orientation = _orientation(im)
        # Everything happens inside the `with`: closing `im` frees pixels `frame` may share.
        frame = _resize(_normalise(im), _fit(im.size, max_side, max_pixels))
        if orientation in _ORIENTATION:
            frame = frame.transpose(_ORIENTATION[orientation])
        if frame.mode == "RGBA" and _lowest(frame, "A") == 255:
            frame = frame.convert("RGB")  # alpha that hides nothing: JPEG is far smaller
        if frame.mode == "RGBA":
            return _png_preview(frame, budget)
        return _jpeg_preview(frame, budget)


def to_png(source: Path | bytes) -> bytes:
    """Re-encode an image (first frame of a GIF or TIFF) as an 8-bit PNG, keeping alpha.

    Raises:
        InputError: the source is not a readable image.
    """
    with _open(source) as im:
        _load(im, source)
        frame = _normalise(im)
        # A profile only describes the pixels if the conversion kept their colour space.
        same_space = frame.mode == im.mode or (im.mode in _RGB_MODES and frame.mode != "L")
        icc = im.info.get("icc_profile") if same_space else None
        return _save(frame, "PNG", icc_profile=icc)


def bw_mask_to_alpha(source: Path | bytes, *, edit_area: Literal["white", "black"] = "white") -> bytes:
    """Turn a black-and-white mask into the RGBA PNG that OpenAI expects.

    Pixels of the `edit_area` colour (grey level >= 128 counts as white) get alpha 0,
    which marks where to edit; all others are opaque.

    Raises:
        InputError: the source is unreadable, already has transparency, or marks nothing.
    """
    with _open(source) as im:
        _load(im, source)
        frame = _normalise(im)
        if frame.mode == "RGBA":
            if _lowest(frame, "A") < 255:
                raise InputError(
                    "the mask already has transparency; send it as it is (transparent pixels mark the edit area)",
                    field="mask",
                )
            frame = frame.convert("RGB")
        gray = frame.convert("L")
    opaque_below, opaque_above = (255, 0) if edit_area == "white" else (0, 255)
    alpha = gray.point([opaque_below] * 128 + [opaque_above] * 128)
    if _lowest(alpha, "L") != 0:
        other = "black" if edit_area == "white" else "white"
        raise InputError(
            f"the mask has no {edit_area} pixels, so it marks nothing to edit (did you mean edit_area='{other}'?)",
            field="mask",
        )
    return _save(Image.merge("RGBA", (gray, gray, gray, alpha)), "PNG")


# --- previews ---------------------------------------------------------------------------


def _jpeg_preview(frame: Image.Image, budget: int) -> Preview:
    """JPEG at quality 80; over budget: quality 60, then fewer pixels until it fits."""
    data = _save(frame, "JPEG", quality=JPEG_QUALITY)
    if len(data) > budget:
        frame, data = _fit_by_size(
            frame,
            budget,
            lambda f: _save(f, "JPEG", quality=JPEG_QUALITY_LOW),
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
        plain = _save(frame, "PNG")
        if len(plain) <= budget:
            return Preview(plain, "image/png", frame.width, frame.height)
    frame, data = _fit_by_size(frame, budget, _palette_png, _PNG_EXPONENT, estimate=len(data), data=data)
    return Preview(data, "image/png", frame.width, frame.height)


def _palette_png(frame: Image.Image) -> bytes:
    # FASTOCTREE is the built-in quantizer that keeps alpha; zlib level 4 costs half of
    # level 6 for ~10% more bytes.
    palette = frame.quantize(256, method=Image.Quantize.FASTOCTREE)
    return _save(palette, "PNG", compress_level=_PALETTE_PNG_LEVEL)


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


# --- opening and modes ------------------------------------------------------------------


def _open(source: Path | bytes) -> Image.Image:
    """Open lazily: only the header is read until load().

    Raises:
        InputError: unreadable file, unknown or unsupported format, or far too many pixels.
    """
    fp: Path | IO[bytes] = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return Image.open(fp, formats=_OPEN_FORMATS)
    except UnidentifiedImageError as exc:
        raise InputError(_unidentified_message(source)) from exc
    except Image.DecompressionBombError as exc:
        raise InputError(f"{_describe(source)} has too many pixels to open safely") from exc
    except FileNotFoundError as exc:
        raise InputError(f"no such file: {source}") from exc
    except OSError as exc:  # a header cut short, a directory, no permission
        raise InputError(f"cannot read {_describe(source)}: {exc}") from exc


def _load(im: Image.Image, source: Path | bytes) -> None:
    """Decode the pixels.

    Raises:
        InputError: the data ends early or is corrupt.
    """
    try:
        im.load()
    except (OSError, SyntaxError, EOFError) as exc:
        raise InputError(f"{_describe(source)} is truncated or corrupt ({exc})") from exc


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in _ALPHA_MODES or (im.mode in _TRNS_MODES and "transparency" in im.info)


def _normalise(im: Image.Image) -> Image.Image:
    """An 8-bit L, RGB or RGBA version of a loaded image (`im` itself when it already is)."""
    if _has_alpha(im):
        return im if im.mode == "RGBA" else im.convert("RGBA")
    if im.mode in ("L", "RGB"):
        return im
    if im.mode.startswith("I;16"):
        # convert("L") would clip 16-bit values at 255 (a white image): scale instead.
        return im.convert("I").point(lambda v: v / 256).convert("L")
    return im.convert("L" if im.mode == "1" else "RGB")


def _lowest(frame: Image.Image, band: str) -> int:
    """The lowest value in one 8-bit band."""
    low, _ = cast("tuple[int, int]", frame.getchannel(band).getextrema())
    return low


def _save(frame: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    frame.save(buffer, fmt, **params)
    return buffer.getvalue()


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError as exc:
        raise InputError(f"no such file: {path}") from exc
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc


def _describe(source: Path | bytes) -> str:
    return "the image data" if isinstance(source, bytes) else str(source)


def _unidentified_message(source: Path | bytes) -> str:
    """Name HEIC/AVIF when that is what it is, since those are a common, fixable case."""
    if isinstance(source, bytes):
        head = source[:32]
    else:
        try:
            with source.open("rb") as fp:
                head = fp.read(32)
        except OSError:
            head = b""
    kind = sniff_format(head)
    if kind in ("heic", "avif"):
        return f"{_describe(source)} is {kind.upper()}, which is not supported; convert it to PNG, JPEG or WebP"
    return f"{_describe(source)} is not a {_SUPPORTED_TEXT} image"
