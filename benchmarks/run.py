"""mcp-images performance figures, measured in one run on this machine.

    uv run python benchmarks/run.py [--quick]

Prints a markdown table (figure | ours | floor | difference/ratio | target | met?) on stdout
and writes it to benchmarks/results/latest.md. Progress goes to stderr. Every figure is a
median of repeated runs (interquartile range in the details) or a single measured size;
"floor" is what the same work costs without mcp-images (see each figure's note).

Figures (photo-like first: `photo.py`):
  b. photo-like: per-call overhead over stdio (1024x1024 and 1536x1024) against a direct POST, and
     the server's CPU per image against the floor of the same work done alone (JSON parse + base64
     decode + write+fsync + PNG decode + resize + JPEG encode, same libraries);
  g. photo-like: 200 concurrent calls over streamable HTTP against a 1 s upstream;
  a. cold start: spawn over stdio -> initialize -> tools/list answered, vs a one-tool MCPServer;
  b. per-call overhead of generate_image (n=1 and n=4, 1024x1024) over a direct POST to the same
     sandbox endpoint, through the in-memory client and over stdio;
  c. serialized tool result size, sandbox placeholders and photo-like images;
  d. peak RSS growth of the server (stdio subprocess) for an edit with 16 x 20 MB path inputs;
  e. tools/list size on the wire;
  f. server peak RSS after start-up and after five 1024x1024 generations.

    uv run python benchmarks/run.py --only photo,g   # just some steps (names as in the summary line)

Sizes: KB and MB are decimal (1000, 10^6); MiB is 2^20.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import benchlib as bl
import photo

PROMPT = "a red fox in fresh snow, morning light"
FLOOR_SERVER = textwrap.dedent(
    '''\
    """The floor for cold start: the SDK's MCPServer with one trivial tool."""
    from mcp.server import MCPServer

    server = MCPServer("floor")


    @server.tool()
    def ping() -> str:
        """Answer pong."""
        return "pong"


    if __name__ == "__main__":
        server.run()
    '''
)

KB = 1000
MB = 1000 * 1000


@dataclass
class Row:
    figure: str
    ours: str
    floor: str
    diff: str
    target: str
    ok: bool | None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, *row: Any) -> None:
        self.rows.append(Row(*row))

    def note(self, line: str) -> None:
        self.details.append(line)
        bl.say(f"  {line}")


@dataclass(frozen=True)
class Plan:
    quick: bool
    cold_runs: int
    call_runs: int
    call_warmup: int
    edit_inputs: int
    edit_input_bytes: int
    photo_pairs: int = 15
    floor_runs: int = 15
    http_calls: int = 200

    @classmethod
    def make(cls, quick: bool) -> Plan:
        if quick:
            return cls(
                quick, cold_runs=4, call_runs=8, call_warmup=1, edit_inputs=16, edit_input_bytes=20 * MB,
                photo_pairs=6, floor_runs=6,
            )  # fmt: skip
        return cls(quick, cold_runs=15, call_runs=30, call_warmup=3, edit_inputs=16, edit_input_bytes=20 * MB)


# --- a. cold start ------------------------------------------------------------------------


async def _spawn_once(params: Any) -> tuple[float, float, float]:
    """Seconds from the spawn to initialize answered and to tools/list answered, and the CPU
    seconds the server process used in its whole life (start, two requests, shutdown)."""
    from mcp import Client

    cpu0 = bl.children_cpu_seconds()
    t0 = time.perf_counter()
    async with Client(params, mode="legacy", cache=None) as client:
        t_init = time.perf_counter() - t0
        tools = await client.list_tools()
        t_list = time.perf_counter() - t0
        assert tools.tools, "the server listed no tools"
    return t_init, t_list, bl.children_cpu_seconds() - cpu0  # the server was reaped on exit


async def cold_start(plan: Plan, work: Path, report: Report) -> None:
    bl.say("a. cold start (spawn -> initialize -> tools/list), ours and floor interleaved")
    floor_file = work / "floor_server.py"
    floor_file.write_text(FLOOR_SERVER)
    ours = bl.server_params(bl.server_env(None, work / "cold"), work)
    floor = bl.server_params({}, work, [str(floor_file)])
    await _spawn_once(ours)  # warm the OS file cache and .pyc files for both
    await _spawn_once(floor)
    ours_t: list[tuple[float, float, float]] = []
    floor_t: list[tuple[float, float, float]] = []
    for _ in range(plan.cold_runs):
        ours_t.append(await _spawn_once(ours))
        floor_t.append(await _spawn_once(floor))
    o_list, f_list = [t[1] for t in ours_t], [t[1] for t in floor_t]
    diff = bl.median(o_list) - bl.median(f_list)
    report.add(
        f"a. cold start to tools/list (stdio, wall, median of {plan.cold_runs})",
        bl.ms(bl.median(o_list)),
        bl.ms(bl.median(f_list)),
        f"{diff * 1000:+,.0f} ms ({bl.ratio(bl.median(o_list), bl.median(f_list))})",
        "≤ floor + 60 ms",
        diff <= 0.060,
    )
    o_cpu, f_cpu = [t[2] for t in ours_t], [t[2] for t in floor_t]
    cpu_diff = bl.median(o_cpu) - bl.median(f_cpu)
    report.add(
        "a. cold start, CPU of the server process (user+sys, whole life)",
        bl.ms(bl.median(o_cpu)),
        bl.ms(bl.median(f_cpu)),
        f"{cpu_diff * 1000:+,.0f} ms ({bl.ratio(bl.median(o_cpu), bl.median(f_cpu))})",
        "(informative: immune to other load)",
        None,
    )
    report.note(
        f"a: ours {bl.spread_ms(o_list)}, initialize answered at {bl.ms(bl.median([t[0] for t in ours_t]))}, "
        f"CPU {bl.spread_ms(o_cpu)}; floor {bl.spread_ms(f_list)}, initialize answered at "
        f"{bl.ms(bl.median([t[0] for t in floor_t]))}, CPU {bl.spread_ms(f_cpu)}"
    )


# --- b. per-call overhead (and c. sizes with the sandbox) ---------------------------------


@dataclass
class CallTimes:
    """Per call: wall seconds of ours and of the floor, and CPU seconds (see `_measure_calls`)."""

    ours: list[float] = field(default_factory=list)
    floor: list[float] = field(default_factory=list)
    ours_cpu: list[float] = field(default_factory=list)
    floor_cpu: list[float] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)
    result: Any = None


async def _measure_calls(
    client: Any,
    http: Any,
    upstream: str,
    args: dict[str, Any],
    plan: Plan,
    *,
    last_body: Callable[[], dict[str, Any]],
    server_pid: int | None = None,
) -> CallTimes:
    """Interleaved (ours, floor) calls; the floor POSTs the exact body ours sent upstream.

    CPU: this process's CPU time per call (all threads: client, in-process server, in-process
    upstream), and with ``server_pid`` the server subprocess's CPU time per call.
    """
    for _ in range(plan.call_warmup):
        result = await client.call_tool("generate_image", args)
        assert not result.is_error, result.content[0].text
    body = last_body()
    url = f"{upstream}/images/generations"
    headers = {"Authorization": f"Bearer {bl.SANDBOX_KEY}"}

    async def floor_call() -> Any:
        response = await http.post(url, json=body, headers=headers)
        response.raise_for_status()
        return response.json()  # a caller has to parse the answer to get the image

    for _ in range(plan.call_warmup):
        await floor_call()
    times = CallTimes()
    for _ in range(plan.call_runs):
        cpu0 = time.process_time()
        srv0 = bl.proc_cpu_seconds(server_pid) if server_pid else 0.0
        t, times.result = await bl.timed(lambda: client.call_tool("generate_image", args))
        if server_pid:
            times.server_cpu.append(bl.proc_cpu_seconds(server_pid) - srv0)
        times.ours_cpu.append(time.process_time() - cpu0)
        times.ours.append(t)
        cpu0 = time.process_time()
        t, _ = await bl.timed(floor_call)
        times.floor_cpu.append(time.process_time() - cpu0)
        times.floor.append(t)
    return times


def _overhead_row(report: Report, label: str, times: CallTimes, target_ms: float | None) -> None:
    over = bl.median(times.ours) - bl.median(times.floor)
    report.add(
        label,
        bl.ms(bl.median(times.ours)),
        bl.ms(bl.median(times.floor)),
        f"{over * 1000:+,.1f} ms overhead",
        f"overhead ≤ {target_ms:.0f} ms" if target_ms is not None else "(informative)",
        over <= target_ms / 1000 if target_ms is not None else None,
    )
    cpu_over = bl.median(times.ours_cpu) - bl.median(times.floor_cpu)
    line = (
        f"{label}: wall ours {bl.spread_ms(times.ours)}, floor {bl.spread_ms(times.floor)}; "
        f"CPU of this process ours {bl.spread_ms(times.ours_cpu)}, floor {bl.spread_ms(times.floor_cpu)} "
        f"(difference {cpu_over * 1000:+,.1f} ms)"
    )
    if times.server_cpu:
        line += f"; CPU of the server subprocess per call {bl.spread_ms(times.server_cpu)}"
    report.note(line)


def _size_rows(report: Report, tag: str, one: Any, ten: Any) -> None:
    size1 = len(bl.wire_json(one))
    files1, inline1 = bl.image_bytes_in(one)
    report.add(
        f"c. result size, n=1 1024x1024 ({tag})",
        f"{size1 / KB:,.1f} KB",
        f"image file {files1 / KB:,.1f} KB",
        f"{bl.ratio(size1, files1)} of the file",
        "≤ 150 KB per image",
        size1 <= 150 * KB,
    )
    size10 = len(bl.wire_json(ten))
    files10, inline10 = bl.image_bytes_in(ten)
    report.add(
        f"c. result size, n=10 1536x1024 ({tag})",
        f"{size10 / KB:,.1f} KB ({size10 / 10 / KB:,.1f} KB per image)",
        f"image files {files10 / KB:,.1f} KB",
        f"{bl.ratio(size10, files10)} of the files",
        "≤ 900 KB, never > 1 MiB",
        size10 <= 900 * KB and size10 <= bl.MIB,
    )
    report.note(
        f"c ({tag}): n=1 carries {inline1:,} base64 chars of preview + {size1 - inline1:,} B of the rest; "
        f"n=10 carries {inline10:,} base64 chars of previews + {size10 - inline10:,} B of the rest"
    )


async def per_call(plan: Plan, work: Path, report: Report) -> None:
    import httpx2
    from mcp import Client

    from mcp_images.sandbox import serve_sandbox
    from mcp_images.server.build import create_server

    bl.say("b. per-call overhead of generate_image over a direct POST (sandbox latency 0)")
    async with serve_sandbox(latency=0) as sandbox, httpx2.AsyncClient(timeout=60) as http:
        settings = bl.direct_settings(sandbox.base_url, work / "inproc")

        def last_body() -> dict[str, Any]:
            return sandbox.state.image_requests()[-1].fields

        results: dict[int, Any] = {}
        async with Client(create_server(settings), cache=None) as client:
            for n, target in ((1, 40.0), (4, 100.0)):
                args: dict[str, Any] = {"prompt": PROMPT, "size": "1024x1024"} | ({"n": n} if n > 1 else {})
                times = await _measure_calls(client, http, sandbox.base_url, args, plan, last_body=last_body)
                results[n] = times.result
                _overhead_row(report, f"b. per-call overhead n={n} (in-memory client)", times, target)
            ten = await client.call_tool("generate_image", {"prompt": PROMPT, "size": "1536x1024", "n": 10})
            assert not ten.is_error
        _size_rows(report, "sandbox placeholders", results[1], ten)

        env = bl.server_env(sandbox.base_url, work / "stdio")
        async with Client(bl.server_params(env, work), mode="legacy", cache=None) as client:
            await client.list_tools()
            pid = bl.find_child("mcp_images", "serve")
            for n in (1, 4):
                args = {"prompt": PROMPT, "size": "1024x1024"} | ({"n": n} if n > 1 else {})
                times = await _measure_calls(
                    client, http, sandbox.base_url, args, plan, last_body=last_body, server_pid=pid
                )
                _overhead_row(report, f"b. per-call overhead n={n} (stdio client)", times, None)


async def photo_sizes(plan: Plan, work: Path, report: Report) -> None:
    """c. with photo-like content from a fixed-answer upstream: previews no longer shrink for free."""
    import httpx2
    from mcp import Client

    from mcp_images.server.build import create_server

    bl.say("c. result sizes (and b. overhead) with photo-like images from a fixed-answer upstream")
    images = {"1024x1024": bl.photo_like_png(1024, 1024, 1), "1536x1024": bl.photo_like_png(1536, 1024, 2)}
    report.note(
        "c (photo-like): upstream PNGs are "
        + ", ".join(f"{k} {len(v) / MB:.2f} MB" for k, v in images.items())
        + " (about 1.8 bytes per pixel, like real model output)"
    )
    app = bl.fixed_image_app(images)
    async with bl.serve_app(app) as base_url, httpx2.AsyncClient(timeout=60) as http:
        settings = bl.direct_settings(base_url, work / "photo")
        async with Client(create_server(settings), cache=None) as client:
            args = {"prompt": PROMPT, "size": "1024x1024"}
            times = await _measure_calls(client, http, base_url, args, plan, last_body=lambda: app.state.last_body)
            _overhead_row(report, "b. per-call overhead n=1, photo-like image (in-memory client)", times, None)
            t_ten, ten = await bl.timed(
                lambda: client.call_tool("generate_image", {"prompt": PROMPT, "size": "1536x1024", "n": 10})
            )
            assert not ten.is_error, ten.content[0].text
    _size_rows(report, "photo-like", times.result, ten)
    report.note(f"c (photo-like): the n=10 1536x1024 call took {bl.ms(t_ten)} against a local upstream")


# --- d. and f. memory of the server as a stdio subprocess ---------------------------------


def _stdio_server(env: dict[str, str], work: Path) -> Any:
    from mcp import Client

    return Client(bl.server_params(env, work), mode="legacy", cache=None)


async def edit_memory(plan: Plan, work: Path, report: Report) -> None:
    inputs = work / "inputs"
    inputs.mkdir()
    n, each = plan.edit_inputs, plan.edit_input_bytes
    bl.say(f"d. edit_image with {n} path inputs of {each / MB:.0f} MB each (server and sandbox as subprocesses)")
    paths = [inputs / f"input-{i:02d}.png" for i in range(n)]
    sizes = [bl.noisy_png_file(p, each, seed=i) for i, p in enumerate(paths)]
    total = sum(sizes)
    small = inputs / "small.png"
    small.write_bytes(bl.photo_like_png(1024, 1024, 3))
    with bl.sandbox_process() as sandbox:
        env = bl.server_env(sandbox.base_url, work / "edit", MCP_IMAGES_INPUT_DIRS=str(inputs))
        async with _stdio_server(env, work) as client:
            await client.list_tools()
            pid = bl.find_child("mcp_images", "serve")
            at_start = bl.proc_memory(pid)
            warm = await client.call_tool("edit_image", {"prompt": "warm-up", "image": [str(small)]})
            assert not warm.is_error, warm.content[0].text
            at_rest = bl.proc_memory(pid)
            reset = bl.reset_peak(pid)
            base = bl.proc_memory(pid)
            t, result = await bl.timed(
                lambda: client.call_tool("edit_image", {"prompt": "combine them", "image": [str(p) for p in paths]})
            )
            assert not result.is_error, result.content[0].text
            after = bl.proc_memory(pid)
            sandbox_mem = bl.proc_memory(sandbox.pid)
    base_rss = base["VmRSS"] if reset else at_rest["VmHWM"]
    growth = after["VmHWM"] - base_rss
    report.add(
        f"d. peak RSS growth, edit with {n} x {each / MB:.0f} MB path inputs (stdio)",
        f"+{growth / MB:,.1f} MB",
        f"inputs {total / MB:,.1f} MB",
        f"{growth / total:.3f}x the inputs",
        "growth ≤ 1x inputs",
        growth <= total,
    )
    report.note(
        f"d: server RSS {at_start['VmRSS'] / MB:.1f} MB after start-up, {at_rest['VmRSS'] / MB:.1f} MB at rest "
        f"after a warm-up edit (peak so far {at_rest['VmHWM'] / MB:.1f} MB); peak during the big edit "
        f"{after['VmHWM'] / MB:.1f} MB ({'peak reset before the call' if reset else 'peak not resettable: growth of VmHWM'}); "
        f"the call took {t:.2f} s; the sandbox process peaked at {sandbox_mem.get('VmHWM', 0) / MB:,.0f} MB"
    )


async def rss_after_generations(plan: Plan, work: Path, report: Report) -> None:
    from mcp import Client

    bl.say("f. server peak RSS after start-up and after five 1024x1024 generations (stdio subprocess)")
    floor_file = work / "floor_server.py"
    if not floor_file.exists():
        floor_file.write_text(FLOOR_SERVER)
    async with Client(bl.server_params({}, work, [str(floor_file)]), mode="legacy", cache=None) as client:
        await client.list_tools()
        floor_pid = bl.find_child(str(floor_file))
        floor_mem = bl.proc_memory(floor_pid)

    async def five(env: dict[str, str]) -> tuple[dict[str, int], dict[str, int]]:
        async with _stdio_server(env, work) as client:
            await client.list_tools()
            pid = bl.find_child("mcp_images", "serve")
            start = bl.proc_memory(pid)
            for i in range(5):
                result = await client.call_tool("generate_image", {"prompt": f"{PROMPT} #{i}", "size": "1024x1024"})
                assert not result.is_error, result.content[0].text
            return start, bl.proc_memory(pid)

    with bl.sandbox_process() as sandbox:
        start, after = await five(bl.server_env(sandbox.base_url, work / "rss"))
    report.add(
        "f. server RSS right after start-up (stdio)",
        f"{start['VmRSS'] / MB:,.1f} MB",
        f"{floor_mem['VmRSS'] / MB:,.1f} MB",
        f"+{(start['VmRSS'] - floor_mem['VmRSS']) / MB:,.1f} MB",
        "(informative)",
        None,
    )
    report.add(
        "f. server peak RSS after five 1024x1024 generations (sandbox)",
        f"{after['VmHWM'] / MB:,.1f} MB",
        f"{floor_mem['VmHWM'] / MB:,.1f} MB",
        f"+{(after['VmHWM'] - floor_mem['VmHWM']) / MB:,.1f} MB over the floor's peak",
        "≤ 100 MB",
        after["VmHWM"] <= 100 * MB,
    )
    images = {"1024x1024": bl.photo_like_png(1024, 1024, 4)}
    async with bl.serve_app(bl.fixed_image_app(images)) as base_url:
        _, photo_after = await five(bl.server_env(base_url, work / "rss-photo"))
    report.add(  # issue 14's target is in MiB
        "f. server peak RSS after five 1024x1024 generations (photo-like)",
        f"{photo_after['VmHWM'] / bl.MIB:,.1f} MiB ({photo_after['VmHWM'] / MB:,.1f} MB)",
        f"{floor_mem['VmHWM'] / bl.MIB:,.1f} MiB",
        f"+{(photo_after['VmHWM'] - floor_mem['VmHWM']) / bl.MIB:,.1f} MiB over the floor's peak",
        "≤ 100 MiB",
        photo_after["VmHWM"] <= 100 * bl.MIB,
    )
    report.note(
        f"f: ours after start-up RSS {start['VmRSS'] / MB:.1f} MB (peak {start['VmHWM'] / MB:.1f}); after five: "
        f"RSS {after['VmRSS'] / MB:.1f} MB, peak {after['VmHWM'] / MB:.1f} MB; photo-like: RSS "
        f"{photo_after['VmRSS'] / MB:.1f} MB, peak {photo_after['VmHWM'] / MB:.1f} MB. Floor (one-tool MCPServer "
        f"after tools/list): RSS {floor_mem['VmRSS'] / MB:.1f} MB, peak {floor_mem['VmHWM'] / MB:.1f} MB"
    )


# --- e. tools/list size -------------------------------------------------------------------


async def tools_list_size(work: Path, report: Report) -> None:
    from mcp import Client

    from mcp_images.server.build import create_server

    bl.say("e. tools/list size")
    settings = bl.direct_settings("http://127.0.0.1:9/v1", work / "list")
    async with Client(create_server(settings), cache=None) as client:
        listed = await client.list_tools()
    size = len(bl.wire_json(listed))
    per_tool = ", ".join(f"{t.name} {len(bl.wire_json(t)):,} B" for t in listed.tools)
    report.add(
        "e. tools/list size (JSON on the wire)",
        f"{size / KB:,.1f} KB",
        "-",
        f"{len(listed.tools)} tools",
        "≤ 12 KB",
        size <= 12 * KB,
    )
    report.note(f"e: {per_tool}")


# --- the run ------------------------------------------------------------------------------


def render(report: Report, argv: list[str]) -> str:
    header = ["figure", "ours", "floor", "difference / ratio", "target", "met?"]
    rows = [[r.figure, r.ours, r.floor, r.diff, r.target, bl.met(r.ok)] for r in report.rows]
    parts = [
        "# mcp-images benchmarks",
        "",
        *bl.machine_lines(argv),
        "",
        bl.markdown_table(header, rows),
        "",
        "Details (medians, IQR = interquartile range):",
        "",
        *[f"- {d}" for d in report.details],
        "",
    ]
    return "\n".join(parts)


async def photo_steps(plan: Plan, work: Path, report: Report, only: set[str] | None) -> None:
    """The photo-like figures, first in the table: stdio against the floor, then HTTP at scale."""
    floors = await photo.stdio_figures(
        report, work, pairs=plan.photo_pairs, warmup=plan.call_warmup, floor_runs=plan.floor_runs
    )
    if only is None or "g" in only:
        await photo.http_figure(report, work, floors["1024x1024"], calls=plan.http_calls)


async def main_async(plan: Plan, argv: list[str], only: set[str] | None = None) -> str:
    report = Report()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mcp-images-bench-") as tmp:
        work = Path(tmp)
        took = []
        steps = (
            ("photo", lambda: photo_steps(plan, work, report, only)),
            ("a", lambda: cold_start(plan, work, report)),
            ("b+c", lambda: per_call(plan, work, report)),
            ("c photo", lambda: photo_sizes(plan, work, report)),
            ("d", lambda: edit_memory(plan, work, report)),
            ("e", lambda: tools_list_size(work, report)),
            ("f", lambda: rss_after_generations(plan, work, report)),
        )
        for name, step in steps:
            if only is not None and name not in only and not (name == "photo" and "g" in only):
                continue
            t0 = time.perf_counter()
            await step()
            took.append(f"{name} {time.perf_counter() - t0:.0f} s")
    report.note(
        f"whole run: {time.perf_counter() - started:.0f} s ({', '.join(took)}); load average at the end: {bl.load_average()}"
    )
    return render(report, argv)


def main() -> int:
    parser = argparse.ArgumentParser(description="mcp-images performance figures, measured in one run on this machine.")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under a minute)")
    parser.add_argument("--only", help="comma-separated steps: photo, g, a, b+c, 'c photo', d, e, f")
    ns = parser.parse_args()
    only = {s.strip() for s in ns.only.split(",")} if ns.only else None
    argv = ["benchmarks/run.py", *(["--quick"] if ns.quick else []), *([f"--only '{ns.only}'"] if ns.only else [])]
    text = anyio.run(main_async, Plan.make(ns.quick), argv, only)
    print(text)
    path = bl.save_report("latest.md", text)
    bl.say(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
