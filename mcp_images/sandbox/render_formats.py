"""The sandbox's animated GIF and SVG answers: real files that show the same labelled card.

GIF: the card is drawn and quantised once; every frame is that picture with its palette's hue
turned a step further and a white marker moved along the card's lower edge, so a viewer sees
it move and a decoder counts ``frames`` distinct frames of ``frame_ms`` each. Quantising once
and changing only the palette and a dot keeps a 16-frame 1024x1024 GIF well under a second.

SVG: a document of its own (no raster inside): the gradient backdrop, the darker card, the
label, the facts and the prompt as ``<text>``, XML-escaped, with characters XML 1.0 forbids
dropped. ``width``/``height`` are the requested pixel size and ``viewBox`` matches them.
"""

from __future__ import annotations

import colorsys
import io
import re
import textwrap
from xml.sax.saxutils import escape, quoteattr

from PIL import Image, ImageDraw

from mcp_images.sandbox.render import Picture, card_box, card_lines, colours, draw, render

SVG_NS = "http://www.w3.org/2000/svg"
MARKER_INDEX = 255  # the palette entry kept white for the moving marker
GIF_COLOURS = 255  # the card's own colours, leaving MARKER_INDEX free
HUE_SWING = 0.5  # how far round the colour wheel the palette turns over one animation
NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def render_output(pic: Picture) -> bytes:
    """The final image in ``pic.output_format``: png/jpeg/webp, an animated gif or an svg."""
    if pic.output_format == "gif":
        return render_gif(pic)
    if pic.output_format == "svg":
        return render_svg(pic).encode("utf-8")
    return render(pic)


def _turned(palette: list[int], turn: float) -> list[int]:
    out: list[int] = []
    for i in range(0, len(palette), 3):
        h, s, v = colorsys.rgb_to_hsv(palette[i] / 255, palette[i + 1] / 255, palette[i + 2] / 255)
        r, g, b = colorsys.hsv_to_rgb((h + turn) % 1.0, s, v)
        out += [int(r * 255), int(g * 255), int(b * 255)]
    return out


def render_gif(pic: Picture) -> bytes:
    """An animated GIF of ``pic.frames`` frames, ``pic.frame_ms`` each, looping forever."""
    base = draw(pic, pic.width, pic.height, text=True).convert("RGB")
    indexed = base.quantize(colors=GIF_COLOURS, method=Image.Quantize.FASTOCTREE)
    palette = (indexed.getpalette() or [])[: GIF_COLOURS * 3]
    palette += [0] * (GIF_COLOURS * 3 - len(palette))
    left, _, right, bottom = card_box(pic.width, pic.height)
    radius = max(min(pic.width, pic.height) // 40, 2)
    y = bottom - 2 * radius
    frames: list[Image.Image] = []
    for i in range(pic.frames):
        frame = indexed.copy()
        frame.putpalette([*_turned(palette, HUE_SWING * i / pic.frames), 255, 255, 255])
        x = left + 2 * radius + (right - left - 4 * radius) * i // max(pic.frames - 1, 1)
        ImageDraw.Draw(frame).ellipse((x - radius, y - radius, x + radius, y + radius), fill=MARKER_INDEX)
        frames.append(frame)
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=pic.frame_ms, loop=0)
    return out.getvalue()


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def xml_text(text: str) -> str:
    """``text`` safe inside an XML element: escaped, with characters XML 1.0 forbids dropped."""
    return escape(NOT_XML.sub("", text))


def _text_lines(pic: Picture, box: tuple[int, int, int, int], size: int) -> list[str]:
    chars = max(int((box[2] - box[0]) / (size * 0.55)) - 2, 8)
    lines = [NOT_XML.sub("", line) for line in card_lines(pic, chars)]
    x, y = box[0] + size, box[1] + size
    out: list[str] = []
    for n, line in enumerate(lines):
        if y > box[3] - size:
            break
        if line:
            out.append(f'<text x="{x}" y="{y + size}">{escape(line)}</text>')
        y += int(size * (1.6 if n == 0 else 1.3))
    return out


def render_svg(pic: Picture) -> str:
    """An SVG document of ``pic``: shapes and the prompt as text, ``pic.width`` x ``pic.height``."""
    w, h = pic.width, pic.height
    dark, light = colours(pic.prompt, pic.index)
    box = card_box(w, h)
    size = max(min(w, h) // 28, 8)
    radius = max(min(w, h) // 40, 2)
    title = quoteattr(NOT_XML.sub("", textwrap.shorten(pic.prompt, 200) or "sandbox image"))
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="{SVG_NS}" width="{w}" height="{h}" viewBox="0 0 {w} {h}" aria-label={title}>',
        f"<title>{xml_text(pic.prompt)}</title>",
        '<defs><linearGradient id="backdrop" x1="0" y1="0" x2="1" y2="1">'
        f'<stop offset="0" stop-color="{_hex(dark)}"/><stop offset="1" stop-color="{_hex(light)}"/>'
        "</linearGradient></defs>",
        f'<rect width="{w}" height="{h}" fill="url(#backdrop)"/>',
        f'<rect x="{box[0]}" y="{box[1]}" width="{box[2] - box[0]}" height="{box[3] - box[1]}" '
        f'fill="#000000" fill-opacity="0.45" stroke="#ffffff" stroke-width="{max(min(w, h) // 200, 1)}"/>',
        f'<circle cx="{box[2] - 3 * radius}" cy="{box[3] - 3 * radius}" r="{radius}" fill="#ffffff"/>',
        f'<g font-family="sans-serif" font-size="{size}" fill="#ffffff">',
        *_text_lines(pic, box, size),
        "</g>",
        "</svg>",
    ]
    return "\n".join(parts) + "\n"
