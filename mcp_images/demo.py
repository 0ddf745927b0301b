"""``mcp-images demo``: an offline end-to-end tour.

Starts the local sandbox upstream on a free loopback port (a subprocess), starts this
server over stdio as a real subprocess pointed at it, connects with the SDK's client, calls
every tool the server lists, and prints what happened. No API key, no network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

SANDBOX_READY_PREFIX = "sandbox listening on "
SANDBOX_START_TIMEOUT = 30.0


def say(line: str = "") -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def start_sandbox() -> tuple[subprocess.Popen[str], str]:
    """Run ``mcp-images sandbox --port 0`` and read its base URL from the first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mcp_images", "sandbox", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + SANDBOX_START_TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith(SANDBOX_READY_PREFIX):
            return proc, line[len(SANDBOX_READY_PREFIX) :].strip()
    proc.kill()
    raise RuntimeError("the sandbox did not start (run `mcp-images sandbox` to see why)")


def make_mask(folder: Path) -> Path:
    """A 1024x1024 mask whose centre is transparent: "edit here"."""
    from PIL import Image, ImageDraw

    mask = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
    ImageDraw.Draw(mask).ellipse((312, 312, 712, 712), fill=(0, 0, 0, 0))
    path = folder / "demo-mask.png"
    mask.save(path)
    return path


def describe(result: Any) -> list[str]:
    """The lines of a tool result worth showing a person."""
    lines: list[str] = []
    for block in result.content:
        if block.type == "text":
            lines.extend(block.text.splitlines())
        elif block.type == "image":
            lines.append(f"[preview {block.mime_type}, {len(block.data):,} base64 chars]")
    return lines


# (title, tool, arguments, expect an error): the tour's plain steps, in order.
PLAIN_STEPS: list[tuple[str, str, dict[str, Any], bool]] = [
    (
        "Two transparent stickers (gpt-image-1.5, webp)",
        "generate_image",
        {"prompt": "a cute robot sticker", "model": "gpt-image-1.5", "n": 2, "background": "transparent",
         "output_format": "webp", "quality": "low"},
        False,
    ),
    (
        "A free size only gpt-image-2 and newer take (2048x1152)",
        "generate_image",
        {"prompt": "a wide mountain panorama", "size": "2048x1152", "quality": "medium"},
        False,
    ),
    (
        "November 2026's surface: gpt-image-2.5-sunburst at quality xhigh, complexity high",
        "generate_image",
        {"prompt": "a clockwork hummingbird", "model": "gpt-image-2.5-sunburst", "quality": "xhigh",
         "complexity": "high"},
        False,
    ),
    (
        "An animated GIF (6 frames of 120 ms; the preview is its first frame)",
        "generate_image",
        {"prompt": "a spinning top", "output_format": "gif", "frame_count": 6, "frame_duration_ms": 120},
        False,
    ),
    (
        "An SVG (saved as the document it is; the preview is rendered)",
        "generate_image",
        {"prompt": "a flat logo of a fox", "output_format": "svg", "svg": {"model": "sandbox-svg-author"}},
        False,
    ),
    (
        "What would 4 high-quality 1536x1024 images cost?",
        "estimate_cost",
        {"prompt": "a city at night", "model": "gpt-image-2", "n": 4, "size": "1536x1024", "quality": "high"},
        False,
    ),
    (
        "A misspelled argument costs nothing and names the real one",
        "generate_image",
        {"prompt": "a red fox", "qualty": "high"},
        True,
    ),
    (
        "A request the model cannot do (dall-e-3, n=2, transparent)",
        "generate_image",
        {"prompt": "two cats", "model": "dall-e-3", "n": 2, "background": "transparent"},
        True,
    ),
    (
        "The upstream's safety system says no (sandbox keyword)",
        "generate_image",
        {"prompt": "[sandbox:moderation] something it refuses"},
        True,
    ),
    (
        "Streaming with 2 partial images",
        "generate_image",
        {"prompt": "a koi pond, streamed", "stream": True, "partial_images": 2, "quality": "low"},
        False,
    ),
]  # fmt: skip


class Tour:
    """One stdio client walking through the steps, printing what each returned."""

    def __init__(self, client: Any, tools: set[str]) -> None:
        self.client, self.tools, self.failures = client, tools, 0

    async def call(self, title: str, name: str, args: dict[str, Any], *, expect_error: bool = False) -> Any:
        if name not in self.tools:
            return None
        seen: list[str] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            seen.append(message or "")

        t0 = time.monotonic()
        result = await self.client.call_tool(name, args, progress_callback=on_progress)
        took = time.monotonic() - t0
        ok = result.is_error == expect_error
        self.failures += 0 if ok else 1
        say()
        say(f"== {title}  [{name}, {took:.2f} s, {'ok' if ok else 'UNEXPECTED'}]")
        say(f"   arguments: {args}")
        for line in describe(result):
            say(f"   {line}")
        if seen:
            say(f"   progress: {' | '.join(seen[:6])}{' ...' if len(seen) > 6 else ''}")
        return result

    async def run(self, mask: Path) -> None:
        first = await self.call(
            "A generation (gpt-image-2, 1024x1024, high)",
            "generate_image",
            {"prompt": "a lighthouse on a cliff at dawn, watercolour", "size": "1024x1024", "quality": "high"},
        )
        for title, name, args, expect_error in PLAIN_STEPS:
            await self.call(title, name, args, expect_error=expect_error)
        if first is not None and not first.is_error:
            uri = first.structured_content["images"][0]["uri"]
            await self.call(
                "Edit the first image with a mask",
                "edit_image",
                {"prompt": "add a red sailboat", "image": uri, "mask": str(mask)},
            )
        started = await self.call(
            "A background task (async=true), then check_task",
            "generate_image",
            {"prompt": "a slow, detailed cathedral", "quality": "high", "async": True},
        )
        if started is not None and not started.is_error and "check_task" in self.tools:
            task_id = started.structured_content["task_id"]
            await self.call("Collect it", "check_task", {"task_id": task_id, "wait_seconds": 30})


async def tour(output_dir: Path, base_url: str) -> int:
    from mcp import Client, StdioServerParameters

    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "SYSTEMROOT", "TMPDIR", "LANG")},
        "MCP_IMAGES_BASE_URL": base_url,
        "MCP_IMAGES_API_KEY": "sandbox-demo-key",
        "MCP_IMAGES_PROVIDER": "compatible",
        "MCP_IMAGES_OUTPUT_DIR": str(output_dir),
        "MCP_IMAGES_DATA_DIR": str(output_dir / ".data"),
        "MCP_IMAGES_LOG_LEVEL": "WARNING",
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_images", "serve"], env=env)
    started = time.monotonic()
    async with Client(params) as client:
        say(f"connected over stdio in {time.monotonic() - started:.2f} s (protocol {client.protocol_version})")
        tools = {t.name for t in (await client.list_tools()).tools}
        say(f"tools: {', '.join(sorted(tools))}")
        walk = Tour(client, tools)
        await walk.run(make_mask(output_dir))
    say()
    say(f"images are in {output_dir}")
    verdict = "all steps as expected" if not walk.failures else f"{walk.failures} unexpected"
    say(f"total {time.monotonic() - started:.1f} s; {verdict}")
    return 1 if walk.failures else 0


def main(output_dir: str | None = None) -> int:
    folder = (
        Path(output_dir).expanduser().resolve() if output_dir else Path(tempfile.mkdtemp(prefix="mcp-images-demo-"))
    )
    folder.mkdir(parents=True, exist_ok=True)
    say("mcp-images demo: offline, against the local sandbox upstream (placeholder images, not a real model)")
    say(f"writing images to {folder}")
    proc, base_url = start_sandbox()
    say(f"sandbox upstream at {base_url}")
    try:
        return anyio.run(tour, folder, base_url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
