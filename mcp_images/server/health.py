"""``/healthz`` (the process answers) and ``/readyz`` (it can do work), unauthenticated, no secrets.

``/readyz`` checks what a call needs: the task database is open, the output folder is
writable (or can be made), and an upstream is configured (a key, and a base URL). It answers
200 when all hold and 503 otherwise, with one word per check, never a path, key or reason
text that could hold one (those are in the server's log and in ``mcp-images doctor``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if TYPE_CHECKING:
    from mcp_images.runtime import Runtime


def _writable(folder: Path) -> bool:
    """The folder is writable, or the nearest existing folder above it is (it is made at the first save)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def readiness(rt: Runtime, *, draining: bool) -> dict[str, Any]:
    tasks = "ok" if rt.task_manager is not None else ("starting" if not rt.tasks_ready.is_set() else "unavailable")
    base_url = rt.settings.base_url or rt.provider.base_url
    checks = {
        "tasks": tasks,
        "output": "ok" if _writable(rt.settings.resolved_output_dir) else "not writable",
        "upstream": "ok" if rt.settings.api_key is not None and base_url else "not configured",
        "accepting_calls": "no (shutting down)" if draining else "ok",
    }
    return {"ready": all(v == "ok" for v in checks.values()), "checks": checks}


def health_routes(rt: Runtime, is_draining: Any) -> list[Route]:
    """The two routes; ``is_draining()`` says whether the server is shutting down."""

    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True}, headers={"Cache-Control": "no-store"})

    async def readyz(_: Request) -> JSONResponse:
        body = readiness(rt, draining=bool(is_draining()))
        return JSONResponse(body, status_code=200 if body["ready"] else 503, headers={"Cache-Control": "no-store"})

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"])]
