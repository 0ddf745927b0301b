"""One PostgreSQL database through an asyncpg pool: opened migrated, its failures said one way.

The task store (`tasks.postgres`) and the spending ledger (`pricing.pg_ledger`) each hold a
`Database`; every failure becomes the owner's error type with a message naming the database
by its URL without the password. asyncpg is imported only when a database is opened.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio

from mcp_images.tasks.postgres_schema import migrate

__all__ = ["CONNECT_TIMEOUT_SECONDS", "Database", "keep_session", "redact_url", "redacted_reason"]

CONNECT_TIMEOUT_SECONDS = 5  # a database that does not answer is "down", said quickly
STATEMENT_TIMEOUT_SECONDS = 10.0

Unusable = Callable[[str, str], Exception]  # (where, reason) -> the owner's error


def redact_url(url: str) -> str:
    """The URL without its password (``postgresql://app:***@db:5432/images``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def redacted_reason(exc: BaseException, password: str | None) -> str:
    """What a driver error says, with the database password (if it quotes it) cut out."""
    reason = str(exc) or type(exc).__name__
    return reason.replace(password, "***") if password else reason


async def keep_session(_conn: Any) -> None:
    """A pooled connection's reset: none beyond asyncpg's own ROLLBACK of an open transaction.

    asyncpg's default sends ``CLOSE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); RESET
    ALL`` on every release, a round trip per statement run (8 of ~15.5 per task measured by
    benchmarks/replicas.py). Nothing here leaves session state on a pooled connection: LISTEN
    is on the task listener's own connection, the advisory locks are transaction-scoped, no
    cursor outlives its transaction and no ``SET`` is issued (``search_path`` comes from the
    URL, at connect).
    """


def _driver_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class Database:
    """A pool on one database; `conn` lends a connection, `unusable` words a failure."""

    def __init__(self, pool: Any, dsn: str, unusable: Unusable) -> None:
        self.pool = pool
        self.where = redact_url(dsn)
        self._password = urlsplit(dsn).password
        self._unusable = unusable

    @classmethod
    async def open(cls, dsn: str, *, max_size: int, unusable: Unusable) -> Database:
        """Connect (one connection at least, ``max_size`` at most) and migrate the schema.

        Raises:
            Exception: ``unusable(where, reason)`` when the database cannot be reached now.
            ConfigError: it holds a schema from a newer mcp-images.
        """
        import asyncpg

        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=1, max_size=max_size, timeout=CONNECT_TIMEOUT_SECONDS,
                command_timeout=STATEMENT_TIMEOUT_SECONDS, reset=keep_session,
            )  # fmt: skip
        except (*_driver_errors(), ValueError) as exc:
            raise unusable(redact_url(dsn), redacted_reason(exc, urlsplit(dsn).password)) from exc
        database = cls(pool, dsn, unusable)
        try:
            async with database.conn() as conn:
                await migrate(conn, database.where)
        except BaseException:
            await pool.close()
            raise
        return database

    @asynccontextmanager
    async def conn(self, timeout: float = CONNECT_TIMEOUT_SECONDS) -> AsyncIterator[Any]:
        """A pooled connection, waited for at most ``timeout`` seconds.

        Raises:
            Exception: ``unusable(where, reason)`` on any driver or network failure.
        """
        try:
            async with self.pool.acquire(timeout=timeout) as conn:
                yield conn
        except _driver_errors() as exc:
            raise self._unusable(self.where, redacted_reason(exc, self._password)) from exc

    async def ping(self, timeout: float) -> None:
        """A ``SELECT 1``, all of it (a connection, the answer) within ``timeout``.

        Raises:
            Exception: ``unusable(where, reason)``.
        """
        try:
            with anyio.fail_after(timeout):
                async with self.pool.acquire() as conn:
                    await conn.fetchval("SELECT 1")
        except _driver_errors() as exc:
            raise self._unusable(self.where, redacted_reason(exc, self._password)) from exc

    async def close(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CONNECT_TIMEOUT_SECONDS):
            await self.pool.close()
