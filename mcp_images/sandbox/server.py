"""Running the sandbox: inside the caller's event loop (tests) or as a blocking command."""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import uvicorn

from mcp_images.listening import listening_socket
from mcp_images.sandbox.app import create_app
from mcp_images.sandbox.state import SandboxState

STARTUP_TIMEOUT = 10.0  # seconds for uvicorn to come up on an already bound socket
SHUTDOWN_TIMEOUT = 5.0  # seconds before a stuck shutdown is cancelled
GRACEFUL_SHUTDOWN = 2  # seconds uvicorn waits for in-flight requests


@dataclass(frozen=True)
class SandboxServer:
    """A running sandbox: where it listens and what it has seen."""

    origin: str  # http://127.0.0.1:PORT
    state: SandboxState

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"{self.origin}/v1"


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the host process owns Ctrl-C) that stops at once.

    uvicorn polls ``should_exit`` every 0.1 s; tests start and stop many servers, so `stop`
    wakes the main loop instead of waiting for the next tick.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._stop = anyio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def stop(self) -> None:
        self.should_exit = True
        self._stop.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, less its fixed 0.1 s pause (lifespan is off, nothing else to do)."""
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()  # idle keep-alive connections close now, busy ones after answering
        with anyio.move_on_after(GRACEFUL_SHUTDOWN):
            while self.server_state.connections or self.server_state.tasks:
                await anyio.sleep(0.005)
        for task in self.server_state.tasks:
            task.cancel()
        with anyio.move_on_after(GRACEFUL_SHUTDOWN):  # 3.12+ waits for clients that linger
            for server in self.servers:
                await server.wait_closed()

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with anyio.move_on_after(0.1):  # the tick uvicorn's own loop keeps
                await self._stop.wait()


def _origin(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _config(app: Any, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        lifespan="off",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )


@contextlib.asynccontextmanager
async def serve_sandbox(*, host: str = "127.0.0.1", port: int = 0, **app_kwargs: Any) -> AsyncIterator[SandboxServer]:
    """Run the sandbox in the current (asyncio) event loop for the duration of the block.

    ``port=0`` picks a free port. ``app_kwargs`` go to `create_app`. On exit the server stops
    accepting, finishes or cancels what is in flight, and leaves no task behind.

    Raises:
        OSError: the address cannot be bound.
        TimeoutError: uvicorn did not start within STARTUP_TIMEOUT seconds.
    """
    app = create_app(**app_kwargs)
    sock = listening_socket(host, port)
    server = _Server(_config(app, host, port, "warning"))
    stopped = anyio.Event()

    async def serve() -> None:
        try:
            await server.serve([sock])
        finally:
            stopped.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            with anyio.fail_after(STARTUP_TIMEOUT):
                while not server.started and not stopped.is_set():
                    await anyio.sleep(0.005)
            try:
                yield SandboxServer(origin=_origin(host, sock), state=app.state.sandbox)
            finally:
                # Let uvicorn shut down by itself (even when the block failed or was cancelled):
                # cancelling it mid-flight would leave its connection tasks behind.
                server.stop()
                with anyio.move_on_after(SHUTDOWN_TIMEOUT, shield=True):
                    await stopped.wait()
                tg.cancel_scope.cancel()
    finally:
        sock.close()


def run(host: str = "127.0.0.1", port: int = 0, **app_kwargs: Any) -> None:
    """Serve the sandbox until Ctrl-C (``mcp-images sandbox``).

    The first line on stdout is exactly ``sandbox listening on http://HOST:PORT/v1``: the
    demo reads it to find the port.

    Raises:
        OSError: the address cannot be bound.
    """
    app = create_app(**app_kwargs)
    sock = listening_socket(host, port)
    origin = _origin(host, sock)
    print(f"sandbox listening on {origin}/v1", flush=True)  # noqa: T201 - CLI output
    print(  # noqa: T201 - CLI output
        f"point mcp-images at it: MCP_IMAGES_BASE_URL={origin}/v1 MCP_IMAGES_API_KEY=sandbox "
        "(images are labelled placeholders; put [sandbox:<mode>] in a prompt to fail on purpose)",
        flush=True,
    )
    server = uvicorn.Server(_config(app, host, port, "info"))
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    sock.close()
    sys.stdout.flush()
