"""The people's commands: generate, edit, estimate and tasks, through the tools themselves.

A few run ``mcp-images`` as a subprocess (exit codes, plain lines in a pipe, ``--json``); the
rest run `cli.main` in a worker thread (it calls ``anyio.run`` itself) against the loopback
sandbox.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from mcp_images.catalog.parameters import params_of
from mcp_images.cli import build_parser, main
from mcp_images.console.display import Reporter
from mcp_images.console.flags import OMITTED, tool_arguments
from tests.conftest import TEST_KEY

ESC = "\x1b"


def env_for(tmp_path: Path, base_url: str, **extra: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "SYSTEMROOT")}
    return {
        **keep,
        "MCP_IMAGES_API_KEY": TEST_KEY,
        "MCP_IMAGES_BASE_URL": base_url,
        "MCP_IMAGES_PROVIDER": "compatible",
        "MCP_IMAGES_OUTPUT_DIR": str(tmp_path / "out"),
        "MCP_IMAGES_DATA_DIR": str(tmp_path / "data"),
        "MCP_IMAGES_MAX_RETRIES": "0",
        **extra,
    }


async def run_cli(tmp_path: Path, base_url: str, *args: str) -> Any:
    return await anyio.run_process(
        [sys.executable, "-m", "mcp_images", *args], env=env_for(tmp_path, base_url), cwd=tmp_path, check=False
    )


@pytest.fixture
def cli_env(tmp_path: Path, sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings for in-process runs: the sandbox, folders under tmp_path, no .env around."""
    for name in [n for n in os.environ if n.startswith(("MCP_IMAGES_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    for name, value in env_for(tmp_path, sandbox.base_url).items():
        if name.startswith("MCP_IMAGES_"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = await anyio.to_thread.run_sync(main, list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- as a subprocess ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_piped_generate_prints_the_saved_path_and_the_cost_in_plain_lines(tmp_path: Path, sandbox: Any) -> None:
    proc = await run_cli(tmp_path, sandbox.base_url, "generate", "a red fox", "--quality", "low")
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    path, cost = out.splitlines()
    assert Path(path).is_file() and Path(path).parent == tmp_path / "out"
    assert cost.startswith("cost: $")
    assert ESC not in out


@pytest.mark.anyio
async def test_a_refused_call_exits_2_with_the_structured_error_as_json(tmp_path: Path, sandbox: Any) -> None:
    args = ("generate", "two cats", "--model", "dall-e-3", "-n", "2", "--background", "transparent", "--json")
    proc = await run_cli(tmp_path, sandbox.base_url, *args)
    assert proc.returncode == 2
    error = json.loads(proc.stdout)["error"]
    assert error["type"] == "ValidationProblem"
    assert {p["field"] for p in error["problems"]} == {"n", "background"}
    assert not (tmp_path / "out").exists()


# --- the flags ----------------------------------------------------------------------------


def test_every_parameter_of_generate_image_has_a_flag_from_the_declaration() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    parser = sub.choices["generate"]  # type: ignore[union-attr]
    dests = {a.dest for a in parser._actions}
    for param in params_of("generate_image"):
        if param.name not in OMITTED and param.kind != "object":
            assert f"tool__{param.name}" in dests, param.name


def test_object_members_and_aliases_become_the_tool_arguments() -> None:
    ns = build_parser().parse_args(
        [
            "generate",
            "a logo",
            "--format",
            "svg",
            "--svg-model",
            "gpt-5",
            "--svg-effort",
            "low",
            "-n",
            "1",
            "--no-stream",
        ]
    )
    assert tool_arguments(ns) == {
        "prompt": "a logo",
        "output_format": "svg",
        "svg": {"model": "gpt-5", "reasoning": {"effort": "low"}},
        "n": 1,
        "stream": False,
    }


# --- in-process ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_generate_with_json_prints_the_tools_structured_content(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await run_main(capsys, "generate", "a lighthouse", "--quality", "low", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["status"] == "succeeded" and data["task_id"].startswith("task-")
    assert data["images"][0]["path"].startswith(str(cli_env / "out"))
    assert data["cost"]["total_usd"] > 0


@pytest.mark.anyio
async def test_streamed_partial_images_are_announced_with_their_paths(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("generate", "a koi pond", "--stream", "--partial-images", "2", "--quality", "low")
    code, out, err = await run_main(capsys, *args)
    assert code == 0
    partials = [line for line in err.splitlines() if line.startswith("partial image")]
    assert len(partials) == 2
    assert all(Path(line.split(": ", 1)[1]).is_file() for line in partials)
    assert len(out.splitlines()) == 2  # the final image and the cost


@pytest.mark.anyio
async def test_edit_takes_a_path_relative_to_the_current_folder(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    Image.new("RGB", (1024, 1024), "white").save(cli_env / "photo.png")
    code, out, err = await run_main(capsys, "edit", "photo.png", "--prompt", "add a hat", "--quality", "low")
    assert code == 0, err
    assert Path(out.splitlines()[0]).is_file()


@pytest.mark.anyio
async def test_estimate_prints_the_price_and_what_it_assumed(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run_main(capsys, "estimate", "a city at night", "-n", "4")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith("gpt-image-2, n=4: $")
    assert "size=auto" in first and "quality=auto" in first
    assert not (cli_env / "out").exists()


@pytest.mark.anyio
async def test_tasks_list_shows_a_finished_generation_and_show_returns_its_result(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await run_main(capsys, "tasks", "--json")
    assert (code, json.loads(out)["tasks"]) == (0, [])
    assert not (cli_env / "data").exists()
    await run_main(capsys, "generate", "a red fox", "--quality", "low")
    code, out, _ = await run_main(capsys, "tasks", "list")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["task", "tool", "status"]
    task_id, tool, status = row.split()[:3]
    assert (tool, status) == ("generate_image", "succeeded")
    code, out, _ = await run_main(capsys, "tasks", "wait", task_id, "--json")
    assert code == 0 and json.loads(out)["task_id"] == task_id


@pytest.mark.anyio
async def test_an_upstream_failure_exits_3_and_says_why_on_stderr(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await run_main(capsys, "generate", "[sandbox:500] a fox", "--quality", "low")
    assert (code, out) == (3, "")
    assert err.startswith("mcp-images: ServerError")
    assert TEST_KEY not in err


@pytest.mark.anyio
async def test_an_unknown_task_exits_1(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await run_main(capsys, "tasks", "show", "task-0000000000000000")
    assert code == 1
    assert "TaskError" in err and out == ""


def test_a_bad_setting_is_refused_with_exit_2_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MCP_IMAGES_TIMEOUT", "soon")
    assert main(["estimate", "a fox", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error["type"] == "ConfigError" and "MCP_IMAGES_TIMEOUT" in error["message"]


def test_the_terminal_display_shows_paths_and_cost_without_markup_surprises() -> None:
    from mcp.types import CallToolResult, TextContent

    image = {"path": "/p/[x]-fox.png", "uri": "images://0123456789ab", "width": 8, "height": 8}
    image |= {"mime_type": "image/png", "bytes": 10}
    result = CallToolResult(
        content=[TextContent(type="text", text="Generated 1 image with m:\ncost: $0.01 (x)\nnote: [sandbox] hi")],
        structured_content={"images": [image]},
    )
    out = io.StringIO()
    assert Reporter("rich", out=out, err=io.StringIO()).result(result) == 0
    text = out.getvalue()
    assert "/p/[x]-fox.png" in text and "cost: $0.01" in text and "[sandbox] hi" in text
