"""Task records in SQLite: the table of jobs and the table of the servers that run them.

``<data_dir>/tasks.sqlite3`` holds one row per task (status, phase, progress notes, result or
error, the provider's job id while a provider holds the job) and one row per running server
(*owner*) with its heartbeat, so that any server over the same data folder sees every task and
can tell whose jobs were cut off. `tasks.TaskManager` decides what to do; this module only
stores. WAL mode and short statements let several processes share the file. A statement that
cannot run (the file locked by another program for longer than BUSY_TIMEOUT_SECONDS, a full or
read-only disk) raises `TaskError` naming the file and the reason, never a bare sqlite3 error.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from mcp_images.errors import ConfigError, TaskError

__all__ = ["FINISHED", "SCHEMA_VERSION", "OwnerRow", "TaskRecord", "TaskStatus", "TaskStore"]

TaskStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 5.0  # how long a statement waits for another process's write lock

_JSON_FIELDS = ("progress", "result", "error", "args")
_COLUMNS = (
    "id", "tool", "status", "created_at", "updated_at", "finished_at", "phase", "progress",
    "result", "error", "provider", "provider_task_id", "args", "owner",
)  # fmt: skip
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, tool TEXT NOT NULL, status TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, finished_at REAL,
    phase TEXT, progress TEXT NOT NULL, result TEXT, error TEXT,
    provider TEXT, provider_task_id TEXT, args TEXT NOT NULL, owner TEXT NOT NULL);
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
        self._lock = threading.Lock()
        if path.parent.exists() and not path.parent.is_dir():
            raise ConfigError(
                f"cannot open the task database {path}: the data folder {path.parent} is a file; "
                "remove it, or point MCP_IMAGES_DATA_DIR elsewhere"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit; timeout waits out another process's write lock
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
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
            self._db.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        except (sqlite3.Error, OSError) as exc:
            raise ConfigError(f"cannot open the task database {path}: {exc}") from exc

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[list[Any], int]:
        """Execute one statement; return its rows and row count (read under the lock).

        Raises:
            TaskError: the statement could not run; the message names the file and why.
        """
        try:
            with self._lock:
                cur = self._db.execute(sql, params)
                return cur.fetchall(), cur.rowcount
        except sqlite3.Error as exc:
            raise TaskError(_unusable(self.path, exc)) from exc

    def create(self, tool: str, args: dict[str, Any], *, owner: str, provider: str | None = None) -> TaskRecord:
        now = time.time()
        record = TaskRecord(
            id=f"task-{secrets.token_hex(8)}", tool=tool, status="queued", created_at=now,
            updated_at=now, finished_at=None, phase=None, progress=[], result=None, error=None,
            provider=provider, provider_task_id=None, args=args, owner=owner,
        )  # fmt: skip
        row = _to_row(record.model_dump())
        marks = ", ".join("?" for _ in _COLUMNS)
        self._run(f"INSERT INTO tasks ({', '.join(_COLUMNS)}) VALUES ({marks})", row)
        return record

    def get(self, task_id: str) -> TaskRecord | None:
        rows, _ = self._run(f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE id = ?", (task_id,))
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

    def mark_running(self, task_id: str) -> None:
        """queued -> running (a task cancelled meanwhile stays cancelled)."""
        self._set(task_id, {"status": "running"}, " AND status = 'queued'")

    def claim(self, task_id: str, old_owner: str, new_owner: str) -> bool:
        """Take a task over from a gone owner; False if another server took it first."""
        _, count = self._run(
            "UPDATE tasks SET owner = ?, updated_at = ? WHERE id = ? AND owner = ?",
            (new_owner, time.time(), task_id, old_owner),
        )
        return count == 1

    def unfinished(self) -> list[TaskRecord]:
        rows, _ = self._run(f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE status IN ('queued', 'running')")
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
        rows, _ = self._run("SELECT owner, pid, host, seen_at FROM owners")
        return {owner: OwnerRow(pid, host, seen_at) for owner, pid, host, seen_at in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()

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
