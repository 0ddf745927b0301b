"""Background jobs: recorded in SQLite, waited on, cancelled, handed off, surviving restarts."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp_images.errors import (
    ConfigError,
    McpImagesError,
    TaskError,
    UpstreamError,
    ValidationProblem,
)
from mcp_images.tasks import manager as tasks
from mcp_images.tasks import store as task_store
from mcp_images.tasks.manager import Job, TaskHandle, TaskManager
from mcp_images.tasks.store import TaskRecord, TaskStore
from mcp_images.work.progress import Progress


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc)}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tasks.sqlite3"


@asynccontextmanager
async def server(db: Path, **kw: Any) -> AsyncIterator[TaskManager]:
    """One server process's task manager over the data folder's database."""
    store = TaskStore(db)
    try:
        async with TaskManager(store, error_to_dict=error_to_dict, **kw).running() as manager:
            yield manager
    finally:
        store.close()


def returning(result: dict[str, Any], gate: anyio.Event | None = None) -> Job:
    async def job(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        if gate is not None:
            await gate.wait()
        return result

    return job


def raising(exc: BaseException) -> Job:
    async def job(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        await anyio.sleep(0)
        raise exc

    return job


class Blocker:
    """A job that runs until cancelled, and remembers what happened to it."""

    def __init__(self, provider_task_id: str | None = None) -> None:
        self.started = anyio.Event()
        self.saw_cancel = False
        self.task_id = ""
        self.provider_task_id = provider_task_id

    async def __call__(self, progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        self.task_id = handle.task_id
        if self.provider_task_id:
            handle.set_provider_task_id(self.provider_task_id)
        self.started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.saw_cancel = True
            raise
        return {}


@pytest.mark.anyio
async def test_a_task_is_seen_only_by_the_identity_that_started_it_as_if_unknown_to_others(db: Path) -> None:
    with anyio.fail_after(5):
        async with server(db) as manager:
            record = await manager.start("generate_image", {}, returning({"n": 1}), identity="alice")
            mine = await manager.wait(record.id, 5, identity="alice")
            with pytest.raises(TaskError) as foreign:
                await manager.wait(record.id, 0, identity="bob")
            with pytest.raises(TaskError) as unknown:
                await manager.get("task-0000000000000000", identity="bob")
    assert mine.status == "succeeded" and mine.identity == "alice"
    assert str(foreign.value).replace(record.id, "ID") == str(unknown.value).replace("task-0000000000000000", "ID")


def test_a_version_1_task_database_gains_the_identity_column_and_its_tasks_stay_the_local_users(db: Path) -> None:
    db.parent.mkdir(parents=True)
    old = sqlite3.connect(db)
    old.executescript(
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, tool TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL, "
        "updated_at REAL NOT NULL, finished_at REAL, phase TEXT, progress TEXT NOT NULL, result TEXT, error TEXT, "
        "provider TEXT, provider_task_id TEXT, args TEXT NOT NULL, owner TEXT NOT NULL);"
        "INSERT INTO tasks VALUES ('task-1', 'generate_image', 'succeeded', 1, 1, 1, NULL, '[]', NULL, NULL, "
        "NULL, NULL, '{}', 'gone'); PRAGMA user_version = 1;"
    )
    old.close()
    store = TaskStore(db)
    try:
        record = store.get("task-1")
        version = store._db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        store.close()
    assert record is not None and record.identity == "local"
    assert version == task_store.SCHEMA_VERSION == 2


@pytest.mark.anyio
async def test_start_returns_at_once_and_wait_gets_the_result(db: Path) -> None:
    gate = anyio.Event()
    with anyio.fail_after(5):
        async with server(db) as manager:
            job = returning({"images": ["images://0123456789ab"]}, gate)
            record = await manager.start("generate_image", {"prompt": "a fox"}, job)
            assert record.status in ("queued", "running")
            assert (await manager.get(record.id)).status in ("queued", "running")
            gate.set()
            done = await manager.wait(record.id, 5)
    assert done.status == "succeeded"
    assert done.result == {"images": ["images://0123456789ab"]}
    assert done.args == {"prompt": "a fox"}
    assert done.tool == "generate_image"
    assert done.finished_at is not None and done.elapsed_seconds >= 0


@pytest.mark.anyio
async def test_wait_returns_the_running_state_when_its_timeout_passes_first(db: Path) -> None:
    with anyio.fail_after(5):
        async with server(db) as manager:
            blocker = Blocker()
            record = await manager.start("generate_image", {}, blocker)
            await blocker.started.wait()
            assert (await manager.wait(record.id, 0.05)).status == "running"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "exc",
    [
        UpstreamError("the upstream is overloaded", status_code=503),
        ValidationProblem("size 4096x4096 is too large for gpt-image-1", field="size"),
    ],
)
async def test_a_job_that_raises_a_clean_error_is_failed_with_its_error_dict(db: Path, exc: McpImagesError) -> None:
    with anyio.fail_after(5):
        async with server(db) as manager:
            record = await manager.start("generate_image", {}, raising(exc))
            done = await manager.wait(record.id, 5)
    assert done.status == "failed"
    assert done.error == error_to_dict(exc)
    assert done.result is None


@pytest.mark.anyio
async def test_a_bug_in_a_job_is_failed_as_an_internal_error_and_logged(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(5), caplog.at_level(logging.ERROR, logger="mcp_images.tasks.manager"):
        async with server(db) as manager:
            record = await manager.start("generate_image", {}, raising(KeyError("oops")))
            done = await manager.wait(record.id, 5)
    assert done.status == "failed"
    assert done.error is not None and "internal error" in done.error["message"]
    assert any(r.exc_info for r in caplog.records)


@pytest.mark.anyio
async def test_a_result_that_cannot_be_stored_as_json_fails_the_task(db: Path) -> None:
    with anyio.fail_after(5):
        async with server(db) as manager:
            record = await manager.start("generate_image", {}, returning({"raw": b"\x89PNG"}))
            done = await manager.wait(record.id, 5)
    assert done.status == "failed"


@pytest.mark.anyio
async def test_cancel_stops_the_job_and_records_it_cancelled(db: Path) -> None:
    with anyio.fail_after(5):
        async with server(db) as manager:
            blocker = Blocker()
            record = await manager.start("edit_image", {}, blocker)
            await blocker.started.wait()
            cancelled = await manager.cancel(record.id)
            assert cancelled.status == "cancelled"
            assert cancelled.error is not None
            assert blocker.saw_cancel
            assert (await manager.cancel(record.id)).status == "cancelled"  # idempotent


@pytest.mark.anyio
async def test_progress_notes_and_phase_are_stored_and_forwarded_to_a_waiter(db: Path) -> None:
    noted, gate, heard = anyio.Event(), anyio.Event(), []

    async def job(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        await progress.phase("generating")
        await progress.note("partial image 1 saved: images://0123456789ab")
        noted.set()
        await gate.wait()
        await progress.note("partial image 2 saved: images://ba9876543210")
        return {}

    async def send(count: float, total: float | None, message: str) -> None:
        heard.append(message)

    async def check_task(manager: TaskManager, task_id: str) -> None:
        await manager.wait(task_id, 5, send=send)

    with anyio.fail_after(5):
        async with server(db) as manager:
            record = await manager.start("generate_image", {}, job)
            await noted.wait()
            running = await manager.get(record.id)
            assert running.phase == "generating"
            assert running.progress == ["partial image 1 saved: images://0123456789ab"]
            async with anyio.create_task_group() as tg:
                tg.start_soon(check_task, manager, record.id)
                await anyio.wait_all_tasks_blocked()  # the waiter is attached
                gate.set()
            done = await manager.get(record.id)
    assert heard == ["partial image 2 saved: images://ba9876543210"]
    assert done.progress[-1] == "partial image 2 saved: images://ba9876543210"


@pytest.mark.anyio
async def test_a_second_server_over_the_same_database_sees_finished_results(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "POLL_SECONDS", 0.01)
    gate = anyio.Event()
    with anyio.fail_after(5):
        async with server(db) as first, server(db) as second:
            record = await first.start("generate_image", {}, returning({"n": 1}, gate))
            assert (await second.get(record.id)).status in ("queued", "running")
            async with anyio.create_task_group() as tg:
                tg.start_soon(second.wait, record.id, 5)
                gate.set()
            assert (await second.wait(record.id, 5)).status == "succeeded"
        async with server(db) as third:  # after a restart
            again = await third.get(record.id)
    assert again.status == "succeeded"
    assert again.result == {"n": 1}


@pytest.mark.anyio
async def test_a_local_job_cut_off_by_the_server_stopping_is_failed_with_a_reason(
    db: Path,
) -> None:
    blocker = Blocker()
    with anyio.fail_after(5):
        async with server(db) as manager:
            record = await manager.start("generate_image", {}, blocker)
            await blocker.started.wait()
        async with server(db) as restarted:
            after = await restarted.get(record.id)
    assert blocker.saw_cancel
    assert after.status == "failed"
    assert after.error == error_to_dict(TaskError(tasks.SHUTDOWN_REASON))


@pytest.mark.anyio
async def test_a_local_job_whose_server_vanished_is_failed_as_a_restart_not_lost(
    db: Path,
) -> None:
    store = TaskStore(db)
    orphan = store.create("generate_image", {}, owner="crashed-process")
    store.update(orphan.id, status="running")
    store.close()
    with anyio.fail_after(5):
        async with server(db) as live_peer:
            blocker = Blocker()
            peers_job = await live_peer.start("generate_image", {}, blocker)
            await blocker.started.wait()
            async with server(db) as restarted:
                after = await restarted.get(orphan.id)
                peers = await restarted.get(peers_job.id)
    assert after.status == "failed"
    assert after.error == error_to_dict(TaskError(tasks.RESTART_REASON))
    assert peers.status == "running"  # another live server's job is left alone


@pytest.mark.anyio
async def test_a_provider_held_job_is_resumed_by_the_next_server_and_finishes(db: Path) -> None:
    blocker = Blocker(provider_task_id="302-abc")
    seen: list[TaskRecord] = []

    def make_poller(record: TaskRecord) -> Job | None:
        seen.append(record)
        return returning({"from": record.provider_task_id})

    with anyio.fail_after(5):
        async with server(db) as manager:
            record = await manager.start("generate_image", {}, blocker, provider="302ai")
            await blocker.started.wait()
        async with server(db) as restarted:
            assert (await restarted.get(record.id)).status == "running"
            assert await restarted.resume(make_poller) == 1
            done = await restarted.wait(record.id, 5)
    assert [r.provider for r in seen] == ["302ai"]
    assert done.status == "succeeded"
    assert done.result == {"from": "302-abc"}


@pytest.mark.anyio
async def test_a_provider_held_job_that_cannot_be_resumed_is_failed_with_a_reason(
    db: Path,
) -> None:
    blocker = Blocker(provider_task_id="302-abc")
    with anyio.fail_after(5):
        async with server(db) as manager:
            record = await manager.start("generate_image", {}, blocker, provider="302ai")
            await blocker.started.wait()
        async with server(db) as restarted:
            assert await restarted.resume(lambda record: None) == 0
            after = await restarted.get(record.id)
    assert after.status == "failed"
    assert after.error is not None and "302-abc" in after.error["message"]


@pytest.mark.anyio
async def test_expiry_deletes_only_old_finished_records_and_get_then_raises(db: Path) -> None:
    store = TaskStore(db)
    old_done = store.create("generate_image", {}, owner="x")
    store.finish(old_done.id, "succeeded", result={})
    store.update(old_done.id, finished_at=1.0)
    fresh_done = store.create("generate_image", {}, owner="x")
    store.finish(fresh_done.id, "failed", error={})
    old_running = store.create("generate_image", {}, owner="x")
    store.update(old_running.id, status="running", provider_task_id="p", created_at=1.0)
    assert store.expire(7 * 86400) == 1
    assert store.get(old_done.id) is None
    store.close()
    with anyio.fail_after(5):
        async with server(db) as manager:
            assert (await manager.get(fresh_done.id)).status == "failed"
            assert (await manager.get(old_running.id)).status == "running"
            with pytest.raises(TaskError, match="expired after 7 days"):
                await manager.get(old_done.id)


@pytest.mark.anyio
async def test_a_record_past_its_ttl_is_gone_even_before_the_sweep(db: Path) -> None:
    with anyio.fail_after(5):
        async with server(db, ttl_seconds=3600) as manager:
            record = await manager.start("generate_image", {}, returning({}))
            await manager.wait(record.id, 5)
            other = TaskStore(db)
            other.update(record.id, finished_at=1.0)
            other.close()
            with pytest.raises(TaskError, match="expired after 1 hour"):
                await manager.get(record.id)


@pytest.mark.anyio
@pytest.mark.parametrize("call", ["get", "wait", "cancel"])
async def test_an_unknown_task_id_raises_task_error(db: Path, call: str) -> None:
    with anyio.fail_after(5):
        async with server(db) as manager:
            with pytest.raises(TaskError, match="no task with id task-nope"):
                if call == "get":
                    await manager.get("task-nope")
                elif call == "wait":
                    await manager.wait("task-nope", 1)
                else:
                    await manager.cancel("task-nope")


@pytest.mark.anyio
async def test_run_attached_returns_a_quick_job_finished_with_its_progress_forwarded(
    db: Path,
) -> None:
    heard: list[str] = []

    async def send(count: float, total: float | None, message: str) -> None:
        heard.append(message)

    async def job(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        await progress.note("partial image 1 saved: images://0123456789ab")
        return {"ok": True}

    with anyio.fail_after(5):
        async with server(db) as manager:
            done = await manager.run_attached("generate_image", {}, job, send=send, handoff_after=5)
    assert done.status == "succeeded"
    assert done.result == {"ok": True}
    assert heard == ["partial image 1 saved: images://0123456789ab"]


@pytest.mark.anyio
async def test_run_attached_hands_off_a_slow_job_which_then_finishes_in_the_background(
    db: Path,
) -> None:
    gate, heard = anyio.Event(), []

    async def send(count: float, total: float | None, message: str) -> None:
        heard.append(message)

    async def job(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        await gate.wait()
        await progress.note("after the hand-off")
        return {"ok": True}

    with anyio.fail_after(5):
        async with server(db) as manager:
            handed = await manager.run_attached("generate_image", {}, job, send=send, handoff_after=0.05)
            assert handed.status == "running"
            gate.set()
            done = await manager.wait(handed.id, 5)
    assert done.status == "succeeded"
    assert heard == []  # the caller's request is over: nothing more is sent to it


@pytest.mark.anyio
async def test_cancelling_the_caller_of_run_attached_cancels_the_job(db: Path) -> None:
    blocker = Blocker()

    async def call(manager: TaskManager) -> None:
        await manager.run_attached("generate_image", {}, blocker, send=None, handoff_after=None)

    with anyio.fail_after(5):
        async with server(db) as manager:
            async with anyio.create_task_group() as tg:
                tg.start_soon(call, manager)
                await blocker.started.wait()
                tg.cancel_scope.cancel()
            after = await manager.get(blocker.task_id)
    assert blocker.saw_cancel
    assert after.status == "cancelled"


@pytest.mark.anyio
async def test_a_hundred_concurrent_quick_jobs_all_succeed(db: Path) -> None:
    with anyio.fail_after(8):
        async with server(db) as manager:
            records = [await manager.start("generate_image", {"n": n}, returning({"n": n})) for n in range(100)]
            done = [await manager.wait(record.id, 5) for record in records]
    assert [d.status for d in done] == ["succeeded"] * 100
    assert [d.result for d in done] == [{"n": n} for n in range(100)]


@pytest.mark.anyio
async def test_a_task_cancelled_from_another_server_stops_at_its_next_progress(db: Path) -> None:
    gate = anyio.Event()
    stopped = anyio.Event()  # the job itself saw the cancel (the record says so at once)

    async def job(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        await gate.wait()
        try:
            await progress.phase("generating")
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            stopped.set()
            raise
        return {}

    with anyio.fail_after(5):
        async with server(db) as owner, server(db) as other:
            record = await owner.start("generate_image", {}, job)
            assert (await other.cancel(record.id)).status == "cancelled"
            gate.set()
            await stopped.wait()
            done = await owner.wait(record.id, 5)
    assert stopped.is_set()
    assert done.status == "cancelled"


def test_a_database_from_a_newer_version_is_refused(db: Path) -> None:
    TaskStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {task_store.SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer mcp-images"):
        TaskStore(db)


@pytest.mark.anyio
async def test_a_provider_held_job_of_a_live_server_is_not_taken_over(db: Path) -> None:
    blocker = Blocker(provider_task_id="302-abc")
    with anyio.fail_after(5):
        async with server(db) as first, server(db) as second:
            record = await first.start("generate_image", {}, blocker, provider="302ai")
            await blocker.started.wait()
            assert await second.resume(lambda record: returning({})) == 0
            assert (await second.get(record.id)).owner == first.owner


@pytest.mark.anyio
async def test_a_client_that_went_away_does_not_stop_the_job(db: Path) -> None:
    async def send(count: float, total: float | None, message: str) -> None:
        raise anyio.BrokenResourceError

    async def job(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        await progress.phase("generating")
        await progress.note("partial image 1 saved: images://0123456789ab")
        return {"ok": True}

    with anyio.fail_after(5):
        async with server(db) as manager:
            done = await manager.run_attached("generate_image", {}, job, send=send, handoff_after=5)
    assert done.status == "succeeded"
    assert done.progress == ["partial image 1 saved: images://0123456789ab"]


@pytest.mark.anyio
async def test_a_job_that_ends_quickly_is_stored_with_its_last_phase_and_every_note(db: Path) -> None:
    async def job(progress: Progress, handle: TaskHandle) -> dict[str, Any]:
        await progress.phase("generating")
        await progress.phase("saving")  # within the second: goes in with the outcome
        await progress.note("partial image 1 saved: images://0123456789ab")
        await progress.phase("pricing")
        return {"ok": True}

    with anyio.fail_after(5):
        async with server(db) as manager:
            finished = await manager.run_attached("generate_image", {}, job, send=None, handoff_after=None)
        async with server(db) as restarted:
            stored = await restarted.get(finished.id)
    assert finished.status == stored.status == "succeeded" and stored.result == {"ok": True}
    assert finished.phase == stored.phase == "pricing"
    assert stored.progress == ["partial image 1 saved: images://0123456789ab"]
