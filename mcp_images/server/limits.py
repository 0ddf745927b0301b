"""How many image calls run at once over HTTP: per identity and in all, refused cleanly beyond.

A call over a limit does not wait in a queue (a client's own timeout would then throw away a
call the server is about to make and bill): it gets a tool error at once, structured, that
says how many calls are running for whom and when to try again::

    busy: 4 calls running for alice; retry after 12 s

"Retry after" is a typical call's duration (a moving average of the finished ones), since
that is when a slot is likely to be free. The same gate refuses new calls while the server
drains on SIGTERM (see `server.http_app`), and counts the calls still running so the drain
knows when it is done.

Only the tools that run image jobs are counted (generate_image, edit_image); check_task and
estimate_cost are cheap and always answer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = ["LIMITED_TOOLS", "Busy", "CallLimits", "busy_result"]

LIMITED_TOOLS = frozenset({"generate_image", "edit_image"})
DEFAULT_RETRY_SECONDS = 10.0  # before any call has finished: a quick generation's duration
MIN_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 300.0
SMOOTHING = 0.2  # weight of the newest duration in the moving average


@dataclass(frozen=True)
class Busy:
    """Why a call was refused: for whom, how many are running, when to come back."""

    identity: str
    running: int
    retry_after: float
    scope: str  # "identity", "server" or "draining"

    @property
    def message(self) -> str:
        seconds = math.ceil(self.retry_after)
        if self.scope == "draining":
            return f"busy: the server is shutting down; retry after {seconds} s (another replica, or this one once restarted)"
        whom = self.identity if self.scope == "identity" else "all users of this server"
        return (
            f"busy: {self.running} call{'s' if self.running != 1 else ''} running for {whom}; retry after {seconds} s"
        )


@dataclass
class CallLimits:
    """Counters of running image calls; `enter` claims a slot or raises nothing and says `Busy`."""

    per_identity: int
    total: int
    running: Counter[str] = field(default_factory=Counter)
    draining: bool = False
    _average: float | None = None
    _idle: anyio.Event | None = None

    @property
    def in_flight(self) -> int:
        return sum(self.running.values())

    @property
    def retry_after(self) -> float:
        typical = DEFAULT_RETRY_SECONDS if self._average is None else self._average
        return min(max(typical, MIN_RETRY_SECONDS), MAX_RETRY_SECONDS)

    def check(self, identity: str) -> Busy | None:
        """The refusal for a new call by ``identity`` now (None: it may run)."""
        if self.draining:
            return Busy(identity, self.in_flight, self.retry_after, "draining")
        if self.running[identity] >= self.per_identity:
            return Busy(identity, self.running[identity], self.retry_after, "identity")
        if self.in_flight >= self.total:
            return Busy(identity, self.in_flight, self.retry_after, "server")
        return None

    @contextmanager
    def slot(self, identity: str) -> Iterator[None]:
        """Count a call (already allowed by `check`) while it runs; learn its duration."""
        self.running[identity] += 1
        started = anyio.current_time()
        try:
            yield
        finally:
            self.running[identity] -= 1
            if self.running[identity] <= 0:
                del self.running[identity]
            took = anyio.current_time() - started
            self._average = took if self._average is None else (1 - SMOOTHING) * self._average + SMOOTHING * took
            if self._idle is not None and not self.running:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no call is running (used by the drain)."""
        while self.running:
            self._idle = anyio.Event()
            await self._idle.wait()


def busy_result(busy: Busy) -> Any:
    """The tool error for a refused call (structured, ``isError``), like the project's other errors."""
    from mcp.types import CallToolResult, TextContent

    detail = {
        "type": "Busy",
        "code": "busy",
        "message": busy.message,
        "identity": busy.identity,
        "running": busy.running,
        "retry_after_seconds": math.ceil(busy.retry_after),
        "limit": busy.scope,
    }
    return CallToolResult(
        content=[TextContent(type="text", text=busy.message)], structured_content={"error": detail}, is_error=True
    )
