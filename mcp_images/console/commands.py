"""The people's subcommands: ``generate``, ``edit``, ``estimate``, ``tasks``, ``doctor``.

`register` adds them to the ``mcp-images`` parser (cheap: the flags come from the parameter
declaration, nothing heavy is imported); `run` runs one. Each call goes through the tool
itself (`calls`), and `display` shows the result.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mcp_images.console.flags import add_tool_options

if TYPE_CHECKING:
    from mcp.types import CallToolResult

    from mcp_images.config import Settings
    from mcp_images.console.display import Reporter

COMMANDS = ("generate", "edit", "estimate", "tasks", "doctor")
TOOL_OF = {"generate": "generate_image", "edit": "edit_image", "estimate": "estimate_cost"}
EXIT_CODES = "exit codes: 0 done, 2 refused before anything was spent (fix the command), 3 the upstream failed"
CHECK_TASK_MAX_WAIT = 50.0  # check_task's own bound on wait_seconds
EXIT_INTERRUPTED = 130


def _command(sub: Any, name: str, help_text: str, description: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=description, epilog=EXIT_CODES)
    parser.add_argument("--json", action="store_true", help="print one JSON document: the tool's structuredContent")
    return parser


def register(sub: Any) -> None:
    """Add the subcommands to ``sub`` (the ``mcp-images`` parser's subparsers)."""
    from mcp_images.console.calls import add_setting_flags

    gen = _command(
        sub,
        "generate",
        "make images from a prompt",
        "Generate images (the generate_image tool), save them, print paths and cost.",
    )
    add_tool_options(gen, "generate_image", positional=("prompt",))
    edit = _command(
        sub, "edit", "edit or combine images", "Edit images (the edit_image tool): paths, images:// ids, URLs."
    )
    add_tool_options(edit, "edit_image", positional=("image",))
    est = _command(
        sub,
        "estimate",
        "price a generate or edit call before making it",
        "Price a call (the estimate_cost tool): the same arguments as generate, or as edit with --image.",
    )
    add_tool_options(est, "estimate_cost", positional=("prompt",))
    tasks = _command(sub, "tasks", "list, show or wait for tasks", "Tasks recorded in the data folder's database.")
    actions = tasks.add_subparsers(dest="tasks_action")
    listing = actions.add_parser("list", help="the newest tasks (the default)")
    listing.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    actions.add_parser("show", help="one task's state or result (check_task)").add_argument("task_id")
    wait = actions.add_parser("wait", help="wait for a task to finish, then show its result")
    wait.add_argument("task_id")
    wait.add_argument("--wait-timeout", type=float, help="give up after this many seconds (default: never)")
    for action in actions.choices.values():
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    doctor = _command(sub, "doctor", "check the setup: settings, key, upstream, folders", "Check the setup.")
    for parser in (gen, edit, est, tasks, doctor):
        add_setting_flags(parser)


def run(ns: argparse.Namespace, flags: Mapping[str, str]) -> int:
    """Run the subcommand ``ns.command``; its exit code."""
    from mcp_images.console.display import Reporter, choose_mode

    reporter = Reporter(choose_mode(ns.json))
    if ns.command == "doctor":
        from mcp_images.console.doctor import run_doctor

        return run_doctor(ns, flags, reporter)
    settings = _settings(ns, flags, reporter)
    if settings is None:
        return 2
    try:
        if ns.command == "tasks":
            return _tasks(ns, settings, reporter)
        return _tool(ns, settings, reporter)
    except KeyboardInterrupt:
        sys.stderr.write("mcp-images: interrupted; a call in flight was cancelled\n")
        return EXIT_INTERRUPTED


def _settings(ns: argparse.Namespace, flags: Mapping[str, str], reporter: Reporter) -> Settings | None:
    from mcp_images.console.calls import allow_folders, load, local_paths
    from mcp_images.console.flags import tool_arguments
    from mcp_images.errors import ConfigError

    ns.arguments, folders = local_paths(tool_arguments(ns))
    try:
        return allow_folders(load(ns, flags), folders)
    except ConfigError as exc:
        reporter.refused({"type": "ConfigError", "message": str(exc)})
        return None


def _tool(ns: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    import anyio

    from mcp_images.console.calls import call

    tool = TOOL_OF[ns.command]

    async def go() -> CallToolResult:
        with reporter.running(f"{tool}: connecting"):
            return await call(settings, tool, ns.arguments, on_progress=reporter.progress, on_store=reporter.use_store)

    return reporter.result(anyio.run(go))


def _tasks(ns: argparse.Namespace, settings: Settings, reporter: Reporter) -> int:
    import anyio

    action = ns.tasks_action or "list"
    if action == "list":
        return _list_tasks(settings, reporter, getattr(ns, "limit", 20))
    if action == "show":
        return reporter.result(anyio.run(_check, settings, ns.task_id, 0.0, None, reporter))
    return reporter.result(anyio.run(_check, settings, ns.task_id, CHECK_TASK_MAX_WAIT, ns.wait_timeout, reporter))


async def _check(
    settings: Settings, task_id: str, wait: float, give_up_after: float | None, reporter: Reporter
) -> CallToolResult:
    """check_task, once (``wait`` 0) or again and again until the task finishes or time is up."""
    import anyio

    from mcp_images.console.calls import connect

    async with connect(settings) as (client, store):
        reporter.use_store(store)
        result = await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 0})
        if wait <= 0:
            return result
        with reporter.running(f"waiting for {task_id}"), anyio.move_on_after(give_up_after or float("inf")):
            while _unfinished(result):
                args = {"task_id": task_id, "wait_seconds": wait}
                result = await client.call_tool("check_task", args, progress_callback=reporter.progress)
        return result


def _unfinished(result: CallToolResult) -> bool:
    status = (result.structured_content or {}).get("status")
    return not result.is_error and status in ("queued", "running")


def _list_tasks(settings: Settings, reporter: Reporter, limit: int) -> int:
    from mcp_images.console.tasklist import recent_tasks, table_lines
    from mcp_images.errors import TaskError

    data_dir = settings.resolved_data_dir
    try:
        tasks = recent_tasks(data_dir, limit)
    except TaskError as exc:
        return reporter.refused({"type": "TaskError", "message": str(exc)}, code=1)
    if reporter.mode == "json":
        reporter.out.write(json.dumps({"data_dir": str(data_dir), "tasks": tasks or []}, indent=2) + "\n")
    elif not tasks:
        reporter.say([f"no tasks yet in {data_dir}"])
    else:
        reporter.say(table_lines(tasks))
    return 0
