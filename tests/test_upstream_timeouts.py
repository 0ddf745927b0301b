"""An upstream that drips its answer a byte at a time still times out, and says which limit hit.

httpx2's read timeout only bounds the gap between bytes; MCP_IMAGES_TIMEOUT bounds each
attempt as a whole. The upstream here is a real loopback server that answers one byte per
DRIP_SECONDS, far inside the read timeout, for much longer than the total time allowed.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import anyio
import httpx2
import pytest
from anyio.abc import SocketAttribute, SocketStream

from mcp_images.catalog.providers import get_provider
from mcp_images.errors import ConnectionError_, TimeoutError_
from mcp_images.upstream.client import ImagesAPI
from mcp_images.upstream.downloads import download_result
from mcp_images.upstream.errors import AttemptTimeout, transport_error
from mcp_images.upstream.requests import timeouts

pytestmark = pytest.mark.anyio

KEY = "sk-test-0123456789-secret"
DRIP_SECONDS = 0.02  # the fake upstream's pace: one byte this often, never a silent gap
TOTAL = 0.3  # the total time each attempt is given here (MCP_IMAGES_TIMEOUT in real use)
GUARD = 5.0  # no test here may take this long: without the total bound they would drip ~40 s
Mode = Literal["headers", "body", "events", "silent"]


@dataclass
class Dripper:
    """A loopback HTTP/1.1 server that reads each request whole, then drips (or says nothing)."""

    mode: Mode
    requests: int = 0

    async def handle(self, stream: SocketStream) -> None:
        async with stream:
            try:
                await _read_request(stream)
                self.requests += 1
                if self.mode == "silent":
                    await anyio.sleep_forever()
                head, body = _answer(self.mode)
                if self.mode == "headers":
                    await _drip(stream, head)
                else:
                    await stream.send(head)
                    await _drip(stream, body)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError):
                pass  # the client gave up on us: that is the point


async def _read_request(stream: SocketStream) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        body += await stream.receive()


def _answer(mode: Mode) -> tuple[bytes, bytes]:
    if mode == "events":
        event = json.dumps({"type": "image_generation.completed", "b64_json": "QUJD" * 500})
        body, kind = f"data: {event}\n\n".encode(), "text/event-stream"
    else:
        body, kind = json.dumps({"data": [{"b64_json": "QUJD" * 500}]}).encode(), "application/json"
    head = f"HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {len(body)}\r\nx-pad: {'a' * 2000}\r\n\r\n"
    return head.encode(), body


async def _drip(stream: SocketStream, data: bytes) -> None:
    for i in range(len(data)):
        await stream.send(data[i : i + 1])
        await anyio.sleep(DRIP_SECONDS)


@asynccontextmanager
async def dripping(mode: Mode) -> AsyncIterator[tuple[str, Dripper]]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    dripper = Dripper(mode)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, dripper.handle)
        try:
            yield f"http://127.0.0.1:{port}/v1", dripper
        finally:
            tg.cancel_scope.cancel()


async def no_wait(seconds: float) -> None:
    """Retries here need no backoff: the test is about the timeouts."""


@asynccontextmanager
async def api_at(base_url: str, *, read_timeout: float = GUARD, max_retries: int = 1) -> AsyncIterator[ImagesAPI]:
    async with httpx2.AsyncClient() as http:
        yield ImagesAPI(
            http,
            provider=get_provider("compatible"),
            base_url=base_url,
            api_key=KEY,
            read_timeout=read_timeout,
            total_timeout=TOTAL,
            max_retries=max_retries,
            sleep=no_wait,
        )


@pytest.mark.parametrize("mode", ["headers", "body", "events"])
async def test_a_post_answered_a_byte_at_a_time_times_out_in_total_and_is_not_sent_again(mode: Mode) -> None:
    body = {"model": "gpt-image-2", "prompt": "a fox", "stream": mode == "events"}
    async with dripping(mode) as (base_url, upstream), api_at(base_url) as api:
        with anyio.fail_after(GUARD), pytest.raises(TimeoutError_) as caught:
            await api.generate(body)
    error = caught.value
    assert error.code == "total_timeout"
    assert f"did not finish answering within {TOTAL:g} s (MCP_IMAGES_TIMEOUT)" in str(error)
    assert "not sent again" in str(error) and "billing" in str(error)
    assert KEY not in str(error)
    assert upstream.requests == 1  # the upstream had the whole request: it may be making the image


async def test_a_result_download_dripping_its_headers_times_out_and_is_retried_as_a_get() -> None:
    async with dripping("headers") as (base_url, upstream), httpx2.AsyncClient() as http:
        with anyio.fail_after(GUARD), pytest.raises(TimeoutError_) as caught:
            await download_result(
                http,
                f"{base_url}/files/a.png",
                max_bytes=10_000_000,
                max_retries=1,
                sleep=no_wait,
                secret=KEY,
                trusted_hosts=["127.0.0.1", f"127.0.0.1:{httpx2.URL(base_url).port}"],
                total_timeout=TOTAL,
            )
    assert caught.value.code == "total_timeout"
    assert f"did not finish answering within {TOTAL:g} s (the download limit)" in str(caught.value)
    assert "not sent again" not in str(caught.value)
    assert upstream.requests == 2  # a GET is not billed: tried again once


async def test_a_result_download_dripping_its_body_times_out() -> None:
    async with dripping("body") as (base_url, _), httpx2.AsyncClient() as http:
        with anyio.fail_after(GUARD), pytest.raises(TimeoutError_) as caught:
            await download_result(
                http,
                f"{base_url}/files/a.png",
                max_bytes=10_000_000,
                max_retries=0,
                sleep=no_wait,
                secret=KEY,
                trusted_hosts=["127.0.0.1", f"127.0.0.1:{httpx2.URL(base_url).port}"],
                total_timeout=TOTAL,
            )
    assert caught.value.code == "total_timeout"


async def test_an_upstream_that_sends_nothing_hits_the_read_timeout_and_is_retried_as_before() -> None:
    async with dripping("silent") as (base_url, upstream), api_at(base_url, read_timeout=0.1) as api:
        api._total_timeout = GUARD  # only the gap between bytes is short here
        with anyio.fail_after(GUARD), pytest.raises(TimeoutError_) as caught:
            await api.generate({"model": "gpt-image-2", "prompt": "a fox"})
    assert caught.value.code == "read_timeout"
    assert "sent no byte for 0.1 s (read timeout)" in str(caught.value)
    assert upstream.requests == 2


@pytest.mark.parametrize(
    ("failure", "kind", "code", "words"),
    [
        (httpx2.ConnectTimeout("slow"), ConnectionError_, "connect_timeout", "within 10 s (connect timeout)"),
        (httpx2.ReadTimeout("slow"), TimeoutError_, "read_timeout", "sent no byte for 600 s (read timeout)"),
        (httpx2.PoolTimeout("busy"), TimeoutError_, "pool_timeout", "came free within 600 s"),
        (AttemptTimeout(600, maybe_billed=False), TimeoutError_, "total_timeout", "within 600 s (MCP_IMAGES_TIMEOUT)"),
    ],
)
def test_each_timeout_names_the_limit_it_hit(
    failure: httpx2.TransportError, kind: type[Exception], code: str, words: str
) -> None:
    error = transport_error(failure, where="https://up.example/v1", connect_seconds=10, read_seconds=600)
    assert isinstance(error, kind) and error.code == code
    assert words in str(error)


def test_the_request_timeouts_still_bound_connecting_and_each_read() -> None:
    limits = timeouts(read=600)
    assert (limits.connect, limits.read) == (10, 600)
