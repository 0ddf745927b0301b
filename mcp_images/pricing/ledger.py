"""The spending ledger: one row per upstream call, what it was estimated at and what it cost.

Under a budget or a per-call limit a row is written (*reserved*) before the call goes out,
holding its estimate, and *settled* when the call ends (with its task id, in the same write):
succeeded (its cost from the upstream's usage), failed or cancelled (billed or not, or
unknown: see `guard.settle_failure`). With no spending setting nothing needs the estimate
held, so the row is written once, *recorded* settled when the call ends. A row is never
deleted, so a call that failed after it was billed still counts. ``charged_usd`` is what a row holds against the
day's budget: the estimate while running or when the cost is unknown, the cost once known.

`Ledger` is the seam, and the ledger lives where the task records do (`open_ledger`):
`SqliteLedger` keeps the rows in ``spending.sqlite3`` beside the SQLite task database (a file
of its own); with a ``postgresql://`` ``MCP_IMAGES_DATABASE_URL``, `pg_ledger.PostgresLedger`
keeps them in that database, so every replica draws on one budget. The reservation is
atomic: the day's sum is read and the row inserted in one transaction (``BEGIN IMMEDIATE``
here, an advisory lock there), so two calls (in this process or another server over the same
database) racing for the last dollars cannot both get them.

sqlite3 may wait for another program's lock, so every call runs in a worker thread, one at a
time, never on the event loop (as `tasks.store` does). Nothing here imports ``mcp``.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, Protocol, TypeVar

import anyio
from pydantic import BaseModel

from mcp_images.errors import ConfigError

if TYPE_CHECKING:
    from mcp_images.config import Settings

__all__ = [
    "COLUMNS", "SUMS", "Ledger", "LedgerError", "LedgerRow", "NewCall", "Settlement", "SqliteLedger", "Totals",
    "cents", "new_row_values", "open_ledger", "recorded_row_values", "scoped", "sqlite_ledger_path", "where_ledger_is",
]  # fmt: skip

FILE_NAME = "spending.sqlite3"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_SECONDS = 5.0  # another server's reservation holds the write lock for milliseconds

Status = Literal["running", "succeeded", "failed", "cancelled"]
Billed = Literal["pending", "yes", "no", "unknown"]
Admit = Callable[[float], None]  # raises to refuse, given what the scope's day already holds

P = ParamSpec("P")
T = TypeVar("T")

COLUMNS = (
    "id", "created_at", "day", "month", "identity", "tool", "model", "size", "quality", "n",
    "estimate_usd", "currency", "status", "billed", "actual_usd", "charged_usd", "task_id",
    "request_id", "note", "finished_at",
)  # fmt: skip
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT, created_at REAL NOT NULL, day TEXT NOT NULL,
    month TEXT NOT NULL, identity TEXT NOT NULL, tool TEXT NOT NULL, model TEXT NOT NULL,
    size TEXT, quality TEXT, n INTEGER NOT NULL, estimate_usd REAL, currency TEXT NOT NULL,
    status TEXT NOT NULL, billed TEXT NOT NULL, actual_usd REAL, charged_usd REAL NOT NULL,
    task_id TEXT, request_id TEXT, note TEXT NOT NULL DEFAULT '', finished_at REAL);
CREATE INDEX IF NOT EXISTS ledger_day ON ledger (day, identity);
CREATE INDEX IF NOT EXISTS ledger_month ON ledger (month, identity);
"""


class LedgerError(ConfigError):
    """The ledger cannot be read or written now (locked, read-only, not a ledger)."""


@dataclass(frozen=True)
class NewCall:
    """A call about to go upstream."""

    identity: str
    tool: str
    model: str
    n: int
    size: str | None
    quality: str | None
    estimate_usd: float | None
    currency: str
    day: str
    month: str
    created_at: float


@dataclass(frozen=True)
class Settlement:
    """How a call ended and what it cost."""

    status: Status
    billed: Billed
    actual_usd: float | None
    charged_usd: float
    note: str = ""
    request_id: str | None = None


class LedgerRow(BaseModel):
    """One upstream call as recorded."""

    id: int
    created_at: float
    day: str
    month: str
    identity: str
    tool: str
    model: str
    size: str | None
    quality: str | None
    n: int
    estimate_usd: float | None
    currency: str
    status: Status
    billed: Billed
    actual_usd: float | None
    charged_usd: float
    task_id: str | None
    request_id: str | None
    note: str
    finished_at: float | None


@dataclass(frozen=True)
class Totals:
    """A period's calls: ``spent`` (costs known), ``held`` (estimates of calls running),
    ``estimated`` (finished calls of unknown cost, at their estimate); ``committed`` is all three."""

    calls: int = 0
    spent: float = 0.0
    held: float = 0.0
    estimated: float = 0.0

    @property
    def committed(self) -> float:
        return self.spent + self.held + self.estimated

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "spent": round(self.spent, 6), "held": round(self.held, 6),
            "estimated": round(self.estimated, 6), "committed": round(self.committed, 6),
        }  # fmt: skip


class Ledger(Protocol):
    """What the guard and the spending view need of a ledger; ``scope`` None: every identity."""

    async def reserve(self, call: NewCall, *, scope: str | None, admit: Admit) -> int: ...
    async def settle(self, row_id: int, settlement: Settlement, *, task_id: str | None = None) -> None: ...
    async def record(self, call: NewCall, settlement: Settlement, *, task_id: str | None = None) -> int: ...
    async def totals(self, *, period: str, scope: str | None, by_model: bool = False) -> dict[str, Totals]: ...
    async def rows(self, *, period: str, scope: str | None, limit: int = 100) -> list[LedgerRow]: ...
    async def close(self) -> None: ...


def scoped(period: str, scope: str | None, mark: Callable[[int], str] = lambda _: "?") -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause for a period (``YYYY-MM-DD`` a day, ``YYYY-MM`` a month) and a scope;
    ``mark(n)`` is the dialect's n-th placeholder (``?`` here, ``$n`` in PostgreSQL)."""
    column = "day" if len(period) == 10 else "month"
    if scope is None:
        return f"{column} = {mark(1)}", (period,)
    return f"{column} = {mark(1)} AND identity = {mark(2)}", (period, scope)


SUMS = (
    "COUNT(*), COALESCE(SUM(actual_usd), 0), "
    "COALESCE(SUM(CASE WHEN status = 'running' THEN charged_usd ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN status != 'running' AND actual_usd IS NULL THEN charged_usd ELSE 0 END), 0)"
)


class SqliteLedger:
    """The ledger in one SQLite file; every public method runs in a worker thread."""

    def __init__(self, path: Path) -> None:
        """Open (and create) the ledger. Blocks: call it from a worker thread (`open_ledger`).

        Raises:
            LedgerError: the file cannot be opened, or was written by a newer version.
        """
        self.path = path
        self._lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self._db.close()
                raise LedgerError(f"the spending ledger {path} was written by a newer mcp-images; upgrade")
            self._db.executescript(_SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION};")
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"cannot open the spending ledger {path}: {exc}") from exc

    async def _call(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs), limiter=self._limiter)

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"the spending ledger {self.path} cannot be used right now ({exc})") from exc

    def _reserve(self, call: NewCall, scope: str | None, admit: Admit) -> int:
        where, params = scoped(call.day, scope)
        values = new_row_values(call)
        names = ", ".join(COLUMNS[1:16])
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")  # the write lock: no other reservation until COMMIT
                try:
                    (held,) = self._db.execute(
                        f"SELECT COALESCE(SUM(charged_usd), 0) FROM ledger WHERE {where}", params
                    ).fetchone()
                    admit(float(held))
                    cur = self._db.execute(f"INSERT INTO ledger ({names}) VALUES ({', '.join('?' * 15)})", values)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise LedgerError(f"the spending ledger {self.path} cannot be used right now ({exc})") from exc
        return int(cur.lastrowid or 0)

    async def reserve(self, call: NewCall, *, scope: str | None, admit: Admit) -> int:
        """Insert ``call`` as running if ``admit`` (given the day's committed sum) lets it.

        Raises:
            LedgerError: the ledger cannot be written.
            Exception: whatever ``admit`` raises to refuse (nothing is written then).
        """
        return await self._call(self._reserve, call, scope, admit)

    async def settle(self, row_id: int, settlement: Settlement, *, task_id: str | None = None) -> None:
        """How a reserved call ended, and (if given) the task that ran it: one write."""
        s = settlement
        await self._call(
            self._run,
            "UPDATE ledger SET status = ?, billed = ?, actual_usd = ?, charged_usd = ?, note = ?, "
            "request_id = COALESCE(?, request_id), task_id = COALESCE(?, task_id), finished_at = ? WHERE id = ?",
            (
                s.status,
                s.billed,
                cents(s.actual_usd),
                cents(s.charged_usd),
                s.note,
                s.request_id,
                task_id,
                time.time(),
                row_id,
            ),
        )

    async def record(self, call: NewCall, settlement: Settlement, *, task_id: str | None = None) -> int:
        """A call that ended and was never reserved (no spending setting held it): one insert."""
        values = recorded_row_values(call, settlement, task_id)
        sql = f"INSERT INTO ledger ({', '.join(COLUMNS[1:])}) VALUES ({', '.join('?' * len(values))}) RETURNING id"
        found = await self._call(self._run, sql, values)
        return int(found[0][0])

    async def totals(self, *, period: str, scope: str | None, by_model: bool = False) -> dict[str, Totals]:
        """The period's totals, under ``""`` (or by model)."""
        where, params = scoped(period, scope)
        key = "model" if by_model else "''"
        sql = f"SELECT {key}, {SUMS} FROM ledger WHERE {where} GROUP BY 1 ORDER BY 1"
        found = await self._call(self._run, sql, params)
        out = {str(k): Totals(int(c), float(s), float(h), float(e)) for k, c, s, h, e in found}
        return out if by_model else {"": out.get("", Totals())}

    async def rows(self, *, period: str, scope: str | None, limit: int = 100) -> list[LedgerRow]:
        """The period's rows, newest first."""
        where, params = scoped(period, scope)
        sql = f"SELECT {', '.join(COLUMNS)} FROM ledger WHERE {where} ORDER BY id DESC LIMIT ?"
        found = await self._call(self._run, sql, (*params, limit))
        return [LedgerRow.model_validate(dict(zip(COLUMNS, row, strict=True))) for row in found]

    async def close(self) -> None:
        def shut() -> None:
            with self._lock:
                self._db.close()

        await self._call(shut)


def cents(x: float | None) -> float | None:
    """Money as stored: to a millionth of the unit (float sums then read as the results did)."""
    return None if x is None else round(x, 6)


def new_row_values(call: NewCall) -> tuple[Any, ...]:
    """`COLUMNS` [1:16] of a reserved call: running, billing pending, its estimate held."""
    return (
        call.created_at, call.day, call.month, call.identity, call.tool, call.model, call.size,
        call.quality, call.n, cents(call.estimate_usd), call.currency, "running", "pending", None,
        cents(call.estimate_usd) or 0.0,
    )  # fmt: skip


def recorded_row_values(call: NewCall, settlement: Settlement, task_id: str | None) -> tuple[Any, ...]:
    """`COLUMNS` [1:] of a call recorded when it ended (never reserved)."""
    s = settlement
    return (
        call.created_at, call.day, call.month, call.identity, call.tool, call.model, call.size,
        call.quality, call.n, cents(call.estimate_usd), call.currency, s.status, s.billed,
        cents(s.actual_usd), cents(s.charged_usd), task_id, s.request_id, s.note, time.time(),
    )  # fmt: skip


def sqlite_ledger_path(settings: Settings) -> Path | None:
    """Where the SQLite ledger is (beside the SQLite task database), or None in PostgreSQL."""
    from mcp_images.tasks.choice import sqlite_path

    tasks = sqlite_path(settings)
    return None if tasks is None else tasks.parent / FILE_NAME


def where_ledger_is(settings: Settings) -> str:
    """The ledger's file, or its database's URL without the password: for messages."""
    from mcp_images.tasks.pg_database import redact_url

    path = sqlite_ledger_path(settings)
    if path is not None:
        return str(path)
    assert settings.database_url is not None  # no SQLite path only for a postgresql:// URL
    return redact_url(settings.database_url.get_secret_value())


async def open_ledger(settings: Settings) -> Ledger:
    """The ledger where the task records are: SQLite (opened in a worker thread) or PostgreSQL.

    Raises:
        LedgerError: it cannot be opened (the message names the file or database, and why).
    """
    path = sqlite_ledger_path(settings)
    if path is not None:
        return await anyio.to_thread.run_sync(SqliteLedger, path)
    from mcp_images.pricing.pg_ledger import PostgresLedger

    assert settings.database_url is not None
    return await PostgresLedger.open(settings.database_url.get_secret_value())
