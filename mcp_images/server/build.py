"""The MCP server: tools and the ``images://`` resource template, wired to the work in tools.py.

`create_server(settings)` is the factory (tests pass an HTTP client of their own). Tool
parameters are declared once in args.py; the signature the SDK reads is built from those
models, and the schema clients see is compacted (args.compact_schema).
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools.base import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import AnyUrl, BaseModel, ValidationError

from mcp_images import __version__
from mcp_images.config import Settings
from mcp_images.errors import ConfigError, McpImagesError, error_dict
from mcp_images.runtime import Runtime
from mcp_images.server import results
from mcp_images.server.args import CheckTaskArgs, EditArgs, EstimateArgs, ImageArgs, compact_schema, tool_signature
from mcp_images.storage.store import id_from_ref
from mcp_images.work.progress import Progress

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

CHECK_DESCRIPTION = """Status of a task started with async=true (or handed off after a long wait). \
Returns the same result as a direct call once it has succeeded; wait_seconds long-polls."""

ESTIMATE_DESCRIPTION = """Price a generate_image or edit_image call before making it: pass the same \
arguments. Tokens by kind, price per 1M, USD per image and total, exact or estimated, table and date."""

ROOTS_REMOVED_IN = "2026-07-28"  # protocol version without roots/list
INLINE_REF_KEEP_CHARS = 2048  # longer image references are inline data: not stored on a task
READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
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

        from mcp_images.imaging.formats import FORMAT_MIME, sniff_format

        data = await anyio.Path(path).read_bytes()
        mime = FORMAT_MIME.get(sniff_format(data[:32]) or "", "application/octet-stream")
        contents: Iterable[ReadResourceContents] = [ReadResourceContents(content=data, mime_type=mime)]
        return contents


async def client_roots(ctx: Context[Any, Any]) -> list[Any] | None:
    """The folders the client offers as roots, when it supports roots (else None)."""
    caps = ctx.client_capabilities
    if caps is None or caps.roots is None:
        return None
    from urllib.parse import unquote, urlparse

    from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

    if (ctx.protocol_version or "") >= ROOTS_REMOVED_IN:
        return None  # roots left the protocol (SEP-2577): configured folders only
    try:
        with warnings.catch_warnings():
            # Deliberate: 2025-11-25 clients (most today) still share their folders this way.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
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


ToolBody = Callable[[Runtime, Any, Context[Any, Any]], Awaitable[CallToolResult]]


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
            return results.argument_error(exc)
        try:
            return await body(rt, args, ctx)
        except McpImagesError as exc:
            logger.info("%s refused: %s", name, type(exc).__name__)
            return results.error_result_from_dict(rt.scrub(error_dict(exc)))

    ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Context)
    handler.__signature__ = tool_signature(model, rt.catalog.names(), ctx_param)  # type: ignore[attr-defined]
    handler.__name__ = name
    tool = Tool.from_function(handler, name=name, title=title, description=description, annotations=annotations)
    tool.parameters = compact_schema(tool.parameters)
    return tool


def _record_args(args: BaseModel) -> dict[str, Any]:
    """The arguments as stored on a task: inline image data shortened, never the bytes."""
    dumped = args.model_dump(mode="json", by_alias=True, exclude_none=True)

    def trim(value: Any) -> Any:
        if isinstance(value, str) and len(value) > INLINE_REF_KEEP_CHARS:
            return f"{value[:40]}...<{len(value):,} chars of inline image data>"
        if isinstance(value, list):
            return [trim(v) for v in value]
        return value

    return {"arguments": {k: trim(v) for k, v in dumped.items()}}


async def _image_tool(rt: Runtime, args: ImageArgs, ctx: Context[Any, Any], name: str) -> CallToolResult:
    """generate_image / edit_image: validate now, then run as a task (attached unless async)."""
    from mcp_images.work import provider_jobs, tools

    edit = isinstance(args, EditArgs)
    tools.validate(rt, args, edit=edit)  # refusals come back at once and create no task
    roots = await client_roots(ctx) if edit else None
    try:
        manager = await rt.tasks()
    except ConfigError:
        if args.async_:
            raise  # a background job needs somewhere to keep its result: the error says why not
        manager = None
    provider_side = args.async_ and rt.provider.async_mode is not None and not args.stream

    async def job(job_progress: Progress, handle: Any) -> dict[str, Any]:
        if provider_side:
            outcome = await provider_jobs.submit_provider_job(rt, args, job_progress, handle, roots)
        elif isinstance(args, EditArgs):
            outcome = await tools.edit_image(rt, args, job_progress, roots)
        else:
            outcome = await tools.generate_image(rt, args, job_progress)
        return rt.scrub(results.outcome_json(outcome))

    if manager is None:  # no task database: a plain synchronous call still works
        logger.warning("running %s without a task record: %s", name, rt.tasks_error)
        return CallToolResult.model_validate(await job(Progress(ctx.report_progress), None))
    if args.async_:
        provider = rt.provider.name if provider_side else None
        record = await manager.start(name, _record_args(args), job, provider=provider)
        return results.task_started(record, poll_after=results.POLL_AFTER_SECONDS)
    handoff = rt.settings.sync_timeout or None
    record = await manager.run_attached(name, _record_args(args), job, send=ctx.report_progress, handoff_after=handoff)
    if not record.finished:
        return results.task_started(record, poll_after=results.POLL_AFTER_SECONDS, handed_off=True)
    return results.task_result(record)


async def _generate(rt: Runtime, args: ImageArgs, ctx: Context[Any, Any]) -> CallToolResult:
    return await _image_tool(rt, args, ctx, "generate_image")


async def _edit(rt: Runtime, args: EditArgs, ctx: Context[Any, Any]) -> CallToolResult:
    return await _image_tool(rt, args, ctx, "edit_image")


async def _check_task(rt: Runtime, args: CheckTaskArgs, ctx: Context[Any, Any]) -> CallToolResult:
    manager = await rt.tasks()
    record = await manager.wait(args.task_id, args.wait_seconds, send=ctx.report_progress)
    return results.task_result(record)


async def _estimate(rt: Runtime, args: EstimateArgs, ctx: Context[Any, Any]) -> CallToolResult:
    from mcp_images.work.estimates import estimate

    roots = await client_roots(ctx) if args.image is not None or args.mask is not None else None
    return results.render_estimate(await estimate(rt, args, roots), n=args.n or 1)


def build_tools(rt: Runtime) -> list[Tool]:
    rows = [
        ("generate_image", "Generate image", GENERATE_DESCRIPTION, ImageArgs, _generate, WRITE),
        ("edit_image", "Edit image", EDIT_DESCRIPTION, EditArgs, _edit, WRITE),
        ("check_task", "Check task", CHECK_DESCRIPTION, CheckTaskArgs, _check_task, READ),
        ("estimate_cost", "Estimate cost", ESTIMATE_DESCRIPTION, EstimateArgs, _estimate, READ),
    ]
    return [
        make_tool(rt, name=name, title=title, description=desc, model=model, body=body, annotations=ann)
        for name, title, desc, model, body, ann in rows
    ]


async def run_tasks(rt: Runtime, stop: anyio.Event) -> None:
    """Open the task database and keep the manager running until ``stop``.

    Runs in the background right after start-up, so sqlite3 and the restart recovery
    (resuming provider-held jobs, failing orphaned local ones) never delay ``initialize``.
    """
    from mcp_images.errors import ConfigError
    from mcp_images.tasks.manager import TaskManager
    from mcp_images.tasks.store import TaskStore

    try:
        store = TaskStore(rt.settings.resolved_data_dir / "tasks.sqlite3")
    except ConfigError as exc:
        rt.tasks_error = str(exc)
        rt.tasks_ready.set()
        return
    manager = TaskManager(
        store, ttl_seconds=rt.settings.task_ttl_days * 86400, error_to_dict=lambda exc: rt.scrub(error_dict(exc))
    )
    try:
        async with manager.running():
            resumed = manager.resume_provider_tasks(lambda record: _make_poller(rt, record))
            if resumed:
                logger.info("resumed polling %d provider-held task(s)", resumed)
            rt.task_manager = manager
            rt.tasks_ready.set()
            await stop.wait()
    finally:
        rt.task_manager = None
        store.close()


def _make_poller(rt: Runtime, record: Any) -> Any:
    """A job that polls a provider-held task again after a restart (None: cannot)."""
    from mcp_images.work import provider_jobs

    if record.provider != rt.provider.name or rt.provider.async_mode is None:
        return None  # the provider changed since: this server cannot poll that job
    model = EditArgs if record.tool == "edit_image" else ImageArgs
    try:
        args = model.model_validate(record.args.get("arguments", {}))
    except ValidationError:
        return None
    provider_id = record.provider_task_id

    async def job(progress: Progress, handle: Any) -> dict[str, Any]:
        return rt.scrub(results.outcome_json(await provider_jobs.poll_provider_job(rt, args, provider_id, progress)))

    return job


def create_server(settings: Settings, *, http_client: Any = None, transport: str = "stdio") -> ImagesServer:
    """Build the server. ``http_client`` (an httpx2.AsyncClient) replaces the pooled one in tests."""
    rt = Runtime(settings, http_client=http_client)
    rt.transport_kind = transport

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[Runtime]:
        stop = anyio.Event()
        rt.tasks_ready = anyio.Event()
        rt.tasks_error = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_tasks, rt, stop)
                try:
                    yield rt
                finally:
                    stop.set()
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
