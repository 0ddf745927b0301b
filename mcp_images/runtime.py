"""The server's shared state: settings, tables, the image store and one pooled HTTP client.

Heavy pieces (httpx2, the price table, the upstream client) are made on first use, so that
start-up, which every client session pays for, stays close to the bare SDK's.
"""

from __future__ import annotations

import logging
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from mcp_images.catalog.models import Catalog, load_catalog
from mcp_images.concurrency import BodySlot
from mcp_images.config import Settings
from mcp_images.secrets import Scrubber, make_scrubber
from mcp_images.storage.choice import open_image_store, store_secrets

if TYPE_CHECKING:
    import httpx2

    from mcp_images.catalog.providers import Provider
    from mcp_images.inputs.references import InputPolicy
    from mcp_images.pricing.table import PriceTable
    from mcp_images.tasks.manager import TaskManager
    from mcp_images.upstream.client import ImagesAPI

logger = logging.getLogger(__name__)

POOL_MAX_CONNECTIONS = 128  # concurrent upstream requests per server (100 background tasks is a target)
POOL_KEEPALIVE = 20
IMAGE_THREADS = max(2, os.cpu_count() or 2)
ANSWER_SLOTS = 2 * IMAGE_THREADS  # upstream answers read and saved at once (see concurrency.BodySlot)


def kept_folders(settings: Settings) -> list[Path]:
    """Where an image goes when the output folder cannot take it: the data folder, then the
    system's temporary folder (wherever still has room)."""
    import tempfile

    user = f"-{os.getuid()}" if hasattr(os, "getuid") else ""  # a shared /tmp: one folder per user
    return [settings.resolved_data_dir / "kept-images", Path(tempfile.gettempdir()) / f"mcp-images-kept{user}"]


class Runtime:
    """Everything a tool call needs, built once per server."""

    def __init__(self, settings: Settings, *, http_client: httpx2.AsyncClient | None = None) -> None:
        self.settings = settings
        self.catalog: Catalog = load_catalog(settings.catalog)
        # The output folder, or an S3 bucket cached there (MCP_IMAGES_STORAGE_URL, storage.choice).
        self.store = open_image_store(settings, kept_folders(settings))
        self._http = http_client
        self._owns_http = http_client is None
        self._api: tuple[httpx2.AsyncClient, ImagesAPI] | None = None
        self._http_lock = anyio.Lock()
        self.transport_kind = "stdio"
        self.stateless = False  # --stateless: HTTP keeps no session state (any replica may answer)
        self.task_manager: TaskManager | None = None
        self.tasks_error: str | None = None
        self.tasks_ready = anyio.Event()
        # Quieter start: with no task database yet, none is made (nor its folder) until a task needs one.
        self.tasks_wanted = anyio.Event()
        self.tasks_deferred = False
        # One bound for all image work in threads (decode, save, preview) across every call and
        # task: a hundred background tasks finishing together must not decode a hundred images at
        # once (measured: +159 MB peak unbounded, +25 MB with two threads, same wall time).
        self.image_threads = anyio.CapacityLimiter(IMAGE_THREADS)
        self.answer_slots = anyio.CapacityLimiter(ANSWER_SLOTS)
        # Upstream requests in flight, every call and task together (MCP_IMAGES_MAX_UPSTREAM):
        # a burst above the provider's own concurrency only earns 429s and their retries.
        self.upstream_slots = anyio.CapacityLimiter(settings.max_upstream)
        self.http_secrets: tuple[str, ...] = ()  # bearer tokens (server.http_app sets them, for the scrubber)
        self.public_downloads: Any = None  # signs download URLs when MCP_IMAGES_PUBLIC_URL is set (server.downloads)
        self.handoff_now = anyio.Event()  # set on SIGTERM near the end of the grace: attached calls hand off
        self.telemetry: Any = None  # server.telemetry.Telemetry when OpenTelemetry is configured
        # A user's own data files are read now, so a broken one stops the start with its line
        # and reason; the built-in ones load on first use (start-up stays cheap).
        if settings.providers is not None:
            _ = self.provider
        if settings.prices is not None:
            _ = self.prices

    def scrub(self, value: Any) -> Any:
        """``value`` (a result or error as JSON) with the API key cut out of every string.

        A careless or hostile upstream can echo the key anywhere (a revised prompt, a request
        id header, an error field); this is the one place every result and error passes. Every
        form the key takes in a message is cut (repr-escaped, URL-encoded, base64), see `secrets`.
        """
        return self.scrubber(value)

    @cached_property
    def scrubber(self) -> Scrubber:
        """The scrubber for this server's secrets: the API key, the HTTP tokens, the URL signing
        key, the request-state key, the stores' credentials."""
        s = self.settings
        named = [s.api_key, s.url_secret, s.request_state_secret]
        plain = [secret.get_secret_value() if secret else None for secret in named]
        return make_scrubber([*plain, *self.http_secrets, *store_secrets(s)])

    def body_slot(self) -> BodySlot:
        """A claim on reading one upstream answer into files; release it when they are saved."""
        return BodySlot(self.answer_slots)

    async def tasks(self) -> TaskManager:
        """The task manager, once the background start-up has opened its database (asking for
        it opens a database that was deferred at start-up).

        Raises:
            ConfigError: the task database could not be opened (the reason says why).
        """
        from mcp_images.errors import ConfigError

        self.tasks_wanted.set()
        await self.tasks_ready.wait()
        if self.task_manager is None:
            raise ConfigError(self.tasks_error or "background tasks are not running (the server is stopping)")
        return self.task_manager

    @cached_property
    def provider(self) -> Provider:
        from mcp_images.catalog.providers import get_provider

        return get_provider(self.settings.provider, self.settings.providers)

    @cached_property
    def prices(self) -> PriceTable:
        from mcp_images.pricing.table import load_price_table

        return load_price_table(self.settings.prices)

    async def http(self) -> httpx2.AsyncClient:
        """The one pooled client, made on first use."""
        async with self._http_lock:
            if self._http is None:
                import httpx2

                pool = httpx2.AsyncHTTPTransport(
                    limits=httpx2.Limits(max_connections=POOL_MAX_CONNECTIONS, max_keepalive_connections=POOL_KEEPALIVE)
                )
                from mcp_images.server.upstream_limit import LimitedTransport

                transport = LimitedTransport(pool, self.upstream_slots, telemetry=self.telemetry)
                self._http = httpx2.AsyncClient(transport=transport, follow_redirects=False)
            return self._http

    async def api(self) -> ImagesAPI:
        """The upstream client: made once per HTTP client (a call asked for it twice or more,
        ~0.3 ms each: URL parsing, the scrubbed name of the upstream)."""
        from mcp_images.upstream.client import ImagesAPI

        http = await self.http()
        if self._api is not None and self._api[0] is http:
            return self._api[1]
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else None
        api = ImagesAPI(
            http,
            provider=self.provider,
            base_url=self.settings.base_url,
            api_key=key,
            read_timeout=self.settings.timeout,
            max_retries=self.settings.max_retries,
        )
        api.allowed_hosts = tuple(self.settings.allowed_host_set)
        self._api = (http, api)
        return api

    def input_policy(self, client_roots: list[str] | None = None) -> InputPolicy:
        from pathlib import Path

        from mcp_images.inputs.references import InputPolicy

        roots = [self.store.output_dir, *self.settings.input_dir_list]
        local = self.transport_kind == "stdio"
        # Over HTTP the caller is not on this machine: local paths only where the user said so,
        # and a remote client's roots (it could announce "/") widen nothing.
        if local:
            roots += [Path(str(r)) for r in client_roots or []]
        allow_local = local or bool(self.settings.input_dir_list)
        return InputPolicy(
            roots=tuple(roots),
            allow_local_paths=allow_local,
            allowed_hosts=self.settings.allowed_host_set,
            convert_bw_mask=self.settings.convert_mask,
        )

    async def aclose(self) -> None:
        if self._http is not None and self._owns_http:
            await self._http.aclose()
            self._http = None
