"""``mcp-images``: run the server (stdio or streamable HTTP), the local sandbox, the demo, or
a command for people (``generate``, ``edit``, ``estimate``, ``tasks``, ``doctor``: `console`).

stdout belongs to the MCP protocol under stdio, so everything said to a person goes to
stderr (the sandbox, demo and people's commands, which speak no protocol, use stdout).
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from mcp_images import __version__

LOOPBACK_NAMES = {"localhost"}
# Their request lines carry URLs (signed result URLs) and, at DEBUG, response headers.
QUIET_LOGGERS = ("httpx2", "httpcore2")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``; the HTTP client's loggers never below WARNING."""
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    floor = max(logging.WARNING, logging.getLevelNamesMapping().get(level, logging.WARNING))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(floor)


def tcp_port(text: str) -> int:
    """An argparse type: a TCP port, 0-65535 (0 lets the system pick)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number; for example --port 8000") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port from 0 to 65535; for example --port 8000")
    return port


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="default: stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP only; other than loopback only with authentication")
    p.add_argument("--port", type=tcp_port, default=8000, help="HTTP only (default 8000)")
    p.add_argument(
        "--stateless", action="store_true",
        help="HTTP only: keep no per-session state, so any replica may answer any request (README: Running many replicas)",
    )  # fmt: skip
    p.add_argument("--provider", help="openai, 302ai, yescale, agcloud, compatible, azure")
    p.add_argument("--base-url", help="upstream base URL including /v1")
    p.add_argument("--model", dest="default_model", help="default model (gpt-image-2)")
    p.add_argument("--output-dir", help="where images are saved")
    p.add_argument("--data-dir", help="where the tasks database lives")
    p.add_argument("--timeout", type=float, help="upstream read timeout in seconds")
    p.add_argument("--inline", choices=["preview", "full", "none"], help="images in results")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcp-images", description="MCP server for image generation and editing.")
    parser.add_argument("--version", action="version", version=f"mcp-images {__version__}")
    _add_server_flags(parser)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the MCP server (default)")
    _add_server_flags(serve)
    sandbox = sub.add_parser("sandbox", help="run the local OpenAI-compatible upstream sandbox")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=0, help="0 picks a free port")
    sandbox.add_argument("--latency", type=float, default=0.0, help="seconds each image request waits")
    sandbox.add_argument(
        "--permissive-models",
        action="store_true",
        help="serve unknown model names on the OpenAI and Azure paths too (the real API answers 404)",
    )
    demo = sub.add_parser("demo", help="offline end-to-end tour against the sandbox")
    demo.add_argument(
        "--output-dir", help="folder for the demo's images (default: a new temporary folder; its path is printed)"
    )
    from mcp_images.console.commands import register

    register(sub)
    from mcp_images.cli_spending import register as register_spending

    register_spending(sub)
    return parser


def flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each setting a flag sets -> the flag's long form (``{"default_model": "--model"}``)."""
    names: dict[str, str] = {}
    for action in parser._actions:  # argparse has no public way to list them
        if action.option_strings:
            names.setdefault(action.dest, action.option_strings[-1])
    return names


def _serve(ns: argparse.Namespace, flags: dict[str, str]) -> int:
    from mcp_images.config import load_settings
    from mcp_images.errors import ConfigError

    try:
        settings = load_settings(
            flags=flags,
            provider=ns.provider,
            base_url=ns.base_url,
            default_model=ns.default_model,
            output_dir=ns.output_dir,
            data_dir=ns.data_dir,
            timeout=ns.timeout,
            inline=ns.inline,
        )
    except ConfigError as exc:
        lines = str(exc).splitlines()
        sys.stderr.write("".join(f"mcp-images: {line}\n" for line in lines))
        return 2
    configure_logging(settings.log_level)
    from mcp_images.server.build import create_server, request_state_key

    try:
        server = create_server(settings, transport=ns.transport)
        server.runtime.stateless = ns.stateless  # read by server.http_app when it builds the app
    except ConfigError as exc:
        sys.stderr.write(f"mcp-images: {exc}\n")
        return 2
    gc.freeze()
    gc.enable()
    from mcp_images.imaging.memory import reuse_big_buffers

    reuse_big_buffers()
    log = logging.getLogger("mcp_images")
    log.info("mcp-images %s: images are saved in %s", __version__, settings.resolved_output_dir)
    if settings.api_key is None:
        log.warning("no API key: set MCP_IMAGES_API_KEY (or OPENAI_API_KEY); tools will say so when called")
    if ns.stateless and settings.confirm_above is not None and request_state_key(settings) is None:
        log.warning(
            "--stateless with MCP_IMAGES_CONFIRM_ABOVE: on protocol 2026-07-28 a confirmation answered "
            "on another replica is refused unless every replica shares MCP_IMAGES_REQUEST_STATE_SECRET "
            "(or MCP_IMAGES_URL_SECRET)"
        )
    if ns.transport == "http":
        return serve_http(server, host=ns.host, port=ns.port)
    else:
        server.run()
    return 0


def http_url(host: str, port: int) -> str:
    """The server's URL as a person pastes it: an IPv6 address in brackets."""
    bare = host.strip("[]")
    return f"http://{f'[{bare}]' if ':' in bare else bare}:{port}/mcp"


def serve_http(server: Any, *, host: str, port: int) -> int:
    """Serve ``server`` over streamable HTTP with uvicorn, behind the request body limit.

    What ``MCPServer.run("streamable-http")`` does, with the app wrapped: the SDK's own limit
    buffers a body whole before it looks (see server/http_limits.py). The socket is bound
    first, so "serving" is said only once it is true, and a port in use is one clear line.
    Returns the exit code (2: the address cannot be bound).
    """
    from mcp_images.listening import listening_socket
    from mcp_images.server.http_app import exposure_problem, run_http

    if (refusal := exposure_problem(server.runtime.settings, host)) is not None:
        sys.stderr.write(f"mcp-images: {refusal}\n")
        return 2
    bind = host.strip("[]")
    try:
        sock = listening_socket(bind, port)
    except OSError as exc:
        sys.stderr.write(
            f"mcp-images: cannot listen on {http_url(host, port).removesuffix('/mcp')}: {os.strerror(exc.errno) if exc.errno else exc}; "
            "pick another --port (0 lets the system choose)\n"
        )
        return 2
    return run_http(server, host=host, sock=sock, log_level=server.settings.log_level)


def main(argv: Sequence[str] | None = None) -> int:
    # Start-up is a burst of imports that creates objects and frees almost none: the cyclic GC
    # only re-scans them. Off until the server is built (-60 ms to tools/list, measured), then
    # the survivors are frozen out of later collections.
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    from mcp_images.console.commands import COMMANDS  # already imported by build_parser

    if ns.command in ("sandbox", "demo", *COMMANDS):
        gc.enable()
    if ns.command == "sandbox":
        from mcp_images.sandbox import run

        run(host=ns.host, port=ns.port, latency=ns.latency, permissive_models=ns.permissive_models)
        return 0
    if ns.command == "demo":
        from mcp_images.demo import main as demo_main

        return demo_main(ns.output_dir)
    if ns.command == "spending":
        from mcp_images.cli_spending import run as spending

        return spending(ns)
    if ns.command in COMMANDS:
        from mcp_images.console.commands import run

        return run(ns, flag_names(parser))
    return _serve(ns, flag_names(parser))


if __name__ == "__main__":
    sys.exit(main())
