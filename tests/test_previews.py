"""Previews in one pass: photo-like sources land within the budget at a useful size, the decode
reports the source's facts, and the saved file is the upstream's bytes untouched."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFilter

from mcp_images.imaging.previews import base64_len, make_preview


def photo_like(width: int, height: int, seed: int = 3) -> Image.Image:
    """Soft colour fields, hard-edged discs and grain: compresses like a photograph."""
    rng = random.Random(seed)
    picture = Image.frombytes("RGB", (12, 8), rng.randbytes(12 * 8 * 3)).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(picture)
    for _ in range(20):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(20, 160)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    picture = picture.filter(ImageFilter.GaussianBlur(2))
    grain = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    return Image.blend(picture, grain, 0.12)


def png_bytes(picture: Image.Image) -> bytes:
    out = io.BytesIO()
    picture.save(out, "PNG", compress_level=1)
    return out.getvalue()


@pytest.fixture(scope="module")
def photo_png() -> bytes:
    return png_bytes(photo_like(1024, 1024))


@pytest.mark.parametrize("budget", [140_000, 85_000, 20_000])
def test_a_photo_preview_is_a_jpeg_within_the_budget_that_uses_most_of_it(photo_png: bytes, budget: int) -> None:
    preview = make_preview(photo_png, max_b64_chars=budget)
    assert preview.mime_type == "image/jpeg"
    assert base64_len(len(preview.data)) <= budget
    assert base64_len(len(preview.data)) >= budget * 0.4  # sized for the budget, not a thumbnail
    with Image.open(io.BytesIO(preview.data)) as shown:
        assert shown.format == "JPEG"
        assert shown.size == (preview.width, preview.height)
    assert preview.width == preview.height


def test_a_wide_photo_keeps_its_aspect_ratio_within_max_side() -> None:
    preview = make_preview(png_bytes(photo_like(1536, 1024)), max_b64_chars=140_000)
    assert max(preview.width, preview.height) <= 1024
    assert abs(preview.width / preview.height - 1.5) < 0.01
    assert base64_len(len(preview.data)) <= 140_000


def test_a_flat_image_keeps_the_largest_size_allowed() -> None:
    flat = Image.linear_gradient("L").resize((2048, 1536)).convert("RGB")
    preview = make_preview(png_bytes(flat), max_b64_chars=140_000)
    assert (preview.width, preview.height) == (1024, 768)


def test_the_preview_reports_the_source_format_size_and_alpha(photo_png: bytes) -> None:
    preview = make_preview(photo_png, max_b64_chars=140_000)
    assert preview.source is not None
    assert (preview.source.format, preview.source.width, preview.source.height) == ("png", 1024, 1024)
    assert preview.source.has_alpha is False
    assert preview.source.bytes == len(photo_png)


def test_a_large_jpeg_source_is_previewed_within_the_budget() -> None:
    out = io.BytesIO()
    photo_like(3000, 2000).save(out, "JPEG", quality=92)
    preview = make_preview(out.getvalue(), max_b64_chars=85_000)
    assert base64_len(len(preview.data)) <= 85_000
    assert abs(preview.width / preview.height - 1.5) < 0.01
    assert preview.source is not None and (preview.source.width, preview.source.height) == (3000, 2000)


def test_save_and_preview_saves_the_upstream_bytes_untouched(tmp_path: Path, photo_png: bytes) -> None:
    from mcp_images.catalog.models import ImageParams
    from mcp_images.runtime import Runtime
    from mcp_images.work.saving import save_and_preview
    from tests.conftest import make_settings

    created: list[Path] = []
    params = ImageParams(model="gpt-image-1", prompt="a photo")
    saved = save_and_preview(Runtime(make_settings(tmp_path, None)), photo_png, params, 140_000, created)
    assert saved.stored.path.read_bytes() == photo_png
    assert (saved.stored.format, saved.stored.width, saved.stored.height) == ("png", 1024, 1024)
    assert saved.stored.bytes == len(photo_png)
    assert created == [saved.stored.path]
    assert saved.preview is not None and base64_len(len(saved.preview.data)) <= 140_000
