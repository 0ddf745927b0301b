"""End to end, the way users run mcp-images: real processes over stdio and streamable HTTP.

The upstream is the sandbox, served in this process on a loopback port; the server is
``python -m mcp_images`` in a child process that only knows what its environment says.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.types import BlobResourceContents, CallToolResult, ImageContent, TextContent
from PIL import Image

from mcp_images import __version__
from tests.conftest import TEST_KEY

TOOLS = {"generate_image", "edit_image", "check_task", "estimate_cost"}
START_TIMEOUT = 20.0  # seconds for a child server to come up
STOP_TIMEOUT = 10.0  # seconds a child gets to exit on SIGTERM before it is killed


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def server_env(tmp_path: Path, base_url: str, *, key: str | None = TEST_KEY) -> dict[str, str]:
    """All a child server knows: the sandbox, its folders, and (maybe) a key."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "MCP_IMAGES_PROVIDER": "compatible",
        "MCP_IMAGES_BASE_URL": base_url,
        "MCP_IMAGES_OUTPUT_DIR": str(tmp_path / "out"),
        "MCP_IMAGES_DATA_DIR": str(tmp_path / "data"),
    }
    if key is not None:
        env["MCP_IMAGES_API_KEY"] = key
    return env


def stdio_params(tmp_path: Path, base_url: str, *, key: str | None = TEST_KEY) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcp_images", "serve"],
        env=server_env(tmp_path, base_url, key=key),
        cwd=str(tmp_path),  # no stray .env from the repository's folder
    )


def decoded(block: ImageContent) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(block.data)))
    image.load()
    return image


@contextmanager
def child(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that is always gone afterwards: SIGTERM, then SIGKILL after a timeout."""
    with (cwd / "child.log").open("wb") as log:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    with anyio.fail_after(START_TIMEOUT):
        while True:
            assert proc.poll() is None, f"the server exited: {log.read_text(errors='replace')}"
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
            else:
                await stream.aclose()
                return


# -- stdio ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_real_stdio_server_lists_its_tools_generates_and_reports_progress(tmp_path: Path, sandbox: Any) -> None:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with Client(stdio_params(tmp_path, sandbox.base_url)) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        result = await client.call_tool(
            "generate_image", {"prompt": "a fox", "quality": "low"}, progress_callback=on_progress
        )
    assert not result.is_error, text_of(result)
    image = result.structured_content["images"][0]  # type: ignore[index]
    path = Path(image["path"])
    assert path.is_file() and path.parent == (tmp_path / "out").resolve()
    preview = next(b for b in result.content if isinstance(b, ImageContent))
    assert decoded(preview).size[0] > 0
    assert any(m.startswith("generating") for m in seen) and any(m.startswith("saving") for m in seen)
    assert TEST_KEY not in json.dumps(result.model_dump(mode="json"))


@pytest.mark.anyio
async def test_a_cancelled_stdio_call_closes_the_upstream_request_and_the_session_goes_on(
    tmp_path: Path, sandbox: Any
) -> None:
    async with Client(stdio_params(tmp_path, sandbox.base_url)) as client:
        # A first call pays the child's imports, so the timed-out one surely reaches the upstream.
        warm = await client.call_tool("generate_image", {"prompt": "warm up", "quality": "low"})
        assert not warm.is_error, text_of(warm)
        with pytest.raises(MCPError):
            await client.call_tool("generate_image", {"prompt": "[sandbox:slow=5] cancel me"}, read_timeout_seconds=1.0)
        with anyio.fail_after(10):
            while not any(r.disconnected for r in sandbox.state.image_requests()):
                await anyio.sleep(0.02)
        after = await client.call_tool("generate_image", {"prompt": "still here", "quality": "low"})
    assert not after.is_error, text_of(after)
    calls = sandbox.state.image_requests()
    assert [r.fields["prompt"] for r in calls] == ["warm up", "[sandbox:slow=5] cancel me", "still here"]
    assert [r.disconnected for r in calls] == [False, True, False]
    assert not any("cancel" in p.name for p in (tmp_path / "out").iterdir())


@pytest.mark.anyio
async def test_stdout_carries_only_protocol_and_stderr_names_the_output_folder(tmp_path: Path, sandbox: Any) -> None:
    from mcp.types import LATEST_PROTOCOL_VERSION

    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": LATEST_PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    proc = await anyio.open_process(
        [sys.executable, "-m", "mcp_images", "serve"], env=server_env(tmp_path, sandbox.base_url), cwd=tmp_path
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        await proc.stdin.send("".join(json.dumps(m) + "\n" for m in messages).encode())
        out = b""
        with anyio.fail_after(START_TIMEOUT):
            while b'"id":2' not in out.replace(b" ", b""):
                out += await proc.stdout.receive()
        await proc.stdin.aclose()  # end of input: the server stops by itself
        with anyio.fail_after(STOP_TIMEOUT):
            async for chunk in proc.stdout:
                out += chunk
            err = b"".join([chunk async for chunk in proc.stderr])
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0  # end of input is a clean stop
    lines = out.decode().splitlines()
    replies = [json.loads(line) for line in lines]  # any non-JSON line on stdout fails here
    assert all(r["jsonrpc"] == "2.0" for r in replies)
    assert {t["name"] for t in replies[-1]["result"]["tools"]} == TOOLS
    assert str((tmp_path / "out").resolve()) in err.decode()
    assert TEST_KEY not in err.decode()


@pytest.mark.anyio
async def test_without_a_key_a_stdio_server_starts_and_a_call_names_the_variable(tmp_path: Path, sandbox: Any) -> None:
    async with Client(stdio_params(tmp_path, sandbox.base_url, key=None)) as client:
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        result = await client.call_tool("generate_image", {"prompt": "a fox"})
    assert result.is_error
    assert "MCP_IMAGES_API_KEY" in text_of(result)
    assert sandbox.state.image_requests() == []


# -- streamable HTTP --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_real_http_server_generates_serves_the_image_and_refuses_local_paths(
    tmp_path: Path, sandbox: Any
) -> None:
    port = free_port()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    local_png = outside / "photo.png"
    Image.new("RGB", (64, 64), "green").save(local_png)
    args = [sys.executable, "-m", "mcp_images", "--transport", "http", "--port", str(port)]
    with child(args, server_env(tmp_path, sandbox.base_url), tmp_path) as proc:
        await wait_until_listening(proc, port, tmp_path / "child.log")
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOLS
            made = await client.call_tool("generate_image", {"prompt": "over http", "quality": "low"})
            assert not made.is_error, text_of(made)
            image = made.structured_content["images"][0]  # type: ignore[index]
            read = await client.read_resource(image["uri"])
            refused = await client.call_tool("edit_image", {"prompt": "x", "image": str(local_png)})
            by_id = await client.call_tool("edit_image", {"prompt": "add a boat", "image": image["uri"]})
    blob = read.contents[0]
    assert isinstance(blob, BlobResourceContents)
    assert base64.b64decode(blob.blob) == Path(image["path"]).read_bytes()
    assert refused.is_error and "MCP_IMAGES_INPUT_DIRS" in text_of(refused)
    assert not by_id.is_error, text_of(by_id)
    assert [r.path for r in sandbox.state.image_requests()] == ["/v1/images/generations", "/v1/images/edits"]
    assert proc.returncode in (0, -signal.SIGTERM)  # stopped by SIGTERM, not killed


# -- the command line -------------------------------------------------------------------------


def run_cli(args: list[str], tmp_path: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "mcp_images", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_http_on_a_public_address_is_refused_with_a_word_about_loopback(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("mcp-images")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "mcp_images"]
    done = subprocess.run(
        [*command, "--transport", "http", "--host", "0.0.0.0"],
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "loopback" in done.stderr
    assert done.stdout == ""


def test_version_prints_the_version(tmp_path: Path) -> None:
    done = run_cli(["--version"], tmp_path)
    assert done.returncode == 0
    assert done.stdout.strip() == f"mcp-images {__version__}"


def test_the_demo_runs_every_step_and_leaves_images_pillow_opens(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    done = run_cli(["demo", "--output-dir", str(folder)], tmp_path, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all steps as expected" in done.stdout
    images = [p for p in folder.iterdir() if p.suffix in (".png", ".webp") and p.name != "demo-mask.png"]
    assert {p.suffix for p in images} == {".png", ".webp"}
    for path in images:
        with Image.open(path) as img:
            img.verify()
