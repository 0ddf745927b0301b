"""Over streamable HTTP a request body past MCP_IMAGES_HTTP_MAX_BODY_MB is refused while it is read.

A real server (``python -m mcp_images --transport http``, uvicorn on 127.0.0.1) in a child
process, spoken to over a raw socket so the test decides how much of a body is ever sent.
Memory figures are in benchmarks/http_body_limit.py, not here.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from mcp import Client

from mcp_images.config import DEFAULT_HTTP_MAX_BODY_MB, Settings
from mcp_images.inputs.references import InputPolicy
from mcp_images.server.http_limits import INVALID_REQUEST
from tests.test_e2e import child, free_port, server_env, wait_until_listening

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024
LIMIT_MB = 1  # the child's limit: small, so a test never has to send much
ANSWER_TIMEOUT = 10.0  # seconds for a refusal; it comes before the body, so it is quick
CHUNK = 256 * 1024


@asynccontextmanager
async def http_server(tmp_path: Path, sandbox: Any) -> AsyncIterator[int]:
    """A child mcp-images on a loopback port with a 1 MiB body limit; yields the port."""
    port = free_port()
    env = {**server_env(tmp_path, sandbox.base_url), "MCP_IMAGES_HTTP_MAX_BODY_MB": str(LIMIT_MB)}
    args = [sys.executable, "-m", "mcp_images", "--transport", "http", "--port", str(port)]
    with child(args, env, tmp_path) as proc:
        await wait_until_listening(proc, port, tmp_path / "child.log")
        yield port


def post_head(port: int, extra: str) -> bytes:
    return (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\n{extra}\r\n"
    ).encode()


async def read_answer(stream: SocketStream) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the one answer on ``stream`` (read until the server closes)."""
    data = b""
    with anyio.fail_after(ANSWER_TIMEOUT):
        while True:
            try:
                data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def tool_call_body(size: int) -> bytes:
    """A tools/call of edit_image whose data URI makes the JSON ``size`` bytes long."""
    frame = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
    call = {**frame, "params": {"name": "edit_image", "arguments": {"prompt": "x", "image": "data:image/png;base64,"}}}
    text = json.dumps(call)
    return text.replace("base64,", "base64," + "A" * (size - len(text)), 1).encode()


async def test_a_body_declared_over_the_limit_is_refused_with_413_before_any_of_it_is_sent(
    tmp_path: Path, sandbox: Any
) -> None:
    async with http_server(tmp_path, sandbox) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(post_head(port, f"Content-Length: {100 * MIB}\r\n"))  # and not one byte more
            status, body = await read_answer(stream)
    assert status == 413
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == INVALID_REQUEST
    assert "MCP_IMAGES_HTTP_MAX_BODY_MB" in body["error"]["message"]
    assert "100.0 MiB" in body["error"]["message"]


async def test_a_chunked_body_is_cut_with_413_as_soon_as_it_passes_the_limit(tmp_path: Path, sandbox: Any) -> None:
    payload = tool_call_body(LIMIT_MB * MIB + 2 * CHUNK)
    sent = 0
    async with http_server(tmp_path, sandbox) as port:
        stream = await anyio.connect_tcp("127.0.0.1", port)
        async with stream:
            await stream.send(post_head(port, "Transfer-Encoding: chunked\r\n"))
            while sent <= LIMIT_MB * MIB:  # just past the limit, then stop: the rest never goes
                piece = payload[sent : sent + CHUNK]
                await stream.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
            status, body = await read_answer(stream)
    assert sent < len(payload)
    assert status == 413 and body["error"]["code"] == INVALID_REQUEST
    assert f"at most {LIMIT_MB:.1f} MiB" in body["error"]["message"]


async def test_calls_under_the_limit_still_work_over_http(tmp_path: Path, sandbox: Any) -> None:
    async with http_server(tmp_path, sandbox) as port, Client(f"http://127.0.0.1:{port}/mcp") as client:
        with anyio.fail_after(ANSWER_TIMEOUT):
            assert {t.name for t in (await client.list_tools()).tools} >= {"generate_image", "edit_image"}
            image = "data:image/png;base64," + "A" * (LIMIT_MB * MIB // 2)  # refused as an image, not by size
            result = await client.call_tool("edit_image", {"prompt": "x", "image": image})
    assert result.is_error
    assert "MCP_IMAGES_HTTP_MAX_BODY_MB" not in result.model_dump_json()


def test_the_default_limit_takes_one_inline_image_of_the_largest_size_a_model_takes_with_a_mask() -> None:
    largest = InputPolicy().max_file_bytes
    mask = 4 * MIB
    needed = (largest + mask) * 4 / 3 + 32_000 * 6  # as base64, and a prompt of \uXXXX escapes
    limit = DEFAULT_HTTP_MAX_BODY_MB * MIB
    assert Settings.model_fields["http_max_body_mb"].default == DEFAULT_HTTP_MAX_BODY_MB
    assert needed < limit < 2 * needed  # and not much more: a body costs several times its size to parse
