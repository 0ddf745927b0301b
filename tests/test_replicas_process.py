"""A real replica process killed (SIGKILL) mid-job: a survivor fails its task, once, within the lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import AsyncExitStack

import anyio
import pytest

from mcp_images.tasks import manager as tasks
from mcp_images.tasks.postgres import PostgresTaskStore
from tests.test_replicas import LEASE, replicas, short_lease, until  # noqa: F401  (a fixture)
from tests.test_store_seams import fresh_schema_url

pytestmark = pytest.mark.anyio

REPLICA = """
import sys, anyio
from mcp_images.tasks.manager import TaskManager
from mcp_images.tasks.postgres import PostgresTaskStore

async def main():
    store = await PostgresTaskStore.open(sys.argv[1])
    async with TaskManager(store, error_to_dict=lambda e: {"message": str(e)}).running() as manager:
        async def forever(progress, handle):
            await anyio.sleep_forever()
        record = await manager.start("generate_image", {}, forever)
        print(record.id, flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL")
@pytest.mark.usefixtures("short_lease")
async def test_a_killed_replicas_task_is_failed_once_by_a_survivor_within_the_lease() -> None:
    url = await fresh_schema_url()
    proc = subprocess.Popen([sys.executable, "-c", REPLICA, url], stdout=subprocess.PIPE, text=True)
    try:
        with anyio.fail_after(20):
            assert proc.stdout is not None
            task_id = (await anyio.to_thread.run_sync(proc.stdout.readline)).strip()
        os.kill(proc.pid, signal.SIGKILL)  # mid-job: no shutdown code runs
        proc.wait(10)
        killed_at = time.monotonic()

        async def open_scaled() -> PostgresTaskStore:
            return await PostgresTaskStore.open(url)

        with anyio.fail_after(LEASE + 10):
            async with AsyncExitStack() as stack:
                survivors = await replicas(stack, open_scaled, 2)
                await until(lambda: _finished(survivors[0], task_id))
                record = await survivors[1].get(task_id)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - killed_at < LEASE + 5
    assert record.status == "failed" and record.error == {"type": "TaskError", "message": tasks.RESTART_REASON}


async def _finished(manager: tasks.TaskManager, task_id: str) -> bool:
    return (await manager.get(task_id)).finished
