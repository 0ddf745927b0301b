"""The PostgreSQL schema (tasks, owners, the spending ledger) and its migrations, applied once
however many replicas start.

``mcp_images_schema`` holds the version; each migration runs in the same transaction as the
version it records, under a transaction-scoped advisory lock, so replicas starting together
neither race nor half-migrate. A database at a newer version than this code is refused.
"""

from __future__ import annotations

from typing import Any

from mcp_images.errors import ConfigError

__all__ = ["CHANNEL", "COLUMNS", "JSON_FIELDS", "SCHEMA_VERSION", "migrate"]

CHANNEL = "mcp_images_tasks"  # NOTIFY payload: the changed task's id
COLUMNS = (
    "id", "tool", "status", "created_at", "updated_at", "finished_at", "phase", "progress",
    "result", "error", "provider", "provider_task_id", "args", "owner", "identity",
)  # fmt: skip
JSON_FIELDS = frozenset({"progress", "result", "error", "args"})
_LOCK_KEY = 0x6D63_7069_6D67  # "mcpimg": pg_advisory_xact_lock's key for migrations

_V1 = f"""
CREATE TABLE mcp_images_tasks (
    id TEXT PRIMARY KEY, tool TEXT NOT NULL, status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION, phase TEXT, progress JSONB NOT NULL, result JSONB, error JSONB,
    provider TEXT, provider_task_id TEXT, args JSONB NOT NULL, owner TEXT NOT NULL,
    identity TEXT NOT NULL DEFAULT 'local');
CREATE INDEX mcp_images_tasks_unfinished ON mcp_images_tasks (owner) WHERE status IN ('queued', 'running');
CREATE INDEX mcp_images_tasks_finished_at ON mcp_images_tasks (finished_at);
CREATE TABLE mcp_images_owners (
    owner TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL, seen_at DOUBLE PRECISION NOT NULL);
CREATE FUNCTION mcp_images_task_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_notify('{CHANNEL}', NEW.id); RETURN NEW; END $$;
CREATE TRIGGER mcp_images_task_changed AFTER UPDATE ON mcp_images_tasks
    FOR EACH ROW EXECUTE FUNCTION mcp_images_task_changed();
"""
# The spending ledger (`pricing.pg_ledger`): the same columns as the SQLite ledger's, so that
# every replica on this database draws on one budget.
_V2 = """
CREATE TABLE mcp_images_ledger (
    id BIGSERIAL PRIMARY KEY, created_at DOUBLE PRECISION NOT NULL, day TEXT NOT NULL,
    month TEXT NOT NULL, identity TEXT NOT NULL, tool TEXT NOT NULL, model TEXT NOT NULL,
    size TEXT, quality TEXT, n INTEGER NOT NULL, estimate_usd DOUBLE PRECISION, currency TEXT NOT NULL,
    status TEXT NOT NULL, billed TEXT NOT NULL, actual_usd DOUBLE PRECISION,
    charged_usd DOUBLE PRECISION NOT NULL, task_id TEXT, request_id TEXT, note TEXT NOT NULL DEFAULT '',
    finished_at DOUBLE PRECISION);
CREATE INDEX mcp_images_ledger_day ON mcp_images_ledger (day, identity);
CREATE INDEX mcp_images_ledger_month ON mcp_images_ledger (month, identity);
"""
# (version, SQL): append, never edit one that has shipped.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _V1), (2, _V2))
SCHEMA_VERSION = MIGRATIONS[-1][0]


async def migrate(conn: Any, where: str) -> int:
    """Bring the schema to `SCHEMA_VERSION`; return the version found.

    Raises:
        ConfigError: the database holds a newer schema.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute("CREATE TABLE IF NOT EXISTS mcp_images_schema (version INTEGER NOT NULL)")
        found = await conn.fetchval("SELECT coalesce(max(version), 0) FROM mcp_images_schema")
        if found > SCHEMA_VERSION:
            raise ConfigError(
                f"the task database {where} was written by a newer mcp-images (schema {found}, this one "
                f"knows {SCHEMA_VERSION}); upgrade every replica, or point MCP_IMAGES_DATABASE_URL elsewhere"
            )
        for version, sql in MIGRATIONS:
            if version > found:
                await conn.execute(sql)
                await conn.execute("INSERT INTO mcp_images_schema (version) VALUES ($1)", version)
    return found
