"""The sandbox: a local OpenAI-images-compatible upstream (think stripe-mock).

`create_app` builds the ASGI app, `serve_sandbox` runs it on a loopback port inside the
current event loop (tests), `run` serves it until Ctrl-C (``mcp-images sandbox``). The paths,
the provider imitations and the failure modes are listed in `mcp_images.sandbox.app`.
"""

from __future__ import annotations

from mcp_images.sandbox.app import create_app
from mcp_images.sandbox.server import SandboxServer, run, serve_sandbox
from mcp_images.sandbox.state import RequestRecord, SandboxState, UploadRecord

__all__ = [
    "RequestRecord",
    "SandboxServer",
    "SandboxState",
    "UploadRecord",
    "create_app",
    "run",
    "serve_sandbox",
]
