"""200 concurrent generate_image calls over streamable HTTP with authentication on.

    uv run python benchmarks/http_team.py [--calls 200] [--sessions 10] [--latency 1.0] [--image photo|smooth]

The upstream answers every request in exactly ``--latency`` seconds with the same pre-rendered
answer (base64 JSON of a PNG), from a process of its own (`benchlib.fixed_upstream_process`), so
it is not the bottleneck; it is measured alone in the same run (the same number of concurrent
POSTs straight at it, its own CPU read from /proc). The image is photo-like (`benchlib.
photo_like_png`, 2.1 MB, as real model output) unless ``--image smooth`` (a 0.1 MB gradient).

The server is ``python -m mcp_images`` in a child process (static tokens, limits raised to let
every call run at once); its CPU (user+sys from /proc) and peak RSS (VmHWM) are read when the
run ends. The target is issue 11's: wall time within 1 s + 1.3 x (calls x the per-image floor
/ cores), the floor (`photo.measure_floor`: JSON parse, base64 decode, write+fsync, PNG decode,
resize to the preview's size, JPEG encode) measured in this run on the photo-like image.
Last, the same calls go to the bare MCPServer of `minimal_image_server.py` (the SDK's own
streamable HTTP, no auth, only the floor's work): what the stack itself does under this load on
these cores. Prints figures; asserts nothing.
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
import benchlib as bl
import httpx2
import photo
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

TOKENS = {f"user{i}": f"bench-token-{i:02d}-0123456789abcdef" for i in range(4)}


def smooth_png(size: int = 1024) -> bytes:
    """A smooth 1024x1024 picture (~0.1 MB as PNG): far less work than a photo."""
    image = Image.merge(
        "RGB", [Image.linear_gradient("L").resize((size, size)), *[Image.radial_gradient("L").resize((size, size))] * 2]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def upstream_alone(url: str, calls: int) -> tuple[float, list[float]]:
    limits = httpx2.Limits(max_connections=calls, max_keepalive_connections=calls)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as http:
        times: list[float] = []

        async def one() -> None:
            t = time.perf_counter()
            r = await http.post(f"{url}/images/generations", json={"prompt": "x", "size": "1024x1024"})
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


def floor_of(png: bytes, work: Path) -> photo.Floor:
    """The per-image floor of this run, on the photo-like image at the server's preview size."""
    from mcp_images.imaging.previews import make_preview

    preview = make_preview(png, max_b64_chars=140_000)
    answer = bl._fixed_answer(base64.b64encode(png).decode(), "1024x1024", 1, "medium")  # pyright: ignore[reportPrivateUsage]
    photo.measure_floor(answer, (preview.width, preview.height), work, 3)
    return photo.measure_floor(answer, (preview.width, preview.height), work, 15)


async def main(args: argparse.Namespace) -> None:
    photo_png = bl.photo_like_png(1024, 1024, 1)
    png = photo_png if args.image == "photo" else smooth_png()
    mcp_port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        floor = floor_of(photo_png, Path(tmp))
        with bl.fixed_upstream_process({"1024x1024": png}, Path(tmp) / "upstream", latency=args.latency) as upstream:
            up_url = upstream.base_url
            env = {
                "PATH": os.environ.get("PATH", ""), "HOME": tmp, "MCP_IMAGES_PROVIDER": "compatible",
                "MCP_IMAGES_BASE_URL": up_url, "MCP_IMAGES_API_KEY": "sk-bench-0123456789",
                "MCP_IMAGES_OUTPUT_DIR": f"{tmp}/out", "MCP_IMAGES_DATA_DIR": f"{tmp}/data",
                "MCP_IMAGES_HTTP_TOKENS": ",".join(f"{n}:{t}" for n, t in TOKENS.items()),
                "MCP_IMAGES_HTTP_MAX_CALLS_PER_IDENTITY": str(args.calls), "MCP_IMAGES_HTTP_MAX_CALLS": str(args.calls),
                "MCP_IMAGES_MAX_UPSTREAM": str(args.max_upstream), "MCP_IMAGES_LOG_LEVEL": "WARNING",
            }  # fmt: skip
            await upstream_alone(up_url, 1)  # its answer rendered once, before the clock
            up0 = bl.proc_cpu_seconds(upstream.pid)
            alone_wall, alone = await upstream_alone(up_url, args.calls)
            alone_cpu = bl.proc_cpu_seconds(upstream.pid) - up0
            cmd = [sys.executable, "-m", "mcp_images", "--transport", "http", "--port", str(mcp_port)]
            proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                await photo.wait_listening(mcp_port)
                cpu0, _ = proc_figures(proc.pid)
                up0, me0 = bl.proc_cpu_seconds(upstream.pid), time.process_time()
                wall, times, errors = await through_server(
                    f"http://127.0.0.1:{mcp_port}/mcp", args.calls, args.sessions
                )
                cpu1, peak = proc_figures(proc.pid)
                others = (bl.proc_cpu_seconds(upstream.pid) - up0, time.process_time() - me0, alone_cpu)
            finally:
                bl.stop_process(proc, grace=40)
            bare = await photo.bare_server_http(up_url, Path(tmp), floor, args.calls, args.sessions)
    report(args, (alone_wall, alone), (wall, times, errors), ((cpu1 - cpu0) / args.calls, peak), floor, others, len(png))
    bare_wall, bare_errors, bare_cpu = bare
    print(f"the same {args.calls} calls on a bare MCPServer doing only the floor's work (benchmarks/"
          f"minimal_image_server.py, the SDK's own HTTP, no auth): {bare_wall:.2f} s wall, {bare_errors} errors, "
          f"{bare_cpu / args.calls * 1000:.1f} ms CPU per call; through mcp-images {wall / bare_wall:.2f}x its wall")  # fmt: skip


def report(
    args: Any,
    alone_run: tuple[float, list[float]],
    run: tuple[float, list[float], int],
    server: tuple[float, float],
    floor: photo.Floor,
    others: tuple[float, float, float],
    png_bytes: int,
) -> None:
    (alone_wall, alone), (wall, times, errors), (cpu_per_call, peak) = alone_run, run, server
    cores = os.cpu_count() or 2
    allowed = args.calls * floor.total / cores
    target = args.latency + 1.3 * allowed
    met = wall <= target and errors == 0 and len(times) == args.calls and peak < 250 * 1e6 / bl.MIB
    print(f"{args.calls} concurrent generate_image calls over HTTP, auth on, {args.sessions} sessions, "
          f"upstream latency {args.latency:g} s, {args.image} 1024x1024 PNG {png_bytes / 1e6:.2f} MB, "
          f"MCP_IMAGES_MAX_UPSTREAM={args.max_upstream}")  # fmt: skip
    print("| figure | through mcp-images | upstream alone |")
    print("|---|---|---|")
    print(f"| wall time | {wall:.2f} s | {alone_wall:.2f} s |")
    print(f"| p50 latency | {statistics.median(times):.2f} s | {statistics.median(alone):.2f} s |")
    print(f"| p99 latency | {percentile(times, 0.99):.2f} s | {percentile(alone, 0.99):.2f} s |")
    print(f"| calls done / errors | {len(times)} / {errors} | {len(alone)} / 0 |")
    print(f"| server CPU per call | {cpu_per_call * 1000:.1f} ms | - |")
    print(f"| server peak RSS (VmHWM) | {peak:.1f} MiB | - |")
    print()
    print(f"floor per photo-like image (this run): {floor.line()}")
    print(f"target: wall <= {args.latency:g} s + 1.3 x ({args.calls} x {floor.total * 1000:.1f} ms / {cores} cores "
          f"= {allowed:.2f} s) = {target:.2f} s, 0 errors, peak RSS < 250 MB: {'met' if met else 'NOT met'}")  # fmt: skip
    print(f"CPU beside the server during the run: upstream process {others[0]:.2f} s, the {args.calls} clients "
          f"(this process) {others[1]:.2f} s; alone, the upstream used {others[2]:.2f} s for {args.calls} answers")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="200 concurrent generate_image calls over HTTP with auth on")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--max-upstream", type=int, default=200, help="MCP_IMAGES_MAX_UPSTREAM for the run")
    parser.add_argument("--image", choices=("photo", "smooth"), default="photo", help="what the upstream answers")
    anyio.run(main, parser.parse_args())
