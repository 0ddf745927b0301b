"""A folder swapped for a symlink while a job runs never sends the image out of the output folder.

``output_path`` is checked when the call arrives and used a minute later, when the image is
saved; a link planted in between must not redirect the write, and the paid image must not
be lost: it goes to the output folder itself, and the result says so.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from PIL import Image

from mcp_images.server.build import create_server
from mcp_images.storage.store import ImageStore, safe_subdir
from tests.conftest import make_settings

PNG = b"\x89PNG\r\n\x1a\n" + b"x" * 64


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "teal").save(buf, "PNG")
    return buf.getvalue()


def test_a_subfolder_swapped_for_a_symlink_after_the_check_is_not_followed(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (out / "brand").mkdir(parents=True)
    subdir = safe_subdir(out, "brand/icons")  # checked: a plain folder inside the output folder
    (out / "brand").rmdir()
    (out / "brand").symlink_to(outside, target_is_directory=True)  # planted before the save

    img = ImageStore(out).save(PNG, fmt="png", prompt="a fox", width=1, height=1, subdir=subdir)

    assert files_under(outside) == []
    assert img.path.parent == out and img.path.read_bytes() == PNG
    assert img.note is not None and "output_path 'brand/icons'" in img.note and str(out) in img.note
    assert img.as_dict()["note"] == img.note


def test_a_link_planted_deeper_down_or_a_file_in_the_way_is_not_followed_either(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (out / "a" / "b").mkdir(parents=True)
    (out / "a" / "b" / "c").symlink_to(outside, target_is_directory=True)
    (out / "f").write_bytes(b"")
    store = ImageStore(out)

    deep = store.save(PNG, fmt="png", prompt="p", width=1, height=1, subdir=Path("a/b/c/d"))
    blocked = store.save(PNG, fmt="png", prompt="p", width=1, height=1, subdir=Path("f/g"))

    assert files_under(outside) == []
    assert deep.path.parent == out and deep.note is not None and "a/b/c" in deep.note
    assert blocked.path.parent == out and blocked.note is not None
    assert not (out / "a" / "b" / "c" / "d").exists()


def test_a_missing_subfolder_is_made_and_an_ordinary_save_carries_no_note(tmp_path: Path) -> None:
    out = tmp_path / "out"
    img = ImageStore(out).save(PNG, fmt="png", prompt="p", width=1, height=1, subdir=Path("x/y/z"))
    assert img.path.parent == out / "x" / "y" / "z" and img.path.read_bytes() == PNG
    assert img.note is None and "note" not in img.as_dict()
    assert [p.name for p in (out / "x" / "y" / "z").iterdir()] == [img.path.name]  # no temp file left


def test_an_output_folder_that_became_a_symlink_is_refused_rather_than_followed(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    out.symlink_to(outside, target_is_directory=True)
    with pytest.raises(OSError):
        ImageStore(out).save(PNG, fmt="png", prompt="p", width=1, height=1)
    assert files_under(outside) == []


@pytest.mark.anyio
async def test_a_link_planted_while_the_upstream_works_keeps_the_image_inside_the_output_folder(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, "http://upstream.test/v1")
    out, outside = Path(settings.output_dir), tmp_path / "outside"
    outside.mkdir()
    (out / "brand").mkdir(parents=True)
    image_b64 = base64.b64encode(png_bytes()).decode()

    def upstream(request: httpx2.Request) -> httpx2.Response:
        # The call was validated before it reached the upstream: swap the folder now.
        (out / "brand").rmdir()
        (out / "brand").symlink_to(outside, target_is_directory=True)
        return httpx2.Response(200, json={"created": 1, "data": [{"b64_json": image_b64}]})

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(upstream))
    async with http, Client(create_server(settings, http_client=http)) as client:
        with anyio.fail_after(10):
            result = await client.call_tool("generate_image", {"prompt": "a fox", "output_path": "brand/icons"})

    assert not result.is_error
    assert files_under(outside) == []
    [image] = result.structured_content["images"]
    saved: dict[str, Any] = image
    assert Path(saved["path"]).parent == out.resolve()
    assert Path(saved["path"]).read_bytes() == png_bytes()
    assert "output_path 'brand/icons'" in saved["note"]
