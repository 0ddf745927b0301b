"""The standing fault suite: a loopback upstream that misbehaves in one way per case.

Each case goes through the protocol (a real generate_image call) and must end in a clear,
structured error naming the cause — or, where the fault leaves usable images, in a result
that keeps them and says what went wrong. Never a generic error, a hang, the key in the
answer, or a half-written file. The retry rule under test: what may have been billed is
not sent again blindly (a timed-out or cut POST after its body was sent is sent once).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest
from mcp import Client
from PIL import Image

from mcp_images.server.build import create_server
from tests.conftest import TEST_KEY, make_settings

pytestmark = pytest.mark.anyio

Writer = asyncio.StreamWriter
Behaviour = Callable[[Writer, dict[str, Any]], Awaitable[None]]


def _png_b64(color: tuple[int, int, int] = (30, 120, 200)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


PNG_B64 = _png_b64()


def head(status: int, ctype: str = "application/json", length: int | None = None, extra: str = "") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else ""
    return f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\n{size}{extra}Connection: close\r\n\r\n".encode()


def answer(status: int, body: bytes, ctype: str = "application/json") -> Behaviour:
    async def send(w: Writer, _: dict[str, Any]) -> None:
        w.write(head(status, ctype, len(body)) + body)

    return send


def images(count: int) -> bytes:
    return json.dumps({"created": 1, "data": [{"b64_json": PNG_B64} for _ in range(count)]}).encode()


async def _cut(w: Writer, body: bytes, at: int) -> None:
    w.write(head(200, "application/json", len(body)) + body[:at])
    await w.drain()
    w.transport.abort()  # a reset, mid-body


def cut_in_json(w: Writer, _: dict[str, Any]) -> Awaitable[None]:
    return _cut(w, images(1), 10)


def cut_in_base64(w: Writer, _: dict[str, Any]) -> Awaitable[None]:
    body = images(1)
    return _cut(w, body, len(body) // 2)


async def never_answers(w: Writer, _: dict[str, Any]) -> None:
    await asyncio.sleep(3600)


async def drips(w: Writer, _: dict[str, Any]) -> None:
    body = images(1)
    w.write(head(200, "application/json", len(body)))
    for byte in body:
        w.write(bytes([byte]))
        await w.drain()
        await asyncio.sleep(0.02)


async def sse_stops_early(w: Writer, _: dict[str, Any]) -> None:
    event = {"type": "image_generation.partial_image", "b64_json": PNG_B64, "partial_image_index": 0}
    w.write(head(200, "text/event-stream") + f"data: {json.dumps(event)}\n\n".encode())
    await w.drain()
    w.close()


def url_result(target: str) -> Behaviour:
    async def send(w: Writer, req: dict[str, Any]) -> None:
        body = json.dumps({"data": [{"url": f"http://127.0.0.1:{req['port']}{target}"}]}).encode()
        w.write(head(200, "application/json", len(body)) + body)

    return send


FAULTS: dict[str, tuple[Behaviour, dict[str, Any], str]] = {
    "reset mid-body in the JSON": (cut_in_json, {}, "cut off"),
    "reset mid-body in the base64": (cut_in_base64, {}, "cut off"),
    "malformed JSON": (answer(200, b'{"data": [{"b64_json": '), {}, "JSON"),
    "HTML 502 page": (answer(502, b"<html><body>Bad gateway</body></html>", "text/html"), {}, "502"),
    "HTML 524 page": (answer(524, b"<html>A timeout occurred</html>", "text/html"), {}, "524"),
    "wrong content type": (answer(200, b"GIF89a not json", "image/gif"), {}, "image/gif"),
    "200 with an error object": (
        answer(200, json.dumps({"error": {"message": "upstream broke", "type": "server_error"}}).encode()),
        {},
        "upstream broke",
    ),
    "empty data": (answer(200, json.dumps({"data": []}).encode()), {}, "without any image"),
    "a url that 404s": (url_result("/missing.png"), {}, "404"),
    "an SSE stream that stops early": (sse_stops_early, {"stream": True, "partial_images": 1}, "stream"),
    "a server that never answers": (never_answers, {}, "MCP_IMAGES_TIMEOUT"),
    "a server that drips": (drips, {}, "MCP_IMAGES_TIMEOUT"),
}


class FaultServer:
    """A raw HTTP/1.1 server on 127.0.0.1 whose image endpoints behave as told."""

    def __init__(self) -> None:
        self.behaviour: Behaviour = answer(200, images(1))
        self.image_posts = 0
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: Writer) -> None:
        try:
            request_line = (await reader.readline()).decode()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
            path = request_line.split(" ")[1] if " " in request_line else "/"
            if "/images/" in path:
                self.image_posts += 1
                await self.behaviour(writer, {"port": self.port})
            else:
                writer.write(head(404, "text/plain", 9) + b"not found")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def fault_server() -> AsyncIterator[FaultServer]:
    fs = FaultServer()
    server = await asyncio.start_server(fs.handle, "127.0.0.1", 0)
    fs.port = server.sockets[0].getsockname()[1]
    async with server:
        yield fs
        server.close()


def saved(tmp_path: Path) -> list[Path]:
    out = tmp_path / "out"
    return [p for p in out.rglob("*") if p.is_file()] if out.exists() else []


async def call_with(tmp_path: Path, base_url: str, args: dict[str, Any], **settings: Any) -> tuple[Any, Any]:
    server = create_server(make_settings(tmp_path, base_url, max_retries=1, timeout=1.5, **settings))
    async with Client(server) as client:
        schema = {t.name: t.output_schema for t in (await client.list_tools()).tools}["generate_image"]
        with anyio.fail_after(20):
            return await client.call_tool("generate_image", {"prompt": "a fox", **args}), schema


@pytest.mark.parametrize("name", list(FAULTS))
async def test_an_upstream_fault_ends_in_a_clear_structured_error(tmp_path: Path, name: str) -> None:
    behaviour, args, says = FAULTS[name]
    async with fault_server() as fs:
        fs.behaviour = behaviour
        result, schema = await call_with(tmp_path, f"http://127.0.0.1:{fs.port}/v1", args)
    text = "\n".join(getattr(b, "text", "") for b in result.content)
    assert result.is_error, f"{name}: {text}"
    jsonschema.validate(result.structured_content, schema)
    error = result.structured_content["error"]
    assert says.lower() in error["message"].lower(), f"{name}: {error['message']}"
    assert "internal error" not in text.lower() and TEST_KEY not in json.dumps(result.model_dump(mode="json"))
    # Nothing half-written; a streamed partial that arrived before the fault is kept (it was paid for).
    assert [p for p in saved(tmp_path) if "partial" not in p.name] == []


async def test_a_timed_out_post_that_may_have_been_billed_is_sent_once(tmp_path: Path) -> None:
    async with fault_server() as fs:
        fs.behaviour = drips
        result, _ = await call_with(tmp_path, f"http://127.0.0.1:{fs.port}/v1", {})
    assert result.is_error and fs.image_posts == 1


async def test_connection_refused_names_the_upstream_without_the_key(tmp_path: Path) -> None:
    async with fault_server() as fs:
        port = fs.port
    result, schema = await call_with(tmp_path, f"http://127.0.0.1:{port}/v1", {})
    assert result.is_error
    jsonschema.validate(result.structured_content, schema)
    assert f"127.0.0.1:{port}" in result.structured_content["error"]["message"]
    assert TEST_KEY not in json.dumps(result.model_dump(mode="json"))


async def test_a_png_cut_short_inside_its_pixels_is_an_error_that_keeps_its_paid_bytes(tmp_path: Path) -> None:
    """The header reads, the pixels do not decode: the bytes were paid for, so they stay saved
    (untouched) and the error names the file, instead of the bytes being thrown away."""
    buf = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buf, "PNG")
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]
    body = json.dumps({"created": 1, "data": [{"b64_json": base64.b64encode(cut).decode()}]}).encode()
    async with fault_server() as fs:
        fs.behaviour = answer(200, body)
        result, schema = await call_with(tmp_path, f"http://127.0.0.1:{fs.port}/v1", {})
    assert result.is_error
    jsonschema.validate(result.structured_content, schema)
    message = result.structured_content["error"]["message"]
    files = saved(tmp_path)
    assert "cannot be decoded" in message and len(files) == 1
    assert str(files[0]) in message and files[0].read_bytes() == cut


async def test_fewer_images_than_asked_for_keeps_them_and_says_so(tmp_path: Path) -> None:
    async with fault_server() as fs:
        fs.behaviour = answer(200, images(2))
        result, schema = await call_with(tmp_path, f"http://127.0.0.1:{fs.port}/v1", {"n": 3})
    jsonschema.validate(result.structured_content, schema)
    assert not result.is_error
    assert len(result.structured_content["images"]) == 2 == len(saved(tmp_path))
    assert any("2 of the 3" in w for w in result.structured_content["warnings"])


async def test_an_output_folder_gone_while_the_image_is_made_keeps_both_paid_images_of_n2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    reply = answer(200, images(2))

    async def swap_then_answer(w: Writer, req: dict[str, Any]) -> None:
        # After the up-front check: the output folder becomes a file (works as root too, where
        # a read-only mode would not stop the write).
        shutil.rmtree(out, ignore_errors=True)
        out.write_text("not a folder any more")
        await reply(w, req)

    async with fault_server() as fs:
        fs.behaviour = swap_then_answer
        server = create_server(make_settings(tmp_path, f"http://127.0.0.1:{fs.port}/v1", max_retries=0))
        async with Client(server) as client:
            result = await client.call_tool("generate_image", {"prompt": "a fox", "n": 2})
            text = "\n".join(getattr(b, "text", "") for b in result.content)
            assert "internal error" not in text.lower()
            assert not result.is_error, text
            paths = [Path(i["path"]) for i in result.structured_content["images"]]
            assert len(paths) == 2 and all(p.is_file() and p.is_relative_to(tmp_path / "data") for p in paths)
            assert any("could not take this image" in w for w in result.structured_content["warnings"])
            read = await client.read_resource(result.structured_content["images"][0]["uri"])
            assert read.contents


async def test_with_nowhere_to_keep_them_two_failed_saves_are_one_clear_error(tmp_path: Path) -> None:
    out, data = tmp_path / "out", tmp_path / "data"
    reply = answer(200, images(2))

    async def break_both(w: Writer, req: dict[str, Any]) -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.write_text("x")
        (data / "kept-images").parent.mkdir(parents=True, exist_ok=True)
        (data / "kept-images").write_text("x")
        await reply(w, req)

    async with fault_server() as fs:
        fs.behaviour = break_both
        settings = make_settings(tmp_path, f"http://127.0.0.1:{fs.port}/v1", max_retries=0)
        server = create_server(settings)
        server.runtime.store.kept_dirs = server.runtime.store.kept_dirs[:1]  # no temp-folder fallback
        async with Client(server) as client:
            result = await client.call_tool("generate_image", {"prompt": "a fox", "n": 2})
    error = result.structured_content["error"]
    assert result.is_error and error["type"] == "ConfigError"
    assert "internal error" not in error["message"].lower() and "could not be saved" in error["message"]


async def test_a_corrupt_task_database_is_named_and_a_synchronous_call_still_delivers(
    tmp_path: Path, sandbox: Any
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tasks.sqlite3").write_bytes(b"SQLite format 3\x00" + b"\xde\xad\xbe\xef" * 4096)
    async with Client(create_server(make_settings(tmp_path, sandbox.base_url))) as client:
        made = await client.call_tool("generate_image", {"prompt": "a fox", "quality": "low"})
        later = await client.call_tool("generate_image", {"prompt": "a fox", "async": True})
    text = "\n".join(getattr(b, "text", "") for b in made.content)
    assert not made.is_error, text  # the image is delivered without a task record
    assert len(made.structured_content["images"]) == 1
    assert later.is_error and "internal error" not in later.structured_content["error"]["message"].lower()
    assert "tasks.sqlite3" in later.structured_content["error"]["message"]
