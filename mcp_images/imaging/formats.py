"""Pillow helpers: sniff formats, probe headers, conversions; opening and modes for `previews`.

Nothing here knows about MCP or HTTP. The checks and conversions take a path or the raw
bytes, and the slow ones (`to_png`, `bw_mask_to_alpha`) are meant to run in a worker thread.
`open_image`, `load_pixels`, `normalise`, `lowest_value` and `encode` work on a Pillow image;
`previews` builds on them.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

from PIL import Image, UnidentifiedImageError

from mcp_images.errors import InputError
from mcp_images.imaging import memory
from mcp_images.imaging.gif import GifError, count_gif_frames
from mcp_images.imaging.mime import MIME_BY_FORMAT

# The one format table lives in `mime` (no Pillow, so the store can use it at start-up);
# kept under this name for the modules that read it from here.
FORMAT_MIME: dict[str, str] = MIME_BY_FORMAT
# Enough of a file's start to name any format we know: 32 bytes for the raster ones, more
# for an SVG (an XML declaration and a comment or two may come before `<svg`).
SNIFF_BYTES = 1024

# Pillow's block cache, unless the server set its heap up to reuse big buffers itself
# (`memory.reuse_big_buffers`, before Pillow is first imported); PILLOW_BLOCKS_MAX, when set,
# is the user's choice and wins.
if "PILLOW_BLOCKS_MAX" not in os.environ and not memory.heap_reused():
    Image.core.set_blocks_max(memory.PILLOW_BLOCKS_KEPT)

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
# An SVG document: optional BOM, whitespace, XML declaration and comments, then the root
# element (or the DOCTYPE that names it, so that `svg` can refuse it by name).
_SVG_HEAD = re.compile(
    rb"\A(?:\xef\xbb\xbf)?\s*(?:<\?xml\s[^>]*\?>\s*)?(?:<!--(?:(?!-->).)*-->\s*)*(?:<svg[\s/>]|<!DOCTYPE\s+svg\b)",
    re.DOTALL,
)
# BMP info-header sizes (offset 14) that real files use; "BM" alone is too weak a signal.
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about an image; `bytes` is the size of the file or data."""

    format: str
    width: int
    height: int
    has_alpha: bool
    bytes: int

    @classmethod
    def of(cls, im: Image.Image, source: Path | bytes) -> ImageInfo:
        """The facts of an opened image ``im`` read from ``source``.

        Raises:
            InputError: ``source`` is a file that is gone or cannot be read.
        """
        n_bytes = len(source) if isinstance(source, bytes) else _file_size(source)
        return cls(format=format_name(im), width=im.width, height=im.height, has_alpha=has_alpha(im), bytes=n_bytes)


def sniff_format(head: bytes) -> str | None:
    """Name an image format from its first bytes, or None.

    32 bytes name the raster formats; an SVG needs up to `SNIFF_BYTES` when an XML
    declaration or comments come before its ``<svg``. Returns one of ``png jpeg webp gif bmp
    tiff svg`` or ``heic``/``avif``, which Pillow cannot read here but which callers should
    name when they refuse them. ``svg`` says only that the text starts like an SVG document;
    `svg.parse_svg` decides whether it is one.
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
    if _SVG_HEAD.match(head):
        return "svg"
    return None


def _sniff_bmff(head: bytes) -> str | None:
    """HEIC or AVIF from an ISO-BMFF ftyp box: the major brand, then compatible brands."""
    end = min(len(head), int.from_bytes(head[:4], "big"))  # the ftyp box only, however long the head
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, end - 3, 4)]
    if any(brand in _AVIF_BRANDS for brand in brands):
        return "avif"  # checked first: AVIF files often list mif1 too
    if any(brand in _HEIC_BRANDS for brand in brands):
        return "heic"
    return None


def probe(source: Path | bytes, *, verify: bool = True) -> ImageInfo:
    """Read format, size and alpha from the header, without decoding the pixels.

    With ``verify``, PNG chunks are also walked and CRC-checked (no decoding) so that a
    truncated download is refused here rather than later; callers that decode the image
    next anyway (the preview) pass ``verify=False`` and let the decode catch it.

    Raises:
        InputError: the file cannot be read, or is not a complete image in a known format.
    """
    with open_image(source) as im:
        info = ImageInfo.of(im, source)
        try:
            if verify:
                im.verify()
                if info.format == "gif":
                    _check_gif(source)
        except (OSError, SyntaxError, EOFError, GifError) as exc:
            raise InputError(f"{_describe(source)} is truncated or corrupt ({exc})") from exc
    return info


def probe_any(source: Path | bytes, *, verify: bool = True) -> ImageInfo:
    """`probe`, and an SVG document too (its size from width/height or viewBox, see `svg`).

    For the places that list or save results, where an SVG is a picture like any other;
    inputs keep `probe`, which refuses SVG by name.

    Raises:
        InputError: not a complete image in a known format, or an SVG `svg.parse_svg` refuses.
    """
    from mcp_images.imaging.svg import MAX_SVG_BYTES, parse_svg

    if isinstance(source, bytes):
        data = source
    else:
        try:
            with source.open("rb") as fp:
                data = fp.read(SNIFF_BYTES)
                if sniff_format(data) == "svg":
                    data += fp.read(MAX_SVG_BYTES + 1 - len(data))  # parse_svg refuses anything longer
        except OSError:
            return probe(source, verify=verify)  # which names the problem
    if sniff_format(data[:SNIFF_BYTES]) != "svg":
        return probe(source, verify=verify)
    doc = parse_svg(data)
    return ImageInfo(format="svg", width=doc.width, height=doc.height, has_alpha=True, bytes=len(data))


def _check_gif(source: Path | bytes) -> None:
    """Every frame of a GIF is there (Pillow's verify() checks nothing for GIF).

    Raises:
        GifError: a block is cut short or out of order.
        OSError: the file cannot be read.
    """
    if isinstance(source, bytes):
        count_gif_frames(io.BytesIO(source))
        return
    with source.open("rb") as fp:
        count_gif_frames(fp)


def to_png(source: Path | bytes) -> bytes:
    """Re-encode an image (first frame of a GIF or TIFF) as an 8-bit PNG, keeping alpha.

    Raises:
        InputError: the source is not a readable image.
    """
    with open_image(source) as im:
        load_pixels(im, source)
        frame = normalise(im)
        # A profile only describes the pixels if the conversion kept their colour space.
        same_space = frame.mode == im.mode or (im.mode in _RGB_MODES and frame.mode != "L")
        icc = im.info.get("icc_profile") if same_space else None
        return encode(frame, "PNG", icc_profile=icc)


def bw_mask_to_alpha(source: Path | bytes, *, edit_area: Literal["white", "black"] = "white") -> bytes:
    """Turn a black-and-white mask into the RGBA PNG that OpenAI expects.

    Pixels of the `edit_area` colour (grey level >= 128 counts as white) get alpha 0,
    which marks where to edit; all others are opaque.

    Raises:
        InputError: the source is unreadable, already has transparency, or marks nothing.
    """
    with open_image(source) as im:
        load_pixels(im, source)
        frame = normalise(im)
        if frame.mode == "RGBA":
            if lowest_value(frame, "A") < 255:
                raise InputError(
                    "the mask already has transparency; send it as it is (transparent pixels mark the edit area)",
                    field="mask",
                )
            frame = frame.convert("RGB")
        gray = frame.convert("L")
    opaque_below, opaque_above = (255, 0) if edit_area == "white" else (0, 255)
    alpha = gray.point([opaque_below] * 128 + [opaque_above] * 128)
    if lowest_value(alpha, "L") != 0:
        other = "black" if edit_area == "white" else "white"
        raise InputError(
            f"the mask has no {edit_area} pixels, so it marks nothing to edit (did you mean edit_area='{other}'?)",
            field="mask",
        )
    return encode(Image.merge("RGBA", (gray, gray, gray, alpha)), "PNG")


# --- opening and modes (shared with `previews`) -----------------------------------------


def open_image(source: Path | bytes) -> Image.Image:
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


def load_pixels(im: Image.Image, source: Path | bytes) -> None:
    """Decode the pixels.

    Raises:
        InputError: the data ends early or is corrupt.
    """
    try:
        im.load()
    except (OSError, SyntaxError, EOFError) as exc:
        raise InputError(f"{_describe(source)} is truncated or corrupt ({exc})") from exc


def has_alpha(im: Image.Image) -> bool:
    """Whether an opened image has an alpha band or a transparent colour."""
    return im.mode in _ALPHA_MODES or (im.mode in _TRNS_MODES and "transparency" in im.info)


def format_name(im: Image.Image) -> str:
    """Our name for an opened image's format (``png``, ``jpeg``...)."""
    return _FORMAT_NAMES.get(im.format or "", (im.format or "unknown").lower())


def normalise(im: Image.Image) -> Image.Image:
    """An 8-bit L, RGB or RGBA version of a loaded image (`im` itself when it already is)."""
    if has_alpha(im):
        return im if im.mode == "RGBA" else im.convert("RGBA")
    if im.mode in ("L", "RGB"):
        return im
    if im.mode.startswith("I;16"):
        # convert("L") would clip 16-bit values at 255 (a white image): scale instead.
        return im.convert("I").point(lambda v: v / 256).convert("L")
    return im.convert("L" if im.mode == "1" else "RGB")


def lowest_value(frame: Image.Image, band: str) -> int:
    """The lowest value in one 8-bit band."""
    low, _ = cast("tuple[int, int]", frame.getchannel(band).getextrema())
    return low


def encode(frame: Image.Image, fmt: str, **params: object) -> bytes:
    """``frame`` saved as ``fmt`` (a Pillow format name) with ``params``, in memory."""
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
        head = source[:SNIFF_BYTES]
    else:
        try:
            with source.open("rb") as fp:
                head = fp.read(SNIFF_BYTES)
        except OSError:
            head = b""
    kind = sniff_format(head)
    if kind in ("heic", "avif", "svg"):
        return f"{_describe(source)} is {kind.upper()}, which is not supported here; convert it to PNG, JPEG or WebP"
    return f"{_describe(source)} is not a {_SUPPORTED_TEXT} image"
