"""A test host for MCP Apps on 127.0.0.1: the host page, and the relay from the page to MCP.

The page (``host.html`` + ``host.js``) embeds the app in a sandboxed iframe and answers its
postMessage JSON-RPC. What the app asks of the server (tools/list, tools/call,
resources/read) the page POSTs to ``/rpc``; here it goes to a real mcp-images server through
the test's in-memory `mcp.Client`, which negotiated the Apps extension as a real host would.
Every relayed call is kept in `HostServer.calls` for the test to check.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from mcp import Client, MCPError
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

HERE = Path(__file__).parent
STARTUP_TIMEOUT = 10.0  # seconds for uvicorn to listen on the bound socket


@dataclass
class HostServer:
    """The running host: its address and every MCP request the page relayed."""

    origin: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def tool_calls(self, name: str) -> list[dict[str, Any]]:
        """The arguments of each relayed tools/call of ``name``, in order."""
        return [p.get("arguments") or {} for m, p in self.calls if m == "tools/call" and p.get("name") == name]


def _wire(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(by_alias=True, mode="json", exclude_none=True)


async def relay(client: Client, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One MCP request from the page, sent through ``client``; the answer as wire JSON."""
    if method == "tools/list":
        return _wire(await client.list_tools())
    if method == "tools/call":
        return _wire(await client.call_tool(params["name"], params.get("arguments") or {}))
    if method == "resources/read":
        return _wire(await client.read_resource(params["uri"]))
    raise MCPError(code=-32601, message=f"the test host does not relay {method}")


def host_app(client: Client, host: HostServer) -> Starlette:
    async def rpc(request: Request) -> Response:
        body = await request.json()
        method, params = body["method"], body.get("params") or {}
        host.calls.append((method, params))
        try:
            return JSONResponse({"result": await relay(client, method, params)})
        except MCPError as exc:
            return JSONResponse({"error": {"code": exc.error.code, "message": exc.error.message}})

    async def page(request: Request) -> Response:
        return FileResponse(HERE / "host.html", media_type="text/html")

    async def script(request: Request) -> Response:
        return FileResponse(HERE / "host.js", media_type="text/javascript")

    return Starlette(routes=[Route("/", page), Route("/host.js", script), Route("/rpc", rpc, methods=["POST"])])


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: pytest owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_host(client: Client) -> AsyncIterator[HostServer]:
    """Serve the host page and relay on a free loopback port for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    host = HostServer(origin=f"http://127.0.0.1:{sock.getsockname()[1]}")
    config = uvicorn.Config(host_app(client, host), lifespan="off", log_level="warning", access_log=False)
    server = _Server(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve, [sock])
            with anyio.fail_after(STARTUP_TIMEOUT):
                while not server.started:
                    await anyio.sleep(0.01)  # polls a condition, under a deadline
            try:
                yield host
            finally:
                server.should_exit = True
    finally:
        sock.close()
