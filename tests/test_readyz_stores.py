"""``/readyz`` and the stores behind it (issue 12): 503 while the task store or the image store
cannot do the work, 200 again once it can, and an answer in time even when a store hangs.

A real HTTP server on loopback each time. The task database is the test PostgreSQL, reached
through a loopback relay that can *freeze* (hold every byte, answer nothing: a database that
hangs); the image store is moto's S3 API, or a loopback port that accepts and never answers.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import pytest
from anyio.abc import SocketStream

from mcp_images.server import health
from tests.conftest import make_settings
from tests.test_http_auth import TIMEOUT, Served
from tests.test_replicas_stateless import stateless_replica
from tests.test_store_seams import fresh_schema_url
from tests.test_store_seams_images import s3_endpoint  # noqa: F401  (a fixture)

pytestmark = pytest.mark.anyio

SHORT = 0.3  # READY_TIMEOUT_SECONDS in these tests: a hanging store is given this long


@pytest.fixture(autouse=True)
def short_ready_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "READY_TIMEOUT_SECONDS", SHORT)


class Relay:
    """A loopback TCP relay to ``target`` that can freeze: bytes are held, nothing answers."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.frozen = False
        self._thawed = anyio.Event()

    def freeze(self) -> None:
        self.frozen, self._thawed = True, anyio.Event()

    def thaw(self) -> None:
        self.frozen = False
        self._thawed.set()

    async def handle(self, client: SocketStream) -> None:
        async with client, await anyio.connect_tcp(*self.target) as upstream, anyio.create_task_group() as tg:
            tg.start_soon(self._pump, client, upstream, tg.cancel_scope)
            tg.start_soon(self._pump, upstream, client, tg.cancel_scope)

    async def _pump(self, src: SocketStream, dst: SocketStream, scope: anyio.CancelScope) -> None:
        try:
            async for chunk in src:
                while self.frozen:
                    await self._thawed.wait()
                await dst.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        scope.cancel()  # one side is gone: so is the other


@asynccontextmanager
async def relay_to(url: str) -> AsyncIterator[tuple[Relay, str]]:
    """A relay to the database at ``url``, and the same URL through the relay."""
    parts = urlsplit(url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    netloc = f"{parts.netloc.rsplit('@', 1)[0]}@127.0.0.1:{port}"
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, relay.handle)
        try:
            yield relay, urlunsplit(parts._replace(netloc=netloc))
        finally:
            relay.thaw()
            tg.cancel_scope.cancel()


async def ready(served: Served) -> tuple[int, dict[str, Any], float]:
    """/readyz's status, its checks and how long it took to answer."""
    async with httpx2.AsyncClient(base_url=served.base, timeout=TIMEOUT) as http:
        began = time.monotonic()
        answer = await http.get("/readyz")
    return answer.status_code, answer.json()["checks"], time.monotonic() - began


async def test_readyz_is_503_while_the_task_database_hangs_and_200_once_it_answers_again(
    tmp_path: Path, sandbox: Any
) -> None:
    with anyio.fail_after(30):
        async with relay_to(await fresh_schema_url()) as (relay, url):
            settings = make_settings(tmp_path, sandbox.base_url, database_url=url)
            async with stateless_replica(settings) as served:
                before = await ready(served)
                relay.freeze()
                hung = await ready(served)
                relay.thaw()
                after = await ready(served)
    assert before[:2] == (200, {"tasks": "ok", "output": "ok", "upstream": "ok", "accepting_calls": "ok"})
    assert hung[0] == 503 and hung[1]["tasks"] == "unavailable" and hung[1]["output"] == "ok"
    assert hung[2] < SHORT + 2.0  # answered once the probe gave up, not when the database came back
    assert after[:2] == before[:2]


async def test_readyz_is_503_when_the_task_database_never_opened(tmp_path: Path, sandbox: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    url = f"postgresql://app:pg-pass-77@127.0.0.1:{port}/x"
    with anyio.fail_after(30):
        async with stateless_replica(make_settings(tmp_path, sandbox.base_url, database_url=url)) as served:
            status, checks, _ = await ready(served)
    assert status == 503 and checks["tasks"] == "unavailable" and checks["output"] == "ok"


async def test_readyz_is_503_while_the_bucket_refuses_writes_and_200_once_it_takes_them(
    tmp_path: Path, sandbox: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", request.getfixturevalue("s3_endpoint"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto-secret-key-never-shown-0123")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setattr(health, "READY_TIMEOUT_SECONDS", TIMEOUT)  # the first probe imports boto3: let it
    bucket = f"not-yet-{int(time.time() * 1000)}"
    settings = make_settings(tmp_path, sandbox.base_url, storage_url=f"s3://{bucket}/images")
    with anyio.fail_after(30):
        async with stateless_replica(settings) as served:
            refused = await ready(served)
            await anyio.to_thread.run_sync(lambda: boto3.client("s3").create_bucket(Bucket=bucket))
            taken = await ready(served)
    assert refused[0] == 503 and refused[1]["output"] == "not writable" and refused[1]["tasks"] == "ok"
    assert taken[0] == 200 and taken[1]["output"] == "ok"


async def test_readyz_answers_in_time_when_the_bucket_hangs_and_starts_no_second_probe_meanwhile(
    tmp_path: Path, sandbox: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    held: list[SocketStream] = []
    first = second = (0, {}, 0.0)

    async def never_answer(client: SocketStream) -> None:
        held.append(client)  # read nothing, answer nothing, until the test ends

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    settings = make_settings(tmp_path, sandbox.base_url, storage_url="s3://hangs/images")
    with anyio.fail_after(30):
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, never_answer)
            async with stateless_replica(settings) as served:
                first = await ready(served)
                second = await ready(served)  # the first probe's thread is still waiting
            tg.cancel_scope.cancel()
        for client in held:  # the abandoned probe's request fails now, and its thread ends
            await client.aclose()
    assert first[0] == 503 and first[1]["output"] == "not answering" and first[1]["tasks"] == "ok"
    assert first[2] < SHORT + 2.0
    assert second[1]["output"] == "not answering" and second[2] < SHORT + 2.0
    assert len(held) == 1  # one connection: no second probe was started while the first hung
