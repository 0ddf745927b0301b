"""Many replicas behind a real proxy (issue 12): throughput, latency, loss, database round trips.

    uv run python benchmarks/replicas.py [--tasks 300] [--latency 1] [--replicas 3] [--photo]

Everything is a process of its own, on loopback:

- PostgreSQL: `.ci/services.sh start` with ``pg_stat_statements`` loaded (or ``--database-url``);
  each run in a schema of its own;
- the S3 API: moto's server (``python -m moto.server``), one bucket, a prefix per run;
- the upstream: a fixed-answer images API (this script with ``--upstream``) that sleeps
  ``--latency`` seconds per request and answers a pre-rendered PNG; it counts requests per prompt;
- the replicas: ``uv run --frozen mcp-images --transport http --port N --stateless`` with
  MCP_IMAGES_DATABASE_URL, MCP_IMAGES_STORAGE_URL and a static token set;
- HAProxy (Debian's package): round robin, no session affinity, ``/readyz`` health checks,
  ``option http-server-close`` (a fresh connection to a replica per request: uvicorn closes an
  idle keep-alive connection after 5 s, and a request sent on it just then is answered by nothing).

Run 1: ``--tasks`` async ``generate_image`` calls at once through the proxy, each collected with
``check_task`` (long polls) through the proxy. Run 2: the same, and one replica is killed with
SIGKILL once half of the task ids are handed out; the survivors fail its unfinished tasks once its
lease lapses (120 s). Figures: wall time, p50/p99 submit-to-result, errors, duplicate or lost
tasks (ids, the upstream's count per prompt, the task rows), and database round trips per task
(``pg_stat_statements`` calls: asyncpg's four-statement pool reset counted as the one round trip
it is, the proxy's ``/readyz`` ``SELECT 1`` left out). Writes benchmarks/results/replicas.md too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import benchlib as bl

TOKEN = f"bench-token-{secrets.token_hex(8)}"
BUCKET = "bench-images"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "bench-access-key",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
    "AWS_REGION": "us-east-1",
}
CHECK_WAIT_SECONDS = 50  # check_task's longest long poll
CHECK_RETRIES = 20  # transport failures of one check_task (a killed replica's streams) before giving up
KILL_DEADLINE_SECONDS = 240.0  # after the kill: the 120 s lease, a 10 s sweep, and room
READY_TIMEOUT_SECONDS = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[Any], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


def stop(proc: subprocess.Popen[Any]) -> None:
    bl.stop_process(proc, grace=15)


# --- the services ---------------------------------------------------------------------------


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    """The database URL: the given one, or a cluster of `.ci/services.sh` with pg_stat_statements."""
    if url:
        yield url
        return
    env = {**os.environ, "MCPI_PG_OPTIONS": "-c shared_preload_libraries=pg_stat_statements"}
    out = subprocess.run(
        ["bash", str(bl.REPO / ".ci" / "services.sh"), "start"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if x.startswith("export "))
    found = dict(part.split("=", 1) for part in line[len("export ") :].split())
    found = {k: v.strip("'") for k, v in found.items()}
    try:
        yield found["MCPI_TEST_DATABASE_URL"]
    finally:
        subprocess.run(["bash", str(bl.REPO / ".ci" / "services.sh"), "stop"], env={**os.environ, **found}, check=False)


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, proc, "moto's S3 server")
        endpoint = f"http://127.0.0.1:{port}"
        import boto3

        boto3.client("s3", endpoint_url=endpoint, **_boto_keys()).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        stop(proc)


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": AWS_ENV["AWS_REGION"],
    }


@contextlib.contextmanager
def upstream(latency: float, png: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--upstream", str(port), str(latency), str(png)])
    try:
        wait_port(port, proc, "the fixed-answer upstream")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def upstream_main(port: int, latency: float, png: Path) -> None:
    """A fixed-answer images API: every generation sleeps ``latency`` s, then answers ``png``."""
    import base64
    from collections import Counter

    import anyio
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    answer = json.dumps({
        "created": int(time.time()), "background": "opaque", "output_format": "png", "quality": "medium",
        "size": "1024x1024", "data": [{"b64_json": base64.b64encode(png.read_bytes()).decode()}],
        "usage": {"input_tokens": 20, "input_tokens_details": {"text_tokens": 20, "image_tokens": 0},
                  "output_tokens": 1056, "total_tokens": 1076},
    }).encode()  # fmt: skip
    prompts: Counter[str] = Counter()

    async def generations(request: Request) -> Response:
        prompts[(await request.json()).get("prompt", "")] += 1
        await anyio.sleep(latency)
        return Response(answer, media_type="application/json")

    async def stats(_: Request) -> JSONResponse:
        return JSONResponse(dict(prompts))

    app = Starlette(routes=[Route("/v1/images/generations", generations, methods=["POST"]), Route("/stats", stats)])
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=4096)


@dataclass
class Replica:
    port: int
    proc: subprocess.Popen[Any]  # `uv run`; the server is its child
    server_pid: int = 0


@contextlib.contextmanager
def replicas(count: int, work: Path, urls: dict[str, str]) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    work.mkdir(parents=True, exist_ok=True)
    try:
        for n in range(count):
            port = free_port()
            env = {
                **os.environ, **AWS_ENV, **urls,
                "MCP_IMAGES_API_KEY": "sk-bench-0123456789", "MCP_IMAGES_PROVIDER": "compatible",
                "MCP_IMAGES_OUTPUT_DIR": str(work / f"replica-{n}" / "out"),
                "MCP_IMAGES_DATA_DIR": str(work / f"replica-{n}" / "data"),
                "MCP_IMAGES_HTTP_TOKENS": f"bench:{TOKEN}",
                "MCP_IMAGES_HTTP_MAX_CALLS_PER_IDENTITY": "10000", "MCP_IMAGES_HTTP_MAX_CALLS": "10000",
                "MCP_IMAGES_LOG_LEVEL": "WARNING",
            }  # fmt: skip
            log = (work / f"replica-{n}.log").open("w")
            cmd = ["uv", "run", "--frozen", "mcp-images", "--transport", "http", "--port", str(port), "--stateless"]
            started.append(Replica(port, subprocess.Popen(cmd, env=env, cwd=bl.REPO, stdout=log, stderr=log)))
        for replica in started:
            wait_ready(f"http://127.0.0.1:{replica.port}", replica.proc)
            replica.server_pid = server_pid(replica.proc.pid)
        yield started
    finally:
        for replica in started:
            stop(replica.proc)
            with contextlib.suppress(ProcessLookupError):
                if replica.server_pid:
                    os.kill(replica.server_pid, signal.SIGTERM)


def server_pid(uv_pid: int) -> int:
    """The server's own pid: ``uv run``'s child (or uv's own pid, had it exec'd the server)."""
    for pid in bl.child_pids(uv_pid):
        with contextlib.suppress(OSError):
            if b"mcp-images" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    return uv_pid


def wait_ready(base: str, proc: subprocess.Popen[Any] | None = None) -> None:
    import httpx2

    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the replica behind {base} exited with {proc.returncode}")
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{base}/readyz never said ready")


@contextlib.contextmanager
def haproxy(ports: list[int], work: Path) -> Iterator[str]:
    if shutil.which("haproxy") is None:
        raise SystemExit("haproxy is not installed: apt-get install -y haproxy")
    port = free_port()
    servers = "\n".join(f"    server r{n} 127.0.0.1:{p} check" for n, p in enumerate(ports))
    config = work / "haproxy.cfg"
    config.write_text(f"""global
    maxconn 8192
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch
    option http-server-close
frontend mcp
    bind 127.0.0.1:{port}
    maxconn 8192
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 3 rise 2 maxconn 4096
{servers}
""")
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc, "haproxy")
        wait_ready(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


# --- the database's side --------------------------------------------------------------------


async def new_schema(url: str, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
    finally:
        await conn.close()
    return f"{url}{'&' if '?' in url else '?'}search_path={name}"


async def statements(url: str, *, reset: bool = False) -> tuple[int, list[tuple[int, str]]] | None:
    """Statements executed since the last reset (total, top ten), or None without pg_stat_statements."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        if reset:
            await conn.execute("SELECT public.pg_stat_statements_reset()")
            return 0, []
        rows = await conn.fetch(
            "SELECT calls, query FROM public.pg_stat_statements WHERE dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) AND query NOT ILIKE "
            "'%pg_stat_statements%' ORDER BY calls DESC"
        )
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()
    return round_trips(rows), [(r["calls"], " ".join(r["query"].split())[:90]) for r in rows[:12]]


POOL_RESET = ("SELECT pg_advisory_unlock_all()", "CLOSE ALL", "UNLISTEN *", "RESET ALL")  # asyncpg, one message


def round_trips(rows: list[Any]) -> int:
    """Round trips of the task work: every statement, asyncpg's four-statement reset on each
    release to the pool counted once (one simple-query message), the health checks' SELECT 1 left out."""
    calls = {" ".join(r["query"].split()): r["calls"] for r in rows}
    resets = max((calls.get(q, 0) for q in POOL_RESET), default=0)
    skipped = sum(calls.get(q, 0) for q in POOL_RESET) + calls.get("SELECT 1", 0)
    return sum(calls.values()) - skipped + resets


async def task_rows(url: str) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch("SELECT id, status, args FROM mcp_images_tasks"))
    finally:
        await conn.close()


# --- the load -------------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    tasks: int
    submitted: dict[int, str] = field(default_factory=dict)  # task number -> id
    submit_errors: list[str] = field(default_factory=list)
    done_at: dict[str, float] = field(default_factory=dict)  # id -> seconds from its submit
    failed: dict[str, str] = field(default_factory=dict)  # id -> reason
    images: dict[str, str] = field(default_factory=dict)  # id -> images:// uri
    check_retries: int = 0
    last_submit: float = 0.0  # seconds from the start until the last task id was handed out
    given_up: list[str] = field(default_factory=list)
    wall: float = 0.0
    killed_at: float | None = None
    done_before_kill: set[str] = field(default_factory=set)


async def call(http: Any, url: str, tool: str, arguments: dict[str, Any]) -> Any:
    """One tool call over its own 2026-07-28 client (no handshake): a transport failure ends
    this call only (the SDK's client fails as a whole on one), over the shared connection pool."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    transport = streamable_http_client(url, http_client=http, terminate_on_close=False)
    async with Client(transport, mode="2026-07-28") as client:
        return await client.call_tool(tool, arguments)


async def one_task(client: Any, run: Run, n: int, t_start: float, deadline: float) -> None:
    http, url = client
    t0 = time.perf_counter()
    try:
        started = await call(http, url, "generate_image", {"prompt": f"{run.name} task {n}", "async": True})
    except Exception as exc:  # a proxy or transport failure: whether a task exists is unknown
        run.submit_errors.append(f"{type(exc).__name__}: {exc}"[:200])
        return
    sc = started.structured_content or {}
    if started.is_error or "task_id" not in sc:
        run.submit_errors.append(str(sc.get("error", sc))[:200])
        return
    task_id = sc["task_id"]
    run.submitted[n] = task_id
    run.last_submit = max(run.last_submit, time.perf_counter() - t_start)
    retries = 0
    while time.perf_counter() < deadline:
        try:
            result = await call(http, url, "check_task", {"task_id": task_id, "wait_seconds": CHECK_WAIT_SECONDS})
        except Exception:
            retries += 1
            run.check_retries += 1
            if retries > CHECK_RETRIES:
                break
            import anyio

            await anyio.sleep(0.5)  # the proxy notices the dead replica; then ask again
            continue
        sc = result.structured_content or {}
        status = sc.get("status") or (sc.get("error") or {}).get("status")
        if status == "succeeded":
            run.done_at[task_id] = time.perf_counter() - t0
            run.images[task_id] = sc["images"][0]["uri"]
            return
        if status in ("failed", "cancelled"):
            run.failed[task_id] = str((sc.get("error") or {}).get("message", sc))[:160]
            return
    run.given_up.append(task_id)


async def load(proxy: str, run: Run, kill: Replica | None) -> None:
    import anyio
    import httpx2

    limits = httpx2.Limits(max_connections=run.tasks * 2 + 50, max_keepalive_connections=run.tasks * 2 + 50)
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120, limits=limits)
    t_start = time.perf_counter()
    deadline = t_start + (KILL_DEADLINE_SECONDS + 60 if kill else 300)
    async with http, anyio.create_task_group() as tg:
        for n in range(run.tasks):
            tg.start_soon(one_task, (http, f"{proxy}/mcp"), run, n, t_start, deadline)
        if kill is not None:
            while len(run.submitted) < run.tasks // 2:  # the kill lands among tasks still running
                await anyio.sleep(0.01)
            run.done_before_kill = set(run.done_at)
            os.kill(kill.server_pid, signal.SIGKILL)
            run.killed_at = time.perf_counter() - t_start
            bl.say(f"  killed replica :{kill.port} (pid {kill.server_pid}) at {run.killed_at:.2f} s")
    run.wall = time.perf_counter() - t_start


async def recheck(proxy: str, ids: set[str], images: dict[str, str]) -> int:
    """Of the tasks finished before the kill, how many no longer answer with the same image."""
    import anyio
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    lost = 0
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    transport = streamable_http_client(f"{proxy}/mcp", http_client=http, terminate_on_close=False)
    async with http, Client(transport, mode="2026-07-28") as client:
        limiter = anyio.Semaphore(50)

        async def one(task_id: str) -> None:
            nonlocal lost
            async with limiter:
                result = await client.call_tool("check_task", {"task_id": task_id})
            sc = result.structured_content or {}
            if sc.get("status") != "succeeded" or sc["images"][0]["uri"] != images[task_id]:
                lost += 1

        async with anyio.create_task_group() as tg:
            for task_id in ids:
                tg.start_soon(one, task_id)
    return lost


def s3_objects(endpoint: str, prefix: str) -> int:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, **_boto_keys())
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        count += len(page.get("Contents", []))
    return count


def upstream_counts(base: str) -> dict[str, int]:
    import httpx2

    return httpx2.get(f"{base}/stats", timeout=10).json()


# --- one run, start to end ------------------------------------------------------------------


async def one_run(name: str, args: argparse.Namespace, pg: str, s3: str, up: str, work: Path, *, kill: bool) -> dict:
    db = await new_schema(pg, name)
    urls = {"MCP_IMAGES_DATABASE_URL": db, "MCP_IMAGES_STORAGE_URL": f"s3://{BUCKET}/{name}",
            "AWS_ENDPOINT_URL": s3, "MCP_IMAGES_BASE_URL": f"{up}/v1"}  # fmt: skip
    run = Run(name, args.tasks)
    with replicas(args.replicas, work / name, urls) as started, haproxy([r.port for r in started], work / name) as px:
        bl.say(f"{name}: {args.replicas} replicas behind haproxy {px}; {args.tasks} tasks")
        await statements(pg, reset=True)
        await load(px, run, started[-1] if kill else None)
        stats = await statements(pg)
        lost_after_kill = await recheck(px, run.done_before_kill, run.images) if kill else 0
    rows = await task_rows(db)
    prompts = upstream_counts(up)
    mine = {p: c for p, c in prompts.items() if p.startswith(f"{name} task ")}
    ids = list(run.submitted.values())
    finished = set(run.done_at) | set(run.failed)
    row_status = {r["id"]: r["status"] for r in rows}
    durations = sorted(run.done_at.values())
    return {
        "run": run,
        "stats": stats,
        "p50": bl.median(durations) if durations else float("nan"),
        "p99": durations[min(len(durations) - 1, int(0.99 * len(durations)))] if durations else float("nan"),
        "duplicate_ids": len(ids) - len(set(ids)),
        "duplicate_runs": sum(c - 1 for c in mine.values() if c > 1),
        "extra_rows": len(rows) - len(set(ids)),
        "lost": len([i for i in ids if i not in finished or row_status.get(i) not in ("succeeded", "failed")]),
        "lost_after_kill": lost_after_kill,
        "s3_objects": s3_objects(s3, f"{name}/"),
        "upstream_requests": sum(mine.values()),
    }


def report_rows(results: list[dict]) -> list[list[str]]:
    rows = []
    for r in results:
        run: Run = r["run"]
        stats = r["stats"]
        trips = f"{stats[0] / max(run.tasks, 1):.1f}" if stats else "n/a"
        kill = f"at {run.killed_at:.1f} s, {len(run.done_before_kill)} done before" if run.killed_at else "-"
        reasons = sorted({v.split(";")[0][:60] for v in run.failed.values()})
        rows.append([
            run.name, kill, f"{run.wall:.2f} s", f"{r['p50']:.2f} s", f"{r['p99']:.2f} s",
            f"{len(run.done_at)} / {len(run.failed)}" + (f" ({'; '.join(reasons)})" if reasons else ""),
            str(len(run.submit_errors) + len(run.given_up)),
            f"{r['duplicate_ids'] + r['duplicate_runs'] + max(r['extra_rows'], 0)} / {r['lost']}"
            + (f" ({r['lost_after_kill']} of those done before the kill)" if run.killed_at else ""),
            trips, str(r["s3_objects"]),
        ])  # fmt: skip
    return rows


HEADER = ["run", "kill", "wall", "p50 submit→result", "p99", "succeeded / failed", "errors",
          "duplicate / lost", "DB round trips per task", "images in S3"]  # fmt: skip


async def main_async(args: argparse.Namespace) -> None:
    from PIL import Image

    work = Path(tempfile.mkdtemp(prefix="mcpi-replicas-"))
    png = work / "answer.png"
    if args.photo:
        png.write_bytes(bl.photo_like_png(1024, 1024))
    else:
        Image.linear_gradient("L").resize((1024, 1024)).convert("RGB").save(png, "PNG")
    with postgres(args.database_url) as pg, s3_server() as s3, upstream(args.latency, png) as up:
        results = [await one_run("steady", args, pg, s3, up, work, kill=False)]
        if not args.no_kill:
            results.append(await one_run("killed", args, pg, s3, up, work, kill=True))
    lines = [
        f"# {args.replicas} stateless replicas behind HAProxy: {args.tasks} async generate_image, {args.latency:g} s upstream",
        "", *bl.machine_lines(sys.argv), "",
        bl.markdown_table(HEADER, report_rows(results)), "",
    ]  # fmt: skip
    for r in results:
        run: Run = r["run"]
        lines.append(f"- {run.name}: the last task id was handed out {run.last_submit:.2f} s after the start; "
                     f"{r['upstream_requests']} upstream requests for {len(run.submitted)} tasks; "
                     f"{run.check_retries} check_task calls retried after a transport error; "
                     f"submit errors {run.submit_errors[:3]}; given up {len(run.given_up)}")  # fmt: skip
        if r["stats"]:
            lines += [f"  - {calls:>6} x {query}" for calls, query in r["stats"][1]]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    bl.say(f"written to {bl.save_report('replicas.md', text)}")
    if args.keep:
        bl.say(f"logs and configuration kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if sys.argv[1:2] == ["--upstream"]:
        upstream_main(int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description="Many replicas behind a real proxy (issue 12).")
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--latency", type=float, default=1.0, help="seconds the upstream takes per image")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--photo", action="store_true", help="a photo-like 2 MB PNG (default: a 1024x1024 gradient)")
    parser.add_argument("--keep", action="store_true", help="keep the replicas' logs and HAProxy's configuration")
    parser.add_argument("--no-kill", action="store_true", help="skip the run with a replica killed")
    parser.add_argument("--database-url", help="a PostgreSQL to use (default: start one with .ci/services.sh)")
    import anyio

    anyio.run(main_async, parser.parse_args())


if __name__ == "__main__":
    main()
