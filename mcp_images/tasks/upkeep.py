"""Keeping task records true while servers come and go and the database now and then says no.

`Owners` is this server's *owner* row (with its heartbeat) and the test of whether another
task's owner is still there: only jobs whose owner is gone are orphans. `DeferredWrites` keeps
what the database refused (a provider's job id, an outcome) in memory until a later write gets
it in. `tasks.TaskManager` uses both; its housekeeping loop sets the pace. Every database call
goes through the task store seam (`tasks.seam.TaskStoreSeam`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from typing import Any

from mcp_images.errors import TaskError
from mcp_images.tasks.seam import TaskStoreSeam
from mcp_images.tasks.store import OwnerRow, TaskRecord, TaskStatus

logger = logging.getLogger(__name__)


class Owners:
    """This server's owner row, and whether the owner of another task is still there."""

    def __init__(self, store: TaskStoreSeam, *, stale_after: float, pid_trust: float) -> None:
        """``stale_after``: an owner silent this long is gone (its lease lapsed). ``pid_trust``: on
        this machine a live pid outweighs a silent heartbeat for this long, unless the store is
        shared across hosts (`TaskStoreSeam.shared_hosts`), where the lease alone decides."""
        self._store = store
        self._stale_after = stale_after
        self._pid_trust = pid_trust
        self.host = socket.gethostname()
        self.me = f"{self.host}:{os.getpid()}:{secrets.token_hex(6)}"

    async def heartbeat(self) -> None:
        """Raises: TaskError: the database refused the write."""
        await self._store.touch_owner(self.me, os.getpid(), self.host)

    async def leave(self) -> None:
        """Raises: TaskError: the database refused the write."""
        await self._store.drop_owner(self.me)

    async def orphans(self) -> list[TaskRecord]:
        """Unfinished tasks whose owner is gone.

        Raises:
            TaskError: the database cannot be read.
        """
        owners = await self._store.owners()
        return [record for record in await self._store.unfinished() if not self.alive(record.owner, owners)]

    def alive(self, owner: str, owners: dict[str, OwnerRow]) -> bool:
        if owner == self.me:
            return True
        row = owners.get(owner)
        if row is None:
            return False
        silent = time.time() - row.seen_at
        if row.host == self.host and not self._store.shared_hosts:
            return silent <= self._pid_trust and pid_alive(row.pid)
        return silent <= self._stale_after


class DeferredWrites:
    """Writes to task records; one the database refuses is kept and written later.

    A kept field stays listed (`queued`) until a write of it succeeds, so that a reader never
    misses a provider's job id while its write is still on the way.
    """

    def __init__(self, store: TaskStoreSeam) -> None:
        self._store = store
        # Fields per task, and outcomes (status, result or error, finished_at) per task.
        self._fields: dict[str, dict[str, Any]] = {}
        self._outcomes: dict[str, dict[str, Any]] = {}

    def keep(self, task_id: str, **fields: Any) -> None:
        """Queue fields for the record without writing them yet (see `write_kept`)."""
        self._fields.setdefault(task_id, {}).update(fields)

    async def write_kept(self, task_id: str) -> None:
        """Write the task's queued fields now, or leave them for the next `flush`."""
        try:
            await self._flush_one(task_id)
        except TaskError:
            logger.warning("task %s: could not write %s yet", task_id, sorted(self._fields.get(task_id, {})))

    async def update(self, task_id: str, **fields: Any) -> None:
        """Update a record now, or at the next `flush` if the database refuses."""
        self.keep(task_id, **fields)
        await self.write_kept(task_id)

    async def finish(self, task_id: str, status: TaskStatus, **fields: Any) -> TaskRecord | None:
        """Write a job's outcome (after any fields still queued for it), or keep it for later;
        the record as it now stands, or None when the outcome was kept."""
        try:
            await self._flush_one(task_id)  # a provider id waiting to be written goes first
            return await self._store.finish(task_id, status, **fields)
        except TaskError:
            logger.exception("task %s: could not record its outcome yet; kept until the database takes it", task_id)
            self._outcomes[task_id] = {"status": status, "finished_at": time.time(), **fields}
            return None

    def queued(self, task_id: str, name: str) -> Any:
        """A field queued for the task's record and not written yet, or None."""
        return self._fields.get(task_id, {}).get(name)

    def outcome(self, task_id: str) -> dict[str, Any] | None:
        """The task's outcome if it is kept here, not yet written: record fields to lay over."""
        return self._outcomes.get(task_id)

    async def flush(self) -> None:
        """Write what the database refused before: fields first, then outcomes.

        Raises:
            TaskError: the database still refuses (what is left stays queued).
        """
        for task_id in list(self._fields):
            await self._flush_one(task_id)
        for task_id, outcome in list(self._outcomes.items()):
            fields = {k: v for k, v in outcome.items() if k not in ("status", "finished_at")}
            await self._store.finish(task_id, outcome["status"], **fields)
            self._outcomes.pop(task_id, None)

    async def _flush_one(self, task_id: str) -> None:
        """Raises: TaskError: the database still refuses (the fields stay queued)."""
        pending = self._fields.get(task_id)
        if not pending:
            return
        written = dict(pending)
        await self._store.update(task_id, **written)
        # Fields queued again while the write was on its way stay for the next write.
        for name, value in written.items():
            if name in pending and pending[name] == value:
                del pending[name]
        if not pending and self._fields.get(task_id) is pending:
            del self._fields[task_id]


def pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT; rely on the heartbeat
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
