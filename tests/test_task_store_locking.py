"""A task database locked by another program slows task writes, never the whole server.

sqlite3 waits for another program's lock; the task store runs in a worker thread so those
waits never hold the event loop, and a lock that stays ends in a clear, retried error.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from mcp_images.errors import TaskError
from mcp_images.server.build import create_server
from mcp_images.tasks import store as task_store
from mcp_images.tasks.store import AsyncTaskStore, TaskStore
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

PROMPT_ANSWER_SECONDS = 1.0  # an answer that does not touch the task database takes ~10 ms here


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


@contextmanager
def locked(db: Path) -> Iterator[sqlite3.Connection]:
    """The database held with an exclusive write lock by another program, as an open editor would."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_other_tools_answer_promptly_while_a_task_write_waits_for_a_lock_and_the_write_then_succeeds(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    db = settings.resolved_data_dir / "tasks.sqlite3"
    started: list[CallToolResult] = []
    estimates: list[CallToolResult] = []
    answered_in = float("inf")
    server = create_server(settings)
    async with Client(server) as client:
        await server.runtime.tasks()  # the database is open (it is made on first use)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                with locked(db):

                    async def start_a_task() -> None:
                        started.append(await client.call_tool("generate_image", {"prompt": "a fox", "async": True}))

                    tg.start_soon(start_a_task)
                    await anyio.wait_all_tasks_blocked()  # the task's record is waiting for the lock
                    before = anyio.current_time()
                    estimates.append(await client.call_tool("estimate_cost", {"prompt": "a fox"}))
                    answered_in = anyio.current_time() - before
                    assert started == []  # still waiting for the lock
                # the lock is gone: the waiting write goes in
    [estimate] = estimates
    assert not estimate.is_error, text_of(estimate)
    assert answered_in < PROMPT_ANSWER_SECONDS
    [result] = started
    assert not result.is_error, text_of(result)
    assert result.structured_content["status"] in ("queued", "running", "succeeded")


async def test_a_lock_that_stays_ends_in_a_clear_error_naming_the_database_and_nothing_is_spent(
    tmp_path: Path, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(task_store, "BUSY_TIMEOUT_SECONDS", 0.05)
    monkeypatch.setattr(task_store, "LOCK_BACKOFF_SECONDS", 0.01)
    settings = make_settings(tmp_path, sandbox.base_url)
    db = settings.resolved_data_dir / "tasks.sqlite3"
    server = create_server(settings)
    async with Client(server) as client:
        await server.runtime.tasks()  # the database is open (it is made on first use)
        with anyio.fail_after(5), locked(db):
            refused = await client.call_tool("generate_image", {"prompt": "a fox", "async": True})
    assert refused.is_error
    assert f"the task database is locked by another program: {db}" in text_of(refused)
    assert refused.structured_content["error"]["type"] == "TaskError"
    assert sandbox.state.image_requests() == []


async def test_check_task_still_reads_a_record_while_another_program_holds_the_write_lock(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    db = settings.resolved_data_dir / "tasks.sqlite3"
    async with Client(create_server(settings)) as client:
        started = await client.call_tool("generate_image", {"prompt": "a fox", "async": True})
        task_id = started.structured_content["task_id"]
        await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 10})
        with anyio.fail_after(PROMPT_ANSWER_SECONDS), locked(db):
            checked = await client.call_tool("check_task", {"task_id": task_id})
    assert not checked.is_error, text_of(checked)
    assert checked.structured_content["images"]  # the finished result, read past the lock


async def test_a_write_that_waits_for_a_lock_goes_in_once_the_lock_is_released(tmp_path: Path) -> None:
    db = tmp_path / "tasks.sqlite3"
    store = AsyncTaskStore(TaskStore(db))
    created: list[str] = []

    async def create() -> None:
        created.append((await store.create("generate_image", {}, owner="me")).id)

    try:
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                with locked(db):
                    tg.start_soon(create)
                    await anyio.wait_all_tasks_blocked()
                    assert created == []
        [task_id] = created
        assert (await store.get(task_id)) is not None
    finally:
        store.store.close()


def test_a_store_call_retries_a_locked_database_then_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_store, "BUSY_TIMEOUT_SECONDS", 0.02)
    monkeypatch.setattr(task_store, "LOCK_BACKOFF_SECONDS", 0.01)
    db = tmp_path / "tasks.sqlite3"
    store = TaskStore(db)
    try:
        with locked(db), pytest.raises(TaskError, match="locked by another program") as caught:
            store.touch_owner("me", 1, "here")
        assert str(db) in str(caught.value)
        assert f"{task_store.LOCK_RETRIES} retries" in str(caught.value)
    finally:
        store.close()
