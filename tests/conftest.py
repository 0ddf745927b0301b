"""Shared fixtures: anyio on asyncio, a real loopback sandbox, and a server pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcp_images.config import Settings

TEST_KEY = "sk-test-0123456789-secret"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def sandbox() -> AsyncIterator[Any]:
    """A loopback sandbox whose OpenAI path serves any model name (``permissive_models``).

    Most tests drive the server's permissive profile (a model released tomorrow, an aggregator's
    flux or seedream) through the OpenAI path; the real OpenAI answers such names with a 404,
    which `strict_sandbox` keeps.
    """
    from mcp_images.sandbox import serve_sandbox

    async with serve_sandbox(stream_delay=0.01, permissive_models=True) as sb:
        yield sb


@pytest.fixture
async def strict_sandbox() -> AsyncIterator[Any]:
    """A loopback sandbox as faithful to OpenAI as it gets: unknown model names get a 404."""
    from mcp_images.sandbox import serve_sandbox

    async with serve_sandbox(stream_delay=0.01) as sb:
        yield sb


def make_settings(tmp_path: Path, base_url: str | None, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": TEST_KEY,
        "base_url": base_url,
        "provider": "compatible",
        "output_dir": tmp_path / "out",
        "data_dir": tmp_path / "data",
        "max_retries": 2,
        **kw,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, sandbox: Any) -> Settings:
    return make_settings(tmp_path, sandbox.base_url)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Any]:
    from mcp import Client

    from mcp_images.server.build import create_server

    async with Client(create_server(settings)) as c:
        yield c
