"""generate_image and edit_image through the protocol, against the real loopback sandbox."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import BlobResourceContents, ImageContent, ResourceLink, TextContent
from PIL import Image

from mcp_images.server.build import create_server
from tests.conftest import TEST_KEY, make_settings

pytestmark = pytest.mark.anyio


def text_of(result: Any) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def decoded(block: ImageContent) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(block.data)))


async def test_tools_list_names_every_parameter_with_enums_and_bounds(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    gen = tools["generate_image"].input_schema["properties"]
    for name in (
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "moderation",
        "style",
        "user",
    ):
        assert gen[name]["description"], name
    assert gen["quality"]["enum"] == ["low", "medium", "high", "auto", "xhigh", "max", "standard", "hd"]
    assert gen["output_format"]["enum"] == ["png", "jpeg", "webp", "gif", "svg"]
    assert {"complexity", "frame_count", "frame_duration_ms", "svg", "safety_identifier"} <= set(gen)
    for tool in tools.values():
        assert tool.input_schema["additionalProperties"] is False, tool.name
    assert (gen["n"]["minimum"], gen["n"]["maximum"]) == (1, 10)
    assert (gen["output_compression"]["minimum"], gen["output_compression"]["maximum"]) == (0, 100)
    assert tools["generate_image"].input_schema["required"] == ["prompt"]
    edit = tools["edit_image"].input_schema
    assert set(edit["required"]) == {"prompt", "image"}
    assert {"mask", "markup", "input_fidelity"} <= set(edit["properties"])
    annotations = tools["generate_image"].annotations
    assert annotations is not None and annotations.open_world_hint is True


async def test_a_generation_returns_summary_preview_link_and_structured_facts(client: Client, sandbox: Any) -> None:
    result = await client.call_tool("generate_image", {"prompt": "a red fox", "size": "1536x1024", "quality": "high"})
    assert not result.is_error, text_of(result)
    kinds = [b.type for b in result.content]
    assert kinds == ["text", "image", "resource_link"]
    sc = result.structured_content
    image = sc["images"][0]
    path = Path(image["path"])
    assert path.is_file() and path.stat().st_size == image["bytes"]
    assert (image["width"], image["height"], image["mime_type"]) == (1536, 1024, "image/png")
    assert image["uri"] == f"images://{image['id']}"
    assert sc["model"] == "gpt-image-2" and sc["size"] == "1536x1024" and sc["quality"] == "high"
    assert sc["usage"]["output_tokens"] == 5488  # gpt-image-2 formula, 1536x1024 high
    assert sc["cost"]["total_usd"] == pytest.approx(0.165, abs=0.001)
    assert sc["request_id"].startswith("req_")
    preview = result.content[1]
    assert isinstance(preview, ImageContent) and preview.mime_type == "image/jpeg"
    assert max(decoded(preview).size) < 1536
    link = result.content[2]
    assert isinstance(link, ResourceLink) and link.uri == image["uri"]
    summary = text_of(result)
    assert str(path) in summary and "cost: $0.16" in summary and "usage:" in summary
    assert [r.path for r in sandbox.state.image_requests()] == ["/v1/images/generations"]


async def test_a_transparent_image_keeps_its_alpha_in_the_preview(client: Client) -> None:
    result = await client.call_tool(
        "generate_image",
        {"prompt": "a sticker", "model": "gpt-image-1.5", "background": "transparent", "output_format": "webp"},
    )
    assert not result.is_error, text_of(result)
    preview = next(b for b in result.content if isinstance(b, ImageContent))
    img = decoded(preview)
    assert img.mode in ("RGBA", "LA", "PA", "P")
    alpha_min, _ = img.convert("RGBA").getchannel("A").getextrema()
    assert alpha_min == 0  # some pixel fully transparent
    assert result.structured_content["images"][0]["mime_type"] == "image/webp"


async def test_the_image_resource_serves_the_saved_bytes_with_their_mime_type(client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "jpeg please", "output_format": "jpeg"})
    image = result.structured_content["images"][0]
    read = await client.read_resource(image["uri"])
    blob = read.contents[0]
    assert isinstance(blob, BlobResourceContents)
    assert blob.mime_type == "image/jpeg"
    assert base64.b64decode(blob.blob) == Path(image["path"]).read_bytes()


async def test_reading_an_unknown_image_id_is_an_error(client: Client) -> None:
    from mcp import MCPError

    with pytest.raises(MCPError):
        await client.read_resource("images://0123456789ab")


@pytest.mark.parametrize(
    ("args", "field", "fix"),
    [
        ({"model": "dall-e-3", "n": 2}, "n", "n=1"),
        ({"background": "transparent", "model": "gpt-image-1", "output_format": "jpeg"}, "background", "png or webp"),
        ({"size": "1000x1000"}, "size", "multiples of 16"),
        ({"output_compression": 50}, "output_compression", "jpeg or webp"),
        ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt", "1,000"),
    ],
)
async def test_a_request_the_model_cannot_do_is_refused_before_any_upstream_call(
    client: Client, sandbox: Any, args: dict[str, Any], field: str, fix: str
) -> None:
    result = await client.call_tool("generate_image", {"prompt": "cats", **args})
    assert result.is_error
    assert fix in text_of(result)
    assert result.structured_content["error"]["field"] == field
    assert sandbox.state.image_requests() == []


async def test_out_of_schema_arguments_are_refused_with_the_field_named(client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "x", "n": 11})
    assert result.is_error and "n" in text_of(result)
    result = await client.call_tool("generate_image", {"prompt": "x", "quality": "ultra"})
    assert result.is_error and "quality" in text_of(result)


async def test_an_unknown_model_is_passed_through_and_the_result_says_so(client: Client, sandbox: Any) -> None:
    result = await client.call_tool("generate_image", {"prompt": "x", "model": "gpt-image-3-preview"})
    assert not result.is_error, text_of(result)
    assert "not in the model catalog" in text_of(result)
    assert sandbox.state.image_requests()[0].fields["model"] == "gpt-image-3-preview"


async def test_without_a_key_the_server_lists_tools_and_a_call_names_the_variable(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, api_key=None)
    async with Client(create_server(settings)) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= {"generate_image", "edit_image"}
        result = await client.call_tool("generate_image", {"prompt": "x"})
    assert result.is_error
    assert "MCP_IMAGES_API_KEY" in text_of(result)


@pytest.mark.parametrize(
    ("mode", "error_type", "words"),
    [
        ("moderation", "ModerationError", "safety system"),
        ("401", "AuthenticationError", "MCP_IMAGES_API_KEY"),
        ("403", "PermissionDeniedError", "verified"),
        ("quota", "QuotaExceededError", "insufficient_quota"),
        ("500", "ServerError", "HTTP 500"),
    ],
)
async def test_upstream_errors_become_tool_errors_that_keep_code_and_request_id(
    client: Client, sandbox: Any, mode: str, error_type: str, words: str
) -> None:
    result = await client.call_tool("generate_image", {"prompt": f"[sandbox:{mode}] a cat"})
    assert result.is_error
    error = result.structured_content["error"]
    assert error["type"] == error_type
    assert error["request_id"] and error["request_id"] in text_of(result)
    assert words in text_of(result)
    assert TEST_KEY not in json.dumps(result.model_dump(mode="json"))
    attempts = len(sandbox.state.image_requests())
    assert attempts == (3 if mode == "500" else 1)  # 5xx retried twice; the rest never


async def test_a_moderation_refusal_lists_the_categories(client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "[sandbox:moderation] x"})
    assert result.structured_content["error"]["categories"]
    assert "violence" in text_of(result)


@pytest.mark.parametrize("mode", ["429-once", "500-once", "503-once"])
async def test_a_passing_upstream_failure_is_retried_and_succeeds(client: Client, sandbox: Any, mode: str) -> None:
    result = await client.call_tool("generate_image", {"prompt": f"[sandbox:{mode}] a cat"})
    assert not result.is_error, text_of(result)
    assert len(sandbox.state.image_requests()) == 2


async def test_url_answers_are_downloaded_and_saved(client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "[sandbox:url] a url image"})
    assert not result.is_error, text_of(result)
    assert Path(result.structured_content["images"][0]["path"]).stat().st_size > 1000


async def test_ten_wide_images_stay_under_the_client_size_limit(client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "ten", "n": 10, "size": "1536x1024"})
    assert not result.is_error, text_of(result)
    wire = len(json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True)))
    assert wire <= 900_000
    assert sum(isinstance(b, ImageContent) for b in result.content) == 10


async def test_an_edit_takes_an_earlier_image_by_id_and_a_mask_by_path(
    client: Client, sandbox: Any, tmp_path: Path
) -> None:
    first = await client.call_tool("generate_image", {"prompt": "a lake", "size": "1024x1024"})
    uri = first.structured_content["images"][0]["uri"]
    mask = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
    mask.putpixel((10, 10), (0, 0, 0, 0))
    mask_path = tmp_path / "out" / "mask.png"
    mask.save(mask_path)
    result = await client.call_tool("edit_image", {"prompt": "add a boat", "image": uri, "mask": str(mask_path)})
    assert not result.is_error, text_of(result)
    assert "Edited 1 image" in text_of(result)
    edit = sandbox.state.image_requests()[-1]
    assert edit.path == "/v1/images/edits"
    assert sorted(u.field for u in edit.uploads) == ["image", "mask"]


async def test_an_edit_with_several_images_sends_repeated_image_fields(client: Client, sandbox: Any) -> None:
    a = await client.call_tool("generate_image", {"prompt": "a"})
    b = await client.call_tool("generate_image", {"prompt": "b"})
    ids = [r.structured_content["images"][0]["id"] for r in (a, b)]
    result = await client.call_tool("edit_image", {"prompt": "combine", "image": ids})
    assert not result.is_error, text_of(result)
    assert [u.field for u in sandbox.state.image_requests()[-1].uploads] == ["image[]", "image[]"]


async def test_an_edit_takes_a_data_uri(client: Client) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(buf, "PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    result = await client.call_tool("edit_image", {"prompt": "make it red", "image": uri})
    assert not result.is_error, text_of(result)


async def test_a_mask_of_the_wrong_size_is_refused_with_both_sizes(
    client: Client, sandbox: Any, tmp_path: Path
) -> None:
    first = await client.call_tool("generate_image", {"prompt": "a lake", "size": "1024x1024"})
    mask_path = tmp_path / "out" / "small-mask.png"
    Image.new("RGBA", (512, 512)).save(mask_path)
    before = len(sandbox.state.image_requests())
    result = await client.call_tool(
        "edit_image", {"prompt": "x", "image": first.structured_content["images"][0]["id"], "mask": str(mask_path)}
    )
    assert result.is_error
    assert "512x512" in text_of(result) and "1024x1024" in text_of(result)
    assert len(sandbox.state.image_requests()) == before


async def test_dall_e_3_cannot_edit(client: Client) -> None:
    result = await client.call_tool("edit_image", {"prompt": "x", "model": "dall-e-3", "image": "0123456789ab"})
    assert result.is_error and "cannot edit" in text_of(result)


async def test_output_path_and_filename_save_inside_the_output_folder(client: Client, settings: Any) -> None:
    result = await client.call_tool(
        "generate_image", {"prompt": "logo", "n": 2, "output_path": "brand/icons", "filename": "My Logo!.png"}
    )
    assert not result.is_error, text_of(result)
    root = Path(settings.output_dir).resolve()
    paths = [Path(i["path"]) for i in result.structured_content["images"]]
    for path in paths:
        assert path.parent == root / "brand" / "icons"
        assert path.name.startswith("My-Logo-") and path.suffix == ".png"
    assert len(set(paths)) == 2  # the same name twice never overwrites


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"output_path": "../escape"}, "output_path"),
        ({"output_path": "/etc"}, "output_path"),
        ({"filename": "///"}, "filename"),
    ],
)
async def test_an_output_location_outside_the_output_folder_is_refused(
    client: Client, sandbox: Any, tmp_path: Path, args: dict[str, Any], field: str
) -> None:
    result = await client.call_tool("generate_image", {"prompt": "x", **args})
    assert result.is_error
    assert result.structured_content["error"]["field"] == field
    assert sandbox.state.image_requests() == []
    assert not (tmp_path / "escape").exists()


async def test_a_symlink_leading_out_of_the_output_folder_is_refused(
    client: Client, settings: Any, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    root = Path(settings.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    (root / "link").symlink_to(outside, target_is_directory=True)
    result = await client.call_tool("generate_image", {"prompt": "x", "output_path": "link"})
    assert result.is_error and "outside the output folder" in text_of(result)
    assert list(outside.iterdir()) == []


async def test_a_folder_the_client_shares_as_a_root_may_be_read(settings: Any, tmp_path: Path) -> None:
    from mcp.types import ListRootsResult, Root
    from pydantic import FileUrl

    shared = tmp_path / "shared"
    shared.mkdir()
    Image.new("RGB", (64, 64), "red").save(shared / "in.png")

    async def roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=FileUrl(f"file://{shared}"))])

    args = {"prompt": "x", "image": str(shared / "in.png")}
    # Roots are a 2025-11-25 client feature (deprecated by 2026-07-28): legacy sessions use them.
    async with Client(create_server(settings), mode="legacy", list_roots_callback=roots) as client:
        allowed = await client.call_tool("edit_image", args)
    async with Client(create_server(settings), mode="legacy") as client:
        refused = await client.call_tool("edit_image", args)
    assert not allowed.is_error, text_of(allowed)
    assert refused.is_error and "MCP_IMAGES_INPUT_DIRS" in text_of(refused)


@pytest.mark.parametrize(("inline", "image_blocks", "full_size"), [("none", 0, False), ("full", 1, True)])
async def test_the_inline_setting_changes_what_the_result_carries(
    tmp_path: Path, sandbox: Any, inline: str, image_blocks: int, full_size: bool
) -> None:
    async with Client(create_server(make_settings(tmp_path, sandbox.base_url, inline=inline))) as client:
        result = await client.call_tool("generate_image", {"prompt": "x", "size": "1024x1024"})
    images = [b for b in result.content if isinstance(b, ImageContent)]
    assert len(images) == image_blocks
    assert sum(isinstance(b, ResourceLink) for b in result.content) == 1
    if full_size:
        saved = Path(result.structured_content["images"][0]["path"]).read_bytes()
        assert base64.b64decode(images[0].data) == saved


async def test_a_short_key_does_not_mangle_the_result(tmp_path: Path, sandbox: Any) -> None:
    # A one-letter "key" is no secret; scrubbing it would rewrite "resource_link" and break the result.
    async with Client(create_server(make_settings(tmp_path, sandbox.base_url, api_key="k"))) as client:
        result = await client.call_tool("generate_image", {"prompt": "a kite"})
    assert not result.is_error, text_of(result)
    assert [b.type for b in result.content] == ["text", "image", "resource_link"]
    assert "a-kite" in result.structured_content["images"][0]["path"]
