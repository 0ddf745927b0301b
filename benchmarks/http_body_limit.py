"""What an oversized HTTP request costs the server: peak RSS for a refused 100 MB tools/call.

    uv run python benchmarks/http_body_limit.py [--size-mb 100] [--limits 80,128]

Issue 10 measured one ``tools/call`` with a 100 MB data URI taking the server from 74 MB to
883 MB resident although it was refused. For each body limit (MCP_IMAGES_HTTP_MAX_BODY_MB; 80
is the default, 128 the old fixed limit, so it shows the behaviour before the middleware),
this starts ``python -m mcp_images --transport http`` on a loopback port, opens a session and
sends: the big call with a Content-Length (as an ordinary client does), the same chunked, and
a call just under the limit (accepted, then refused as no image: what a body the limit lets
through costs). Between cases the child's peak (VmHWM) is reset; the table shows the status,
the time to the answer, RSS before and the peak. Linux only (/proc). Writes
benchmarks/results/http-body-limit.md too.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import benchlib as bl
import httpx2

MIB = 1024 * 1024
START_TIMEOUT = 30.0  # seconds for the child to listen
CALL_TIMEOUT = 120.0  # seconds for one answer (an accepted 100 MB body takes a few)
CHUNK = 1 * MIB
PROTOCOL = "2025-06-18"


@dataclass
class Row:
    limit_mb: int
    case: str
    body_mb: float
    status: str
    seconds: float
    rss_before: int
    peak: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited at start-up")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the server did not listen in time")


def tool_call(size: int) -> bytes:
    """A JSON-RPC tools/call of edit_image whose data URI makes it ``size`` bytes long."""
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call"}
    call["params"] = {"name": "edit_image", "arguments": {"prompt": "x", "image": "data:image/png;base64,"}}
    text = json.dumps(call)
    return text.replace("base64,", "base64," + "A" * max(0, size - len(text)), 1).encode()


def open_session(client: httpx2.Client, url: str) -> dict[str, str]:
    """initialize + notifications/initialized; the headers later requests carry."""
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
    }
    answer = client.post(url, json=init)
    answer.raise_for_status()
    headers = {"mcp-session-id": answer.headers["mcp-session-id"], "mcp-protocol-version": PROTOCOL}
    client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    return headers


def chunks(body: bytes) -> Iterator[bytes]:
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]


def send(client: httpx2.Client, url: str, headers: dict[str, str], body: bytes, *, chunked: bool) -> str:
    """The HTTP status of one call, or why there was none (the server closed while we sent)."""
    content = chunks(body) if chunked else body
    try:
        return str(client.post(url, content=content, headers=headers).status_code)
    except httpx2.TransportError as exc:
        return f"closed ({type(exc).__name__})"


def measure(limit_mb: int, size_mb: int, workdir: Path) -> list[Row]:
    port = free_port()
    env = bl.server_env("http://127.0.0.1:9/v1", workdir, MCP_IMAGES_HTTP_MAX_BODY_MB=str(limit_mb))
    cmd = [sys.executable, "-m", "mcp_images", "--transport", "http", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        wait_listening(proc, port)
        url = f"http://127.0.0.1:{port}/mcp"
        base = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        with httpx2.Client(timeout=CALL_TIMEOUT, headers=base) as client:
            headers = open_session(client, url)
            cases = [
                (f"{size_mb} MB call, Content-Length", size_mb * MIB, False),
                (f"{size_mb} MB call, chunked", size_mb * MIB, True),
                ("call 1 MiB under the limit", (limit_mb - 1) * MIB, False),
            ]
            for name, size, chunked in cases:
                body = tool_call(size)
                time.sleep(0.5)  # let the last case's buffers go back before the next baseline
                before = bl.proc_memory(proc.pid).get("VmRSS", 0)
                bl.reset_peak(proc.pid)
                started = time.perf_counter()
                status = send(client, url, headers, body, chunked=chunked)
                seconds = time.perf_counter() - started
                peak = bl.proc_memory(proc.pid).get("VmHWM", 0)
                rows.append(Row(limit_mb, name, len(body) / MIB, status, seconds, before, peak))
                bl.say(f"limit {limit_mb} MiB, {name}: {status} in {seconds:.2f} s, peak {bl.mib(peak)}")
    finally:
        bl.stop_process(proc)
    return rows


def report(rows: list[Row], argv: list[str]) -> str:
    header = ["limit (MiB)", "case", "body (MiB)", "answer", "time", "RSS before", "peak RSS", "peak - before"]
    table = [
        [
            str(r.limit_mb),
            r.case,
            f"{r.body_mb:.1f}",
            r.status,
            f"{r.seconds:.2f} s",
            bl.mib(r.rss_before),
            bl.mib(r.peak),
            bl.mib(max(0, r.peak - r.rss_before)),
        ]
        for r in rows
    ]
    lines = ["# HTTP request body limit: server memory for an oversized call", "", *bl.machine_lines(argv), ""]
    return "\n".join([*lines, bl.markdown_table(header, table), ""])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100, help="size of the oversized call, MiB (default 100)")
    parser.add_argument("--limits", default="80,128", help="body limits to run with, MiB (default 80,128)")
    ns = parser.parse_args()
    rows: list[Row] = []
    for limit in (int(x) for x in ns.limits.split(",")):
        with tempfile.TemporaryDirectory(prefix="mcp-images-bench-") as tmp:
            rows += measure(limit, ns.size_mb, Path(tmp))
    text = report(rows, sys.argv)
    print(text)
    bl.say(f"written to {bl.save_report('http-body-limit.md', text)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
