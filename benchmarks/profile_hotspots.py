"""Where the time and memory of mcp-images go: evidence behind the figures of run.py.

    uv run python benchmarks/profile_hotspots.py startup   # import time by module, ours vs the bare SDK
    uv run python benchmarks/profile_hotspots.py call      # cProfile of generate_image calls (all threads)
    uv run python benchmarks/profile_hotspots.py memory    # tracemalloc + RSS of one photo-like call
    uv run python benchmarks/profile_hotspots.py all

Everything runs on this machine against local upstreams (the sandbox, or a fixed-answer
upstream serving a photo-like PNG). Tables go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import benchlib as bl

PROMPT = "a red fox in fresh snow, morning light"
# What `mcp-images serve` imports before it answers initialize, and what the floor imports.
OURS_IMPORTS = "import mcp_images.cli, mcp_images.config, mcp_images.server.build"
FLOOR_IMPORTS = "import mcp.server"
IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


# --- start-up -------------------------------------------------------------------------------


def _importtime(statement: str) -> dict[str, tuple[int, int, int]]:
    """module -> (self us, cumulative us, depth) from one ``python -X importtime -c statement``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, check=True
    )
    out: dict[str, tuple[int, int, int]] = {}
    for line in proc.stderr.splitlines():
        m = IMPORT_LINE.match(line)
        if m:
            out[m.group(4)] = (int(m.group(1)), int(m.group(2)), (len(m.group(3)) - 1) // 2)
    return out


def _median_import(statement: str, runs: int) -> dict[str, tuple[float, float, int]]:
    samples = [_importtime(statement) for _ in range(runs)]
    merged: dict[str, tuple[float, float, int]] = {}
    for name in samples[-1]:
        selfs = [s[name][0] for s in samples if name in s]
        cums = [s[name][1] for s in samples if name in s]
        merged[name] = (bl.median(selfs), bl.median(cums), samples[-1][name][2])
    return merged


def _top_level_total(table: dict[str, tuple[float, float, int]]) -> float:
    return sum(cum for _, cum, depth in table.values() if depth == 0)


def _by_package(table: dict[str, tuple[float, float, int]]) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    for name, (self_us, _, _) in table.items():
        sums[name.split(".")[0]] += self_us
    return dict(sums)


def startup(runs: int) -> str:
    bl.say(f"startup: python -X importtime, {runs} runs each")
    ours = _median_import(OURS_IMPORTS, runs)
    floor = _median_import(FLOOR_IMPORTS, runs)
    total_o, total_f = _top_level_total(ours), _top_level_total(floor)
    lines = [
        "## Start-up: imports (python -X importtime, medians)",
        "",
        f"- ours `{OURS_IMPORTS}`: {total_o / 1000:,.1f} ms in {len(ours)} modules",
        f"- floor `{FLOOR_IMPORTS}`: {total_f / 1000:,.1f} ms in {len(floor)} modules",
        f"- difference: {(total_o - total_f) / 1000:+,.1f} ms, {len(set(ours) - set(floor))} modules only ours load",
        "",
    ]
    extra = sorted(
        ((self_us, name, cum) for name, (self_us, cum, _) in ours.items() if name not in floor), reverse=True
    )
    lines += [
        f"Modules only ours load: {len(extra)}, {sum(e[0] for e in extra) / 1000:,.1f} ms of self time in all "
        "(cumulative times overlap: a module imported first is charged for shared children):",
        "",
    ]
    rows = [[name, f"{self_us / 1000:,.1f}", f"{cum / 1000:,.1f}"] for self_us, name, cum in extra[:20]]
    lines += [bl.markdown_table(["module", "self ms", "cumulative ms"], rows), ""]
    pkg_o, pkg_f = _by_package(ours), _by_package(floor)
    pkgs = sorted(pkg_o, key=lambda p: pkg_o[p] - pkg_f.get(p, 0.0), reverse=True)[:12]
    rows = [
        [
            p,
            f"{pkg_o[p] / 1000:,.1f}",
            f"{pkg_f.get(p, 0.0) / 1000:,.1f}",
            f"{(pkg_o[p] - pkg_f.get(p, 0.0)) / 1000:+,.1f}",
        ]
        for p in pkgs
    ]
    lines += ["Self time by top-level package, ours vs floor:", ""]
    lines += [bl.markdown_table(["package", "ours ms", "floor ms", "difference"], rows), ""]
    lines += _startup_steps()
    return "\n".join(lines)


def _startup_steps() -> list[str]:
    """Time of the work after the imports, in a fresh interpreter (what `serve` does next)."""
    code = (
        "import time, json\n"
        "t0 = time.perf_counter()\n"
        "import mcp_images.cli, mcp_images.config, mcp_images.server.build\n"
        "t1 = time.perf_counter()\n"
        "from mcp_images.config import load_settings\n"
        "s = load_settings(api_key='x', output_dir='/tmp/mcp-images-bench-out', data_dir='/tmp/mcp-images-bench-data')\n"
        "t2 = time.perf_counter()\n"
        "srv = mcp_images.server.build.create_server(s)\n"
        "t3 = time.perf_counter()\n"
        "import sqlite3, mcp_images.tasks.manager\n"
        "t4 = time.perf_counter()\n"
        "print(json.dumps([t1 - t0, t2 - t1, t3 - t2, t4 - t3]))\n"
    )
    samples = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        samples.append([float(x) for x in out.strip().strip("[]").split(",")])
    names = [
        "import cli+config+server",
        "load_settings()",
        "create_server() (catalog, tool schemas)",
        "import sqlite3 + tasks (background, after start)",
    ]
    rows = [[n, bl.ms(bl.median([s[i] for s in samples]))] for i, n in enumerate(names)]
    profile_code = (
        "import cProfile, pstats, mcp_images.server.build\n"
        "from mcp_images.config import load_settings\n"
        "s = load_settings(api_key='x', output_dir='/tmp/mcp-images-bench-out', data_dir='/tmp/mcp-images-bench-data')\n"
        "p = cProfile.Profile(); p.enable(); mcp_images.server.build.create_server(s); p.disable()\n"
        "pstats.Stats(p).sort_stats('cumulative').print_stats(16)\n"
    )
    out = subprocess.run([sys.executable, "-c", profile_code], capture_output=True, text=True, check=True).stdout
    listing = out[out.find("   ncalls") :].rstrip() if "   ncalls" in out else out.strip()
    return [
        "Steps of `serve` before it answers (fresh interpreter, median of 5):",
        "",
        bl.markdown_table(["step", "time"], rows),
        "",
        "create_server() under cProfile (first call in a fresh interpreter):",
        "",
        "```",
        listing,
        "```",
        "",
    ]


# An experiment, not a change: `mcp-images serve` with the cyclic GC off while it imports and
# builds the server, then frozen and back on (what cli.main could do itself).
GC_WRAPPER = """\
import gc, sys
gc.disable()
import mcp_images.server.build as server
build = server.create_server
def create_server(*args, **kwargs):
    made = build(*args, **kwargs)
    gc.freeze()
    gc.enable()
    return made
server.create_server = create_server
from mcp_images.cli import main
sys.exit(main(["serve"]))
"""


def spawn_experiment(runs: int) -> str:
    """Cold start to tools/list (wall and CPU) of ours, ours with GC off during start-up, the floor."""
    import run as figures  # the benchmark's own spawn measurement and floor server

    bl.say(f"startup: spawn -> tools/list, {runs} runs each of ours, ours with GC off at start-up, floor")

    async def measure() -> dict[str, list[tuple[float, float, float]]]:
        with tempfile.TemporaryDirectory(prefix="mcp-images-gc-") as tmp:
            work = Path(tmp)
            (work / "floor_server.py").write_text(figures.FLOOR_SERVER)
            (work / "gc_wrapper.py").write_text(GC_WRAPPER)
            env = bl.server_env(None, work / "cold")
            variants = {
                "ours": bl.server_params(env, work),
                "ours, GC off during start-up": bl.server_params(env, work, [str(work / "gc_wrapper.py")]),
                "floor": bl.server_params({}, work, [str(work / "floor_server.py")]),
            }
            out: dict[str, list[tuple[float, float, float]]] = {k: [] for k in variants}
            for params in variants.values():
                await figures._spawn_once(params)
            for _ in range(runs):
                for name, params in variants.items():
                    out[name].append(await figures._spawn_once(params))
            return out

    results = anyio.run(measure)
    floor_wall = bl.median([t[1] for t in results["floor"]])
    floor_cpu = bl.median([t[2] for t in results["floor"]])
    rows = []
    for name, samples in results.items():
        wall, cpu = bl.median([t[1] for t in samples]), bl.median([t[2] for t in samples])
        rows.append(
            [
                name,
                bl.ms(wall),
                f"{(wall - floor_wall) * 1000:+,.0f} ms",
                bl.ms(cpu),
                f"{(cpu - floor_cpu) * 1000:+,.0f} ms",
            ]
        )
    return "\n".join(
        [
            f"Spawn -> tools/list over stdio, interleaved, median of {runs}:",
            "",
            bl.markdown_table(["server", "wall", "vs floor", "CPU (whole life)", "vs floor"], rows),
            "",
        ]
    )


# --- one call, profiled in every thread -----------------------------------------------------


class ThreadProfiles:
    """cProfile in the main thread and in every thread started while active (anyio's workers).

    A new thread runs a one-shot profile hook that replaces itself with its own cProfile;
    the per-thread statistics are merged at the end. `clear` forgets everything so far (a
    warm-up), keeping the threads' profilers in place.
    """

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()

    def _bootstrap(self, frame: Any, event: str, arg: Any) -> None:
        profile = cProfile.Profile()
        with self._lock:
            self.profiles.append(profile)
        profile.enable()

    def __enter__(self) -> ThreadProfiles:
        threading.setprofile(self._bootstrap)  # type: ignore[arg-type]
        main = cProfile.Profile()
        self.profiles.append(main)
        main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        threading.setprofile(None)  # type: ignore[arg-type]
        self.profiles[0].disable()

    def clear(self) -> None:
        with self._lock:
            for profile in self.profiles:
                profile.clear()

    def stats(self) -> pstats.Stats:
        stats = pstats.Stats(self.profiles[0], stream=io.StringIO())
        for profile in self.profiles[1:]:
            profile.create_stats()
            if profile.stats:  # type: ignore[attr-defined]  # a thread that ran nothing since clear()
                stats.add(profile)
        return stats


def _table(stats: pstats.Stats, key: str, limit: int, calls: int, keep: Callable[[str], bool]) -> str:
    """The top functions by ``key`` (tottime or cumtime), per call, as a markdown table."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in raw.items():
        name = f"{_short(filename)}:{line} {func}"
        if not keep(name):
            continue
        rows.append((tt if key == "tottime" else ct, tt, ct, nc, name))
    rows.sort(reverse=True)
    out = [
        [name, f"{t / calls * 1000:,.2f}", f"{c / calls * 1000:,.2f}", f"{n / calls:,.1f}"]
        for _, t, c, n, name in rows[:limit]
    ]
    return bl.markdown_table(["function", "self ms/call", "cumulative ms/call", "calls/call"], out)


def _text(result: Any) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content) if result is not None else "no result"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def _profile_calls(base_url: str, args: dict[str, Any], calls: int, work: Path) -> tuple[pstats.Stats, float]:
    """Profile ``calls`` calls after a warm-up; worker threads are born under the profiler."""
    from mcp import Client

    from mcp_images.server.build import create_server

    settings = bl.direct_settings(base_url, work)
    with ThreadProfiles() as profiles:
        async with Client(create_server(settings), cache=None) as client:
            for _ in range(3):
                await client.call_tool("generate_image", args)
            profiles.clear()
            t0 = time.perf_counter()
            for _ in range(calls):
                result = await client.call_tool("generate_image", args)
                assert not result.is_error, _text(result)
            took = time.perf_counter() - t0
            stats = profiles.stats()
    return stats, took


def call(calls: int) -> str:
    bl.say(f"call: cProfile of {calls} generate_image calls per case, in-process server, upstream in a subprocess")
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("sandbox placeholder, n=1", {"prompt": PROMPT, "size": "1024x1024"}, "sandbox"),
        ("sandbox placeholder, n=4", {"prompt": PROMPT, "size": "1024x1024", "n": 4}, "sandbox"),
        ("photo-like, n=1", {"prompt": PROMPT, "size": "1024x1024"}, "photo"),
    ]
    lines = ["## Per call: cProfile, main thread and worker threads merged (profiling inflates times)", ""]

    def idle(where: str) -> bool:  # waiting, not working: the event loop's poll, a worker's lock
        return "epoll" in where or "_thread.lock" in where or "select" in where

    async def one_case(label: str, args: dict[str, Any], url: str, tmp: Path) -> None:
        stats, took = await _profile_calls(url, args, calls, tmp / label.replace(" ", "_"))
        lines.extend(
            [
                f"### {label}: {took / calls * 1000:,.1f} ms per call under the profiler",
                "",
                "Top by self time, idle waits left out (in threads, self time includes waiting for the GIL):",
                "",
                _table(stats, "tottime", 18, calls, lambda w: not idle(w)),
                "",
                "mcp_images functions by cumulative time:",
                "",
                _table(stats, "cumtime", 16, calls, lambda w: w.startswith("mcp_images/")),
                "",
            ]
        )

    async def photo_case(label: str, args: dict[str, Any], tmp: Path) -> None:
        images = {"1024x1024": bl.photo_like_png(1024, 1024, 1)}
        async with bl.serve_app(bl.fixed_image_app(images)) as photo_url:
            await one_case(label, args, photo_url, tmp)

    # One event loop per case: anyio's worker threads belong to a loop, so each case's
    # workers are born under that case's profiler.
    with tempfile.TemporaryDirectory(prefix="mcp-images-prof-") as tmp, bl.sandbox_process() as sandbox:
        for label, args, upstream in cases:
            if upstream == "sandbox":
                anyio.run(one_case, label, args, sandbox.base_url, Path(tmp))
            else:
                anyio.run(photo_case, label, args, Path(tmp))
    return "\n".join(lines)


# --- memory of one photo-like call ------------------------------------------------------------


async def _memory_case(base_url: str, args: dict[str, Any], work: Path) -> list[str]:
    from mcp import Client

    from mcp_images.server.build import create_server

    settings = bl.direct_settings(base_url, work)
    async with Client(create_server(settings), cache=None) as client:
        await client.call_tool("generate_image", args)  # imports and pools are made once
        await client.call_tool("generate_image", args)
        rss0 = bl.proc_memory()["VmRSS"]
        reset = bl.reset_peak(int(Path("/proc/self").resolve().name))
        tracemalloc.start(12)
        best: list[Any] = [0, None]
        stop = anyio.Event()

        async def sample() -> None:
            # Snapshots near the traced peak: a snapshot whenever traced memory reaches a new high.
            while not stop.is_set():
                current, _ = tracemalloc.get_traced_memory()
                if current > best[0] + 256 * 1024:
                    best[0], best[1] = current, tracemalloc.take_snapshot()
                await anyio.sleep(0.0005)

        result = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            result = await client.call_tool("generate_image", args)
            stop.set()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert result is not None and not result.is_error, _text(result)
        hwm = bl.proc_memory()["VmHWM"]
    lines = [
        f"- Python-level allocations (tracemalloc) peaked at {peak / bl.MIB:,.1f} MiB above the start of tracing "
        "(Pillow's pixel buffers are not traced);",
        f"- RSS of this process (server, client and upstream together) rose from {rss0 / bl.MIB:,.1f} MiB to a "
        f"peak of {hwm / bl.MIB:,.1f} MiB{'' if reset else ' (peak not resettable: since start)'}",
        "",
    ]
    if best[1] is not None:
        top = best[1].statistics("traceback")[:8]
        rows = []
        for stat in top:
            frames = [f"{_short(f.filename)}:{f.lineno}" for f in stat.traceback if "mcp_images" in f.filename]
            where = frames[-1] if frames else f"{_short(stat.traceback[-1].filename)}:{stat.traceback[-1].lineno}"
            origin = f"{_short(stat.traceback[-1].filename)}:{stat.traceback[-1].lineno}"
            rows.append([f"{stat.size / bl.MIB:,.2f}", where, origin])
        lines += [
            f"Largest live allocations in the highest sampled snapshot ({best[0] / bl.MIB:,.1f} MiB traced):",
            "",
            bl.markdown_table(["MiB", "innermost mcp_images frame", "allocated at"], rows),
            "",
        ]
    return lines


MALLOC_VARIANTS: list[tuple[str, dict[str, str]]] = [
    ("as shipped", {}),
    ("MALLOC_MMAP_THRESHOLD_=131072 (= mallopt(M_MMAP_THRESHOLD, 128 KiB))", {"MALLOC_MMAP_THRESHOLD_": "131072"}),
    ("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"}),
    ("MCP_IMAGES_INLINE=none (no previews: what previews cost)", {"MCP_IMAGES_INLINE": "none"}),
]


async def _stdio_peaks(env: dict[str, str], work: Path, calls: int) -> tuple[int, list[int], int]:
    """RSS after start-up, VmHWM after each generate_image call, RSS at the end (stdio server)."""
    from mcp import Client

    async with Client(bl.server_params(env, work), mode="legacy", cache=None) as client:
        await client.list_tools()
        pid = bl.find_child("mcp_images", "serve")
        start = bl.proc_memory(pid)["VmRSS"]
        peaks = []
        for i in range(calls):
            result = await client.call_tool("generate_image", {"prompt": f"{PROMPT} {i}", "size": "1024x1024"})
            assert not result.is_error, _text(result)
            peaks.append(bl.proc_memory(pid)["VmHWM"])
        return start, peaks, bl.proc_memory(pid)["VmRSS"]


def memory() -> str:
    bl.say("memory: tracemalloc of one call (in-process), then peak RSS of a stdio server per malloc setting")
    lines = ["## Memory", "", "### Allocation sites of one call (in-process, tracemalloc)", ""]

    async def traced() -> None:
        with tempfile.TemporaryDirectory(prefix="mcp-images-mem-") as tmp:
            images = {"1024x1024": bl.photo_like_png(1024, 1024, 1), "1536x1024": bl.photo_like_png(1536, 1024, 2)}
            async with bl.serve_app(bl.fixed_image_app(images)) as url:
                for label, args in (
                    ("photo-like 1024x1024, n=1", {"prompt": PROMPT, "size": "1024x1024"}),
                    ("photo-like 1536x1024, n=10", {"prompt": PROMPT, "size": "1536x1024", "n": 10}),
                ):
                    lines.extend([f"#### {label}", ""])
                    lines.extend(await _memory_case(url, args, Path(tmp) / label[:12].replace(" ", "_")))

    async def peaks() -> None:
        with tempfile.TemporaryDirectory(prefix="mcp-images-rss-") as tmp:
            images = {"1024x1024": bl.photo_like_png(1024, 1024, 4)}
            rows = []
            async with bl.serve_app(bl.fixed_image_app(images)) as url:
                for i, (label, extra) in enumerate(MALLOC_VARIANTS):
                    env = bl.server_env(url, Path(tmp) / f"v{i}", **extra)
                    start, highs, end = await _stdio_peaks(env, Path(tmp), 5)
                    rows.append(
                        [
                            label,
                            f"{start / 1e6:,.1f}",
                            " / ".join(f"{h / 1e6:,.1f}" for h in highs),
                            f"{end / 1e6:,.1f}",
                        ]
                    )
        lines.extend(
            [
                "### Peak RSS of a stdio server over five photo-like 1024x1024 generations, by malloc setting",
                "",
                bl.markdown_table(
                    ["server", "RSS after start (MB)", "VmHWM after each call (MB)", "RSS at end (MB)"], rows
                ),
                "",
            ]
        )

    anyio.run(traced)
    anyio.run(peaks)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="Profile evidence for the mcp-images benchmarks.")
    parser.add_argument("what", choices=["startup", "call", "memory", "all"])
    parser.add_argument("--runs", type=int, default=5, help="importtime runs (startup)")
    parser.add_argument("--spawns", type=int, default=10, help="spawns per variant (startup)")
    parser.add_argument("--calls", type=int, default=15, help="profiled calls per case (call)")
    ns = parser.parse_args()
    parts = ["# mcp-images profile", "", *bl.machine_lines(["benchmarks/profile_hotspots.py", ns.what]), ""]
    if ns.what in ("startup", "all"):
        parts.append(startup(ns.runs))
        parts.append(spawn_experiment(ns.spawns))
    if ns.what in ("call", "all"):
        parts.append(call(ns.calls))
    if ns.what in ("memory", "all"):
        parts.append(memory())
    text = "\n".join(parts)
    print(text)
    bl.save_report(f"profile-{ns.what}.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
