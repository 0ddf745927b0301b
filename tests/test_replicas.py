"""Many replicas over one task store: hand-over when a replica dies, exactly once.

Run on both seams (SQLite for servers sharing a data folder, PostgreSQL for replicas); the
scaled half needs ``MCPI_TEST_DATABASE_URL`` (see tests/test_store_seams.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_images.tasks import manager as tasks
from mcp_images.tasks.manager import Job, TaskHandle, TaskManager
from mcp_images.tasks.seam import TaskStoreSeam
from mcp_images.tasks.store import TaskRecord
from mcp_images.work.progress import Progress
from tests.test_store_seams import fresh_schema_url

pytestmark = pytest.mark.anyio

LEASE = 1.0  # seconds a silent replica keeps its tasks, in these tests
Opener = Callable[[], Awaitable[TaskStoreSeam]]


@pytest.fixture
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "OWNER_STALE_SECONDS", LEASE)
    monkeypatch.setattr(tasks, "HOUSEKEEPING_SECONDS", 0.1)


@pytest.fixture(params=["embedded", "scaled"])
async def opener(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens another connection to one shared store (a replica's own)."""
    if request.param == "embedded":
        from mcp_images.tasks.embedded import EmbeddedTaskStore

        async def open_embedded() -> TaskStoreSeam:
            return await EmbeddedTaskStore.open(tmp_path / "tasks.sqlite3")

        yield open_embedded
        return
    from mcp_images.tasks.postgres import PostgresTaskStore

    url = await fresh_schema_url()

    async def open_scaled() -> TaskStoreSeam:
        return await PostgresTaskStore.open(url)

    yield open_scaled


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc)}


async def replicas(stack: AsyncExitStack, opener: Opener, count: int) -> list[TaskManager]:
    managers = []
    for _ in range(count):
        store = await opener()
        stack.push_async_callback(store.aclose)
        managers.append(await stack.enter_async_context(TaskManager(store, error_to_dict=error_to_dict).running()))
    return managers


async def dead_replicas_task(opener: Opener, *, provider_task_id: str | None = None) -> TaskRecord:
    """A running task whose replica died: its owner row went silent longer than the lease."""
    store = await opener()
    try:
        await store.touch_owner("dead-replica", 1, "a-host-that-is-gone")
        record = await store.create("generate_image", {"arguments": {"prompt": "a fox"}}, owner="dead-replica",
                                    provider="302ai", status="running")  # fmt: skip
        if provider_task_id:
            await store.update(record.id, provider_task_id=provider_task_id)
        return record
    finally:
        await store.aclose()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        await anyio.sleep(0.05)


async def test_a_task_started_on_one_replica_is_waited_for_and_returned_by_another(opener: Opener) -> None:
    gate = anyio.Event()

    async def job(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        await gate.wait()
        return {"images": ["images://3f9a0c1b2d4e"]}

    with anyio.fail_after(10):
        async with AsyncExitStack() as stack:
            first, second = await replicas(stack, opener, 2)
            record = await first.start("generate_image", {}, job)
            seen = await second.wait(record.id, 0.2)
            assert seen.status in ("queued", "running")
            async with anyio.create_task_group() as tg:
                tg.start_soon(_set_when_blocked, gate)
                done = await second.wait(record.id, 30)
                assert done.status == "succeeded" and done.result == {"images": ["images://3f9a0c1b2d4e"]}


async def _set_when_blocked(event: anyio.Event) -> None:
    await anyio.wait_all_tasks_blocked()
    event.set()


async def test_a_dead_replicas_job_is_failed_by_exactly_one_survivor_within_the_lease(
    opener: Opener, short_lease: None
) -> None:
    record = await dead_replicas_task(opener)
    started = time.monotonic()
    with anyio.fail_after(LEASE + 5):
        async with AsyncExitStack() as stack:
            survivors = await replicas(stack, opener, 3)
            await until(lambda: _finished(survivors[0], record.id))
            failed = await survivors[1].get(record.id)
    assert time.monotonic() - started < LEASE + 3
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["message"] == tasks.RESTART_REASON
    assert failed.owner in {s.owner for s in survivors}  # claimed by one before its verdict


async def test_a_dead_replicas_provider_held_job_is_resumed_by_exactly_one_survivor(
    opener: Opener, short_lease: None
) -> None:
    record = await dead_replicas_task(opener, provider_task_id="302-job-7")
    resumed: list[str] = []

    def make_poller(held: TaskRecord) -> Job | None:
        async def poll(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
            resumed.append(held.provider_task_id or "")
            return {"images": ["images://0123456789ab"], "resumed": held.provider_task_id}

        return poll

    with anyio.fail_after(LEASE + 5):
        async with AsyncExitStack() as stack:
            survivors = await replicas(stack, opener, 3)
            for survivor in survivors:
                survivor.resume_provider_tasks(make_poller)
            await until(lambda: _finished(survivors[2], record.id))
            done = await survivors[0].get(record.id)
            for _ in range(5):  # a few more housekeeping rounds: nobody resumes it again
                await anyio.sleep(0.1)
    assert resumed == ["302-job-7"]
    assert done.status == "succeeded" and done.result == {"images": ["images://0123456789ab"], "resumed": "302-job-7"}


async def _finished(manager: TaskManager, task_id: str) -> bool:
    return (await manager.get(task_id)).finished
