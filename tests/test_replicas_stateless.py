"""``--stateless`` replicas over HTTP: any request may reach any replica (issue 12).

Two real uvicorn servers on loopback share one PostgreSQL schema and one S3-API bucket (moto);
the client's HTTP goes through a round-robin "proxy" (an httpx transport that sends each
request to the next replica), so consecutive tool calls land on different replicas. Both
protocol eras the SDK serves are driven: the handshake era (initialize, then requests without
a session) and 2026-07-28 (every request self-contained).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_images.server.http_app import build_http_app
from tests.conftest import make_settings
from tests.test_http_auth import TIMEOUT, Served, serve_app
from tests.test_store_seams import fresh_schema_url
from tests.test_store_seams_images import s3_bucket, s3_endpoint  # noqa: F401  (fixtures)

pytestmark = pytest.mark.anyio


@pytest.fixture
def bucket(request: pytest.FixtureRequest) -> str:
    """A fresh bucket on the session's S3-API server (the AWS_* variables point at it)."""
    return request.getfixturevalue("s3_bucket")


class RoundRobin(httpx2.AsyncBaseTransport):
    """Sends each request to the next replica, no affinity: tool calls and the rest alternate
    separately, so two tool calls in a row never reach the same replica."""

    def __init__(self, ports: list[int]) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._calls = itertools.cycle(ports)
        self._others = itertools.cycle(ports)
        self.log: list[tuple[int, str, str]] = []  # (port, JSON-RPC method, tool name)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        method, tool = "", ""
        if request.method == "POST":
            body = json.loads(request.content or b"{}")
            method = body.get("method", "")
            tool = (body.get("params") or {}).get("name", "") if method == "tools/call" else ""
        port = next(self._calls if method == "tools/call" else self._others)
        request.url = request.url.copy_with(port=port)
        self.log.append((port, method or request.method, tool))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@asynccontextmanager
async def stateless_replica(settings: Any, *, stateless: bool = True) -> AsyncIterator[Served]:
    """mcp-images's whole HTTP app, as ``mcp-images --transport http --stateless`` builds it,
    once its task store has opened (or failed to: ``tasks_error``)."""
    from mcp_images.server.build import create_server

    server = create_server(settings, transport="http")
    server.runtime.stateless = stateless  # what cli._serve does with --stateless
    built = build_http_app(server, host="127.0.0.1")
    async with serve_app(built.app, built) as (port, uv):
        with anyio.fail_after(TIMEOUT):  # the task database opens in the background
            while built.runtime.task_manager is None and built.runtime.tasks_error is None:
                await anyio.sleep(0.01)
        yield Served(port, uv, built)


@asynccontextmanager
async def two_replicas(
    tmp_path: Path, base_url: str, bucket: str, *, stateless: bool = True, **settings: Any
) -> AsyncIterator[tuple[list[Served], RoundRobin]]:
    urls = {"database_url": await fresh_schema_url(), "storage_url": f"s3://{bucket}/stateless"}
    async with AsyncExitStack() as stack:
        served = [
            await stack.enter_async_context(
                stateless_replica(
                    make_settings(tmp_path / f"replica-{n}", base_url, **urls, **settings), stateless=stateless
                )
            )
            for n in range(2)
        ]
        assert all(s.built.runtime.task_manager is not None for s in served)
        yield served, RoundRobin([s.port for s in served])


@asynccontextmanager
async def proxied_client(first: Served, proxy: RoundRobin, mode: str) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(transport=proxy, timeout=TIMEOUT)
    transport = streamable_http_client(first.url, http_client=http, terminate_on_close=False)
    async with http, Client(transport, mode=mode) as client:
        yield client


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def ports_of(proxy: RoundRobin, tool: str) -> list[int]:
    return [port for port, method, name in proxy.log if method == "tools/call" and name == tool]


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_with_stateless_a_task_started_on_one_replica_is_checked_on_the_other_and_progress_streams(
    tmp_path: Path, sandbox: Any, bucket: str, mode: str
) -> None:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    with anyio.fail_after(30):
        async with (
            two_replicas(tmp_path, sandbox.base_url, bucket) as (served, proxy),
            proxied_client(served[0], proxy, mode) as client,
        ):
            started = await client.call_tool("generate_image", {"prompt": "a heron", "async": True})
            assert not started.is_error, started
            task_id = started.structured_content["task_id"]
            done = await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 20})
            made = await client.call_tool(
                "generate_image", {"prompt": "a fox", "quality": "low"}, progress_callback=on_progress
            )
            read = await client.call_tool("check_task", {"task_id": task_id})
            owners = {s.port: s.built.runtime.task_manager.owner for s in served}
            record = await served[1].built.runtime.task_manager.get(task_id)
    assert not done.is_error and done.structured_content["status"] == "succeeded", done
    assert read.structured_content == done.structured_content
    started_on, checked_on = ports_of(proxy, "generate_image")[0], ports_of(proxy, "check_task")[0]
    assert started_on != checked_on  # the proxy sent them to different replicas
    assert not made.is_error, made
    assert any(m.startswith("generating") for m in seen) and any(m.startswith("saving") for m in seen)
    assert record.owner == owners[started_on]  # it ran where it started; the other read it from the database


async def test_without_stateless_the_other_replica_refuses_the_session_it_never_saw(
    tmp_path: Path, sandbox: Any, bucket: str
) -> None:
    with anyio.fail_after(30):
        async with two_replicas(tmp_path, sandbox.base_url, bucket, stateless=False) as (served, proxy):
            with pytest.raises(BaseExceptionGroup) as failed:
                async with proxied_client(served[0], proxy, "legacy") as client:
                    for _ in range(2):  # the second reaches the replica that never saw the session
                        await client.call_tool("check_task", {"task_id": "task-0000000000000000"})
    assert [str(e) for e in leaves(failed.value)] == ["Session not found"]
    assert ports_of(proxy, "check_task") == [served[0].port, served[1].port]


@pytest.mark.parametrize("shared", ["request_state_secret", "url_secret", None])
async def test_a_spending_confirmation_answered_on_another_replica_goes_through_with_a_shared_key(
    tmp_path: Path, sandbox: Any, bucket: str, shared: str | None
) -> None:
    """Protocol 2026-07-28: the question comes back sealed in the result; the SDK's client asks
    the person and calls again, and the round robin sends that call to the other replica,
    which opens the sealed question only with the key every replica shares."""
    from tests.test_spending_confirm import Person

    person = Person("accept")
    keys: dict[str, Any] = {shared: "a-shared-key-of-at-least-thirty-two-characters"} if shared else {}
    if shared == "url_secret":
        keys["public_url"] = "https://images.example.com"
    with anyio.fail_after(30):
        async with two_replicas(tmp_path, sandbox.base_url, bucket, confirm_above=0.001, **keys) as (served, proxy):
            http = httpx2.AsyncClient(transport=proxy, timeout=TIMEOUT)
            transport = streamable_http_client(served[0].url, http_client=http, terminate_on_close=False)
            refused: list[BaseException] = []
            result = None
            try:
                async with http, Client(transport, mode="2026-07-28", elicitation_callback=person) as client:
                    result = await client.call_tool("generate_image", {"prompt": "a heron", "quality": "low"})
            except Exception as exc:  # MCPError, raised inside the client's task group
                refused = leaves(exc)
    asked_on, answered_on = ports_of(proxy, "generate_image")[:2]
    assert asked_on != answered_on  # the answer reached the other replica
    assert len(person.shown) == 1
    if shared:
        assert not refused and result is not None and not result.is_error, refused or result
        assert result.structured_content and result.structured_content["images"]
    else:  # a key of each process: the other replica cannot open the question, and nothing is spent
        assert [str(e) for e in refused] == ["Invalid or expired requestState"]
        made = [p for n in range(2) for p in (tmp_path / f"replica-{n}" / "out").glob("**/*.png")]
        assert not made, made
