"""Progress for long calls: a phase line on every change and a heartbeat while waiting.

Some clients reset their tool-call timeout on each progress notification; a heartbeat
every few seconds keeps such clients waiting for a slow (1-2 minute) image instead of
giving up. The sender is injected, so this module knows nothing of MCP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio

from mcp_images.concurrency import single_errors

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 3.0

Send = Callable[[float, float | None, str], Awaitable[None]]


class Progress:
    """Numbered progress messages: ``generating (12 s)``, ``partial image 1 saved: images://…``."""

    def __init__(self, send: Send | None = None, *, heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self._send = send
        self._heartbeat = heartbeat
        self._count = 0
        self._phase = "starting"
        self._started = time.monotonic()
        self.events: list[str] = []  # kept for tasks: check_task reports progress so far

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    @property
    def phase_name(self) -> str:
        return self._phase

    async def phase(self, name: str) -> None:
        """Enter a phase (uploading, generating, downloading, saving) and say so."""
        self._phase = name
        await self._emit(f"{name} ({self.elapsed:.0f} s)")

    async def note(self, message: str) -> None:
        """A one-off event, such as a partial image saved."""
        self.events.append(message)
        await self._emit(message)

    async def _emit(self, message: str) -> None:
        self._count += 1
        if self._send is None:
            return
        try:
            await self._send(self._count, None, message)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The client went away; the call itself decides what that means.
            logger.debug("progress not delivered: client stream closed")

    @asynccontextmanager
    async def beating(self) -> AsyncIterator[None]:
        """Send ``<phase> (N s)`` every few seconds until the block ends."""

        async def beat() -> None:
            while True:
                await anyio.sleep(self._heartbeat)
                await self._emit(f"{self._phase} ({self.elapsed:.0f} s)")

        with single_errors():
            async with anyio.create_task_group() as tg:
                tg.start_soon(beat)
                try:
                    yield
                finally:
                    tg.cancel_scope.cancel()
