"""A long fuzz run of every tool through the protocol; prints what it tried and what it found.

    uv run python benchmarks/fuzz_tools.py [--examples 3000] [--seed 1]

The strategies and the judgement are the test suite's (`tests/fuzzing.py`); the suite runs a
bounded number of examples, this runs as many as asked and reports every failure instead of
stopping at the first. It also checks that no file appeared outside the server's folders.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hypothesis import HealthCheck, given, settings

from tests.conftest import make_settings
from tests.fuzzing import judge, tool_calls


def run(examples: int, seed: int) -> int:
    from anyio.from_thread import start_blocking_portal

    root = Path(tempfile.mkdtemp(prefix="mcp-images-fuzz-")) / "inside"
    root.mkdir()
    counts: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    slowest = 0.0

    async def open_all(stack: Any) -> tuple[Any, dict[str, Any]]:
        from mcp import Client

        from mcp_images.sandbox import serve_sandbox
        from mcp_images.server.build import create_server

        sandbox = await stack.enter_async_context(serve_sandbox(stream_delay=0.0, permissive_models=True))
        server = create_server(make_settings(root, sandbox.base_url, sync_timeout=20))
        client = await stack.enter_async_context(Client(server))
        return client, {t.name: t.output_schema or {} for t in (await client.list_tools()).tools}

    from contextlib import AsyncExitStack, asynccontextmanager

    @asynccontextmanager
    async def served() -> AsyncIterator[tuple[Any, dict[str, Any]]]:
        async with AsyncExitStack() as stack:
            yield await open_all(stack)

    with start_blocking_portal("asyncio") as portal, portal.wrap_async_context_manager(served()) as (client, schemas):

        async def call(tool: str, args: dict[str, Any]) -> Any:
            return await asyncio.wait_for(client.call_tool(tool, args), 60)

        @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], database=None)
        @given(case=tool_calls())
        def one(case: tuple[str, dict[str, Any]]) -> None:
            nonlocal slowest
            tool, args = case
            start = time.perf_counter()
            try:
                result = portal.call(call, tool, args)
            except Exception as exc:  # a hang or a protocol error is a finding, not a crash of the run
                failures.append(f"{tool}({args!r}): {type(exc).__name__}: {exc}")
                return
            slowest = max(slowest, time.perf_counter() - start)
            verdict = "ok" if not result.is_error else f"refused:{result.structured_content['error'].get('type')}"
            counts[f"{tool} {verdict}"] += 1
            if (problem := judge(tool, args, result, schemas[tool])) is not None:
                failures.append(f"{tool}({args!r}): {problem}")

        random.seed(seed)
        started = time.perf_counter()
        one()
        elapsed = time.perf_counter() - started
    stray = [p for p in root.parent.rglob("*") if p.is_file() and p.relative_to(root.parent).parts[1] not in ("out", "data")]
    print(f"{sum(counts.values())} calls in {elapsed:.1f} s (slowest {slowest:.2f} s), seed {seed}")
    for key, n in sorted(counts.items()):
        print(f"  {n:6d}  {key}")
    print(f"handled cleanly: {sum(counts.values()) - len(failures)}; findings: {len(failures)}; stray files: {len(stray)}")
    for line in failures[:30]:
        print("  FINDING", line[:300])
    return 1 if failures or stray else 0


def main() -> int:
    import logging

    logging.disable(logging.WARNING)  # the refusals are the point; their log lines are noise here
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args()
    return run(ns.examples, ns.seed)


if __name__ == "__main__":
    raise SystemExit(main())
