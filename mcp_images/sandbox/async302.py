"""302.ai's asynchronous mode: submit with ``?async=true``, then poll ``/async_result``.

The submit answers ``{"task_id": ...}`` at once. The poll answers
``{"status_code": 200, "data": null, "err": "result pending"}`` for the configured number of
polls, then ``{"status_code": 200, "data": <the normal body>, "err": ""}``. Every other task
gives ``data`` as a JSON string, as some deployments do, so clients meet both forms. A failure
chosen by a mode comes back as ``{"status_code": <status>, "data": null, "err": <message>}``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp_images.sandbox.modes import Failure, Modes
from mcp_images.sandbox.params import Call
from mcp_images.sandbox.respond import finished_body
from mcp_images.sandbox.state import SandboxSettings, SandboxState, Task, new_id

PENDING = "result pending"


async def submit(request: Request, call: Call, modes: Modes, failure: Failure | None) -> Response:
    """Start a task: the result (or the failure) is decided now and revealed by the polls."""
    state: SandboxState = request.app.state.sandbox
    settings: SandboxSettings = request.app.state.settings
    body = None if failure is not None else await finished_body(request, call, modes)
    task = Task(
        task_id=new_id("task_"),
        pending_polls=settings.async_pending_polls,
        status_code=failure.status if failure is not None else 200,
        body=body,
        err=failure.message if failure is not None else "",
        data_as_string=len(state.tasks) % 2 == 1,
    )
    state.tasks[task.task_id] = task
    return JSONResponse({"task_id": task.task_id})


def poll(request: Request) -> Response:
    """One poll of ``?task_id=``: pending, the result, or the failure."""
    state: SandboxState = request.app.state.sandbox
    task_id = request.query_params.get("task_id", "")
    task = state.tasks.get(task_id)
    if task is None:
        return JSONResponse({"status_code": 400, "data": None, "err": f"task {task_id!r} not found"})
    task.polls += 1
    if task.polls <= task.pending_polls:
        return JSONResponse({"status_code": 200, "data": None, "err": PENDING})
    data: Any = None
    if task.body is not None:
        data = json.dumps(task.body) if task.data_as_string else task.body
    return JSONResponse({"status_code": task.status_code, "data": data, "err": task.err})
