"""``/healthz`` (the process answers) and ``/readyz`` (it can do work), unauthenticated, no secrets.

``/readyz`` checks what a call needs, each within `READY_TIMEOUT_SECONDS` (the two stores at once):

- ``tasks``: the task store is open and answers (PostgreSQL: a ``SELECT 1`` through the pool);
- ``output``: the image store takes writes (`ImageStoreSeam.check_writable`: the output folder
  is writable or can be made; an S3 bucket answers, asked in a worker thread);
- ``upstream``: an upstream is configured (a key, and a base URL);
- ``accepting_calls``: the server is not shutting down.

It answers 200 when all hold and 503 otherwise, with a word or two per check, never a path, key
or reason text that could hold one (those are in the server's log and in ``mcp-images doctor``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from mcp_images.runtime import Runtime

logger = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 2.0  # a store that takes longer than this to answer is not ready


class ThreadProbe:
    """A blocking check run in a worker thread, given `READY_TIMEOUT_SECONDS` to answer.

    A check that does not answer in time is left to finish on its own (a thread cannot be
    stopped); until it does, no other is started, so a hanging store does not pile up threads
    however often a load balancer asks.
    """

    def __init__(self, check: Callable[[], None]) -> None:
        self._check = check
        self._running = False

    def _run(self) -> str:
        from mcp_images.errors import ConfigError

        try:
            self._check()
        except ConfigError as exc:  # the store's own words: which store, why, never a key
            logger.warning("not ready: %s", exc)
            return "not writable"
        except Exception:  # a check's own failure is not ready either, never a 500
            logger.exception("not ready: the image store's check failed")
            return "unavailable"
        finally:
            self._running = False
        return "ok"

    async def __call__(self) -> str:
        if self._running:
            return "not answering"
        self._running = True
        with anyio.move_on_after(READY_TIMEOUT_SECONDS):
            return await anyio.to_thread.run_sync(self._run, abandon_on_cancel=True)
        return "not answering"


async def _tasks_check(rt: Runtime) -> str:
    from mcp_images.errors import TaskError

    manager = rt.task_manager
    if manager is None:
        return "starting" if not rt.tasks_ready.is_set() else "unavailable"
    try:
        await manager.ping(READY_TIMEOUT_SECONDS)
    except TaskError as exc:
        logger.warning("not ready: %s", rt.scrub(str(exc)))
        return "unavailable"
    return "ok"


async def readiness(rt: Runtime, *, draining: bool, output: Callable[[], Any] | None = None) -> dict[str, Any]:
    """The checks and their verdict; ``output`` is the image store's probe (a `ThreadProbe`)."""
    probe = output or ThreadProbe(rt.store.check_writable)
    found: dict[str, str] = {}

    async def run(name: str, check: Callable[[], Any]) -> None:
        found[name] = await check()

    async with anyio.create_task_group() as tg:  # both stores at once: the answer takes one timeout at most
        tg.start_soon(run, "tasks", lambda: _tasks_check(rt))
        tg.start_soon(run, "output", probe)
    base_url = rt.settings.base_url or rt.provider.base_url
    checks = {
        "tasks": found["tasks"],
        "output": found["output"],
        "upstream": "ok" if rt.settings.api_key is not None and base_url else "not configured",
        "accepting_calls": "no (shutting down)" if draining else "ok",
    }
    return {"ready": all(v == "ok" for v in checks.values()), "checks": checks}


def health_routes(rt: Runtime, is_draining: Any) -> list[Route]:
    """The two routes; ``is_draining()`` says whether the server is shutting down."""
    output = ThreadProbe(rt.store.check_writable)

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True}, headers={"Cache-Control": "no-store"})

    async def readyz(_: Request) -> JSONResponse:
        body = await readiness(rt, draining=bool(is_draining()), output=output)
        return JSONResponse(body, status_code=200 if body["ready"] else 503, headers={"Cache-Control": "no-store"})

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
