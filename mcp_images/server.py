"""The MCP server: tools and the ``images://`` resource template, wired to the work in tools.py.

`create_server(settings)` is the factory (tests pass an HTTP client of their own). Tool
parameters are declared once in args.py; the signature the SDK reads is built from those
models, and the schema clients see is compacted (args.compact_schema).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server import MCPServer
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools.base import Tool
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AnyUrl, BaseModel, ValidationError

from mcp_images import __version__
from mcp_images.args import EditArgs, ImageArgs, compact_schema, tool_signature
from mcp_images.config import Settings
from mcp_images.errors import McpImagesError, ModerationError, UpstreamError
from mcp_images.progress import Progress
from mcp_images.runtime import Runtime
from mcp_images.store import id_from_ref

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
Image tools. generate_image makes images from a prompt; edit_image changes given images
(paths, images:// ids from earlier results, URLs or base64). Results show a preview and
give the saved file path and an images:// link to the full image. Arguments are checked
against the chosen model's real limits before anything is spent; a refusal says what to change."""

GENERATE_DESCRIPTION = """Generate images from a text prompt. Saves full-size files, returns a \
preview per image, its path, an images:// link, token usage and cost."""

EDIT_DESCRIPTION = """Edit or combine images with a prompt (optionally a mask: transparent = \
area to change). Inputs: paths, images:// ids, URLs, data URIs. Returns like generate_image."""

WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)


class ImagesServer(MCPServer[Any]):
    """MCPServer that serves each saved image with its own MIME type (png, jpeg, webp)."""

    runtime: Runtime

    async def read_resource(self, uri: AnyUrl | str, context: Context[Any, Any] | None = None) -> Any:
        image_id = id_from_ref(str(uri)) if str(uri).startswith("images://") else None
        if image_id is None:
            return await super().read_resource(uri, context)
        from mcp.server.mcpserver.exceptions import ResourceError

        path = self.runtime.store.find(image_id)
        if path is None:
            raise ResourceError(f"no image {uri}: it was never made here, or its file was deleted")
        import anyio

        from mcp_images.imaging import FORMAT_MIME, sniff_format

        data = await anyio.Path(path).read_bytes()
        mime = FORMAT_MIME.get(sniff_format(data[:32]) or "", "application/octet-stream")
        contents: Iterable[ReadResourceContents] = [ReadResourceContents(content=data, mime_type=mime)]
        return contents


def error_result(exc: McpImagesError) -> CallToolResult:
    """A tool error that keeps what the upstream said (message, code, request id), no secrets."""
    text = str(exc)
    detail: dict[str, Any] = {"type": type(exc).__name__, "message": text}
    if isinstance(exc, UpstreamError):
        detail.update(status_code=exc.status_code, code=exc.code, request_id=exc.request_id)
    if isinstance(exc, ModerationError):
        detail["categories"] = exc.categories
    field = getattr(exc, "field", None)
    if field:
        detail["field"] = field
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content={"error": detail}, is_error=True
    )


def argument_error(exc: ValidationError) -> CallToolResult:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        problems.append(f"{where}: {err['msg']}")
    text = "Invalid arguments: " + "; ".join(problems)
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"error": {"type": "InvalidArguments", "message": text}},
        is_error=True,
    )


async def client_roots(ctx: Context[Any, Any]) -> list[Any] | None:
    """The folders the client offers as roots, when it supports roots (else None)."""
    caps = ctx.client_capabilities
    if caps is None or caps.roots is None:
        return None
    from urllib.parse import unquote, urlparse

    from mcp.shared.exceptions import MCPError

    try:
        result = await ctx.session.list_roots()
    except MCPError:
        logger.info("client announced roots but did not list them")
        return None
    paths = []
    for root in result.roots:
        parsed = urlparse(str(root.uri))
        if parsed.scheme == "file":
            paths.append(unquote(parsed.path))
    return paths


ToolBody = Callable[[Runtime, Any, Progress, Context[Any, Any]], Awaitable[CallToolResult]]


def make_tool(
    rt: Runtime,
    *,
    name: str,
    title: str,
    description: str,
    model: type[BaseModel],
    body: ToolBody,
    annotations: ToolAnnotations,
) -> Tool:
    """A Tool whose parameters are ``model``'s fields and whose errors are clear tool errors."""

    async def handler(ctx: Context[Any, Any], **arguments: Any) -> CallToolResult:
        try:
            args = model.model_validate(arguments)
        except ValidationError as exc:
            return argument_error(exc)
        progress = Progress(ctx.report_progress)
        try:
            return await body(rt, args, progress, ctx)
        except McpImagesError as exc:
            logger.info("%s refused: %s", name, type(exc).__name__)
            return error_result(exc)

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context)
    handler.__signature__ = tool_signature(model, rt.catalog.names(), ctx_param)  # type: ignore[attr-defined]
    handler.__name__ = name
    tool = Tool.from_function(handler, name=name, title=title, description=description, annotations=annotations)
    tool.parameters = compact_schema(tool.parameters)
    return tool


async def _generate(rt: Runtime, args: ImageArgs, progress: Progress, ctx: Context[Any, Any]) -> CallToolResult:
    from mcp_images import results, tools

    return results.render(await tools.generate_image(rt, args, progress))


async def _edit(rt: Runtime, args: EditArgs, progress: Progress, ctx: Context[Any, Any]) -> CallToolResult:
    from mcp_images import results, tools

    roots = await client_roots(ctx)
    return results.render(await tools.edit_image(rt, args, progress, roots))


def build_tools(rt: Runtime) -> list[Tool]:
    return [
        make_tool(
            rt,
            name="generate_image",
            title="Generate image",
            description=GENERATE_DESCRIPTION,
            model=ImageArgs,
            body=_generate,
            annotations=WRITE,
        ),
        make_tool(
            rt,
            name="edit_image",
            title="Edit image",
            description=EDIT_DESCRIPTION,
            model=EditArgs,
            body=_edit,
            annotations=WRITE,
        ),
    ]


def create_server(settings: Settings, *, http_client: Any = None, transport: str = "stdio") -> ImagesServer:
    """Build the server. ``http_client`` (an httpx2.AsyncClient) replaces the pooled one in tests."""
    rt = Runtime(settings, http_client=http_client)
    rt.transport_kind = transport

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[Runtime]:
        try:
            yield rt
        finally:
            await rt.aclose()

    server = ImagesServer(
        "mcp-images",
        title="mcp-images",
        version=__version__,
        instructions=INSTRUCTIONS,
        tools=build_tools(rt),
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    server.runtime = rt

    @server.resource(
        "images://{image_id}",
        name="image",
        title="Saved image",
        mime_type="image/png",
        description="A full-size image this server saved (png, jpeg or webp), by id.",
    )
    def image_resource(image_id: str) -> bytes:
        # Registered for resources/templates/list; reads normally go through
        # ImagesServer.read_resource, which also sets each file's real MIME type.
        from mcp.server.mcpserver.exceptions import ResourceError

        path = rt.store.find(image_id)
        if path is None:
            raise ResourceError(f"no image images://{image_id}")
        return path.read_bytes()

    return server
