"""Placeholder pictures for the sandbox: real, decodable images that nobody mistakes for art.

Each picture honours what was asked (pixel size, transparency, format, compression) and shows
the prompt, the model, the size, the quality and the index on a card labelled
"SANDBOX — not a real model". Rendering is cheap on purpose (a small gradient scaled up, a
handful of draw calls, fast PNG compression) because tests and benchmarks make many of them.

Also here: measuring uploads by content (`describe_upload`), which the edit checks need.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import textwrap
from dataclasses import dataclass
from functools import cache

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from mcp_images.catalog.edit_rules import InputFacts

LABEL = "SANDBOX \u2014 not a real model"
# The built-in font has no em dash: the picture spells the label with a plain hyphen.
DRAWN_LABEL = "SANDBOX - not a real model"
PNG_COMPRESS_LEVEL = 1  # speed over size: these images are thrown away
WEBP_METHOD = 0  # fastest WebP encoder setting
MAX_PROMPT_LINES = 6
PARTIAL_SHRINK = (24, 12, 6)  # partial image i is rendered 1/PARTIAL_SHRINK[i] size, then blown up
GOLDEN = 0.618033988749895  # hue step between images of one call: far apart, never repeating

_DARKEN = [int(v * 0.55) for v in range(256)] * 3  # lookup table: the card is a darker pane
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
MIME_TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Picture:
    """What to draw: everything the card shows and how to encode it."""

    prompt: str
    model: str
    width: int
    height: int
    quality: str
    index: int = 0
    count: int = 1
    transparent: bool = False
    output_format: str = "png"
    compression: int | None = None  # 0-100 for jpeg/webp; None = the upstream default (100)
    source: bytes | None = None  # edits: the first input image, shown shrunk on the card
    markup: bytes | None = None  # edits: the markup drawn over that first image
    frames: int = 1  # output_format=gif: how many frames
    frame_ms: int = 200  # output_format=gif: the delay of each frame, a multiple of 10 ms


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def colours(prompt: str, index: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two colours for the gradient: the hue comes from the prompt and moves with the index."""
    seed = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:2], "big") / 65536
    hue = (seed + index * GOLDEN) % 1.0
    dark = colorsys.hsv_to_rgb(hue, 0.65, 0.45)
    light = colorsys.hsv_to_rgb((hue + 0.08) % 1.0, 0.45, 0.95)
    return (
        (int(dark[0] * 255), int(dark[1] * 255), int(dark[2] * 255)),
        (int(light[0] * 255), int(light[1] * 255), int(light[2] * 255)),
    )


def _gradient(width: int, height: int, pic: Picture) -> Image.Image:
    """A diagonal two-colour gradient: made at 64x64 and scaled, which costs next to nothing."""
    dark, light = colours(pic.prompt, pic.index)
    down = Image.linear_gradient("L").resize((64, 64))
    ramp = ImageChops.add(down, down.transpose(Image.Transpose.ROTATE_90), scale=2.0)
    small = ImageOps.colorize(ramp, black=dark, white=light)
    return small.resize((width, height), Image.Resampling.BILINEAR)


def card_box(width: int, height: int) -> tuple[int, int, int, int]:
    mx, my = max(width // 10, 4), max(height // 10, 4)
    return mx, my, width - mx, height - my


def card_lines(pic: Picture, chars: int) -> list[str]:
    wrapped = textwrap.wrap(pic.prompt, width=max(chars, 8)) or ["(empty prompt)"]
    if len(wrapped) > MAX_PROMPT_LINES:
        wrapped = [
            *wrapped[: MAX_PROMPT_LINES - 1],
            wrapped[MAX_PROMPT_LINES - 1][: chars - 1] + "\u2026",
        ]
    facts = f"{pic.model} \u00b7 {pic.width}x{pic.height} \u00b7 {pic.quality}"
    return [DRAWN_LABEL, facts, f"image {pic.index + 1} of {pic.count}", "", *wrapped]


def draw(pic: Picture, width: int, height: int, text: bool) -> Image.Image:
    """The picture at ``width x height`` (the final size, or a small one for partials)."""
    backdrop = _gradient(width, height, pic)
    box = card_box(width, height)
    card = backdrop.crop(box).point(_DARKEN)
    if pic.transparent:
        canvas = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        canvas.paste(card.convert("RGBA"), box[:2])
    else:
        backdrop.paste(card, box[:2])
        canvas = backdrop.convert("RGBA") if pic.output_format != "jpeg" else backdrop
    draw = ImageDraw.Draw(canvas)
    ink = (255, 255, 255, 255) if canvas.mode == "RGBA" else (255, 255, 255)
    shade = (0, 0, 0, 255) if canvas.mode == "RGBA" else (0, 0, 0)
    draw.rectangle(box, outline=ink, width=max(min(width, height) // 200, 1))
    if pic.source is not None:
        _paste_source(canvas, pic.source, box, pic.markup)
    if text:
        size = max(min(width, height) // 28, 8)
        font = _font(size)
        chars = max(int((box[2] - box[0]) / (size * 0.55)) - 2, 8)
        y = box[1] + size
        for n, line in enumerate(card_lines(pic, chars)):
            draw.text((box[0] + size + 1, y + 1), line, font=font, fill=shade)
            draw.text((box[0] + size, y), line, font=font, fill=ink)
            y += int(size * (1.6 if n == 0 else 1.3))
            if y > box[3] - size:
                break
    return canvas


def _paste_source(canvas: Image.Image, source: bytes, box: tuple[int, int, int, int], markup: bytes | None) -> None:
    """Edits: a shrunken copy of the first input (with the markup over it) in the card's corner."""
    with Image.open(io.BytesIO(source)) as img:
        thumb = img.convert("RGBA")
    if markup is not None:  # the edit checks made sure it is a PNG of the same size
        with Image.open(io.BytesIO(markup)) as over:
            thumb.alpha_composite(over.convert("RGBA"))
    side = max((box[3] - box[1]) // 3, 1)
    thumb.thumbnail((side, side))
    at = (box[2] - thumb.width - side // 8, box[3] - thumb.height - side // 8)
    if canvas.mode == "RGBA":
        canvas.alpha_composite(thumb, at)
    else:
        canvas.paste(thumb, at, thumb)


def encode(img: Image.Image, output_format: str, compression: int | None) -> bytes:
    """Encode as the upstream would: PNG, or JPEG/WebP with ``compression`` as the quality."""
    fmt = _PIL_FORMATS[output_format]
    out = io.BytesIO()
    if fmt == "PNG":
        img.save(out, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    elif fmt == "JPEG":
        img.convert("RGB").save(out, "JPEG", quality=max(compression if compression is not None else 100, 1))
    else:
        quality = compression if compression is not None else 100
        img.save(out, "WEBP", quality=quality, method=WEBP_METHOD)
    return out.getvalue()


def render(pic: Picture) -> bytes:
    """The final image, encoded."""
    return encode(draw(pic, pic.width, pic.height, text=True), pic.output_format, pic.compression)


def render_partial(pic: Picture, step: int) -> bytes:
    """Partial image ``step`` of a stream: drawn tiny and blown up, so it looks blurred."""
    shrink = PARTIAL_SHRINK[min(step, len(PARTIAL_SHRINK) - 1)]
    small = draw(pic, max(pic.width // shrink, 1), max(pic.height // shrink, 1), text=False)
    return encode(
        small.resize((pic.width, pic.height), Image.Resampling.BILINEAR),
        pic.output_format,
        pic.compression,
    )


def describe_upload(label: str, data: bytes) -> InputFacts:
    """What the edit checks need to know of an uploaded file, read from its content."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = {"mpo": "jpeg"}.get((img.format or "").lower(), (img.format or "").lower()) or None
            has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
            return InputFacts(
                label=label,
                format=fmt,
                width=img.width,
                height=img.height,
                bytes=len(data),
                has_alpha=has_alpha,
            )
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError):
        return InputFacts(label=label, format=None, width=0, height=0, bytes=len(data), has_alpha=False)
