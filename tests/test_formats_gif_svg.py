"""GIF and SVG results: saved as sent, previewed as a still raster within the budget."""

from __future__ import annotations

import base64
import io
import math
import random
import socket
from pathlib import Path
from typing import cast

import pytest
from mcp import Client
from mcp.types import BlobResourceContents
from PIL import Image, ImageDraw

from mcp_images.catalog.models import ImageParams
from mcp_images.errors import InputError, UpstreamError
from mcp_images.imaging.formats import probe
from mcp_images.imaging.previews import base64_len, make_preview
from mcp_images.runtime import Runtime
from mcp_images.work.saving import SavedImage, save_and_preview, save_bytes
from tests.conftest import make_settings

BUDGET = 60_000  # base64 chars: small enough that a photo-like frame must be squeezed

GRADIENT_SVG = b"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!-- made by a model -->
<svg xmlns="http://www.w3.org/2000/svg" width="640" height="320" viewBox="0 0 64 32">
  <defs>
    <linearGradient id="sky" x1="0" y1="0" x2="0" y2="1">
      <stop offset="0" stop-color="#1d4ed8"/><stop offset="1" stop-color="#f59e0b"/>
    </linearGradient>
  </defs>
  <rect width="64" height="32" fill="url(#sky)"/>
  <circle cx="48" cy="10" r="5" fill="#fde68a"/>
  <path d="M0 32 L20 14 L34 26 L44 18 L64 32 Z" fill="#14532d"/>
</svg>
"""


def runtime(tmp_path: Path, **kw: object) -> Runtime:
    return Runtime(make_settings(tmp_path, None, **kw))


def params() -> ImageParams:
    return ImageParams(prompt="a fox at dusk", model="gpt-image-1")


def animated_gif(frames: int = 4, size: tuple[int, int] = (320, 200)) -> bytes:
    """A photo-like animation: noisy gradients with a moving disc, and a comment to keep."""
    rng = random.Random(7)
    pictures = []
    for i in range(frames):
        frame = Image.linear_gradient("L").resize(size).convert("RGB")
        noise = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
        frame = Image.blend(frame, noise, 0.35)
        x = 20 + i * 60
        ImageDraw.Draw(frame).ellipse((x, 60, x + 80, 140), fill=(220, 40 + 50 * i, 30))
        pictures.append(frame)
    out = io.BytesIO()
    pictures[0].save(
        out, "GIF", save_all=True, append_images=pictures[1:], duration=120, loop=0, comment=b"provenance: test"
    )
    return out.getvalue()


def preview_image(saved: SavedImage) -> Image.Image:
    assert saved.preview is not None
    picture = Image.open(io.BytesIO(saved.preview.data))
    picture.load()
    return picture


# --- GIF ----------------------------------------------------------------------------------


def test_an_animated_gif_is_saved_byte_for_byte_with_its_own_size_and_type(tmp_path: Path) -> None:
    data = animated_gif()
    saved = save_and_preview(runtime(tmp_path), data, params(), BUDGET, [])
    stored = saved.stored
    assert stored.path.read_bytes() == data
    assert stored.path.suffix == ".gif"
    assert (stored.width, stored.height, stored.mime_type) == (320, 200, "image/gif")
    with Image.open(stored.path) as kept:
        assert getattr(kept, "n_frames", 1) == 4 and kept.info.get("comment") == b"provenance: test"


def test_an_animated_gif_gets_a_still_preview_of_its_first_frame_within_the_budget(tmp_path: Path) -> None:
    data = animated_gif()
    saved = save_and_preview(runtime(tmp_path), data, params(), BUDGET, [])
    preview = preview_image(saved)
    assert saved.preview is not None and saved.preview.mime_type in ("image/jpeg", "image/png", "image/webp")
    assert base64_len(len(saved.preview.data)) <= BUDGET
    assert getattr(preview, "n_frames", 1) == 1
    with Image.open(io.BytesIO(data)) as original:
        first = original.convert("RGB").resize(preview.size)
    # The disc of frame 1 sits at x 20..100: the preview shows it there, not a later frame's.
    x, y = round(60 * preview.width / 320), round(100 * preview.height / 200)
    assert _close(preview.convert("RGB").getpixel((x, y)), first.getpixel((x, y)))


def test_inline_full_still_sends_a_gif_as_a_preview_not_the_animation(tmp_path: Path) -> None:
    data = animated_gif(frames=3, size=(96, 64))
    saved = save_and_preview(runtime(tmp_path, inline="full"), data, params(), 800_000, [])
    assert not saved.inline_full and saved.preview is not None


def test_a_gif_cut_short_in_a_later_frame_is_an_upstream_error(tmp_path: Path) -> None:
    data = animated_gif()
    with pytest.raises(UpstreamError, match="truncated"):
        save_and_preview(runtime(tmp_path), data[: len(data) * 3 // 4], params(), BUDGET, [])


def test_probe_walks_a_gif_to_its_last_frame_and_accepts_a_missing_trailer() -> None:
    data = animated_gif(frames=3, size=(48, 48))
    assert probe(data).format == "gif"
    with pytest.raises(InputError, match="truncated"):
        probe(data[: len(data) - len(data) // 5])
    assert data.endswith(b"\x3b")  # the trailer: browsers show a GIF without it, and so do we
    assert probe(data[:-1]).width == 48


@pytest.mark.anyio
async def test_reading_a_saved_gif_back_as_a_resource_gives_image_gif(tmp_path: Path) -> None:
    from mcp_images.server.build import create_server

    settings = make_settings(tmp_path, None)
    data = animated_gif(frames=3, size=(64, 48))
    stored = save_bytes(Runtime(settings), data, params())
    async with Client(create_server(settings)) as client:
        read = await client.read_resource(stored.uri)
    blob = read.contents[0]
    assert isinstance(blob, BlobResourceContents)
    assert blob.mime_type == "image/gif"
    assert base64.b64decode(blob.blob) == data


# --- SVG ----------------------------------------------------------------------------------


def test_an_svg_is_saved_as_the_document_it_was(tmp_path: Path) -> None:
    saved = save_and_preview(runtime(tmp_path), GRADIENT_SVG, params(), BUDGET, [])
    stored = saved.stored
    assert stored.path.read_bytes() == GRADIENT_SVG
    assert stored.path.suffix == ".svg"
    assert (stored.format, stored.mime_type, stored.width, stored.height) == ("svg", "image/svg+xml", 640, 320)


def test_an_svg_preview_is_a_raster_with_the_svgs_aspect_ratio_within_the_budget(tmp_path: Path) -> None:
    saved = save_and_preview(runtime(tmp_path), GRADIENT_SVG, params(), BUDGET, [])
    preview = preview_image(saved)
    assert saved.preview is not None and saved.preview.mime_type in ("image/jpeg", "image/png")
    assert base64_len(len(saved.preview.data)) <= BUDGET
    assert preview.size == (saved.preview.width, saved.preview.height)
    assert math.isclose(preview.width / preview.height, 2.0, rel_tol=0.02)
    # The sky runs blue (top) to amber (bottom): the picture was really drawn.
    rgb = preview.convert("RGB")
    top, low = rgb.getpixel((5, 2)), rgb.getpixel((preview.width * 56 // 64, preview.height * 24 // 32))
    assert isinstance(top, tuple) and isinstance(low, tuple)
    assert top[2] > top[0] and low[0] > low[2]


@pytest.mark.parametrize(
    ("root", "size"),
    [
        ('width="3in" height="1in"', (288, 96)),
        ('viewBox="0 0 300 100"', (300, 100)),
        ('width="600" viewBox="0 0 300 100"', (600, 200)),
        ('width="100%" height="100%" viewBox="0, 0, 90, 120"', (90, 120)),
    ],
)
def test_an_svg_size_comes_from_width_height_or_the_viewbox(tmp_path: Path, root: str, size: tuple[int, int]) -> None:
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" {root}><rect width="10" height="10"/></svg>'.encode()
    stored = save_bytes(runtime(tmp_path), svg, params())
    assert (stored.width, stored.height) == size


def test_make_preview_renders_an_svg_file_keeping_its_transparency(tmp_path: Path) -> None:
    path = tmp_path / "badge.svg"
    path.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 100"><circle cx="50" cy="50" r="40" fill="red"/></svg>'
    )
    preview = make_preview(path, max_b64_chars=40_000)
    picture = Image.open(io.BytesIO(preview.data))
    assert preview.mime_type == "image/png" and picture.size == (200, 100)
    alpha_low, _ = cast("tuple[int, int]", picture.convert("RGBA").getchannel("A").getextrema())
    assert alpha_low == 0  # the background stays transparent


def test_a_tiny_svg_icon_is_previewed_large_enough_to_see(tmp_path: Path) -> None:
    icon = b'<svg xmlns="http://www.w3.org/2000/svg" width="24" height="12"><rect width="24" height="12"/></svg>'
    preview = preview_image(save_and_preview(runtime(tmp_path), icon, params(), BUDGET, []))
    assert preview.size == (64, 32)


def test_a_large_svg_preview_is_bounded_like_any_other(tmp_path: Path) -> None:
    svg = GRADIENT_SVG.replace(b'width="640" height="320"', b'width="8000" height="4000"')
    saved = save_and_preview(runtime(tmp_path), svg, params(), BUDGET, [])
    assert (saved.stored.width, saved.stored.height) == (8000, 4000)
    assert saved.preview is not None and max(saved.preview.width, saved.preview.height) <= 1024


@pytest.mark.parametrize(
    ("svg", "reason"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10"><rect', "not well-formed"),
        (
            b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&lol2;</text></svg>',
            "DOCTYPE",
        ),
        (
            b'<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><text>&xxe;</text></svg>',
            "DOCTYPE",
        ),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="10" height="10"/></svg>', "no size"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="0" height="10"/>', "not usable"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">\xff</svg>', "not UTF-8"),
        (b"<svg width='9' height='9'>" + b"<g>" * 300 + b"</g>" * 300 + b"</svg>", "levels deep"),
    ],
)
def test_a_malformed_or_entity_laden_svg_is_an_upstream_error(tmp_path: Path, svg: bytes, reason: str) -> None:
    with pytest.raises(UpstreamError, match=reason):
        save_and_preview(runtime(tmp_path), svg, params(), BUDGET, [])
    assert not list((tmp_path / "out").rglob("*.svg"))  # nothing half-accepted was saved


def test_an_svg_over_the_size_cap_is_refused_unparsed(tmp_path: Path) -> None:
    from mcp_images.imaging.svg import MAX_SVG_BYTES

    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">' + b" " * MAX_SVG_BYTES + b"</svg>"
    with pytest.raises(UpstreamError, match="at most 8 MiB"):
        save_bytes(runtime(tmp_path), svg, params())


def test_an_svg_with_external_hrefs_renders_without_reading_files_or_the_network(tmp_path: Path) -> None:
    """resvg would load an absolute path into the preview (measured): the href is dropped."""
    secret = tmp_path / "secret.png"
    Image.new("RGB", (40, 40), (255, 0, 0)).save(secret)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        svg = (
            '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="80" height="80">'
            '<rect width="80" height="80" fill="#0000ff"/>'
            f'<image href="{secret}" width="80" height="80"/>'
            f'<image xlink:href="file://{secret}" width="80" height="80"/>'
            f'<image href="http://127.0.0.1:{port}/x.png" width="80" height="80"/>'
            '<filter id="f"><feImage href="secret.png"/></filter></svg>'
        ).encode()
        saved = save_and_preview(runtime(tmp_path), svg, params(), BUDGET, [])
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody knocked
    assert saved.stored.path.read_bytes() == svg  # the document itself is kept as sent
    assert _close(preview_image(saved).convert("RGB").getpixel((40, 40)), (0, 0, 255))


def _close(a: object, b: object, tolerance: int = 40) -> bool:
    assert isinstance(a, tuple) and isinstance(b, tuple)
    return all(abs(int(x) - int(y)) <= tolerance for x, y in zip(a, b, strict=True))


def test_probe_any_measures_an_svg_file_and_still_probes_rasters(tmp_path: Path) -> None:
    from mcp_images.imaging.formats import probe_any

    svg_path = tmp_path / "landscape.svg"
    svg_path.write_bytes(GRADIENT_SVG)
    info = probe_any(svg_path)
    assert (info.format, info.width, info.height, info.bytes) == ("svg", 640, 320, len(GRADIENT_SVG))
    assert probe_any(animated_gif(frames=3, size=(40, 30))).format == "gif"
    with pytest.raises(InputError, match="no such file"):
        probe_any(tmp_path / "missing.svg")


@pytest.mark.anyio
async def test_reading_a_saved_svg_back_as_a_resource_gives_image_svg_xml(tmp_path: Path) -> None:
    from mcp_images.server.build import create_server

    settings = make_settings(tmp_path, None)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="20" height="10"><rect width="20" height="10"/></svg>'
    stored = save_bytes(Runtime(settings), svg, params())
    async with Client(create_server(settings)) as client:
        read = await client.read_resource(stored.uri)
    blob = read.contents[0]
    assert isinstance(blob, BlobResourceContents)
    assert (blob.mime_type, base64.b64decode(blob.blob)) == ("image/svg+xml", svg)
