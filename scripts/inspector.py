"""The official MCP Inspector CLI against this server, over stdio and over HTTP, with the sandbox.

Run by ``.ci/run`` (not by pytest): ``uv run --frozen python scripts/inspector.py``. Needs Node
and npx; the Inspector comes from the npm registry at the version pinned below (the first run
downloads it, ~40 s; later runs use npm's cache). For each transport it lists the tools,
calls every one (generate_image at quality low, estimate_cost, an async generate_image and
check_task on its task, edit_image on the generated image), lists the resource templates and
reads the generated image's ``images://`` link. Any step that fails stops the run, exit 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"  # checked with `--cli --help`; runs on Node 20 and 22
STEP_TIMEOUT = 240.0  # seconds for one Inspector run; the first one downloads the package
START_TIMEOUT = 30.0
TOOLS = {"generate_image", "edit_image", "check_task", "estimate_cost"}
ROOT = Path(__file__).resolve().parents[1]


class Failed(Exception):
    """A step did not give what it should."""


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def wait_for_line(path: Path, prefix: str, proc: subprocess.Popen[bytes]) -> str:
    """The rest of the first line of ``path`` (a process's log) that contains ``prefix``."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if prefix in line:
                return line.split(prefix, 1)[1].strip()
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise Failed(f"no {prefix!r} line; log:\n{path.read_text(errors='replace')}")


def start(args: list[str], env: dict[str, str], log: Path, ready: str) -> tuple[subprocess.Popen[bytes], str]:
    handle = log.open("wb")
    proc = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    return proc, wait_for_line(log, ready, proc)


class Inspector:
    """Runs ``npx <inspector> --cli`` against one target; each call returns its ``result``."""

    def __init__(self, target: list[str], env: dict[str, str]) -> None:
        self.target = target
        self.env = env

    def __call__(self, method: str, *options: str, tool_args: dict[str, Any] | None = None) -> Any:
        npx = shutil.which("npx")
        if npx is None:
            raise Failed("npx is not installed: install Node.js (apt-get install -y nodejs npm)")
        args = [npx, "-y", INSPECTOR, "--cli", "--format", "json", "--method", method, *options]
        if tool_args is not None:
            args += ["--tool-args-json", json.dumps(tool_args)]
        done = subprocess.run(
            [*args, *self.target], env=self.env, capture_output=True, timeout=STEP_TIMEOUT, check=False
        )
        try:
            answer = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise Failed(
                f"{method}: exit {done.returncode}, not JSON:\n{done.stdout[:800]!r}\n{done.stderr[-2000:]!r}"
            ) from None
        if "result" not in answer:
            raise Failed(f"{method}: exit {done.returncode}: {json.dumps(answer)[:1500]}")
        return answer["result"]

    def tool(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = self("tools/call", "--tool-name", name, tool_args=arguments)
        if result.get("isError"):
            raise Failed(f"{name} {arguments}: tool error {result.get('structuredContent')}")
        return result["structuredContent"]


def suite(label: str, run: Inspector, *, stdio: bool) -> None:
    """Every tool and the resource, through the Inspector; one line each."""

    def step(name: str, body: Callable[[], str]) -> None:
        t0 = time.monotonic()
        detail = body()
        say(f"{label:<5}  {name:<28} ok  {time.monotonic() - t0:5.1f} s  {detail}")

    state: dict[str, Any] = {}

    def tools_list() -> str:
        names = {t["name"] for t in run("tools/list")["tools"]}
        if not names >= TOOLS:
            raise Failed(f"tools/list: missing {sorted(TOOLS - names)}")
        return ", ".join(sorted(names))

    def generate() -> str:
        result = run.tool("generate_image", {"prompt": "a lighthouse at dawn", "quality": "low"})
        image = result["images"][0]
        state["uri"], state["task_id"] = image["uri"], result["task_id"]
        return f"{image['uri']} {image['width']}x{image['height']}"

    def estimate() -> str:
        cost = run.tool("estimate_cost", {"prompt": "a city at night", "n": 2, "quality": "high", "size": "1024x1024"})
        return f"${cost['total_usd']} for n=2"

    def background() -> str:
        # Each Inspector CLI run starts its own stdio server, and a background job stops with
        # the server that runs it: over stdio, check_task collects the finished generation's
        # task instead; over HTTP the server stays, so an async job is started and collected.
        task_id = state["task_id"]
        if not stdio:
            started = run.tool("generate_image", {"prompt": "a cathedral", "quality": "low", "async": True})
            task_id = started["task_id"]
        done = run.tool("check_task", {"task_id": task_id, "wait_seconds": 30})
        if done.get("status") != "succeeded" or not done.get("images"):
            raise Failed(f"check_task: {done}")
        return f"{task_id} {done['status']}"

    def edit() -> str:
        image = run.tool("edit_image", {"prompt": "add a red boat", "image": state["uri"], "quality": "low"})["images"][
            0
        ]
        return f"{state['uri']} -> {image['uri']}"

    def templates() -> str:
        found = [t["uriTemplate"] for t in run("resources/templates/list")["resourceTemplates"]]
        if "images://{image_id}" not in found:
            raise Failed(f"resources/templates/list: {found}")
        return ", ".join(found)

    def read() -> str:
        contents = run("resources/read", "--uri", state["uri"])["contents"][0]
        if contents.get("mimeType") != "image/png" or not contents.get("blob"):
            raise Failed(f"resources/read: {str(contents)[:300]}")
        return f"{contents['mimeType']}, {len(contents['blob']):,} base64 chars"

    for name, body in [
        ("tools/list", tools_list),
        ("generate_image (low)", generate),
        ("estimate_cost", estimate),
        ("check_task" if stdio else "generate_image async+check", background),
        ("edit_image", edit),
        ("resources/templates/list", templates),
        ("resources/read images://", read),
    ]:
        step(name, body)


def server_env(tmp: Path, base_url: str, label: str) -> dict[str, str]:
    return {
        "MCP_IMAGES_BASE_URL": base_url,
        "MCP_IMAGES_API_KEY": "sandbox-inspector-key",
        "MCP_IMAGES_PROVIDER": "compatible",
        "MCP_IMAGES_OUTPUT_DIR": str(tmp / label / "out"),
        "MCP_IMAGES_DATA_DIR": str(tmp / label / "data"),
        "MCP_IMAGES_LOG_LEVEL": "WARNING",
    }


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="mcp-images-inspector-"))
    home = Path.home()
    # The Inspector keeps a catalog in ~/.mcp-inspector: give it a home of its own; npm's
    # download cache stays where it is, so later runs start in seconds.
    node_env = {
        **os.environ,
        "HOME": str(tmp / "home"),
        "npm_config_cache": os.environ.get("npm_config_cache", str(home / ".npm")),  # noqa: SIM112 - npm's own spelling
    }
    node_env |= {"npm_config_update_notifier": "false", "MCP_CATALOG_PATH": str(tmp / "catalog.json")}
    (tmp / "home").mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sandbox, base_url = start(
            [sys.executable, "-m", "mcp_images", "sandbox", "--port", "0"],
            dict(os.environ),
            tmp / "sandbox.log",
            "sandbox listening on ",
        )
        procs.append(sandbox)
        say(f"inspector {INSPECTOR}; sandbox upstream at {base_url}")
        stdio_env = server_env(tmp, base_url, "stdio")
        flags = [arg for name, value in stdio_env.items() for arg in ("-e", f"{name}={value}")]
        suite("stdio", Inspector([*flags, "--", sys.executable, "-m", "mcp_images"], node_env), stdio=True)
        http_env = {**os.environ, **server_env(tmp, base_url, "http"), "MCP_IMAGES_LOG_LEVEL": "INFO"}
        args = [sys.executable, "-m", "mcp_images", "--transport", "http", "--port", "0"]
        http, url = start(args, http_env, tmp / "http.log", "serving streamable HTTP at ")
        procs.append(http)
        suite("http", Inspector(["--transport", "http", "--server-url", url], node_env), stdio=False)
    except (Failed, subprocess.TimeoutExpired) as exc:
        say(f"inspector: FAILED: {exc}")
        return 1
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    say("inspector: every tool and the images:// resource answered over stdio and HTTP")
    return 0


if __name__ == "__main__":
    sys.exit(main())
