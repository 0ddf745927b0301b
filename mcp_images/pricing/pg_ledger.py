"""The spending ledger in PostgreSQL: one budget for every replica on the same database.

The rows and their meaning are the SQLite ledger's (`pricing.ledger`); the table is
``mcp_images_ledger``, created by the task schema's migrations (`tasks.postgres_schema`), so
``MCP_IMAGES_DATABASE_URL`` shares tasks and spending alike.

A reservation is one transaction: a transaction-scoped advisory lock on (day, scope), the
day's sum, ``admit``, the INSERT. Two replicas racing for the last dollars of one identity's
day queue on that lock for the milliseconds it is held; other identities and other days do
not wait. A refusal raised by ``admit`` rolls the transaction back: nothing is written.

Driver: asyncpg, imported only when this ledger is opened. Every failure raises `LedgerError`
naming the database by its URL without the password.
"""

from __future__ import annotations

import time
from typing import Any

from mcp_images.pricing.ledger import (
    COLUMNS,
    SUMS,
    Admit,
    LedgerError,
    LedgerRow,
    NewCall,
    Settlement,
    Totals,
    cents,
    new_row_values,
    recorded_row_values,
    scoped,
)
from mcp_images.tasks.pg_database import Database

__all__ = ["PostgresLedger"]

POOL_MAX = 4  # one reservation or settlement per call: ~1 ms each
_LOCK_SPACE = 0x6C65_6467  # "ledg": the first key of pg_advisory_xact_lock(int, int)


class PostgresLedger:
    """The ledger's rows in ``mcp_images_ledger``; a `pricing.ledger.Ledger`."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn = db.conn
        self.where = db.where

    @classmethod
    async def open(cls, dsn: str) -> PostgresLedger:
        """Connect and bring the schema up to date.

        Raises:
            LedgerError: the database cannot be reached or holds a newer schema.
        """
        from mcp_images.errors import ConfigError

        try:
            return cls(await Database.open(dsn, max_size=POOL_MAX, unusable=_unusable))
        except LedgerError:
            raise
        except ConfigError as exc:  # a newer schema
            raise LedgerError(str(exc)) from exc

    async def reserve(self, call: NewCall, *, scope: str | None, admit: Admit) -> int:
        """Insert ``call`` as running if ``admit`` (given the day's committed sum) lets it.

        Raises:
            LedgerError: the ledger cannot be written.
            Exception: whatever ``admit`` raises to refuse (nothing is written then).
        """
        where, params = _scoped(call.day, scope)
        values = new_row_values(call)
        names = ", ".join(COLUMNS[1:16])
        insert = f"INSERT INTO mcp_images_ledger ({names}) VALUES ({_marks(len(values))}) RETURNING id"
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_SPACE, f"{call.day}|{scope}")
            held = await conn.fetchval(
                f"SELECT COALESCE(SUM(charged_usd), 0) FROM mcp_images_ledger WHERE {where}", *params
            )
            admit(float(held))
            return int(await conn.fetchval(insert, *values))

    async def settle(self, row_id: int, settlement: Settlement, *, task_id: str | None = None) -> None:
        """How a reserved call ended, and (if given) the task that ran it: one write."""
        s = settlement
        sql = (
            "UPDATE mcp_images_ledger SET status = $1, billed = $2, actual_usd = $3, charged_usd = $4, note = $5, "
            "request_id = COALESCE($6, request_id), task_id = COALESCE($7, task_id), finished_at = $8 WHERE id = $9"
        )
        values = (s.status, s.billed, cents(s.actual_usd), cents(s.charged_usd), s.note, s.request_id, task_id)
        async with self._conn() as conn:
            await conn.execute(sql, *values, time.time(), row_id)

    async def record(self, call: NewCall, settlement: Settlement, *, task_id: str | None = None) -> int:
        """A call that ended and was never reserved (no spending setting held it): one insert."""
        values = recorded_row_values(call, settlement, task_id)
        sql = f"INSERT INTO mcp_images_ledger ({', '.join(COLUMNS[1:])}) VALUES ({_marks(len(values))}) RETURNING id"
        async with self._conn() as conn:
            return int(await conn.fetchval(sql, *values))

    async def totals(self, *, period: str, scope: str | None, by_model: bool = False) -> dict[str, Totals]:
        """The period's totals, under ``""`` (or by model)."""
        where, params = _scoped(period, scope)
        key = "model" if by_model else "''"
        sql = f"SELECT {key}, {SUMS} FROM mcp_images_ledger WHERE {where} GROUP BY 1 ORDER BY 1"
        async with self._conn() as conn:
            found = await conn.fetch(sql, *params)
        out = {str(r[0]): Totals(int(r[1]), float(r[2]), float(r[3]), float(r[4])) for r in found}
        return out if by_model else {"": out.get("", Totals())}

    async def rows(self, *, period: str, scope: str | None, limit: int = 100) -> list[LedgerRow]:
        """The period's rows, newest first."""
        where, params = _scoped(period, scope)
        sql = f"SELECT {', '.join(COLUMNS)} FROM mcp_images_ledger WHERE {where} ORDER BY id DESC LIMIT ${len(params) + 1}"
        async with self._conn() as conn:
            found = await conn.fetch(sql, *params, limit)
        return [LedgerRow.model_validate(dict(row.items())) for row in found]

    async def close(self) -> None:
        await self._db.close()


def _scoped(period: str, scope: str | None) -> tuple[str, tuple[Any, ...]]:
    return scoped(period, scope, lambda n: f"${n}")


def _marks(count: int) -> str:
    return ", ".join(f"${n}" for n in range(1, count + 1))


def _unusable(where: str, reason: str) -> LedgerError:
    return LedgerError(
        f"the spending ledger in {where} cannot be used right now ({reason}): "
        "is PostgreSQL running and reachable? check MCP_IMAGES_DATABASE_URL"
    )
