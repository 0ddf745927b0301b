"""``mcp-images tasks list``: the newest task records, read without creating anything.

Opened read-only: listing never creates the task database or its folder, and never takes a
write lock from a server using it. (``tasks show`` and ``tasks wait`` go through the
``check_task`` tool instead.) The task store has no listing call yet, so the few columns
shown are read here; they are the store's schema version 1.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from mcp_images.errors import TaskError

COLUMNS = ("id", "tool", "status", "created_at", "finished_at", "phase")
DB_NAME = "tasks.sqlite3"
BUSY_TIMEOUT_SECONDS = 2.0


def recent_tasks(data_dir: Path, limit: int) -> list[dict[str, Any]] | None:
    """The ``limit`` newest tasks, newest first; None when there is no task database yet.

    Raises:
        TaskError: the database exists but cannot be read (the reason says why).
    """
    path = data_dir / DB_NAME
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS)
        try:
            rows = db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM tasks ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise TaskError(f"cannot read the task database {path}: {exc}") from exc
    now = time.time()
    tasks = []
    for row in rows:
        task: dict[str, Any] = dict(zip(COLUMNS, row, strict=True))
        task["elapsed_seconds"] = round((task["finished_at"] or now) - task["created_at"], 1)
        tasks.append(task)
    return tasks


def table_lines(tasks: list[dict[str, Any]]) -> list[str]:
    """One aligned line per task: id, tool, status, started (local time), elapsed, phase."""
    rows = [("task", "tool", "status", "started", "took", "phase")]
    for t in tasks:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t["created_at"]))
        rows.append((t["id"], t["tool"], t["status"], started, f"{t['elapsed_seconds']:.0f} s", t["phase"] or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
