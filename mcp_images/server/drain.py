"""Graceful shutdown on SIGTERM: no new calls, running calls finish or are handed off, nothing half-written.

uvicorn, told to stop, closes its listening socket and waits for open connections. Around
that, `DrainingServer`:

1. refuses new image calls at once (``busy: the server is shutting down``, `server.limits`)
   and says so on ``/readyz`` (503), so a load balancer moves traffic elsewhere;
2. gives the calls running to finish up to MCP_IMAGES_HTTP_SHUTDOWN_GRACE seconds
   (default 30) less `HANDOFF_SECONDS`;
3. then hands the ones still running off as tasks (`Runtime.handoff_now`): each client gets
   its task id, as with a long call, instead of a cut connection;
4. closes what is left (idle event streams would otherwise hold uvicorn for the whole
   grace), and the lifespan stops the task manager, which records every job it had to stop
   ("the server stopped"; a job a provider holds stays resumable by the next server).

Nothing is half-written: images are saved by write-then-link (`storage.store`), and a task's
outcome is written under a shielded scope.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import uvicorn

logger = logging.getLogger("mcp_images")

HANDOFF_SECONDS = 2.0  # before the grace ends, calls still running are handed off as tasks
FLUSH_SECONDS = 0.5  # for the last answers to leave before the remaining connections are closed


class DrainingServer(uvicorn.Server):
    """uvicorn's server with the drain above (``built`` is a `server.http_app.HttpApp`)."""

    def __init__(self, config: uvicorn.Config, built: Any) -> None:
        super().__init__(config)
        self.built = built

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        limits = self.built.limits
        limits.draining = True
        running = limits.in_flight
        logger.info("stopping: no new calls; %d running, up to %g s to finish", running, self.built.grace)
        drain = asyncio.ensure_future(self._drain())
        try:
            await super().shutdown(sockets)
        finally:
            drain.cancel()

    async def _drain(self) -> None:
        limits, rt, grace = self.built.limits, self.built.runtime, self.built.grace
        with anyio.move_on_after(max(grace - HANDOFF_SECONDS, 0.0)):
            await limits.wait_idle()
        if limits.running:
            logger.info("handing %d running call(s) off as tasks", limits.in_flight)
            rt.handoff_now.set()
            with anyio.move_on_after(HANDOFF_SECONDS):
                await limits.wait_idle()
        await anyio.sleep(FLUSH_SECONDS)
        for task in list(self.server_state.tasks):  # idle event streams, calls that ignored the hand-off
            task.cancel()
