"""Shared pieces of the benchmarks: the machine, statistics, tables, processes, memory, images.

Nothing here is imported by mcp_images. The scripts next to this file put this folder on
``sys.path`` (Python does that for the script's own folder), so ``import benchlib`` works from
``uv run python benchmarks/<script>.py`` in the repository root.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "benchmarks" / "results"
SANDBOX_READY_PREFIX = "sandbox listening on "
SANDBOX_START_TIMEOUT = 30.0
SANDBOX_KEY = "sk-benchmark-sandbox"
MIB = 1024 * 1024


# --- the machine and the command ------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_lines(argv: Sequence[str]) -> list[str]:
    """The header every report starts with: what ran, where, and when."""
    mem = _meminfo_total_mib()
    return [
        f"- command: `uv run python {' '.join(argv)}`",
        f"- machine: {cpu_model()}, {os.cpu_count()} logical cores"
        + (f", {mem:,} MiB RAM" if mem else "")
        + f", {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), {_versions()}",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average at the start: {load_average()}",
    ]


def _meminfo_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("mcp-images", "mcp", "pydantic", "httpx2", "pillow", "anyio"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


# --- statistics and tables ------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """(p25, p75); with fewer than two values, both are the value itself."""
    if len(values) < 2:
        v = values[0] if values else float("nan")
        return v, v
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def spread_ms(values: Sequence[float]) -> str:
    lo, hi = quartiles(values)
    return f"{median(values) * 1000:,.1f} ms (IQR {lo * 1000:,.0f}-{hi * 1000:,.0f})"


def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def mib(n: float) -> str:
    return f"{n / MIB:,.1f} MiB"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def met(ok: bool | None) -> str:
    return "-" if ok is None else ("yes" if ok else "**no**")


def save_report(name: str, text: str) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(text)
    return path


def say(line: str = "") -> None:
    """Progress goes to stderr, so stdout holds only the report."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


# --- memory of a process (Linux /proc) ------------------------------------------------------


def proc_memory(pid: int | str = "self") -> dict[str, int]:
    """VmRSS, VmHWM (peak RSS), RssAnon, RssFile of a process, in bytes (empty if gone)."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "VmPeak", "VmSize"):
            out[key] = int(value.split()[0]) * 1024
    return out


def proc_cpu_seconds(pid: int) -> float:
    """CPU time a live process has used so far, all threads, from /proc/<pid>/task/*/schedstat (ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(task.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def children_cpu_seconds() -> float:
    """User + system CPU of this process's finished (reaped) children so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def reset_peak(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux ``clear_refs`` 5); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_pids(parent: int | None = None) -> list[int]:
    """Direct children of ``parent`` (default: this process), by scanning /proc."""
    parent = os.getpid() if parent is None else parent
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def find_child(*needles: str, timeout: float = 10.0) -> int:
    """The pid of this process's child whose command line holds every needle.

    Raises:
        RuntimeError: no such child appeared within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in child_pids():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if all(n in cmdline for n in needles):
                return pid
        time.sleep(0.01)
    raise RuntimeError(f"no child process with {needles} in its command line")


# --- processes: the sandbox and the server --------------------------------------------------


@dataclass
class SandboxProcess:
    proc: subprocess.Popen[str]
    base_url: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)


def stop_process(proc: subprocess.Popen[Any], *, grace: float = 10.0) -> None:
    """Stop ``proc`` if it still runs: SIGTERM, ``grace`` seconds to exit, then SIGKILL."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def sandbox_process(latency: float = 0.0) -> Iterator[SandboxProcess]:
    """``mcp-images sandbox --port 0 --latency L`` as a subprocess; its base URL from line one.

    Raises:
        RuntimeError: it did not say where it listens within SANDBOX_START_TIMEOUT.
    """
    cmd = [sys.executable, "-m", "mcp_images", "sandbox", "--port", "0", "--latency", str(latency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    sandbox = None
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + SANDBOX_START_TIMEOUT
        while time.monotonic() < deadline and sandbox is None:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(SANDBOX_READY_PREFIX):
                sandbox = SandboxProcess(proc, line[len(SANDBOX_READY_PREFIX) :].strip())
        if sandbox is None:
            raise RuntimeError("the sandbox did not start (run `uv run mcp-images sandbox` to see why)")
        yield sandbox
    finally:
        stop_process(proc)


def server_env(base_url: str | None, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a server subprocess: sandbox upstream, private folders, quiet log."""
    env = {
        "MCP_IMAGES_API_KEY": SANDBOX_KEY,
        "MCP_IMAGES_PROVIDER": "compatible",
        "MCP_IMAGES_OUTPUT_DIR": str(workdir / "out"),
        "MCP_IMAGES_DATA_DIR": str(workdir / "data"),
        "MCP_IMAGES_LOG_LEVEL": "WARNING",
        **extra,
    }
    if base_url:
        env["MCP_IMAGES_BASE_URL"] = base_url
    return env


def server_params(env: dict[str, str], workdir: Path, argv: Sequence[str] | None = None) -> Any:
    """StdioServerParameters for ``python -m mcp_images serve`` (or ``argv``) run from ``workdir``.

    The working folder is a fresh one so that no ``.env`` file of the user's changes settings.
    """
    from mcp import StdioServerParameters

    args = list(argv) if argv is not None else ["-m", "mcp_images", "serve"]
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(workdir))


def direct_settings(base_url: str, workdir: Path, **kw: Any) -> Any:
    """Settings for an in-process server against ``base_url`` (no .env, private folders)."""
    from mcp_images.config import Settings

    values: dict[str, Any] = {
        "api_key": SANDBOX_KEY,
        "base_url": base_url,
        "provider": "compatible",
        "output_dir": workdir / "out",
        "data_dir": workdir / "data",
        "log_level": "WARNING",
        **kw,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# --- sizes of what travels ------------------------------------------------------------------


def wire_json(model: Any) -> bytes:
    """A result as the wire carries it: JSON by alias, without None fields."""
    return model.model_dump_json(by_alias=True, exclude_none=True).encode()


def image_bytes_in(result: Any) -> tuple[int, int]:
    """(sum of full-size file bytes, base64 chars of inline previews) of a tool result."""
    files = sum(int(i.get("bytes", 0)) for i in (result.structured_content or {}).get("images", []))
    inline = sum(len(b.data) for b in result.content if getattr(b, "type", "") == "image")
    return files, inline


# --- images that look like photographs ------------------------------------------------------


def photo_like_png(width: int, height: int, seed: int = 1) -> bytes:
    """A PNG that compresses like a photograph, unlike the sandbox's flat placeholders.

    Soft colour fields (a tiny random image scaled up), hard-edged shapes, mid-scale texture
    and sensor grain: the PNG lands near 2 bytes per pixel (2.14 MB at 1024x1024, 3.2 MB at
    1536x1024) and a JPEG at quality 80 near 0.17 bytes per pixel, as camera pictures and
    real model outputs do (a 1024x1024 gpt-image PNG is typically 1.3-2.5 MB).
    """
    from PIL import Image, ImageChops, ImageDraw, ImageFilter

    rng = random.Random(seed)

    def noise_rgb(w: int, h: int) -> Image.Image:
        return Image.frombytes("RGB", (w, h), rng.randbytes(w * h * 3))

    fields = noise_rgb(12, 8).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(fields)
    for _ in range(25):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(20, 200)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    fields = fields.filter(ImageFilter.GaussianBlur(2))
    texture = noise_rgb(max(width // 8, 1), max(height // 8, 1)).resize((width, height), Image.Resampling.BICUBIC)
    picture = Image.blend(fields, texture, 0.2)
    grain = Image.effect_noise((width, height), 7).convert("RGB")
    picture = ImageChops.add(picture, grain, scale=1.0, offset=-128)
    out = io.BytesIO()
    picture.save(out, "PNG")
    return out.getvalue()


def noisy_png_file(path: Path, target_bytes: int, seed: int) -> int:
    """Write an incompressible RGB PNG of about ``target_bytes``; return its size."""
    from PIL import Image

    side = int((target_bytes / 3) ** 0.5)
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    img.save(path, "PNG", compress_level=0)
    return path.stat().st_size


# --- a tiny upstream that answers with a given image ----------------------------------------


def fixed_image_app(images_by_size: dict[str, bytes], latency: float = 0.0) -> Any:
    """An OpenAI-images-style upstream whose generations are the given PNG (per size), n times.

    Used to measure results with realistic image content; it checks nothing. The last JSON
    body it received is ``app.state.last_body`` (a benchmark's floor re-sends it), the last
    answer ``app.state.last_answer``. ``latency``:
    seconds every answer waits, like a real model at work.
    """
    import base64

    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    encoded = {size: base64.b64encode(data).decode() for size, data in images_by_size.items()}
    answers: dict[tuple[str, int, str], bytes] = {}  # made once: the upstream's own work stays out of the figures

    def answer_for(size: str, n: int, quality: str) -> bytes:
        key = (size, n, quality)
        if key not in answers:
            answers[key] = _fixed_answer(encoded.get(size) or next(iter(encoded.values())), size, n, quality)
        return answers[key]

    async def generations(request: Request) -> Response:
        body = await request.json()
        request.app.state.last_body = body
        if latency:
            await anyio.sleep(latency)
        data = answer_for(body.get("size") or "1024x1024", int(body.get("n") or 1), body.get("quality") or "medium")
        request.app.state.last_answer = data
        return Response(data, media_type="application/json")

    app = Starlette(routes=[Route("/v1/images/generations", generations, methods=["POST"])])
    app.state.last_body = {}
    app.state.last_answer = b""
    return app


def _fixed_answer(b64: str, size: str, n: int, quality: str) -> bytes:
    answer = {
        "created": int(time.time()),
        "background": "opaque",
        "output_format": "png",
        "quality": quality,
        "size": size,
        "data": [{"b64_json": b64} for _ in range(n)],
        "usage": {
            "input_tokens": 20,
            "input_tokens_details": {"text_tokens": 20, "image_tokens": 0},
            "output_tokens": 1056 * n,
            "total_tokens": 20 + 1056 * n,
        },
    }
    return json.dumps(answer).encode()


@contextlib.asynccontextmanager
async def serve_app(app: Any, *, backlog: int = 128) -> AsyncIterator[str]:
    """Serve an ASGI app on a free loopback port in this event loop; yield its /v1 base URL."""
    import anyio
    import uvicorn

    class _Quiet(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # Ctrl-C stays the benchmark's
            yield

    from mcp_images.listening import listening_socket

    sock = listening_socket("127.0.0.1", 0, backlog=backlog)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, http="h11", lifespan="off", log_level="warning", access_log=False)
    server = _Quiet(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            server.should_exit = True
    sock.close()


@contextlib.contextmanager
def fixed_upstream_process(images_by_size: dict[str, bytes], workdir: Path, latency: float = 0.0) -> Iterator[Any]:
    """`fixed_image_app` served by a process of its own (``python benchmarks/benchlib.py
    --fixed-upstream``): many clients in this process then do not share an event loop with it.
    Yields an object with ``base_url`` and ``pid`` (its CPU: `proc_cpu_seconds`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    args = []
    for size, data in images_by_size.items():
        path = workdir / f"upstream-{size}.png"
        path.write_bytes(data)
        args += [size, str(path)]
    cmd = [sys.executable, str(Path(__file__)), "--fixed-upstream", str(latency), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith(SANDBOX_READY_PREFIX):
            raise RuntimeError("the fixed-answer upstream did not start")
        yield SandboxProcess(proc, line[len(SANDBOX_READY_PREFIX) :].strip())
    finally:
        stop_process(proc)


def _fixed_upstream_main(argv: list[str]) -> None:
    """``benchlib.py --fixed-upstream LATENCY SIZE PNG [SIZE PNG ...]``: serve until terminated."""
    import signal

    import anyio

    latency, pairs = float(argv[0]), argv[1:]
    images = {pairs[i]: Path(pairs[i + 1]).read_bytes() for i in range(0, len(pairs), 2)}
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))

    async def serve() -> None:
        async with serve_app(fixed_image_app(images, latency=latency), backlog=1024) as url:
            sys.stdout.write(f"{SANDBOX_READY_PREFIX}{url}\n")
            sys.stdout.flush()
            await anyio.sleep_forever()

    anyio.run(serve)


# --- timing ---------------------------------------------------------------------------------


async def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """(seconds, result) of awaiting ``fn()``."""
    t0 = time.perf_counter()
    out = await fn()
    return time.perf_counter() - t0, out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fixed-upstream"]:
        _fixed_upstream_main(sys.argv[2:])
