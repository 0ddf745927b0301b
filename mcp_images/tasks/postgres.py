"""The scaled task store: PostgreSQL, shared by many stateless replicas.

Driver: asyncpg (maintained, asyncio-native, its own pool, LISTEN/NOTIFY on a connection);
imported only when a ``postgresql://`` URL is configured, so the stdio default never loads it.

- The schema is created and migrated on start under an advisory lock (replicas starting
  together migrate once), versioned in ``mcp_images_schema``; a newer schema is refused.
- A task row is INSERTed (autocommit) before its id is returned.
- A replica's *lease* is its owner row: renewed by every heartbeat, stamped with the
  database's clock (``owners`` reports ages, so replicas' clocks may disagree).
- A lapsed owner's task is taken with ``FOR UPDATE SKIP LOCKED``: exactly one survivor gets
  it, none waits on another's lock.
- Every UPDATE of a task fires ``pg_notify`` (a trigger); `watch` wakes on it (one listening
  connection per replica), so ``check_task`` on any replica long-polls without polling.

Every failure raises `TaskError` naming the database by its URL without the password.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from mcp_images.errors import TaskError
from mcp_images.tasks.pg_database import CONNECT_TIMEOUT_SECONDS, Database, redact_url
from mcp_images.tasks.postgres_schema import CHANNEL, COLUMNS, JSON_FIELDS
from mcp_images.tasks.seam import ChangeWatch
from mcp_images.tasks.store import OwnerRow, TaskRecord, TaskStatus

__all__ = ["PostgresTaskStore", "redact_url"]

POOL_MAX = 10  # connections per replica; a statement is ~1 ms, so 10 carry hundreds of tasks
LISTEN_RETRY_SECONDS = 1.0  # while the listening connection is down, waiters re-read this often
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM mcp_images_tasks"
_UNFINISHED = "status IN ('queued', 'running')"


class _Watch:
    def __init__(self, listener: _Listener, task_id: str) -> None:
        self._listener, self._task_id = listener, task_id
        self.event = anyio.Event()

    async def wait(self, timeout: float) -> None:
        live = await self._listener.ensure()
        with anyio.move_on_after(max(0.0, timeout if live else min(timeout, LISTEN_RETRY_SECONDS))):
            await self.event.wait()
        self._listener.rearm(self)  # before the caller re-reads: a change from now on is not missed


class _Listener:
    """One connection LISTENing on the tasks channel; wakes the watches of a changed task."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn: Any = None
        self._lock = anyio.Lock()
        self._watches: dict[str, set[_Watch]] = {}

    async def ensure(self) -> bool:
        """Connect if needed; False while the database cannot be reached (waiters re-read)."""
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed():
                return True
            import asyncpg

            try:
                self._conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_SECONDS)
                await self._conn.add_listener(CHANNEL, self._on_notify)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                self._conn = None
                return False
            for watches in self._watches.values():  # anything may have changed while deaf
                for watch in watches:
                    watch.event.set()
            return True

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, task_id: str) -> None:
        for watch in self._watches.get(task_id, ()):
            watch.event.set()

    def add(self, watch: _Watch, task_id: str) -> None:
        self._watches.setdefault(task_id, set()).add(watch)

    def remove(self, watch: _Watch, task_id: str) -> None:
        watches = self._watches.get(task_id, set())
        watches.discard(watch)
        if not watches:
            self._watches.pop(task_id, None)

    def rearm(self, watch: _Watch) -> None:
        if watch.event.is_set():
            watch.event = anyio.Event()

    async def aclose(self) -> None:
        if self._conn is not None and not self._conn.is_closed():
            with anyio.move_on_after(CONNECT_TIMEOUT_SECONDS, shield=True):
                await self._conn.close()
        self._conn = None


class PostgresTaskStore:
    """Task and owner records in PostgreSQL (see the module docstring); a `seam.TaskStoreSeam`."""

    shared_hosts = True  # replicas may run in containers that share a pid space and a host name

    def __init__(self, db: Database, dsn: str) -> None:
        self._db = db
        self._conn = db.conn
        self.where = db.where
        self._listener = _Listener(dsn)

    @classmethod
    async def open(cls, dsn: str) -> PostgresTaskStore:
        """Connect, create the schema or migrate it.

        Raises:
            TaskError: the database cannot be reached now (try again later).
            ConfigError: it holds a schema from a newer mcp-images.
        """
        return cls(await Database.open(dsn, max_size=POOL_MAX, unusable=_unusable), dsn)

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
        now = time.time()
        fields: dict[str, Any] = {
            "id": f"task-{secrets.token_hex(8)}", "tool": tool, "status": status, "created_at": now,
            "updated_at": now, "finished_at": None, "phase": None, "progress": [], "result": None,
            "error": None, "provider": provider, "provider_task_id": None, "args": args, "owner": owner,
            "identity": identity,
        }  # fmt: skip
        marks = ", ".join(f"${n}" for n in range(1, len(COLUMNS) + 1))
        async with self._conn() as conn:
            await conn.execute(
                f"INSERT INTO mcp_images_tasks ({', '.join(COLUMNS)}) VALUES ({marks})", *_params(fields)
            )
        return TaskRecord.model_validate(fields)

    async def get(self, task_id: str) -> TaskRecord | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(f"{_SELECT} WHERE id = $1", task_id)
        return _record(row) if row is not None else None

    async def update(self, task_id: str, **fields: Any) -> TaskRecord:
        record = await self._set(task_id, fields, "")
        return record if record is not None else await self._must_get(task_id)

    async def finish(self, task_id: str, status: TaskStatus, **fields: Any) -> TaskRecord:
        fields.update(status=status, finished_at=time.time())
        record = await self._set(task_id, fields, f" AND {_UNFINISHED}")
        return record if record is not None else await self._must_get(task_id)

    async def claim(self, task_id: str, old_owner: str, new_owner: str) -> bool:
        sql = (
            "UPDATE mcp_images_tasks SET owner = $3, updated_at = $4 WHERE id = (SELECT id FROM mcp_images_tasks "
            f"WHERE id = $1 AND owner = $2 AND {_UNFINISHED} FOR UPDATE SKIP LOCKED)"
        )
        async with self._conn() as conn:
            status = await conn.execute(sql, task_id, old_owner, new_owner, time.time())
        return status == "UPDATE 1"

    async def unfinished(self) -> list[TaskRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(f"{_SELECT} WHERE {_UNFINISHED}")
        return [_record(row) for row in rows]

    async def expire(self, older_than_seconds: float) -> int:
        sql = "DELETE FROM mcp_images_tasks WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < $1"
        async with self._conn() as conn:
            status = await conn.execute(sql, time.time() - older_than_seconds)
        return int(status.rsplit(" ", 1)[-1])

    async def touch_owner(self, owner: str, pid: int, host: str) -> None:
        sql = (
            "INSERT INTO mcp_images_owners (owner, pid, host, seen_at) VALUES ($1, $2, $3, "
            "extract(epoch FROM clock_timestamp())) ON CONFLICT (owner) DO UPDATE "
            "SET pid = excluded.pid, host = excluded.host, seen_at = excluded.seen_at"
        )
        async with self._conn() as conn:
            await conn.execute(sql, owner, pid, host)

    async def drop_owner(self, owner: str) -> None:
        async with self._conn() as conn:
            await conn.execute("DELETE FROM mcp_images_owners WHERE owner = $1", owner)

    async def owners(self) -> dict[str, OwnerRow]:
        sql = "SELECT owner, pid, host, extract(epoch FROM clock_timestamp()) - seen_at AS age FROM mcp_images_owners"
        async with self._conn() as conn:
            rows = await conn.fetch(sql)
        now = time.time()  # ages on the database's clock, laid on ours
        return {row["owner"]: OwnerRow(row["pid"], row["host"], now - float(row["age"])) for row in rows}

    @asynccontextmanager
    async def watch(self, task_id: str) -> AsyncIterator[ChangeWatch]:
        watch = _Watch(self._listener, task_id)
        self._listener.add(watch, task_id)
        try:
            await self._listener.ensure()  # listening before the caller reads the record
            yield watch
        finally:
            self._listener.remove(watch, task_id)

    async def ping(self, timeout: float) -> None:
        """A ``SELECT 1`` through the pool, all of it (a connection, the answer) within ``timeout``."""
        await self._db.ping(timeout)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._listener.aclose()
            await self._db.close()

    async def _set(self, task_id: str, fields: dict[str, Any], where: str) -> TaskRecord | None:
        unknown = set(fields) - set(COLUMNS[1:])
        if unknown:  # names go into the SQL text, so only known columns pass
            raise ValueError(f"unknown task fields: {sorted(unknown)}")
        fields = {"updated_at": time.time(), **fields}
        sets = ", ".join(f"{name} = ${n}" for n, name in enumerate(fields, start=2))
        sql = f"UPDATE mcp_images_tasks SET {sets} WHERE id = $1{where} RETURNING {', '.join(COLUMNS)}"
        async with self._conn() as conn:
            row = await conn.fetchrow(sql, task_id, *_params(fields))
        return _record(row) if row is not None else None

    async def _must_get(self, task_id: str) -> TaskRecord:
        record = await self.get(task_id)
        if record is None:
            raise TaskError(f"no task with id {task_id}")
        return record


def _params(fields: dict[str, Any]) -> list[Any]:
    return [json.dumps(v) if k in JSON_FIELDS and v is not None else v for k, v in fields.items()]


def _record(row: Any) -> TaskRecord:
    data = dict(row.items())
    for name in JSON_FIELDS:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    return TaskRecord.model_validate(data)


def _unusable(where: str, reason: str) -> TaskError:
    return TaskError(
        f"the task database {where} cannot be used right now ({reason}): is PostgreSQL running and "
        "reachable? check MCP_IMAGES_DATABASE_URL; nothing recorded is lost, try again"
    )
