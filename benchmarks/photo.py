"""The photo-like figures that lead `run.py`: image work against its floor, stdio and HTTP.

The upstream is `benchlib.fixed_image_app`: its answers are rendered once (JSON with the PNG
as base64), so its own CPU per call is a socket write, measured alone in the same run. The
images are `benchlib.photo_like_png`: ~2 bytes per pixel, like real model output.

- **floor**: the same work done alone in this process with the same libraries, stage by
  stage, thread CPU time: JSON parse (pydantic_core.from_json) + base64 decode (pybase64) +
  write+fsync + PNG decode (Pillow) + resize to the preview's size (Pillow BOX, as the
  server) + JPEG encode (Pillow, quality 80).
- **stdio**: ``generate_image`` through a stdio server against a direct POST of the same
  body to the same upstream (parsed with ``response.json()``), interleaved pairs; the server
  subprocess's CPU per call (all threads, /proc schedstat) beside the floor.
- **HTTP**: many ``generate_image`` calls at once over streamable HTTP against an upstream
  that takes 1 s per answer; wall time against 1 s + 1.3 x (calls x floor CPU / cores). The
  upstream runs in a process of its own (`benchlib.fixed_upstream_process`), so it does not
  share this process's event loop with the clients; it is measured alone (the same number of
  POSTs at once straight at it) in the same run.
"""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import benchlib as bl
from floor_work import STAGES, floor_steps

PROMPT = "a red fox in fresh snow, morning light"
SIZES = {"1024x1024": (1024, 1024), "1536x1024": (1536, 1024)}
STDIO_TARGETS_MS = {"1024x1024": 40.0, "1536x1024": 45.0}
CPU_RATIO_TARGET = 1.2
HTTP_SLACK = 1.3


@dataclass
class Floor:
    """Thread CPU seconds of the floor: median per stage, median and best of the totals."""

    stages: dict[str, float]
    total: float
    best: float
    preview: tuple[int, int] = (0, 0)  # the preview size the floor resized to

    def line(self) -> str:
        parts = ", ".join(f"{name} {secs * 1000:.1f}" for name, secs in self.stages.items())
        return f"{self.total * 1000:.1f} ms median, {self.best * 1000:.1f} ms best ({parts} ms)"


def photo_images() -> dict[str, bytes]:
    return {size: bl.photo_like_png(w, h, seed) for seed, (size, (w, h)) in enumerate(SIZES.items(), 1)}


def measure_floor(answer: bytes, preview_size: tuple[int, int], work: Path, runs: int) -> Floor:
    """The floor of one image's work (see the module doc), ``runs`` times."""
    path = work / "floor-write.png"
    per_stage: dict[str, list[float]] = {name: [] for name in STAGES}
    totals: list[float] = []
    for _ in range(runs):
        marks = [time.thread_time()]
        for _step in floor_steps(answer, path, preview_size):
            marks.append(time.thread_time())
        for name, t0, t1 in zip(STAGES, marks[:-1], marks[1:], strict=True):
            per_stage[name].append(t1 - t0)
        totals.append(marks[-1] - marks[0])
    path.unlink(missing_ok=True)
    return Floor({k: bl.median(v) for k, v in per_stage.items()}, bl.median(totals), min(totals), preview_size)


def floor_with_server_allocator(size: str, preview_size: tuple[int, int], runs: int) -> Floor:
    """The floor again in a fresh interpreter whose allocator is set up as the server's
    (imaging.memory.reuse_big_buffers: one heap arena, big buffers kept in it and reused)."""
    import json

    cmd = [sys.executable, str(Path(__file__)), "--floor", size, *map(str, preview_size), str(runs)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=bl.REPO).stdout
    fields = json.loads(out)
    return Floor(fields["stages"], fields["total"], fields["best"])


def _floor_main(argv: list[str]) -> None:
    """``photo.py --floor SIZE PW PH RUNS``: print the floor as JSON, allocator set like the server."""
    import json
    import tempfile

    from mcp_images.imaging.memory import reuse_big_buffers

    reuse_big_buffers()
    size, pw, ph, runs = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    png = photo_images()[size]
    answer = bl._fixed_answer(base64.b64encode(png).decode(), size, 1, "medium")  # pyright: ignore[reportPrivateUsage]
    with tempfile.TemporaryDirectory() as tmp:
        measure_floor(answer, (pw, ph), Path(tmp), 2)
        floor = measure_floor(answer, (pw, ph), Path(tmp), runs)
    sys.stdout.write(json.dumps({"stages": floor.stages, "total": floor.total, "best": floor.best}))


def preview_size_of(result: Any) -> tuple[int, int]:
    from PIL import Image

    block = next(b for b in result.content if getattr(b, "type", "") == "image")
    with Image.open(io.BytesIO(base64.b64decode(block.data))) as im:
        return im.size


# --- stdio: overhead per call and server CPU per image --------------------------------------


async def stdio_figures(report: Any, work: Path, *, pairs: int, warmup: int, floor_runs: int) -> dict[str, Floor]:
    """Rows for both sizes; returns the floors (the HTTP figure reads the 1024x1024 one)."""
    import httpx2
    from mcp import Client

    bl.say(f"photo-like: stdio overhead per call ({pairs} pairs) and server CPU per image, against the floor")
    images = photo_images()
    app = bl.fixed_image_app(images)
    floors: dict[str, Floor] = {}
    async with bl.serve_app(app) as base_url, httpx2.AsyncClient(timeout=60) as http:
        url = f"{base_url}/images/generations"
        headers = {"Authorization": f"Bearer {bl.SANDBOX_KEY}"}

        async def direct() -> Any:
            response = await http.post(url, json=app.state.last_body, headers=headers)
            response.raise_for_status()
            return response.json()

        env = bl.server_env(base_url, work / "photo-stdio")
        minimal = bl.server_params(dict(os.environ), work, bare_server_argv(base_url, work / "photo-minimal"))
        async with (
            Client(bl.server_params(env, work), mode="legacy", cache=None) as client,
            Client(minimal, mode="legacy", cache=None) as bare,
        ):
            await client.list_tools()
            await bare.list_tools()
            pid = bl.find_child("mcp_images", "serve")
            bare_pid = bl.find_child("minimal_image_server.py")
            for size in SIZES:
                args = {"prompt": PROMPT, "size": size}
                result = None
                for _ in range(warmup):
                    result = await client.call_tool("generate_image", args)
                    assert not result.is_error, getattr(result.content[0], "text", "")
                    await direct()
                pw, ph = preview_size_of(result)
                bare_args = {**args, "preview": f"{pw}x{ph}"}
                for _ in range(warmup):
                    await bare.call_tool("generate_image", bare_args)
                ours: list[float] = []
                floor_wall: list[float] = []
                server_cpu: list[float] = []
                bare_cpu: list[float] = []
                for _ in range(pairs):
                    cpu0 = bl.proc_cpu_seconds(pid)
                    t, result = await bl.timed(lambda a=args: client.call_tool("generate_image", a))
                    server_cpu.append(bl.proc_cpu_seconds(pid) - cpu0)
                    assert not result.is_error, getattr(result.content[0], "text", "")
                    ours.append(t)
                    t, _ = await bl.timed(direct)
                    floor_wall.append(t)
                    cpu0 = bl.proc_cpu_seconds(bare_pid)
                    answered = await bare.call_tool("generate_image", bare_args)
                    bare_cpu.append(bl.proc_cpu_seconds(bare_pid) - cpu0)
                    assert not answered.is_error, getattr(answered.content[0], "text", "")
                answer = app.state.last_answer  # what the direct POST just got
                alone = await _upstream_alone(direct, pairs)
                floor = measure_floor(answer, preview_size_of(result), work, floor_runs)
                floors[size] = floor
                served = floor_with_server_allocator(size, preview_size_of(result), floor_runs)
                _stdio_rows(report, size, ours, floor_wall, server_cpu, floor, alone, len(images[size]), result)
                _stack_floor_row(report, size, server_cpu, bare_cpu, floor)
                report.note(
                    f"photo {size}: the same floor with the server's allocator settings (one heap arena, big "
                    f"buffers reused): {served.line()}"
                )
    return floors


def _stack_floor_row(report: Any, size: str, ours: list[float], bare: list[float], floor: Floor) -> None:
    """The bare SDK server (`minimal_image_server.py`) against the floor and against ours."""
    cpu, bare_cpu = bl.median(ours), bl.median(bare)
    report.add(
        f"b. stack floor: a bare MCPServer doing only the floor's work, {size} (stdio, median of {len(bare)})",
        bl.ms(cpu),
        f"{bl.ms(bare_cpu)} (bare server), {bl.ms(floor.total)} (floor)",
        f"ours {cpu / bare_cpu:.2f}x the bare server; the bare server {bare_cpu / floor.total:.2f}x the floor",
        "(informative)",
        None,
    )
    report.note(
        f"photo {size}: stack floor (benchmarks/minimal_image_server.py: the SDK, one httpx2 POST, the floor's "
        f"steps in one worker thread, no product logic) server CPU per call {bl.spread_ms(bare)}; what the "
        f"SDK and the HTTP client add to the floor: {bl.ms(bare_cpu - floor.total)}; what mcp-images adds to "
        f"that: {bl.ms(cpu - bare_cpu)}"
    )


async def _upstream_alone(direct: Any, runs: int) -> float:
    """CPU of this process (the upstream and the client together) per direct POST."""
    samples = []
    for _ in range(runs):
        cpu0 = time.process_time()
        await direct()
        samples.append(time.process_time() - cpu0)
    return bl.median(samples)


def _stdio_rows(
    report: Any,
    size: str,
    ours: list[float],
    floor_wall: list[float],
    server_cpu: list[float],
    floor: Floor,
    alone: float,
    png_bytes: int,
    result: Any,
) -> None:
    over = bl.median(ours) - bl.median(floor_wall)
    target = STDIO_TARGETS_MS[size]
    pw, ph = preview_size_of(result)
    report.add(
        f"b. per-call overhead n=1 {size}, photo-like (stdio, median of {len(ours)} pairs)",
        bl.ms(bl.median(ours)),
        f"{bl.ms(bl.median(floor_wall))} (direct POST)",
        f"{over * 1000:+,.1f} ms overhead",
        f"overhead ≤ {target:.0f} ms",
        over <= target / 1000,
    )
    cpu = bl.median(server_cpu)
    ratio = cpu / floor.total
    report.add(
        f"b. server CPU per {size} photo-like image (stdio, median of {len(server_cpu)})",
        bl.ms(cpu),
        f"{bl.ms(floor.total)} (decode-resize-encode floor)",
        f"{ratio:.2f}x the floor",
        f"≤ {CPU_RATIO_TARGET}x" if size == "1024x1024" else "(informative)",
        ratio <= CPU_RATIO_TARGET if size == "1024x1024" else None,
    )
    report.note(
        f"photo {size}: PNG {png_bytes / 1e6:.2f} MB, preview {pw}x{ph}; wall ours {bl.spread_ms(ours)}, "
        f"direct POST {bl.spread_ms(floor_wall)}; server CPU per call {bl.spread_ms(server_cpu)}; "
        f"floor {floor.line()}; the fixed-answer upstream and the client together use {bl.ms(alone)} of CPU "
        "per direct POST, measured alone"
    )


# --- HTTP: many calls at once against a 1 s upstream ----------------------------------------


async def http_figure(report: Any, work: Path, floor: Floor, *, calls: int, latency: float = 1.0) -> None:
    import httpx2

    bl.say(f"photo-like: {calls} concurrent generate_image calls over streamable HTTP, upstream latency {latency:g} s")
    images = {"1024x1024": photo_images()["1024x1024"]}
    with bl.fixed_upstream_process(images, work / "photo-http-upstream", latency=latency) as upstream:
        base_url = upstream.base_url
        limits = httpx2.Limits(max_connections=calls, max_keepalive_connections=calls)
        async with httpx2.AsyncClient(limits=limits, timeout=120) as http:
            await _post(http, f"{base_url}/images/generations")  # its answer rendered once, before the clock
            up0, cpu0 = bl.proc_cpu_seconds(upstream.pid), time.process_time()
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(calls):
                    tg.start_soon(_post, http, f"{base_url}/images/generations")
            alone_wall, alone_cpu = time.perf_counter() - t0, time.process_time() - cpu0
            alone_upstream_cpu = bl.proc_cpu_seconds(upstream.pid) - up0
        port = _free_port()
        env = os.environ | bl.server_env(
            base_url,
            work / "photo-http",
            MCP_IMAGES_HTTP_MAX_CALLS_PER_IDENTITY=str(calls),
            MCP_IMAGES_HTTP_MAX_CALLS=str(calls),
            MCP_IMAGES_MAX_UPSTREAM=str(calls),
        )
        cmd = [sys.executable, "-m", "mcp_images", "--transport", "http", "--port", str(port)]
        proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            await wait_listening(port)
            cpu_srv0, cpu_up0 = bl.proc_cpu_seconds(proc.pid), bl.proc_cpu_seconds(upstream.pid)
            cpu_me0 = time.process_time()
            wall, errors, done = await _through_server(f"http://127.0.0.1:{port}/mcp", calls, sessions=10)
            server_cpu = bl.proc_cpu_seconds(proc.pid) - cpu_srv0
            upstream_cpu = bl.proc_cpu_seconds(upstream.pid) - cpu_up0
            client_cpu = time.process_time() - cpu_me0
            peak = bl.proc_memory(proc.pid).get("VmHWM", 0)
        finally:
            bl.stop_process(proc, grace=40)
        bare = await bare_server_http(base_url, work, floor, calls)
    cores = os.cpu_count() or 2
    target = latency + HTTP_SLACK * (calls * floor.total / cores)
    report.add(
        f"g. HTTP: {calls} concurrent generate_image, photo-like 1024x1024, upstream {latency:g} s (wall)",
        f"{wall:.2f} s, {errors} errors",
        f"{alone_wall:.2f} s (upstream alone)",
        f"{calls} x {floor.total * 1000:.1f} ms floor / {cores} cores = {calls * floor.total / cores:.2f} s",
        f"≤ {target:.2f} s, 0 errors",
        wall <= target and errors == 0 and done == calls,
    )
    report.note(
        f"g: {done} of {calls} calls answered, {errors} errors; server CPU {server_cpu:.2f} s in all "
        f"({server_cpu / calls * 1000:.1f} ms per call), peak RSS {peak / bl.MIB:.1f} MiB; the {calls} clients "
        f"over 10 sessions (this process) used {client_cpu:.2f} s of CPU and the upstream (its own process) "
        f"{upstream_cpu:.2f} s; alone, the upstream answered {calls} POSTs at once in {alone_wall:.2f} s "
        f"using {alone_upstream_cpu:.2f} s of CPU (its client {alone_cpu:.2f} s); 2 cores are shared by the "
        "server, the clients and the upstream"
    )
    bare_wall, bare_errors, bare_cpu = bare
    report.add(
        f"g. stack floor over HTTP: a bare MCPServer doing only the floor's work, the same {calls} calls (wall)",
        f"{wall:.2f} s ({server_cpu / calls * 1000:.1f} ms CPU per call)",
        f"{bare_wall:.2f} s, {bare_errors} errors ({bare_cpu / calls * 1000:.1f} ms CPU per call; bare server)",
        f"ours {wall / bare_wall:.2f}x the bare server's wall",
        f"(informative: the target above is {target:.2f} s)",
        None,
    )


def bare_server_argv(base_url: str, out: Path, port: int | None = None) -> list[str]:
    """The interpreter's arguments for `minimal_image_server.py`: stdio, or HTTP on ``port``."""
    script = Path(__file__).with_name("minimal_image_server.py")
    return [str(script), base_url, str(out), *([str(port)] if port is not None else [])]


async def bare_server_http(
    base_url: str, work: Path, floor: Floor, calls: int, sessions: int = 10
) -> tuple[float, int, float]:
    """(wall, errors, server CPU) of the same load on `minimal_image_server.py` over the SDK's HTTP."""
    port = _free_port()
    cmd = [sys.executable, *bare_server_argv(base_url, work / "photo-http-bare", port)]
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_listening(port)
        cpu0 = bl.proc_cpu_seconds(proc.pid)
        pw, ph = floor.preview
        args = {"prompt": PROMPT, "size": "1024x1024", "preview": f"{pw}x{ph}"}
        wall, errors, _ = await _through_server(f"http://127.0.0.1:{port}/mcp", calls, sessions=sessions, args=args)
        return wall, errors, bl.proc_cpu_seconds(proc.pid) - cpu0
    finally:
        bl.stop_process(proc, grace=40)


async def _post(http: Any, url: str) -> None:
    response = await http.post(url, json={"prompt": PROMPT, "size": "1024x1024"})
    response.raise_for_status()


async def _through_server(
    url: str, calls: int, *, sessions: int, args: dict[str, Any] | None = None
) -> tuple[float, int, int]:
    """(wall seconds, error results, answered calls) of ``calls`` at once over ``sessions``."""
    tool_args = args or {"prompt": PROMPT, "size": "1024x1024"}
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    errors = done = 0
    ready = anyio.Event()

    async def session(count: int) -> None:
        nonlocal errors, done
        http = httpx2.AsyncClient(timeout=300, limits=httpx2.Limits(max_connections=count + 4))
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            await client.list_tools()
            await ready.wait()

            async def one() -> None:
                nonlocal errors, done
                result = await client.call_tool("generate_image", tool_args)
                errors += bool(result.is_error)
                done += 1

            async with anyio.create_task_group() as tg:
                for _ in range(count):
                    tg.start_soon(one)

    per, extra = divmod(calls, sessions)
    start = 0.0
    async with anyio.create_task_group() as tg:
        for i in range(sessions):
            tg.start_soon(session, per + (1 if i < extra else 0))
        await anyio.sleep(2.0)  # sessions open before the clock starts
        start = time.perf_counter()
        ready.set()
    return time.perf_counter() - start, errors, done


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_listening(port: int) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:``port`` (30 s at most)."""
    with anyio.fail_after(30):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
            else:
                await stream.aclose()
                return


if __name__ == "__main__":
    if sys.argv[1:2] == ["--floor"]:
        _floor_main(sys.argv[2:])
