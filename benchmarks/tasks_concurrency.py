"""Long jobs: how many concurrent background tasks one server process holds with a slow upstream.

    uv run python benchmarks/tasks_concurrency.py [--quick] [--tasks 100] [--latency 5]

The server runs as a stdio subprocess (`python -m mcp_images serve`), the sandbox as another
(`mcp-images sandbox --latency L`: every image request waits L seconds). The script starts N
`generate_image` calls with ``async: true`` at once, then collects every task with
`check_task` (long polls, all at once), and prints a table: did all succeed, how long it took,
how many upstream requests ran at the same time (N x L / wall time), and the server's memory
(RSS before, VmHWM peak, growth beyond the images' own bytes). Writes
benchmarks/results/tasks-concurrency.md too.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import benchlib as bl

MB = 1000 * 1000
PROMPT = "a lighthouse at dusk, long exposure"
CHECK_WAIT_SECONDS = 30
TARGET_TASKS = 100
TARGET_GROWTH = 100 * MB


@dataclass
class Outcome:
    started: int = 0
    start_errors: list[str] = field(default_factory=list)
    succeeded: int = 0
    failed: list[str] = field(default_factory=list)
    image_bytes: int = 0
    check_calls: int = 0
    start_seconds: float = 0.0
    wall_seconds: float = 0.0
    finish_times: list[float] = field(default_factory=list)


def _text(result: Any) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


async def _collect(client: Any, task_id: str, out: Outcome, t0: float) -> None:
    """check_task until the task has finished (each call long-polls up to 30 s)."""
    while True:
        result = await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": CHECK_WAIT_SECONDS})
        out.check_calls += 1
        sc = result.structured_content or {}
        if result.is_error:
            out.failed.append(_text(result)[:200])
            return
        if "images" in sc:
            out.succeeded += 1
            out.image_bytes += sum(int(i.get("bytes", 0)) for i in sc["images"])
            out.finish_times.append(time.perf_counter() - t0)
            return
        if sc.get("status") not in ("queued", "running"):
            out.failed.append(f"unexpected state: {sc}")
            return


async def _start(client: Any, index: int, ids: list[str], out: Outcome) -> None:
    args = {"prompt": f"{PROMPT} #{index}", "size": "1024x1024", "async": True}
    result = await client.call_tool("generate_image", args)
    task_id = (result.structured_content or {}).get("task_id")
    if result.is_error or not task_id:
        out.start_errors.append(_text(result)[:200])
        return
    ids.append(task_id)
    out.started += 1


async def _sample_peak(pid: int, stop: anyio.Event, peak: list[int]) -> None:
    """VmHWM is the kernel's own peak; sampling RSS too shows when it happened."""
    while not stop.is_set():
        mem = bl.proc_memory(pid)
        peak[0] = max(peak[0], mem.get("VmRSS", 0))
        await anyio.sleep(0.05)


# An experiment, not a change: the server with anyio's worker threads capped at N, set by a
# wrapper when the server's background start-up runs (what a shared CapacityLimiter around the
# decode/save/preview work in tools.finish would do).
THREADS_WRAPPER = """\
import sys
import anyio.to_thread
import mcp_images.server.build as server
start_tasks = server.run_tasks
async def run_tasks(*args, **kwargs):
    anyio.to_thread.current_default_thread_limiter().total_tokens = int(sys.argv[1])
    await start_tasks(*args, **kwargs)
server.run_tasks = run_tasks
from mcp_images.cli import main
sys.exit(main(["serve"]))
"""


@contextlib.asynccontextmanager
async def upstream(latency: float, photo: bool) -> AsyncIterator[str]:
    """The sandbox as a subprocess, or (photo) a fixed-answer upstream serving a photo-like PNG."""
    if photo:
        app = bl.fixed_image_app({"1024x1024": bl.photo_like_png(1024, 1024, 7)}, latency=latency)
        async with bl.serve_app(app) as url:
            yield url
    else:
        with bl.sandbox_process(latency) as sandbox:
            yield sandbox.base_url


async def run(tasks: int, latency: float, photo: bool, threads: int | None) -> tuple[str, bool]:
    from mcp import Client

    kind = "photo-like images (1.9 MB PNG)" if photo else "sandbox placeholders"
    if threads:
        kind += f"; experiment: server worker threads capped at {threads}"
    with tempfile.TemporaryDirectory(prefix="mcp-images-tasks-") as tmp:
        async with upstream(latency, photo) as base_url:
            work = Path(tmp)
            env = bl.server_env(base_url, work / "server")
            argv = None
            if threads:
                (work / "threads_wrapper.py").write_text(THREADS_WRAPPER)
                argv = [str(work / "threads_wrapper.py"), str(threads)]
            bl.say(f"server over stdio, upstream latency {latency:g} s, {kind}; warm-up task first ({latency:g} s)")
            async with Client(bl.server_params(env, work, argv), mode="legacy", cache=None) as client:
                await client.list_tools()
                pid = bl.find_child("threads_wrapper.py") if threads else bl.find_child("mcp_images", "serve")
                at_start = bl.proc_memory(pid)
                warm = Outcome()
                warm_ids: list[str] = []
                await _start(client, -1, warm_ids, warm)
                assert warm_ids, warm.start_errors
                await _collect(client, warm_ids[0], warm, time.perf_counter())
                assert warm.succeeded == 1, warm.failed
                before = bl.proc_memory(pid)
                reset = bl.reset_peak(pid)
                cpu0 = bl.proc_cpu_seconds(pid)

                bl.say(f"starting {tasks} async generate_image calls at once, then collecting them with check_task")
                out = Outcome()
                ids: list[str] = []
                stop = anyio.Event()
                sampled = [0]
                t0 = time.perf_counter()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_sample_peak, pid, stop, sampled)
                    async with anyio.create_task_group() as starts:
                        for i in range(tasks):
                            starts.start_soon(_start, client, i, ids, out)
                    out.start_seconds = time.perf_counter() - t0
                    async with anyio.create_task_group() as collects:
                        for task_id in list(ids):
                            collects.start_soon(_collect, client, task_id, out, t0)
                    out.wall_seconds = time.perf_counter() - t0
                    stop.set()
                after = bl.proc_memory(pid)
                cpu = bl.proc_cpu_seconds(pid) - cpu0
    return _report(tasks, latency, kind, out, at_start, before, after, reset, cpu, sampled[0])


def _report(
    tasks: int,
    latency: float,
    kind: str,
    out: Outcome,
    at_start: dict[str, int],
    before: dict[str, int],
    after: dict[str, int],
    reset: bool,
    cpu: float,
    sampled_peak: int,
) -> tuple[str, bool]:
    base = before["VmRSS"] if reset else before["VmHWM"]
    growth = after["VmHWM"] - base
    beyond = growth - out.image_bytes
    concurrency = out.succeeded * latency / out.wall_seconds if out.wall_seconds else 0.0
    ideal = latency  # every task upstream at once
    all_ok = out.succeeded == tasks and not out.failed and not out.start_errors
    ok = all_ok and tasks >= TARGET_TASKS and beyond < TARGET_GROWTH
    waves = math.ceil(tasks / max(concurrency, 1))
    # The brief's measure subtracts every image ever made; at the peak only those in flight are held.
    in_flight = min(tasks, round(concurrency))
    strict = growth - in_flight * (out.image_bytes / max(out.succeeded, 1))
    finish = sorted(out.finish_times)
    rows = [
        ["tasks started (async: true) / succeeded / failed", f"{out.started} / {out.succeeded} / {len(out.failed) + len(out.start_errors)}", f"{TARGET_TASKS} / {TARGET_TASKS} / 0", bl.met(all_ok and tasks >= TARGET_TASKS)],
        ["time to start them all (task ids back)", f"{out.start_seconds:,.2f} s", "-", "-"],
        ["wall time, first start to last result", f"{out.wall_seconds:,.1f} s", f"≈ {ideal:g} s if all ran at once", bl.met(None)],
        ["upstream requests in flight at once (succeeded x latency / wall)", f"{concurrency:,.1f}", f"{tasks}", bl.met(None)],
        ["results in after (first / median / last)", " / ".join(f"{finish[i]:,.1f} s" for i in (0, len(finish) // 2, -1)) if finish else "-", "-", "-"],
        ["check_task calls (long polls of 30 s)", f"{out.check_calls}", "-", "-"],
        ["server RSS at start-up / before (after a warm-up task)", f"{at_start['VmRSS'] / MB:,.1f} / {before['VmRSS'] / MB:,.1f} MB", "-", "-"],
        ["server peak RSS (VmHWM) during the run", f"{after['VmHWM'] / MB:,.1f} MB", "-", "-"],
        ["growth of the peak over 'before'", f"+{growth / MB:,.1f} MB", "-", "-"],
        ["bytes of the images themselves (saved files)", f"{out.image_bytes / MB:,.1f} MB", "-", "-"],
        ["growth beyond the images", f"{beyond / MB:+,.1f} MB ({beyond / max(tasks, 1) / 1000:+,.1f} KB per task)", "< 100 MB", bl.met(beyond < TARGET_GROWTH)],
        ["stricter: growth beyond the images in flight at once (in flight x mean image)", f"{strict / MB:+,.1f} MB", "-", "-"],
        ["server CPU for the whole run", f"{cpu:,.2f} s ({cpu / max(tasks, 1) * 1000:,.1f} ms per task)", "-", "-"],
    ]  # fmt: skip
    lines = [
        f"# Long jobs: {tasks} concurrent background tasks, upstream latency {latency:g} s, {kind}",
        "",
        *bl.machine_lines(["benchmarks/tasks_concurrency.py", *sys.argv[1:]]),
        "",
        bl.markdown_table(["figure", "measured", "target / ideal", "met?"], rows),
        "",
        f"- peak reset before the run: {'yes (clear_refs)' if reset else 'no: growth is of VmHWM since start-up'}; "
        f"highest sampled RSS {sampled_peak / MB:,.1f} MB",
        f"- with about {concurrency:,.0f} requests upstream at a time the {tasks} tasks ran in about {waves} waves",
    ]
    if out.failed or out.start_errors:
        lines.append(f"- first failure: {(out.start_errors + out.failed)[0]}")
    return "\n".join(lines) + "\n", ok


def main() -> int:
    parser = argparse.ArgumentParser(description="How many concurrent background tasks one server holds.")
    parser.add_argument("--quick", action="store_true", help="20 tasks, latency 2 s (well under a minute)")
    parser.add_argument("--tasks", type=int, help="number of async calls (default 100; quick 20)")
    parser.add_argument("--latency", type=float, help="upstream seconds per image request (default 5; quick 2)")
    parser.add_argument(
        "--photo",
        action="store_true",
        help="photo-like 1.9 MB PNGs from a fixed-answer upstream instead of the sandbox",
    )
    parser.add_argument(
        "--threads", type=int, help="experiment: cap the server's worker threads at N (a wrapper; no code change)"
    )
    ns = parser.parse_args()
    tasks = ns.tasks or (20 if ns.quick else TARGET_TASKS)
    latency = ns.latency if ns.latency is not None else (2.0 if ns.quick else 5.0)
    text, _ = anyio.run(run, tasks, latency, ns.photo, ns.threads)
    print(text)
    name = f"tasks-concurrency{'-photo' if ns.photo else ''}{f'-threads{ns.threads}' if ns.threads else ''}.md"
    path = bl.save_report(name, text)
    bl.say(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
