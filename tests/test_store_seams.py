"""One behavioural suite for the task store seam, run against both implementations.

``embedded``: SQLite in a temp folder. ``scaled``: a real PostgreSQL (``MCPI_TEST_DATABASE_URL``,
which `.ci/services.sh` provides), each test in a schema of its own. Without that variable the
scaled half is skipped, except under CI (``CI`` set), where a missing database is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from mcp_images.errors import TaskError
from mcp_images.tasks.seam import TaskStoreSeam

pytestmark = pytest.mark.anyio

DATABASE_ENV = "MCPI_TEST_DATABASE_URL"


def database_url() -> str:
    """The test PostgreSQL's URL; skips without one, fails under CI (which must provide it)."""
    url = os.environ.get(DATABASE_ENV)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{DATABASE_ENV} is not set under CI: .ci/services.sh should have started PostgreSQL")
    pytest.skip(f"{DATABASE_ENV} not set (run .ci/services.sh start)")


async def fresh_schema_url() -> str:
    """A URL of the test database whose search_path is a new, empty schema."""
    import asyncpg

    url = database_url()
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"  # asyncpg: a server setting


async def open_store(kind: str, tmp_path: Path) -> TaskStoreSeam:
    if kind == "embedded":
        from mcp_images.tasks.embedded import EmbeddedTaskStore

        return await EmbeddedTaskStore.open(tmp_path / "tasks.sqlite3")
    from mcp_images.tasks.postgres import PostgresTaskStore

    return await PostgresTaskStore.open(await fresh_schema_url())


@pytest.fixture(params=["embedded", "scaled"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStoreSeam]:
    opened = await open_store(request.param, tmp_path)
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_a_created_task_reads_back_as_it_was_recorded(store: TaskStoreSeam) -> None:
    made = await store.create("generate_image", {"arguments": {"prompt": "a fox"}}, owner="a", identity="ann")
    got = await store.get(made.id)
    assert got is not None and got.model_dump() == made.model_dump()
    assert got.status == "queued" and got.identity == "ann" and got.args == {"arguments": {"prompt": "a fox"}}
    assert await store.get("task-0000000000000000") is None


async def test_updates_and_outcomes_are_kept_and_a_finished_task_is_not_finished_again(store: TaskStoreSeam) -> None:
    made = await store.create("edit_image", {}, owner="a", status="running")
    running = await store.update(made.id, phase="saving", progress=["partial image 1 saved"])
    assert (running.status, running.phase, running.progress) == ("running", "saving", ["partial image 1 saved"])
    cancelled = await store.finish(made.id, "cancelled", error={"message": "cancelled on request"})
    late = await store.finish(made.id, "succeeded", result={"images": []})
    assert cancelled.status == late.status == "cancelled" and late.result is None
    assert late.finished_at is not None


async def test_an_unknown_field_is_refused_before_it_reaches_the_database(store: TaskStoreSeam) -> None:
    made = await store.create("generate_image", {}, owner="a")
    with pytest.raises(ValueError, match="unknown task fields"):
        await store.update(made.id, **{"status = 'x' --": 1})


async def test_only_one_of_many_claimants_takes_a_gone_owners_task(store: TaskStoreSeam) -> None:
    made = await store.create("generate_image", {}, owner="gone")
    won: list[str] = []

    async def claim(me: str) -> None:
        if await store.claim(made.id, "gone", me):
            won.append(me)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for n in range(8):
                tg.start_soon(claim, f"survivor-{n}")
    assert len(won) == 1
    record = await store.get(made.id)
    assert record is not None and record.owner == won[0]
    assert not await store.claim(made.id, "gone", "late")


async def test_owners_are_listed_with_a_fresh_heartbeat_until_they_leave(store: TaskStoreSeam) -> None:
    import time

    await store.touch_owner("replica-1", 4242, "host-a")
    owners = await store.owners()
    assert owners["replica-1"].pid == 4242 and owners["replica-1"].host == "host-a"
    assert abs(owners["replica-1"].seen_at - time.time()) < 5
    await store.drop_owner("replica-1")
    assert "replica-1" not in await store.owners()


async def test_unfinished_lists_only_running_work_and_expire_drops_only_old_outcomes(store: TaskStoreSeam) -> None:
    queued = await store.create("generate_image", {}, owner="a")
    done = await store.create("generate_image", {}, owner="a")
    await store.finish(done.id, "succeeded", result={"ok": True})
    assert [r.id for r in await store.unfinished()] == [queued.id]
    assert await store.expire(3600) == 0
    assert await store.expire(-1) == 1  # finished "more than -1 s ago": everything finished
    assert await store.get(done.id) is None and await store.get(queued.id) is not None


async def test_a_watch_wakes_when_the_record_changes(store: TaskStoreSeam) -> None:
    made = await store.create("generate_image", {}, owner="a")
    record = None
    with anyio.fail_after(5):
        async with store.watch(made.id) as watch, anyio.create_task_group() as tg:

            async def change() -> None:
                await anyio.wait_all_tasks_blocked()
                await store.finish(made.id, "succeeded", result={"n": 1})

            tg.start_soon(change)
            record = await store.get(made.id)
            while record is not None and not record.finished:
                await watch.wait(60)
                record = await store.get(made.id)
    assert record is not None and record.status == "succeeded"


async def test_the_postgres_store_says_clearly_when_the_database_is_down_and_hides_the_password() -> None:
    from mcp_images.tasks.postgres import PostgresTaskStore

    port = _free_port()
    with anyio.fail_after(15), pytest.raises(TaskError) as caught:
        await PostgresTaskStore.open(f"postgresql://mcp:hunter2-secret@127.0.0.1:{port}/db")
    message = str(caught.value)
    assert "hunter2-secret" not in message
    assert f"postgresql://mcp:***@127.0.0.1:{port}/db" in message and "MCP_IMAGES_DATABASE_URL" in message


async def test_a_newer_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    import asyncpg

    from mcp_images.errors import ConfigError
    from mcp_images.tasks.postgres import PostgresTaskStore

    url = await fresh_schema_url()
    store = await PostgresTaskStore.open(url)
    await store.aclose()
    again = await PostgresTaskStore.open(url)  # an existing schema at this version opens as it is
    await again.aclose()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("INSERT INTO mcp_images_schema (version) VALUES (99)")
    finally:
        await conn.close()
    with pytest.raises(ConfigError, match="newer mcp-images"):
        await PostgresTaskStore.open(url)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
