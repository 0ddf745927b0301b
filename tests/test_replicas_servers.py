"""Whole servers as replicas: the same DATABASE and STORAGE URLs, each its own folder.

``embedded``: SQLite and one shared folder (servers on one machine). ``scaled``: PostgreSQL and
an S3-API bucket (moto on loopback), each replica with a separate output folder as its cache.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from mcp_images.config import Settings
from mcp_images.server.build import create_server
from tests.conftest import make_settings
from tests.test_store_seams import fresh_schema_url
from tests.test_store_seams_images import s3_bucket, s3_endpoint  # noqa: F401  (fixtures)

pytestmark = pytest.mark.anyio

ReplicaSettings = Callable[[str], Settings]


@pytest.fixture(params=["embedded", "scaled"])
async def replica_settings(request: pytest.FixtureRequest, tmp_path: Path, sandbox: Any) -> ReplicaSettings:
    if request.param == "embedded":
        urls = {"database_url": f"sqlite:///{tmp_path / 'shared' / 'tasks.sqlite3'}",
                "storage_url": str(tmp_path / "shared" / "images")}  # fmt: skip
    else:
        bucket = request.getfixturevalue("s3_bucket")
        urls = {"database_url": await fresh_schema_url(), "storage_url": f"s3://{bucket}/replicas"}

    def settings(name: str) -> Settings:
        return make_settings(tmp_path / name, sandbox.base_url, **urls)

    return settings


async def replicas(stack: AsyncExitStack, settings: ReplicaSettings, count: int) -> list[Client]:
    clients = []
    for n in range(count):
        client = await stack.enter_async_context(Client(create_server(settings(f"replica-{n}"))))
        clients.append(client)
    return clients


async def test_a_task_started_on_one_replica_is_checked_and_returned_by_another(
    replica_settings: ReplicaSettings,
) -> None:
    with anyio.fail_after(30):
        async with AsyncExitStack() as stack:
            first, second, third = await replicas(stack, replica_settings, 3)
            started = await first.call_tool("generate_image", {"prompt": "a heron", "async": True})
            assert not started.is_error, started
            task_id = started.structured_content["task_id"]
            done = await second.call_tool("check_task", {"task_id": task_id, "wait_seconds": 20})
            again = await third.call_tool("check_task", {"task_id": task_id})
    assert not done.is_error and done.structured_content["status"] == "succeeded"
    assert again.structured_content == done.structured_content


async def test_an_image_made_on_one_replica_is_read_and_edited_by_id_on_another(
    replica_settings: ReplicaSettings,
) -> None:
    with anyio.fail_after(30):
        async with AsyncExitStack() as stack:
            first, second = await replicas(stack, replica_settings, 2)
            made = await first.call_tool("generate_image", {"prompt": "a red fox"})
            assert not made.is_error, made
            image = made.structured_content["images"][0]
            read = await second.read_resource(image["uri"])
            edited = await second.call_tool("edit_image", {"prompt": "make it blue", "image": image["uri"]})
    assert read.contents[0].mime_type == image["mime_type"]
    assert Path(image["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not edited.is_error, edited
    assert edited.structured_content["images"][0]["id"] != image["id"]


async def test_replicas_on_one_database_draw_on_one_daily_budget(replica_settings: ReplicaSettings) -> None:
    """A team's budget is the team's, however many replicas serve it: the ledger is in the
    task database (PostgreSQL, or SQLite beside the shared task file), so calls racing on
    two replicas for the last dollars cannot both get them, and both replicas show one day."""
    from tests.test_spending_guard import HIGH, cost_of, refusal
    from tests.test_spending_ledger import spending

    budget = 0.7  # three $0.21 calls fit, a fourth does not
    with anyio.fail_after(60):
        async with AsyncExitStack() as stack:
            clients = []
            for n in range(2):
                settings = replica_settings(f"replica-{n}").model_copy(update={"daily_budget": budget})
                clients.append(await stack.enter_async_context(Client(create_server(settings))))
            results: list[Any] = []

            async def call(client: Client, i: int) -> None:
                results.append(await client.call_tool("generate_image", {**HIGH, "prompt": f"a heron {i}"}))

            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(call, clients[i % 2], i)
            views = [await spending(client) for client in clients]
    made = [r for r in results if not r.is_error]
    assert len(made) == 3, [r.content[0] for r in results if r.is_error]
    assert {refusal(r)["spending"]["reason"] for r in results if r.is_error} == {"daily_budget"}
    spent = sum(cost_of(r) for r in made)
    for view in views:
        assert view["day"]["calls"] == 3 and view["day"]["spent"] == pytest.approx(spent, abs=1e-6)
        assert view["day"]["committed"] <= budget


def closed_port() -> int:
    """A loopback port nothing listens on (a database that is down)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_replica_without_its_database_says_why_and_hides_the_password(
    tmp_path: Path, sandbox: Any
) -> None:
    url = f"postgresql://app:pg-pass-77@127.0.0.1:{closed_port()}/x"
    settings = make_settings(tmp_path, sandbox.base_url, database_url=url)
    with anyio.fail_after(30):
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("generate_image", {"prompt": "a fox", "async": True})
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert result.is_error and "cannot be used right now" in text
    assert "pg-pass-77" not in text and "postgresql://app:***@" in text


async def test_under_a_budget_a_replica_whose_ledger_database_is_down_spends_nothing_and_says_why(
    tmp_path: Path, sandbox: Any
) -> None:
    url = f"postgresql://app:pg-pass-78@127.0.0.1:{closed_port()}/x"
    settings = make_settings(tmp_path, sandbox.base_url, database_url=url, daily_budget=5.0)
    with anyio.fail_after(30):
        async with Client(create_server(settings)) as client:
            result = await client.call_tool("generate_image", {"prompt": "a fox"})
    text = " ".join(getattr(block, "text", "") for block in result.content)
    assert result.is_error and result.structured_content is not None
    assert result.structured_content["error"]["type"] == "SpendingRefused"
    assert "the spending ledger in postgresql://app:***@" in text and "Nothing was sent upstream" in text
    assert "pg-pass-78" not in text
    assert not list((tmp_path / "out").glob("**/*.png"))

