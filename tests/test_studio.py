"""The image studio over the protocol: what a host with MCP Apps sees, and what one without sees."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from mcp import Client
from mcp.client import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import ImageContent, TextContent, TextResourceContents

from mcp_images.config import Settings
from mcp_images.server.build import create_server
from mcp_images.server.studio import RECENT_TOOL, STUDIO_URI, THUMB_SIDE, resource_domains
from tests.conftest import make_settings

APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})


@pytest.fixture(params=["auto", "legacy"])
async def apps_client(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Client]:
    """A client that negotiated MCP Apps, on 2026-07-28 and on the 2025-11-25 handshake."""
    async with Client(create_server(settings), mode=request.param, extensions=[APPS]) as c:
        yield c


@pytest.fixture(params=["auto", "legacy"])
async def plain_client(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Client]:
    async with Client(create_server(settings), mode=request.param) as c:
        yield c


@pytest.mark.anyio
async def test_a_host_with_apps_sees_the_studio_on_the_image_tools_and_the_helper_as_app_only(
    apps_client: Client,
) -> None:
    tools = {t.name: t for t in (await apps_client.list_tools()).tools}
    for name in ("generate_image", "edit_image", "check_task"):
        assert tools[name].meta == {"ui": {"resourceUri": STUDIO_URI}}
    assert tools["estimate_cost"].meta is None
    assert tools[RECENT_TOOL].meta == {"ui": {"resourceUri": STUDIO_URI, "visibility": ["app"]}}


@pytest.mark.anyio
async def test_the_studio_resource_is_one_self_contained_html_document_served_as_an_mcp_app(
    apps_client: Client,
) -> None:
    listed = {str(r.uri): r for r in (await apps_client.list_resources()).resources}
    assert listed[STUDIO_URI].mime_type == APP_MIME_TYPE
    [content] = (await apps_client.read_resource(STUDIO_URI)).contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == APP_MIME_TYPE
    assert content.text.lower().startswith("<!doctype html>")
    assert content.meta == {"ui": {"prefersBorder": True}}  # no CSP domains: it loads nothing remote
    html = content.text
    remote = re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//""", html)
    assert remote is None, "no remote scripts, fonts, styles or images"
    assert "<script src" not in html and "<link" not in html
    for method in ("ui/initialize", "ui/notifications/initialized", "ui/notifications/tool-result", "tools/call"):
        assert method in html


@pytest.mark.anyio
async def test_a_client_without_apps_sees_the_tools_and_resources_as_before_the_studio(
    plain_client: Client,
) -> None:
    tools = (await plain_client.list_tools()).tools
    assert sorted(t.name for t in tools) == ["check_task", "edit_image", "estimate_cost", "generate_image"]
    assert all(t.meta is None for t in tools)
    assert [str(r.uri) for r in (await plain_client.list_resources()).resources] == []
    result = await plain_client.call_tool(RECENT_TOOL, {})
    assert result.is_error
    assert isinstance(result.content[0], TextContent)
    assert result.content[0].text.startswith("Unknown tool")


def _shape(result: Any) -> list[tuple[str, str]]:
    """A result's content blocks with what varies from call to call (ids, paths, times) blanked."""
    out: list[tuple[str, str]] = []
    for block in result.content:
        if isinstance(block, TextContent):
            text = re.sub(r"[0-9a-f]{12}", "<id>", block.text)
            text = re.sub(r"/\S+/out/\S+\.png", "<path>", text)
            text = re.sub(r"\d+\.\d s|\d+ KB", "<n>", text)
            out.append(("text", text))
        elif isinstance(block, ImageContent):
            out.append(("image", block.mime_type))
        else:
            out.append((block.type, getattr(block, "description", "")))
    return out


@pytest.mark.anyio
async def test_a_generation_gives_a_client_without_apps_the_same_text_previews_and_links_as_a_studio_host(
    settings: Settings,
) -> None:
    args = {"prompt": "a lighthouse at dawn", "n": 2, "size": "1024x1024"}
    async with Client(create_server(settings), extensions=[APPS]) as apps, Client(create_server(settings)) as plain:
        with_apps = await apps.call_tool("generate_image", args)
        without = await plain.call_tool("generate_image", args)
    assert not with_apps.is_error and not without.is_error
    assert [kind for kind, _ in _shape(without)] == ["text", "image", "resource_link", "image", "resource_link"]
    assert _shape(with_apps) == _shape(without)
    keys = [set(cast(dict[str, Any], r.structured_content)) for r in (with_apps, without)]
    assert keys[0] == keys[1]


@pytest.mark.anyio
async def test_the_recent_images_helper_pages_the_saved_images_newest_first_with_a_small_preview_each(
    apps_client: Client,
) -> None:
    first = await apps_client.call_tool("generate_image", {"prompt": "one", "size": "1024x1024"})
    second = await apps_client.call_tool("generate_image", {"prompt": "two", "n": 2, "size": "1024x1536"})
    made = [img["id"] for r in (second, first) for img in cast(dict[str, Any], r.structured_content)["images"]]

    page = await apps_client.call_tool(RECENT_TOOL, {"limit": 2})
    facts = cast(dict[str, Any], page.structured_content)
    assert facts["total"] == 3 and facts["next_offset"] == 2
    assert {img["id"] for img in facts["images"]} == set(made[:2])
    assert facts["images"][0]["width"] == 1024 and facts["images"][0]["height"] == 1536
    thumbs = [b for b in page.content if isinstance(b, ImageContent)]
    assert len(thumbs) == 2

    rest = cast(dict[str, Any], (await apps_client.call_tool(RECENT_TOOL, {"offset": 2})).structured_content)
    assert [img["id"] for img in rest["images"]] == made[2:]
    assert rest["next_offset"] is None


@pytest.mark.anyio
async def test_the_recent_images_thumbnails_are_no_larger_than_a_grid_cell(apps_client: Client) -> None:
    import base64
    import io

    from PIL import Image

    await apps_client.call_tool("generate_image", {"prompt": "big", "size": "1536x1024"})
    page = await apps_client.call_tool(RECENT_TOOL, {})
    [thumb] = [b for b in page.content if isinstance(b, ImageContent)]
    assert max(Image.open(io.BytesIO(base64.b64decode(thumb.data))).size) <= THUMB_SIDE


@pytest.mark.anyio
async def test_a_call_for_a_page_past_the_limit_is_refused(apps_client: Client) -> None:
    result = await apps_client.call_tool(RECENT_TOOL, {"limit": 500})
    assert result.is_error


def test_the_studio_declares_no_image_domains_unless_signed_links_are_configured(tmp_path: Path) -> None:
    assert resource_domains(make_settings(tmp_path, None)) == []
    signed = SimpleNamespace(public_url="https://img.example.com/dl/")
    assert resource_domains(cast(Settings, signed)) == ["https://img.example.com"]
