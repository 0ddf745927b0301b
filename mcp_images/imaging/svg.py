"""SVG results: check the document, read its size, and rasterise a copy for the preview.

The saved file is the document exactly as the upstream sent it; only the copy handed to
resvg is cleaned. Threats, all from a hostile or broken upstream:

- Entity tricks (billion laughs, external entities): a DOCTYPE or ENTITY declaration is
  refused before any parser sees the text, and the document is capped at `MAX_SVG_BYTES`.
- Reading local files into a preview: resvg loads ``<image>``/``<feImage>`` hrefs that are
  absolute paths, and relative ones against the working directory, whatever its
  ``resources_dir`` says (measured with resvg-py 0.5.0; it never fetches http(s) or
  ``file:`` URLs). So every href but a same-document ``#id`` or a raster ``data:`` image is
  dropped from the rendered copy.
- Deep nesting: refused past `MAX_DEPTH` levels, before the (recursive) serialiser runs.

resvg_py is imported inside `rasterise`: it is only needed when an SVG is previewed.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from mcp_images.errors import InputError
from mcp_images.units import format_bytes

__all__ = ["MAX_DEPTH", "MAX_SVG_BYTES", "SvgDocument", "parse_svg", "rasterise"]

MAX_SVG_BYTES = 8 * 1024 * 1024  # generated SVGs are tens of KB; a traced photo a few MB
MAX_DEPTH = 256  # element nesting; real documents stay under ~30
MAX_SIDE = 1_000_000  # px; a larger width or height is a broken attribute, not a picture

_SVG_NS = "http://www.w3.org/2000/svg"
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"
_HREF_ATTRS = ("href", _XLINK_HREF)
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_SAFE_DATA_HREF = re.compile(r"\s*data:image/(png|jpeg|jpg|gif|webp)[;,]", re.IGNORECASE)
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_LENGTH = re.compile(rf"\s*({_NUMBER})\s*(px|pt|pc|mm|cm|in)?\s*")
# CSS pixels per unit (96 per inch); em, ex and % have no absolute size here.
_PX_PER_UNIT = {"px": 1.0, "pt": 96 / 72, "pc": 16.0, "mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0}


@dataclass(frozen=True)
class SvgDocument:
    """A checked SVG: its size in CSS pixels and the cleaned markup resvg renders."""

    width: int
    height: int
    markup: str
    dropped_hrefs: int  # external references left out of the rendered copy


def parse_svg(data: bytes) -> SvgDocument:
    """Check an SVG document and read its size from width/height or viewBox.

    Raises:
        InputError: too large, not UTF-8, a DOCTYPE/ENTITY declaration, not well-formed XML,
            a root other than ``<svg>``, nested too deeply, or no usable size.
    """
    if len(data) > MAX_SVG_BYTES:
        raise InputError(f"the SVG is {format_bytes(len(data))}; at most {format_bytes(MAX_SVG_BYTES)} is accepted")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"the SVG is not UTF-8 text (byte {exc.start} is not UTF-8)") from exc
    declaration = _DECLARATION.search(text)
    if declaration:
        raise InputError(
            f"the SVG has a {declaration.group(1).upper()} declaration, which is refused "
            "(entities can expand without bound or read files)"
        )
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise InputError(f"the SVG is not well-formed XML ({exc})") from exc
    if root.tag not in (f"{{{_SVG_NS}}}svg", "svg"):
        raise InputError(f"the document's root element is <{_local_name(root.tag)}>, not <svg>")
    dropped = _drop_external_hrefs(root)
    width, height = svg_size(root.get("width"), root.get("height"), root.get("viewBox"))
    # resvg renders at these pixel sizes; with no viewBox a user unit stays one pixel.
    root.set("width", str(width))
    root.set("height", str(height))
    return SvgDocument(width, height, ET.tostring(root, encoding="unicode"), dropped)


def rasterise(doc: SvgDocument, width: int, height: int) -> bytes:
    """Render ``doc`` as a PNG that fits in ``width`` x ``height`` (aspect ratio kept).

    Raises:
        InputError: resvg cannot render the document.
    """
    import resvg_py

    try:
        return resvg_py.svg_to_bytes(svg_string=doc.markup, width=width, height=height)
    except ValueError as exc:
        raise InputError(f"the SVG cannot be rendered ({exc})") from exc


def svg_size(width: str | None, height: str | None, view_box: str | None) -> tuple[int, int]:
    """Pixel size from the root's width, height and viewBox, as a browser sizes an ``<img>``.

    A missing or relative (``%``, ``em``) width or height comes from the viewBox, keeping its
    aspect ratio when the other side is known.

    Raises:
        InputError: neither the attributes nor the viewBox give a size, or it is zero or absurd.
    """
    w, h = _length(width), _length(height)
    box = _view_box(view_box)
    if box is not None:
        box_w, box_h = box
        if w is None and h is None:
            w, h = box_w, box_h
        elif w is None and h is not None:
            w = h * box_w / box_h
        elif h is None and w is not None:
            h = w * box_h / box_w
    if w is None or h is None:
        raise InputError("the SVG has no size: its <svg> needs width and height in absolute units, or a viewBox")
    if not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise InputError(f"the SVG's size {w:g}x{h:g} is not usable (each side must be 1 to {MAX_SIDE:,} px)")
    return max(1, round(w)), max(1, round(h))


def _length(value: str | None) -> float | None:
    """An absolute SVG length in px, or None (missing, relative or unparsable)."""
    match = _LENGTH.fullmatch(value) if value is not None else None
    if match is None:
        return None
    number = float(match.group(1)) * _PX_PER_UNIT[match.group(2) or "px"]
    return number if math.isfinite(number) else None


def _view_box(value: str | None) -> tuple[float, float] | None:
    """The viewBox's width and height when both are positive and finite, else None."""
    if value is None:
        return None
    parts = re.split(r"[\s,]+", value.strip())
    try:
        numbers = [float(part) for part in parts]
    except ValueError:
        return None
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        return None
    _, _, box_w, box_h = numbers
    return (box_w, box_h) if box_w > 0 and box_h > 0 else None


def _drop_external_hrefs(root: ET.Element) -> int:
    """Remove every href that could make resvg read a file; count them.

    Walks with an explicit stack so that depth is checked before anything recurses.

    Raises:
        InputError: the elements nest deeper than `MAX_DEPTH`.
    """
    dropped = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"the SVG nests elements more than {MAX_DEPTH} levels deep")
        for name in _HREF_ATTRS:
            value = element.get(name)
            if value is not None and not value.strip().startswith("#") and not _SAFE_DATA_HREF.match(value):
                del element.attrib[name]
                dropped += 1
        stack.extend((child, depth + 1) for child in element)
    return dropped


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
