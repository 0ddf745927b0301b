"""Which task store a server opens: MCP_IMAGES_DATABASE_URL, or SQLite in the data folder."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from mcp_images.config import Settings
from mcp_images.tasks.seam import TaskStoreSeam

__all__ = ["is_scaled", "open_task_store", "sqlite_path"]


def sqlite_path(settings: Settings) -> Path | None:
    """The SQLite file to use, or None when the tasks live in PostgreSQL."""
    if settings.database_url is None:
        return settings.resolved_data_dir / "tasks.sqlite3"
    parts = urlsplit(settings.database_url.get_secret_value())
    if parts.scheme != "sqlite":
        return None
    return Path(unquote(parts.path)).expanduser()


def is_scaled(settings: Settings) -> bool:
    return sqlite_path(settings) is None


async def open_task_store(settings: Settings) -> TaskStoreSeam:
    """Open the configured task store.

    Raises:
        ConfigError: the store is not one this version can use (a newer schema, a file in the way).
        TaskError: PostgreSQL cannot be reached now (a later try may succeed).
    """
    path = sqlite_path(settings)
    if path is not None:
        from mcp_images.tasks.embedded import EmbeddedTaskStore

        return await EmbeddedTaskStore.open(path)
    from mcp_images.tasks.postgres import PostgresTaskStore

    assert settings.database_url is not None  # sqlite_path is None only for a postgresql:// URL
    return await PostgresTaskStore.open(settings.database_url.get_secret_value())
