"""200 concurrent generate_image calls over streamable HTTP with authentication on.

    uv run python benchmarks/http_team.py [--calls 200] [--sessions 10] [--latency 1.0]

The upstream answers every request in exactly ``--latency`` seconds with the same pre-rendered
PNG (base64 JSON), so it is not the bottleneck; it is measured alone in the same run (the same
number of concurrent POSTs straight at it). The server is ``python -m mcp_images`` in a child
process (static tokens, limits raised to let every call run at once); its CPU (user+sys from
/proc) and peak RSS (VmHWM) are read when the run ends. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from photo import wait_listening
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TOKENS = {f"user{i}": f"bench-token-{i:02d}-0123456789abcdef" for i in range(4)}


def pre_rendered(size: int = 1024) -> bytes:
    # A smooth 1024x1024 picture (~0.1 MB as PNG): big bodies would make the upstream, a Python
    # process like the server, the bottleneck (2.7 MB of noise each: 200 of them took it 9.6 s).
    image = Image.merge(
        "RGB", [Image.linear_gradient("L").resize((size, size)), *[Image.radial_gradient("L").resize((size, size))] * 2]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    b64 = base64.b64encode(out.getvalue()).decode()
    usage = '{"input_tokens":10,"output_tokens":272,"total_tokens":282,"input_tokens_details":{"text_tokens":10,"image_tokens":0}}'
    return f'{{"created":1,"data":[{{"b64_json":"{b64}"}}],"usage":{usage}}}'.encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def upstream_app(body: bytes, latency: float) -> Starlette:
    async def generations(request: Request) -> Response:
        await request.body()
        await anyio.sleep(latency)
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/v1/images/generations", generations, methods=["POST"])])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def upstream_alone(url: str, calls: int) -> tuple[float, list[float]]:
    limits = httpx2.Limits(max_connections=calls, max_keepalive_connections=calls)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as http:
        times: list[float] = []

        async def one() -> None:
            t = time.perf_counter()
            r = await http.post(f"{url}/images/generations", json={"prompt": "x", "model": "gpt-image-2"})
            r.raise_for_status()
            times.append(time.perf_counter() - t)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(calls):
                tg.start_soon(one)
        return time.perf_counter() - start, times


async def through_server(url: str, calls: int, sessions: int) -> tuple[float, list[float], int]:
    times: list[float] = []
    errors = 0
    names = list(TOKENS.values())

    async def session(index: int, count: int) -> None:
        nonlocal errors
        headers = {"Authorization": f"Bearer {names[index % len(names)]}"}
        http = httpx2.AsyncClient(headers=headers, timeout=120, limits=httpx2.Limits(max_connections=count + 4))
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            await ready.wait()

            async def one() -> None:
                nonlocal errors
                t = time.perf_counter()
                result = await client.call_tool("generate_image", {"prompt": "bench", "size": "1024x1024"})
                times.append(time.perf_counter() - t)
                errors += bool(result.is_error)

            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(one)

    ready = anyio.Event()
    start = 0.0
    per, extra = divmod(calls, sessions)
    async with anyio.create_task_group() as tg:
        for i in range(sessions):
            tg.start_soon(session, i, per + (1 if i < extra else 0))
        await anyio.sleep(2.0)  # sessions connected before the clock starts
        start = time.perf_counter()
        ready.set()
    return time.perf_counter() - start, times, errors


def proc_figures(pid: int) -> tuple[float, float]:
    """(CPU seconds user+sys, peak RSS MiB) of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


async def main(args: argparse.Namespace) -> None:
    body = pre_rendered()
    up_port, mcp_port = free_port(), free_port()
    up_url = f"http://127.0.0.1:{up_port}/v1"
    upstream = uvicorn.Server(uvicorn.Config(upstream_app(body, args.latency), port=up_port, log_level="warning"))
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            "PATH": os.environ.get("PATH", ""), "HOME": tmp, "MCP_IMAGES_PROVIDER": "compatible",
            "MCP_IMAGES_BASE_URL": up_url, "MCP_IMAGES_API_KEY": "sk-bench-0123456789",
            "MCP_IMAGES_OUTPUT_DIR": f"{tmp}/out", "MCP_IMAGES_DATA_DIR": f"{tmp}/data",
            "MCP_IMAGES_HTTP_TOKENS": ",".join(f"{n}:{t}" for n, t in TOKENS.items()),
            "MCP_IMAGES_HTTP_MAX_CALLS_PER_IDENTITY": str(args.calls), "MCP_IMAGES_HTTP_MAX_CALLS": str(args.calls),
            "MCP_IMAGES_MAX_UPSTREAM": str(args.max_upstream), "MCP_IMAGES_LOG_LEVEL": "WARNING",
        }  # fmt: skip
        async with anyio.create_task_group() as tg:
            tg.start_soon(upstream.serve)
            while not upstream.started:
                await anyio.sleep(0.01)
            alone_wall, alone = await upstream_alone(up_url, args.calls)
            cmd = [sys.executable, "-m", "mcp_images", "--transport", "http", "--port", str(mcp_port)]
            proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                await wait_listening(mcp_port)
                cpu0, _ = proc_figures(proc.pid)
                wall, times, errors = await through_server(
                    f"http://127.0.0.1:{mcp_port}/mcp", args.calls, args.sessions
                )
                cpu1, peak = proc_figures(proc.pid)
                report(args, alone_wall, alone, wall, times, errors, (cpu1 - cpu0) / args.calls, peak, len(body))
            finally:
                proc.terminate()
                proc.wait(timeout=40)
                upstream.should_exit = True


def report(args: Any, alone_wall: float, alone: list[float], wall: float, times: list[float], errors: int,
           cpu_per_call: float, peak: float, body_bytes: int) -> None:  # fmt: skip
    print(f"{args.calls} concurrent generate_image calls over HTTP, auth on, {args.sessions} sessions, "
          f"upstream latency {args.latency:g} s, answer {body_bytes / 1e6:.1f} MB JSON, MCP_IMAGES_MAX_UPSTREAM={args.max_upstream}")  # fmt: skip
    print("| figure | through mcp-images | upstream alone |")
    print("|---|---|---|")
    print(f"| wall time | {wall:.2f} s | {alone_wall:.2f} s |")
    print(f"| p50 latency | {statistics.median(times):.2f} s | {statistics.median(alone):.2f} s |")
    print(f"| p99 latency | {percentile(times, 0.99):.2f} s | {percentile(alone, 0.99):.2f} s |")
    print(f"| calls done / errors | {len(times)} / {errors} | {len(alone)} / 0 |")
    print(f"| server CPU per call | {cpu_per_call * 1000:.1f} ms | - |")
    print(f"| server peak RSS (VmHWM) | {peak:.1f} MiB | - |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="200 concurrent generate_image calls over HTTP with auth on")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--max-upstream", type=int, default=200, help="MCP_IMAGES_MAX_UPSTREAM for the run")
    anyio.run(main, parser.parse_args())
