"""Task records in SQLite: the table of jobs and the table of the servers that run them.

``<data_dir>/tasks.sqlite3`` holds one row per task (status, phase, progress notes, result or
error, the provider's job id while a provider holds the job) and one row per running server
(*owner*) with its heartbeat, so that any server over the same data folder sees every task and
can tell whose jobs were cut off. `tasks.TaskManager` decides what to do; this module only
stores. WAL mode and short statements let several processes share the file.

A statement waits BUSY_TIMEOUT_SECONDS for another program's lock, and is tried LOCK_RETRIES
more times after short pauses; then it raises `TaskError` ("the task database is locked by
another program: <path>"). Any other failure (a full or read-only disk) raises `TaskError`
naming the file and the reason, never a bare sqlite3 error. Those waits block the calling
thread, so the server never calls `TaskStore` on its event loop: `AsyncTaskStore` runs every
call in a worker thread, one write and one read at a time (a locked database ties up one
thread, not the pool, and other tools go on answering). Reads have a connection of their own:
in WAL mode another program's write lock does not block them, so ``check_task`` still answers.
"""

from __future__ import annotations

import functools
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import anyio
from pydantic import BaseModel

from mcp_images.errors import ConfigError, TaskError

__all__ = ["FINISHED", "SCHEMA_VERSION", "AsyncTaskStore", "OwnerRow", "TaskRecord", "TaskStatus", "TaskStore"]

TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
# 2: tasks.identity, who started the task (issue 11); version 1 files get it added as 'local'.
SCHEMA_VERSION = 2
# A statement waits this long for another process's write lock (sqlite's busy handler), then
# is tried LOCK_RETRIES more times after LOCK_BACKOFF_SECONDS, doubling: ~4.4 s in all before
# the "locked by another program" error. Read when a store opens, so tests can shorten them.
BUSY_TIMEOUT_SECONDS = 1.0
LOCK_RETRIES = 3
LOCK_BACKOFF_SECONDS = 0.05

P = ParamSpec("P")
T = TypeVar("T")

_JSON_FIELDS = ("progress", "result", "error", "args")
_COLUMNS = (
    "id", "tool", "status", "created_at", "updated_at", "finished_at", "phase", "progress",
    "result", "error", "provider", "provider_task_id", "args", "owner", "identity",
)  # fmt: skip
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, tool TEXT NOT NULL, status TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, finished_at REAL,
    phase TEXT, progress TEXT NOT NULL, result TEXT, error TEXT,
    provider TEXT, provider_task_id TEXT, args TEXT NOT NULL, owner TEXT NOT NULL,
    identity TEXT NOT NULL DEFAULT 'local');
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, seen_at REAL NOT NULL);
"""


class TaskRecord(BaseModel):
    """One task as stored: what check_task reports."""

    id: str
    tool: str
    status: TaskStatus
    created_at: float
    updated_at: float
    finished_at: float | None
    phase: str | None
    progress: list[str]  # notes so far, e.g. "partial image 1 saved: images://…"
    result: dict[str, Any] | None  # the finished tool result, opaque here
    error: dict[str, Any] | None  # for failed and cancelled tasks
    provider: str | None
    provider_task_id: str | None  # set while a provider (302.ai async) holds the job
    args: dict[str, Any]
    owner: str  # the manager (process) that runs or last ran the job
    identity: str = "local"  # who started it (identity.identity_of): only they see it

    @property
    def elapsed_seconds(self) -> float:
        return (self.finished_at or time.time()) - self.created_at

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True)
class OwnerRow:
    pid: int
    host: str
    seen_at: float


class TaskStore:
    """A thin sqlite3 layer; every call is short and safe from any thread.

    Every method raises `TaskError` when the database cannot be used at that moment.
    """

    def __init__(self, path: Path) -> None:
        """Open (and create if missing) the task database.

        Raises:
            ConfigError: the file is not a task database this version can use.
        """
        self.path = path
        self._lock = threading.Lock()  # one per connection: writes on _db, reads on _reader
        self._read_lock = threading.Lock()
        self._busy_timeout = BUSY_TIMEOUT_SECONDS
        self._lock_retries = LOCK_RETRIES
        self._backoff = LOCK_BACKOFF_SECONDS
        if path.parent.exists() and not path.parent.is_dir():
            raise ConfigError(
                f"cannot open the task database {path}: the data folder {path.parent} is a file; "
                "remove it, or point MCP_IMAGES_DATA_DIR elsewhere"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit; timeout waits out another process's write lock
            self._db = sqlite3.connect(path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            # safe with WAL (no corruption); a power cut may lose the last progress line
            self._db.execute("PRAGMA synchronous=NORMAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self._db.close()
                raise ConfigError(
                    f"the task database {path} was written by a newer mcp-images "
                    f"(schema {version}); upgrade, or point the data folder elsewhere"
                )
            _migrate(self._db, version)
            self._db.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
            self._reader = sqlite3.connect(
                path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the task database {path}: {exc}") from exc

    def _run(self, sql: str, params: tuple[Any, ...] = (), *, read: bool = False) -> tuple[list[Any], int]:
        """Execute one statement; return its rows and row count (read under the lock).

        Blocks the calling thread while another program holds the database locked (see the
        module docstring): call it from a worker thread, as `AsyncTaskStore` does.

        Raises:
            TaskError: the statement could not run; the message names the file and why.
        """
        db, lock = (self._reader, self._read_lock) if read else (self._db, self._lock)
        for attempt in range(self._lock_retries + 1):
            try:
                with lock:
                    cur = db.execute(sql, params)
                    return cur.fetchall(), cur.rowcount
            except sqlite3.OperationalError as exc:
                if not _is_locked(exc):
                    raise TaskError(_unusable(self.path, exc)) from exc
                if attempt == self._lock_retries:
                    waited = (self._lock_retries + 1) * self._busy_timeout
                    raise TaskError(
                        f"the task database is locked by another program: {self.path} (still locked after "
                        f"{waited:g} s and {self._lock_retries} retries); close the program that holds it "
                        "(a database browser, a stuck process?) and try again"
                    ) from exc
            except sqlite3.Error as exc:
                raise TaskError(_unusable(self.path, exc)) from exc
            time.sleep(self._backoff * 2**attempt)  # in a worker thread: the event loop goes on
        raise AssertionError("unreachable")  # the loop returns or raises

    def create(
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
        record = TaskRecord(
            id=f"task-{secrets.token_hex(8)}", tool=tool, status=status, created_at=now,
            updated_at=now, finished_at=None, phase=None, progress=[], result=None, error=None,
            provider=provider, provider_task_id=None, args=args, owner=owner, identity=identity,
        )  # fmt: skip
        row = _to_row(record.model_dump())
        marks = ", ".join("?" for _ in _COLUMNS)
        self._run(f"INSERT INTO tasks ({', '.join(_COLUMNS)}) VALUES ({marks})", row)
        return record

    def get(self, task_id: str) -> TaskRecord | None:
        rows, _ = self._run(f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE id = ?", (task_id,), read=True)
        return _from_row(rows[0]) if rows else None

    def update(self, task_id: str, **fields: Any) -> TaskRecord:
        """Set some fields (``updated_at`` too) and return the record as it now stands.

        Raises:
            TaskError: no record has this id.
        """
        self._set(task_id, fields, "")
        return self._must_get(task_id)

    def finish(self, task_id: str, status: TaskStatus, **fields: Any) -> TaskRecord:
        """Finish a task unless it already finished (a cancel from another server wins).

        Raises:
            TaskError: no record has this id.
        """
        fields.update(status=status, finished_at=time.time())
        self._set(task_id, fields, " AND status IN ('queued', 'running')")
        return self._must_get(task_id)

    def claim(self, task_id: str, old_owner: str, new_owner: str) -> bool:
        """Take a task over from a gone owner; False if another server took it first."""
        _, count = self._run(
            "UPDATE tasks SET owner = ?, updated_at = ? WHERE id = ? AND owner = ?",
            (new_owner, time.time(), task_id, old_owner),
        )
        return count == 1

    def unfinished(self) -> list[TaskRecord]:
        rows, _ = self._run(f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE status IN ('queued', 'running')", read=True)
        return [_from_row(row) for row in rows]

    def expire(self, older_than_seconds: float) -> int:
        """Delete finished records that finished longer ago than that; return how many."""
        _, count = self._run(
            "DELETE FROM tasks WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < ?",
            (time.time() - older_than_seconds,),
        )
        return count

    def touch_owner(self, owner: str, pid: int, host: str) -> None:
        """Register an owner, or say it is still alive."""
        self._run(
            "INSERT OR REPLACE INTO owners (owner, pid, host, seen_at) VALUES (?, ?, ?, ?)",
            (owner, pid, host, time.time()),
        )

    def drop_owner(self, owner: str) -> None:
        self._run("DELETE FROM owners WHERE owner = ?", (owner,))

    def owners(self) -> dict[str, OwnerRow]:
        rows, _ = self._run("SELECT owner, pid, host, seen_at FROM owners", read=True)
        return {owner: OwnerRow(pid, host, seen_at) for owner, pid, host, seen_at in rows}

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._db.close()
            self._reader.close()

    def _set(self, task_id: str, fields: dict[str, Any], where: str) -> None:
        unknown = set(fields) - set(_COLUMNS[1:])
        if unknown:  # names go into the SQL text, so only known columns pass
            raise ValueError(f"unknown task fields: {sorted(unknown)}")
        fields = {"updated_at": time.time(), **fields}
        sets = ", ".join(f"{name} = ?" for name in fields)
        params = (*_to_row(fields), task_id)
        self._run(f"UPDATE tasks SET {sets} WHERE id = ?{where}", params)

    def _must_get(self, task_id: str) -> TaskRecord:
        record = self.get(task_id)
        if record is None:
            raise TaskError(f"no task with id {task_id}")
        return record


class AsyncTaskStore:
    """A `TaskStore` whose every call runs in a worker thread, one call at a time.

    sqlite3 may wait seconds for another program's lock; on the event loop that would freeze
    every session. One call at a time: the connection is shared (under the store's lock), so
    more threads would only queue on that lock, each holding a worker thread while it waits.
    """

    def __init__(self, store: TaskStore) -> None:
        self.store = store
        self.path = store.path
        self._limiter = anyio.CapacityLimiter(1)  # writes (and the read-back some of them do)
        self._read_limiter = anyio.CapacityLimiter(1)

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)

    async def _read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._read_limiter)

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
        return await self._call(
            self.store.create, tool, args, owner=owner, provider=provider, identity=identity, status=status
        )

    async def get(self, task_id: str) -> TaskRecord | None:
        return await self._read(self.store.get, task_id)

    async def update(self, task_id: str, **fields: Any) -> TaskRecord:
        return await self._call(self.store.update, task_id, **fields)

    async def finish(self, task_id: str, status: TaskStatus, **fields: Any) -> TaskRecord:
        return await self._call(self.store.finish, task_id, status, **fields)

    async def claim(self, task_id: str, old_owner: str, new_owner: str) -> bool:
        return await self._call(self.store.claim, task_id, old_owner, new_owner)

    async def unfinished(self) -> list[TaskRecord]:
        return await self._read(self.store.unfinished)

    async def expire(self, older_than_seconds: float) -> int:
        return await self._call(self.store.expire, older_than_seconds)

    async def touch_owner(self, owner: str, pid: int, host: str) -> None:
        await self._call(self.store.touch_owner, owner, pid, host)

    async def drop_owner(self, owner: str) -> None:
        await self._call(self.store.drop_owner, owner)

    async def owners(self) -> dict[str, OwnerRow]:
        return await self._read(self.store.owners)


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a database written by an older version up to `SCHEMA_VERSION` (a new one has nothing to do)."""
    has_tasks = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tasks'").fetchone()
    if version < 2 and has_tasks:
        columns = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
        if "identity" not in columns:  # tasks from before identities were all the local user's
            db.execute("ALTER TABLE tasks ADD COLUMN identity TEXT NOT NULL DEFAULT 'local'")


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    reason = str(exc)
    return "locked" in reason or "busy" in reason


def _unusable(path: Path, exc: sqlite3.Error) -> str:
    """Why the task database cannot be used now, and what the user can do about it."""
    reason = str(exc) or type(exc).__name__
    if "locked" in reason or "busy" in reason:
        hint = "another program holds it locked (a database browser, a stuck process?); close it and try again"
    elif "readonly" in reason or "read-only" in reason:
        hint = "it is read-only; make the data folder writable, or set MCP_IMAGES_DATA_DIR"
    else:
        hint = "try again; if it persists, check the data folder (disk full? permissions?)"
    return f"the task database {path} cannot be used right now ({reason}): {hint}"


def _to_row(fields: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        json.dumps(value) if name in _JSON_FIELDS and value is not None else value for name, value in fields.items()
    )


def _from_row(row: tuple[Any, ...]) -> TaskRecord:
    data = dict(zip(_COLUMNS, row, strict=True))
    for name in _JSON_FIELDS:
        if data[name] is not None:
            data[name] = json.loads(data[name])
    return TaskRecord.model_validate(data)
