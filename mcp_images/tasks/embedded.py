"""The embedded task store behind the seam: SQLite in the data folder, off the event loop.

`store.AsyncTaskStore` already runs every call in a worker thread; this adds what the seam
asks besides: a watch (SQLite cannot notify another process, so a waiter re-reads the record
every `POLL_SECONDS`) and an async close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from mcp_images.tasks.seam import ChangeWatch
from mcp_images.tasks.store import AsyncTaskStore, TaskStore

__all__ = ["POLL_SECONDS", "EmbeddedTaskStore"]

POLL_SECONDS = 0.5  # how often a waiter re-reads a record that another process owns


class _Poll:
    async def wait(self, timeout: float) -> None:
        await anyio.sleep(max(0.0, min(timeout, POLL_SECONDS)))


class EmbeddedTaskStore(AsyncTaskStore):
    """`AsyncTaskStore` as a `seam.TaskStoreSeam`."""

    shared_hosts = False  # one machine: a live pid outweighs a silent heartbeat (a laptop that slept)

    def __init__(self, store: TaskStore) -> None:
        super().__init__(store)
        self.where = str(store.path)

    @classmethod
    async def open(cls, path: Path) -> EmbeddedTaskStore:
        """Raises: ConfigError: the file is not a task database this version can use."""
        # Opening runs pragmas that may wait on another program's lock: never on the loop.
        return cls(await anyio.to_thread.run_sync(TaskStore, path))

    @asynccontextmanager
    async def watch(self, task_id: str) -> AsyncIterator[ChangeWatch]:
        yield _Poll()

    async def ping(self, timeout: float) -> None:
        """The file is open in this process: it answers (a lock held elsewhere delays only writes)."""

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self.store.close)
