"""One tool call from the command line, through the MCP tools themselves.

The server is built in-process (`create_server`) and called through the SDK's in-memory
client, so a command gets the tool's validation, structured errors, saving, costs, task
record and progress notifications, exactly as an agent would.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_images.errors import UpstreamError

if TYPE_CHECKING:
    from mcp import Client
    from mcp.shared.dispatcher import ProgressFnT
    from mcp.types import CallToolResult

    from mcp_images.config import Settings
    from mcp_images.storage.store import ImageStore

# Exit codes: a refusal costs nothing and can be fixed by changing the command (2); an
# upstream failure may be worth a retry (3); anything else (an unknown task, a cancelled
# one) is 1.
EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_UPSTREAM = 0, 1, 2, 3
REFUSED_TYPES = frozenset({"SpendingRefused", "ValidationProblem", "InputError", "ConfigError", "RequestError"})
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif")
NOT_PATHS = re.compile(r"^(images://|https?://|file://|data:|[0-9a-f]{12}$|[1-9][0-9]*x[1-9][0-9]*$)")
# Settings a person gives after the subcommand (the same flags as the server's).
SETTING_FLAGS = ("provider", "base_url", "output_dir", "data_dir", "timeout")


def _upstream_types() -> frozenset[str]:
    found, todo = {"UpstreamError"}, [UpstreamError]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub.__name__.rstrip("_"))
            todo.append(sub)
    return frozenset(found)


def exit_code(structured: Mapping[str, Any] | None, is_error: bool) -> int:
    """What the command exits with for a tool result."""
    if not is_error:
        return EXIT_OK
    kind = ((structured or {}).get("error") or {}).get("type")
    if kind in REFUSED_TYPES:
        return EXIT_REFUSED
    if kind in _upstream_types():
        return EXIT_UPSTREAM
    return EXIT_FAILED


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """The settings a command may override, spelt as for the server."""
    group = parser.add_argument_group("settings (override MCP_IMAGES_* and .env)")
    group.add_argument("--provider", help="openai, 302ai, yescale, agcloud, compatible, azure")
    group.add_argument("--base-url", help="upstream base URL including /v1")
    group.add_argument("--output-dir", help="where images are saved")
    group.add_argument("--data-dir", help="where the tasks database lives")
    group.add_argument("--timeout", type=float, help="upstream read timeout in seconds")


def load(ns: argparse.Namespace, flags: Mapping[str, str], **extra: Any) -> Settings:
    """The settings for one command: flags over the environment, never a hand-off to a task.

    A command waits for its image: the process is the server, so a job handed to the
    background would stop with it (``sync_timeout=0``). Previews are not made (nobody sees
    them); the log stays at WARNING unless MCP_IMAGES_LOG_LEVEL says otherwise.

    Raises:
        ConfigError: a setting is refused (one line per setting, what to change).
    """
    from mcp_images.config import load_settings

    given = {name: getattr(ns, name, None) for name in SETTING_FLAGS}
    if "MCP_IMAGES_LOG_LEVEL" not in os.environ:
        extra.setdefault("log_level", "WARNING")
    return load_settings(flags=flags, sync_timeout=0, inline="none", **given, **extra)


def local_paths(arguments: dict[str, Any]) -> tuple[dict[str, Any], list[Path]]:
    """Image references that are files here, made absolute; and the folders they are in.

    A person types ``photo.png``; the tool takes absolute paths only, from allowed folders.
    Naming a file on the command line is that person allowing it, so its folder is added.
    """
    folders: list[Path] = []

    def fix(value: Any) -> Any:
        if isinstance(value, list):
            return [fix(v) for v in value]
        if not isinstance(value, str) or NOT_PATHS.match(value) or len(value) > 4096:
            return value
        path = Path(value).expanduser()
        if not (path.exists() or path.suffix.lower() in IMAGE_SUFFIXES):
            return value  # raw base64, most likely: the tool decides
        path = path.absolute()
        folders.append(path.resolve().parent)
        return str(path)

    fixed = {k: fix(v) if k in ("image", "mask", "markup") else v for k, v in arguments.items()}
    return fixed, folders


def allow_folders(settings: Settings, folders: list[Path]) -> Settings:
    """``settings`` with ``folders`` added to MCP_IMAGES_INPUT_DIRS."""
    if not folders:
        return settings
    dirs = [d for d in settings.input_dirs.split(os.pathsep) if d.strip()]
    dirs += [str(f) for f in dict.fromkeys(folders)]
    return settings.model_copy(update={"input_dirs": os.pathsep.join(dirs)})


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[tuple[Client, ImageStore]]:
    """A client of a server built from ``settings``, and that server's image store.

    The store lets progress about a saved partial image (``images://<id>``) be shown as
    the file's path.
    """
    from mcp import Client

    from mcp_images.server.build import create_server

    server = create_server(settings)
    async with Client(server) as client:
        yield client, server.runtime.store


async def call(
    settings: Settings,
    tool: str,
    arguments: dict[str, Any],
    *,
    on_progress: ProgressFnT | None = None,
    on_store: Callable[[ImageStore], None] | None = None,
) -> CallToolResult:
    """Call ``tool`` on a server built from ``settings``; its result, errors included."""
    async with connect(settings) as (client, store):
        if on_store is not None:
            on_store(store)
        return await client.call_tool(tool, arguments, progress_callback=on_progress)
