"""A request body limit for the streamable HTTP transport, enforced while the body is read.

Threat: over HTTP anyone who can reach the port can POST. The SDK's own limit buffers the
whole body before it looks, and ours was 128 MB so edits could carry images inline: one
``tools/call`` with a 100 MB data URI took the server from 74 MB to 883 MB resident although it
was refused, and a 100 MB body without a session id was read whole before "Missing session ID".

This middleware sits outside the SDK's app. A declared ``Content-Length`` over the limit is
answered 413 before a byte of the body is read; a chunked body is counted as it streams and
cut the moment it passes the limit: the 413 goes out at once, the app behind sees the client
disconnect, and whatever it still sends is dropped. uvicorn then closes the connection, so
the rest of the body is never read. The answer is a JSON-RPC error a client can show.

Measured (benchmarks/http_body_limit.py, limit 80 MiB): a refused 100 MB call with a
Content-Length now costs +0.3 MiB peak RSS (it was +680 MiB when the 128 MB limit let it in);
sent chunked, +160 MiB, because the SDK buffers the body up to the limit before we cut it.

Residual risk: a body under the limit is still buffered and parsed whole by the SDK (six to
seven times its size at peak: 79 MiB -> +458 MiB), so the limit is the bound on what one
request costs. The limit is `config.Settings.http_max_body_mb`; its default is explained
at `config.DEFAULT_HTTP_MAX_BODY_MB`.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["INVALID_REQUEST", "BodyLimit", "limit_request_bodies"]

INVALID_REQUEST = -32600  # JSON-RPC 2.0: "the JSON sent is not a valid Request object"
MIB = 1024 * 1024


def _too_large(limit: int, declared: int | None) -> bytes:
    size = f"{declared / MIB:,.1f} MiB" if declared is not None else f"over {limit / MIB:,.1f} MiB"
    message = (
        f"the request body is {size}; this server takes at most {limit / MIB:,.1f} MiB per request "
        "(MCP_IMAGES_HTTP_MAX_BODY_MB): pass large images as https:// URLs or images:// ids, not inline base64"
    )
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}
    return json.dumps(body).encode()


async def _send_413(send: Send, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server's HTTP parser refuses a bad one before we are called
    return None


class BodyLimit:
    """ASGI middleware: no HTTP request body larger than ``max_bytes`` gets past it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be a positive number of bytes")
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _send_413(send, _too_large(self.max_bytes, declared))
            return
        await self.app(scope, *_Counted(self.max_bytes, receive, send).channels())


class _Counted:
    """One request's receive and send, with the body counted and cut at the limit."""

    def __init__(self, max_bytes: int, receive: Receive, send: Send) -> None:
        self.max_bytes = max_bytes
        self._receive = receive
        self._send = send
        self.received = 0
        self.started = False  # the app has begun its response
        self.refused = False  # we answered 413: the app's own answer is dropped

    def channels(self) -> tuple[Receive, Send]:
        return self.receive, self.send

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.max_bytes:
                self.refused = True
                if not self.started:
                    await _send_413(self._send, _too_large(self.max_bytes, None))
                return {"type": "http.disconnect"}  # the app stops as if the client had left
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def limit_request_bodies(app: Any, max_bytes: int) -> BodyLimit:
    """``app`` (the SDK's Starlette app) behind a body limit of ``max_bytes``."""
    return BodyLimit(app, max_bytes)
