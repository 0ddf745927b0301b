"""Every tool, fuzzed through the protocol (bounded here; `benchmarks/fuzz_tools.py` runs long).

One server and one sandbox serve all examples, through a blocking portal, so hypothesis
drives plain synchronous examples. Each answer must be a schema-valid success or the
project's structured error naming the argument; no call may hang, and no file may appear
outside the output and data folders.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings

from tests.conftest import make_settings
from tests.fuzzing import judge, tool_calls

CALL_DEADLINE_SECONDS = 30


class Harness:
    """A server and a sandbox living in the portal's event loop, one task holding both open."""

    def __init__(self, portal: BlockingPortal, client: Any, schemas: dict[str, dict[str, Any]]) -> None:
        self.portal, self.client, self.schemas = portal, client, schemas

    async def _call(self, tool: str, args: dict[str, Any]) -> Any:
        with anyio.fail_after(CALL_DEADLINE_SECONDS):
            return await self.client.call_tool(tool, args)

    def call(self, tool: str, args: dict[str, Any]) -> Any:
        return self.portal.call(self._call, tool, args)


@asynccontextmanager
async def _served(root: Path) -> AsyncIterator[tuple[Any, dict[str, dict[str, Any]]]]:
    from mcp import Client

    from mcp_images.sandbox import serve_sandbox
    from mcp_images.server.build import create_server

    async with serve_sandbox(stream_delay=0.0, permissive_models=True) as sandbox:
        server = create_server(make_settings(root, sandbox.base_url, sync_timeout=20))
        async with Client(server) as client:
            schemas = {t.name: t.output_schema or {} for t in (await client.list_tools()).tools}
            yield client, schemas


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    root = tmp_path_factory.mktemp("fuzz") / "inside"
    root.mkdir()
    with start_blocking_portal("asyncio") as portal, portal.wrap_async_context_manager(_served(root)) as served:
        yield Harness(portal, *served)
    stray = [p for p in root.parent.rglob("*") if p.is_file() and not p.is_relative_to(root)]
    assert stray == [], f"files written outside the server's folders: {stray}"
    outside = [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] not in ("out", "data")]
    assert outside == [], f"files outside the output and data folders: {outside}"


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(call=tool_calls())
def test_any_call_is_answered_or_refused_with_the_projects_structured_error(
    harness: Harness, call: tuple[str, dict[str, Any]]
) -> None:
    tool, args = call
    result = harness.call(tool, args)
    problem = judge(tool, args, result, harness.schemas[tool])
    assert problem is None, f"{tool}({args!r}): {problem}"
