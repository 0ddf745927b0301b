"""The stack floor: the least an MCP image server built on this project's stack can cost.

A bare `MCPServer` (the SDK) with one ``generate_image`` tool that does the floor's work
(`floor_work.floor_jpeg`, the steps `photo.measure_floor` times) and nothing else: one POST
with a reused `httpx2.AsyncClient`, then in one worker thread JSON parse (pydantic_core), base64 decode (pybase64), write + fsync, PNG
decode, BOX resize to the given preview size, JPEG encode at quality 80, and it answers the
preview as image content plus a line of text. No validation, no task record, no ledger, no
progress, no limits. `photo.stdio_figures` runs it beside mcp-images against the same upstream:
its CPU per call, over the floor, is what the SDK and the HTTP client cost before any product
logic. Run as ``python benchmarks/minimal_image_server.py BASE_URL OUT_DIR [PORT]``: stdio, or
with PORT the SDK's own streamable HTTP on 127.0.0.1 (`photo.http_figure` puts the HTTP load on
it too).
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
from floor_work import floor_jpeg
from mcp.server import MCPServer
from mcp.types import ImageContent, TextContent

BASE_URL, OUT = sys.argv[1], Path(sys.argv[2])
server = MCPServer("minimal-image-server", log_level="WARNING")  # no line per request (mcp-images logs none for its upstream calls either)
http = httpx2.AsyncClient(timeout=120)


def _preview_b64(body: bytes, path: Path, preview: tuple[int, int]) -> str:
    return base64.b64encode(floor_jpeg(body, path, preview)).decode()


@server.tool()
async def generate_image(prompt: str, size: str, preview: str) -> list[Any]:
    """Generate one image; answer its preview."""
    response = await http.post(f"{BASE_URL}/images/generations", json={"prompt": prompt, "size": size})
    response.raise_for_status()
    pw, ph = (int(v) for v in preview.split("x"))
    path = OUT / f"{os.urandom(8).hex()}.png"
    jpeg = await anyio.to_thread.run_sync(_preview_b64, response.content, path, (pw, ph))
    return [ImageContent(type="image", data=jpeg, mime_type="image/jpeg"), TextContent(type="text", text=f"saved {path}")]


if __name__ == "__main__":
    from mcp_images.imaging.memory import reuse_big_buffers

    reuse_big_buffers()  # the allocator as `mcp-images serve` sets it, so only the code differs
    import httpcore2

    httpcore2.AsyncHTTP11Connection.READ_NUM_BYTES = 1024 * 1024  # pyright: ignore[reportAttributeAccessIssue]  # as ours
    OUT.mkdir(parents=True, exist_ok=True)
    if len(sys.argv) > 3:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[3]))
    else:
        server.run()
