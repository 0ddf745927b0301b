"""One access-log line per tool call over HTTP, and the gate that applies the call limits.

`CallGate` is SDK middleware (``server.middleware``): it sees every ``tools/call`` with the
caller's identity (the bearer token's name, `identity.identity_of`), refuses one over a
limit or during the drain (`server.limits`), times the call, and writes one line to the
``mcp_images.access`` logger (stderr)::

    {"time": "2026-12-01T20:49:43.120Z", "identity": "alice", "tool": "generate_image",
     "status": "ok", "duration_ms": 1043.2, "cost_usd": 0.211, "task_id": null}

with ``MCP_IMAGES_LOG_FORMAT=json``, or the same fields as ``key=value`` text. Never the
token, the API key, the arguments or image bytes: only the fields above. Metrics and the
upstream spans are `server.telemetry`'s (off unless OpenTelemetry is configured).
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from mcp_images.identity import identity_of
from mcp_images.server.limits import LIMITED_TOOLS, CallLimits, busy_result

logger = logging.getLogger("mcp_images.access")


def _status(result: Any) -> tuple[str, float | None, str | None]:
    """(status, cost in USD, task id) read off a tool result; never its content."""
    if result is None:
        return "error", None, None
    is_error = getattr(result, "is_error", False) if not isinstance(result, dict) else result.get("isError", False)
    structured = getattr(result, "structured_content", None) if not isinstance(result, dict) else None
    if isinstance(result, dict):
        structured = result.get("structuredContent")
    structured = structured if isinstance(structured, dict) else {}
    cost = structured.get("cost")
    usd = cost.get("total_usd") if isinstance(cost, dict) else None
    task = structured.get("task_id")
    if is_error:
        error = structured.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        return ("busy" if code == "busy" else "error"), None, task if isinstance(task, str) else None
    status = structured.get("status")
    return (status if status in ("queued", "running") else "ok"), usd, task if isinstance(task, str) else None


def access_line(fields: dict[str, Any], *, json_format: bool) -> str:
    if json_format:
        return json.dumps(fields, separators=(",", ":"))
    return " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)


class CallGate:
    """SDK middleware: limits, access log and metrics for ``tools/call`` (see the module docstring)."""

    def __init__(self, limits: CallLimits, *, json_format: bool, telemetry: Any = None) -> None:
        self.limits = limits
        self.json_format = json_format
        self.telemetry = telemetry

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        name = ctx.params.get("name") if ctx.params else None
        tool = name if isinstance(name, str) else "?"
        identity = identity_of(ctx)
        started = time.perf_counter()
        result: Any = None
        try:
            if tool in LIMITED_TOOLS:
                busy = self.limits.check(identity)
                if busy is not None:
                    result = busy_result(busy)
                    return result
                with self.limits.slot(identity):
                    result = await call_next(ctx)
            else:
                result = await call_next(ctx)
            return result
        finally:
            self._record(identity, tool, result, time.perf_counter() - started)

    def _record(self, identity: str, tool: str, result: Any, seconds: float) -> None:
        status, usd, task = _status(result)
        fields = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "identity": identity,
            "tool": tool,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "cost_usd": usd,
            "task_id": task,
        }
        logger.info("%s", access_line(fields, json_format=self.json_format))
        if self.telemetry is not None:
            self.telemetry.record_call(tool=tool, status=status, seconds=seconds, cost_usd=usd, result=result)
