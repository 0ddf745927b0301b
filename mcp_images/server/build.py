"""The MCP server: the tools (`server.tools`) and the ``images://`` resource template.

`create_server(settings)` is the factory (tests pass an HTTP client of their own). It
advertises only what exists: tools and resources, no prompts.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp.server import MCPServer
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, RequestStateSecurity
from pydantic import AnyUrl

from mcp_images import __version__
from mcp_images.config import Settings
from mcp_images.errors import McpImagesError, error_dict
from mcp_images.runtime import Runtime
from mcp_images.server import results
from mcp_images.server.spending import close_spending, register_spending
from mcp_images.server.studio import register_studio, studio_extension
from mcp_images.server.tools import build_tools
from mcp_images.storage.store import id_from_ref
from mcp_images.work.progress import Progress

logger = logging.getLogger(__name__)

INSTRUCTIONS = """\
Image tools. generate_image makes images from a prompt; edit_image changes given images
(paths, images:// ids from earlier results, URLs or base64). Results show a preview and
give the saved file path and an images:// link to the full image. Arguments are checked
against the chosen model's real limits before anything is spent; a refusal says what to change."""

class ImagesServer(MCPServer[Any]):
    """MCPServer that serves each saved image with its own MIME type (png, jpeg, webp)."""

    runtime: Runtime

    async def read_resource(self, uri: AnyUrl | str, context: Context[Any, Any] | None = None) -> Any:
        image_id = id_from_ref(str(uri)) if str(uri).startswith("images://") else None
        if image_id is None:
            return await super().read_resource(uri, context)
        import anyio
        from mcp.server.mcpserver.exceptions import ResourceNotFoundError

        # An S3-backed store may fetch the object first: never on the event loop.
        path = await anyio.to_thread.run_sync(self.runtime.store.find, image_id)
        if path is None:
            raise ResourceNotFoundError(f"no image {uri}: it was never made here, or its file was deleted")

        from mcp_images.imaging.formats import SNIFF_BYTES, sniff_format
        from mcp_images.imaging.mime import mime_type

        data = await anyio.Path(path).read_bytes()
        mime = mime_type(sniff_format(data[:SNIFF_BYTES]))
        contents: Iterable[ReadResourceContents] = [ReadResourceContents(content=data, mime_type=mime)]
        return contents


TASK_STORE_RETRY_SECONDS = 5.0  # a task database that cannot be reached is tried again this often


async def run_tasks(rt: Runtime, stop: anyio.Event) -> None:
    """Open the task store (`tasks.choice`) and keep the manager running until ``stop``.

    Runs in the background right after start-up, so opening the store and the restart recovery
    (resuming provider-held jobs, failing orphaned local ones) never delay ``initialize``. A
    PostgreSQL that cannot be reached is tried again every TASK_STORE_RETRY_SECONDS (calls say
    why meanwhile); a store this version cannot use is reported and not tried again.
    """
    from mcp_images.errors import ConfigError, TaskError
    from mcp_images.tasks.choice import open_task_store, sqlite_path
    from mcp_images.tasks.manager import TaskManager

    path = sqlite_path(rt.settings)
    if path is not None and not path.exists() and rt.transport_kind == "stdio":
        # Quieter start for one person: no folder, no file, until the first task. (A server for a
        # team opens it at once, so /readyz can say the store is usable.)
        rt.tasks_deferred = True
        await _first_of(stop, rt.tasks_wanted)
        if stop.is_set():
            return
    while True:
        try:
            store = await open_task_store(rt.settings)
            break
        except (ConfigError, TaskError) as exc:
            rt.tasks_error = str(exc)
            rt.tasks_ready.set()
            if isinstance(exc, ConfigError):
                return
            with anyio.move_on_after(TASK_STORE_RETRY_SECONDS):
                await stop.wait()
            if stop.is_set():
                return
    manager = TaskManager(
        store, ttl_seconds=rt.settings.task_ttl_days * 86400, error_to_dict=lambda exc: rt.scrub(error_dict(exc))
    )
    try:
        async with manager.running():
            manager.resume_provider_tasks(lambda record: _make_poller(rt, record))  # in the background
            rt.task_manager, rt.tasks_error, rt.tasks_deferred = manager, None, False
            rt.tasks_ready.set()
            await stop.wait()
    finally:
        rt.task_manager = None
        await store.aclose()


async def _first_of(*events: anyio.Event) -> None:
    """Wait until any of ``events`` is set."""
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


def _make_poller(rt: Runtime, record: Any) -> Any:
    """A job that polls a provider-held task again after a restart (None: cannot)."""
    from mcp_images.catalog.arguments import parse_arguments
    from mcp_images.work import provider_jobs
    from mcp_images.work.validation import check_call

    if record.provider != rt.provider.name or rt.provider.async_mode is None:
        return None  # the provider changed since: this server cannot poll that job
    try:
        call = check_call(rt, parse_arguments(record.tool, record.args.get("arguments", {})), saving=True)
    except McpImagesError:
        return None
    provider_id = record.provider_task_id

    async def job(progress: Progress, handle: Any) -> dict[str, Any]:
        return rt.scrub(results.outcome_json(await provider_jobs.poll_provider_job(rt, call, provider_id, progress)))

    return job


def request_state_key(settings: Settings) -> bytes | None:
    """The key replicas share to seal 2026-07-28 request state (a spending confirmation's
    question): MCP_IMAGES_REQUEST_STATE_SECRET, else one derived from MCP_IMAGES_URL_SECRET
    (HMAC-SHA256 under a fixed label, so the download-signing key itself is not reused), else
    None: the SDK's key of this process, which another replica cannot open."""
    import hashlib
    import hmac

    if settings.request_state_secret is not None:
        return settings.request_state_secret.get_secret_value().encode()
    if settings.url_secret is not None and len(settings.url_secret.get_secret_value()) >= 32:
        secret = settings.url_secret.get_secret_value().encode()
        return hmac.new(secret, b"mcp-images/request-state/v1", hashlib.sha256).digest()
    return None


def request_state_security(settings: Settings) -> RequestStateSecurity | None:
    key = request_state_key(settings)
    return None if key is None else RequestStateSecurity(keys=[key])


def create_server(settings: Settings, *, http_client: Any = None, transport: str = "stdio") -> ImagesServer:
    """Build the server. ``http_client`` (an httpx2.AsyncClient) replaces the pooled one in tests."""
    rt = Runtime(settings, http_client=http_client)
    rt.transport_kind = transport

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[Runtime]:
        stop = anyio.Event()
        rt.tasks_ready, rt.tasks_wanted = anyio.Event(), anyio.Event()
        rt.tasks_error, rt.tasks_deferred = None, False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_tasks, rt, stop)
                try:
                    yield rt
                finally:
                    stop.set()
        finally:
            await close_spending(rt)
            await rt.aclose()

    server = ImagesServer(
        "mcp-images",
        title="mcp-images",
        version=__version__,
        instructions=INSTRUCTIONS,
        tools=build_tools(rt),
        extensions=[studio_extension(rt)],
        lifespan=lifespan,
        log_level=settings.log_level,
        request_state_security=request_state_security(settings),
    )
    server.runtime = rt
    # Advertise only what exists: MCPServer registers prompt handlers unconditionally, and a
    # client would otherwise see a prompts capability with nothing behind it.
    for method in ("prompts/list", "prompts/get"):
        server._lowlevel_server._request_handlers.pop(method, None)  # pyright: ignore[reportPrivateUsage]
    register_studio(server, rt)  # the image studio (MCP Apps), shown only to hosts that negotiated it
    register_spending(server, rt)  # spending://{period}: the ledger, read

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
        from mcp.server.mcpserver.exceptions import ResourceNotFoundError

        path = rt.store.find(image_id)
        if path is None:
            raise ResourceNotFoundError(f"no image images://{image_id}")
        return path.read_bytes()

    return server
