"""A bound on upstream requests in flight (``MCP_IMAGES_MAX_UPSTREAM``), at the pooled client's transport.

Every upstream attempt (generations, edits, polls, result downloads) goes through the one
pooled httpx2 client (`runtime.Runtime.http`), so a transport that holds a slot from sending a
request until its answer is closed bounds them all, with no change to the upstream code.
Retry waits happen between attempts and hold no slot. Above the provider's own concurrency a
burst of calls only earns 429s and their retries; here they wait for a slot instead.

With telemetry on, each request is also an OpenTelemetry client span (`server.telemetry`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx2

__all__ = ["LimitedTransport"]


class LimitedTransport(httpx2.AsyncBaseTransport):
    """Holds one of ``slots`` from sending a request to closing its answer (see the module docstring)."""

    def __init__(
        self, inner: httpx2.AsyncBaseTransport, slots: anyio.CapacityLimiter, *, telemetry: Any = None
    ) -> None:
        self._inner = inner
        self._slots = slots
        self._telemetry = telemetry

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        token = object()
        await self._slots.acquire_on_behalf_of(token)
        span = self._telemetry.upstream_span(request) if self._telemetry is not None else None
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException as exc:
            self._slots.release_on_behalf_of(token)
            if span is not None:
                span.fail(exc)
            raise
        status = response.status_code

        def done(failure: BaseException | None = None) -> None:
            self._slots.release_on_behalf_of(token)
            if span is not None:
                span.finish(status, failure)

        if isinstance(response.stream, httpx2.ByteStream):  # already in memory (a mock): nothing in flight
            done()
            return response
        response.stream = _ReleasingStream(response.stream, done)  # type: ignore[arg-type]
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _ReleasingStream(httpx2.AsyncByteStream):
    """A response body that calls ``release`` once, when it is closed (with the error that broke
    reading it, if one did)."""

    def __init__(self, inner: Any, release: Callable[[BaseException | None], None]) -> None:
        self._inner = inner
        self._release: Callable[[BaseException | None], None] | None = release
        self._failure: BaseException | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            self._failure = exc
            raise

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release(self._failure)
