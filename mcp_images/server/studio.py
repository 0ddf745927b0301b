"""The image studio: an MCP App (``io.modelcontextprotocol/ui``) for the image tools' results.

generate_image, edit_image and check_task point at one ``ui://`` resource, the document in
``static/studio.html``; a host that negotiated MCP Apps renders their results in it, and the
studio calls the tools back through the host (edit with a painted mask, variation, retry).

A client that did not negotiate the extension sees the server as it was before the studio:
the tools carry no ``_meta.ui``, the app-only helper tools and the ``ui://`` resource are not
listed, and calling a helper by name answers like an unknown tool (`AppsOnlyParts`). Results
are the same for every client; the studio reads what all clients get (text, previews, links,
``structuredContent``), so nothing about a call depends on who made it.
"""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent
from mcp.types import ToolAnnotations as _Annotations
from pydantic import Field

from mcp_images.config import Settings

if TYPE_CHECKING:
    from mcp.server import MCPServer

    from mcp_images.runtime import Runtime

STUDIO_URI = "ui://mcp-images/studio.html"
STUDIO_TOOLS = frozenset({"generate_image", "edit_image", "check_task"})  # results shown in the studio
RECENT_TOOL = "studio_recent_images"
APP_ONLY_TOOLS = frozenset({RECENT_TOOL})  # `_meta.ui.visibility: ["app"]`: never in the model's list
RECENT_PAGE_MAX = 24
THUMB_SIDE = 256  # px: a grid cell is at most ~220 CSS px wide
THUMB_B64_CHARS = 60_000  # per thumbnail; a full page stays near 1.4 MB of base64
_SAVED_NAME = re.compile(r"-(?P<id>[0-9a-f]{12})\.[A-Za-z0-9]+$")
_READ = _Annotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def tool_meta(tool: str) -> dict[str, Any] | None:
    """The ``_meta`` of one of the four tools: a pointer at the studio for those it shows."""
    return {"ui": {"resourceUri": STUDIO_URI}} if tool in STUDIO_TOOLS else None


@cache
def studio_html() -> str:
    """The studio document, shipped inside the package (hatch packages all of mcp_images)."""
    return files("mcp_images.server").joinpath("static", "studio.html").read_text(encoding="utf-8")


def resource_domains(settings: Settings) -> list[str]:
    """Origins the studio loads images from besides ``data:`` (the CSP's ``resourceDomains``).

    Previews and ``resources/read`` answers reach the studio inline. Signed download links
    are served from the server's public URL (``public_url``, when set; read with getattr
    while that setting is new), so its origin is declared for hosts to let the ``<img>`` load.
    """
    base = getattr(settings, "public_url", None)
    if not base:
        return []
    from urllib.parse import urlsplit

    parts = urlsplit(str(base))
    return [f"{parts.scheme}://{parts.netloc}"] if parts.scheme in ("http", "https") and parts.netloc else []


def studio_extension(rt: Runtime) -> Apps:
    """The Apps extension with the studio resource and its app-only helper tool."""
    apps = Apps()
    domains = resource_domains(rt.settings)
    apps.add_html_resource(
        STUDIO_URI,
        studio_html(),
        name="studio",
        title="Image studio",
        description="View, compare and pick images; paint a mask for the next edit.",
        csp=ResourceCsp(resource_domains=domains) if domains else None,
        prefers_border=True,
    )

    @apps.tool(
        resource_uri=STUDIO_URI,
        visibility=["app"],
        name=RECENT_TOOL,
        title="Recent images",
        description="A page of the images saved here, newest first, with small previews (for the studio).",
        annotations=_READ,
    )
    async def studio_recent_images(
        offset: Annotated[int, Field(ge=0, description="How many of the newest images to skip.")] = 0,
        limit: Annotated[int, Field(ge=1, le=RECENT_PAGE_MAX, description="Images on this page.")] = 12,
    ) -> CallToolResult:
        return await recent_images(rt, offset=offset, limit=limit)

    return apps


def register_studio(server: MCPServer[Any], rt: Runtime) -> None:
    """Hide the studio from clients that did not negotiate MCP Apps (see the module docstring)."""
    server.middleware.append(AppsOnlyParts())


class AppsOnlyParts:
    """Middleware: for a client without MCP Apps, tools/list and resources/list as before the studio."""

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method not in ("tools/list", "tools/call", "resources/list") or client_supports_apps(ctx):
            return await call_next(ctx)
        if ctx.method == "tools/call":
            name = (ctx.params or {}).get("name")
            if name in APP_ONLY_TOOLS:
                # The same answer as a name that does not exist: rewrite the call into one.
                return await call_next(replace(ctx, params={**(ctx.params or {}), "name": f"{name} (app only)"}))
            return await call_next(ctx)
        result = await call_next(ctx)
        if not isinstance(result, dict):
            return result
        wire = cast(dict[str, Any], result)  # the handler's answer, already shaped for the wire
        if ctx.method == "tools/list":
            tools = [t for t in wire.get("tools", []) if t.get("name") not in APP_ONLY_TOOLS]
            wire["tools"] = [_without_ui(t) for t in tools]
        else:
            wire["resources"] = [r for r in wire.get("resources", []) if not str(r.get("uri", "")).startswith("ui://")]
        return wire


def _without_ui(tool: dict[str, Any]) -> dict[str, Any]:
    """A listed tool without ``_meta.ui`` (and without ``_meta`` if nothing else is left)."""
    meta = {k: v for k, v in (tool.get("_meta") or {}).items() if k != "ui"}
    rest = {k: v for k, v in tool.items() if k != "_meta"}
    return {**rest, "_meta": meta} if meta else rest


# --- the app-only helper ------------------------------------------------------------------


def saved_files(root: Path) -> list[tuple[float, str, Path]]:
    """Every image saved under ``root`` as (modified time, id, path), newest first."""
    found: list[tuple[float, str, Path]] = []
    if not root.is_dir():
        return found
    for path in root.rglob("*"):
        match = _SAVED_NAME.search(path.name)
        if match is None or path.name.startswith(".") or path.is_symlink() or not path.is_file():
            continue
        found.append((path.stat().st_mtime, match["id"], path))
    found.sort(key=lambda row: row[0], reverse=True)
    return found


def _page(rt: Runtime, offset: int, limit: int) -> tuple[list[dict[str, Any]], list[ContentBlock], int]:
    """One page of recent images: their facts and a thumbnail each (runs in a worker thread)."""
    from mcp_images.errors import InputError
    from mcp_images.imaging.formats import probe
    from mcp_images.imaging.previews import make_preview

    rows = saved_files(rt.store.output_dir)
    items: list[dict[str, Any]] = []
    thumbs: list[ContentBlock] = []
    for modified, image_id, path in rows[offset : offset + limit]:
        try:
            info = probe(path, verify=False)
            thumb = make_preview(path, max_b64_chars=THUMB_B64_CHARS, max_side=THUMB_SIDE)
        except (InputError, OSError):
            continue  # deleted or unreadable since it was listed: leave it out of the page
        items.append(
            {
                "id": image_id,
                "uri": f"images://{image_id}",
                "name": path.name,
                "format": info.format,
                "width": info.width,
                "height": info.height,
                "bytes": info.bytes,
                "modified": round(modified, 3),
            }
        )
        thumbs.append(ImageContent(type="image", data=base64.b64encode(thumb.data).decode(), mime_type=thumb.mime_type))
    return items, thumbs, len(rows)


async def recent_images(rt: Runtime, *, offset: int, limit: int) -> CallToolResult:
    """The studio's "Recent" tab: facts in ``structuredContent``, a thumbnail per image in order."""
    import anyio

    items, thumbs, total = await anyio.to_thread.run_sync(_page, rt, offset, limit, limiter=rt.image_threads)
    more = offset + limit < total
    text = f"{len(items)} of {total} saved images (from {offset})."
    return CallToolResult(
        content=[TextContent(type="text", text=text), *thumbs],
        structured_content={
            "images": items,
            "total": total,
            "offset": offset,
            "next_offset": offset + limit if more else None,
        },
    )


__all__ = ["APP_MIME_TYPE", "STUDIO_URI", "register_studio", "studio_extension", "tool_meta"]
