"""The task store seam: what `TaskManager` needs from wherever task records live.

Two implementations, one behavioural suite (tests/test_store_seams.py) run against both:

- embedded: SQLite in the data folder (`tasks.embedded.EmbeddedTaskStore` over `store.TaskStore`),
  the default, for one machine; another process's change is seen by re-reading now and then.
- scaled: PostgreSQL (`tasks.postgres.PostgresTaskStore`), for many replicas; a change wakes
  waiters through LISTEN/NOTIFY, a gone owner's task is claimed with FOR UPDATE SKIP LOCKED.

Every method raises `TaskError` (message names the store, never its password) when the store
cannot be used at that moment.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from mcp_images.tasks.store import OwnerRow, TaskRecord, TaskStatus

__all__ = ["ChangeWatch", "TaskStoreSeam"]


class ChangeWatch(Protocol):
    async def wait(self, timeout: float) -> None:
        """Return when the watched record may have changed (or after ``timeout`` seconds)."""
        ...


class TaskStoreSeam(Protocol):
    where: str  # for messages: a path, or the database URL without its password

    async def create(
        self,
        tool: str,
        args: dict[str, Any],
        *,
        owner: str,
        provider: str | None = None,
        identity: str = "local",
        status: TaskStatus = "queued",
    ) -> TaskRecord:
        """A new record (queued, or running when its job starts at once), durable before it returns
        (its id may be handed out)."""
        ...

    async def get(self, task_id: str) -> TaskRecord | None: ...
    async def update(self, task_id: str, **fields: Any) -> TaskRecord: ...
    async def finish(self, task_id: str, status: TaskStatus, **fields: Any) -> TaskRecord:
        """Finish unless already finished (a cancel or a survivor's verdict wins)."""
        ...

    async def claim(self, task_id: str, old_owner: str, new_owner: str) -> bool:
        """Take a task over from a gone owner: True for exactly one claimant."""
        ...

    async def unfinished(self) -> list[TaskRecord]: ...
    async def expire(self, older_than_seconds: float) -> int: ...
    async def touch_owner(self, owner: str, pid: int, host: str) -> None:
        """Register an owner, or renew its lease (its heartbeat)."""
        ...

    async def drop_owner(self, owner: str) -> None: ...
    async def owners(self) -> dict[str, OwnerRow]:
        """Owners with ``seen_at`` on this process's clock (a shared store corrects for skew)."""
        ...

    def watch(self, task_id: str) -> AbstractAsyncContextManager[ChangeWatch]:
        """Watch a record: open the watch before reading it, so no change is missed between."""
        ...

    async def ping(self, timeout: float) -> None:
        """For readiness: raises TaskError unless the store answers within ``timeout`` seconds."""
        ...

    async def aclose(self) -> None: ...

    @property
    def shared_hosts(self) -> bool:
        """True when owners on other machines share the store: leases alone tell who is gone
        (a pid means nothing across containers); False trusts a live pid on this machine."""
        ...
