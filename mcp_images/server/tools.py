"""The four tools at the MCP boundary: raw arguments in, the project's results out.

The SDK would validate arguments against a function signature first (dropping unknown
ones, JSON-parsing strings, answering with its own generic error text). `ArgumentsTool`
takes the raw ``arguments`` object instead, so `catalog.arguments.parse_arguments` sees
exactly what the client sent and every refusal is the structured error of `results`.
Input and output schemas come from `schemas`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools.base import Tool
from mcp.types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import ConfigDict

from mcp_images.catalog.arguments import parse_arguments
from mcp_images.catalog.parameters import Given
from mcp_images.errors import ConfigError, McpImagesError, TaskError, error_dict
from mcp_images.identity import identity_of
from mcp_images.runtime import Runtime
from mcp_images.server import results
from mcp_images.server.schemas import input_schema, output_schema
from mcp_images.server.studio import tool_meta
from mcp_images.work.progress import Progress

logger = logging.getLogger(__name__)

GENERATE_DESCRIPTION = """Generate images from a text prompt. Saves full-size files, returns a \
preview per image, its path, an images:// link, token usage and cost."""

EDIT_DESCRIPTION = """Edit or combine images with a prompt (optionally a mask: transparent = \
area to change, or a markup drawing on gpt-image-2.5). Inputs: paths, images:// ids, URLs, data \
URIs. Returns like generate_image."""

CHECK_DESCRIPTION = """Status of a task started with async=true (or handed off after a long wait). \
Returns the same result as a direct call once it has succeeded; wait_seconds long-polls."""

ESTIMATE_DESCRIPTION = """Price a generate_image or edit_image call before making it: pass the same \
arguments. Refused exactly when the call would be. Tokens by kind, price per 1M, USD per image \
and total, exact or estimated, table and date."""

ROOTS_REMOVED_IN = "2026-07-28"  # protocol version without roots/list
INLINE_REF_KEEP_CHARS = 2048  # longer image references are inline data: not stored on a task
READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)

ToolBody = Callable[[Runtime, Given, Context[Any, Any]], Awaitable[CallToolResult | InputRequiredResult]]


class ArgumentsTool(Tool):
    """A Tool that hands the client's raw arguments to its body (see the module docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    declared_output: dict[str, Any] | None = None

    @property
    def output_schema(self) -> dict[str, Any] | None:  # type: ignore[override]
        return self.declared_output

    async def run(self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False) -> Any:
        return await self.fn(context, arguments)


def _stub() -> None:
    """Stands in for the SDK's signature reading; `ArgumentsTool.run` never calls it."""


def make_tool(
    rt: Runtime,
    *,
    name: str,
    title: str,
    description: str,
    body: ToolBody,
    annotations: ToolAnnotations,
    meta: dict[str, Any] | None = None,
) -> Tool:
    """A tool whose arguments are read by `parse_arguments` and whose errors are clear tool errors."""

    async def handler(ctx: Context[Any, Any], arguments: dict[str, Any]) -> CallToolResult | InputRequiredResult:
        try:
            given = parse_arguments(name, arguments)
            return await body(rt, given, ctx)
        except McpImagesError as exc:
            logger.info("%s refused: %s", name, type(exc).__name__)
            return results.error_result_from_dict(rt.scrub(error_dict(exc)))

    base = Tool.from_function(
        _stub, name=name, title=title, description=description, annotations=annotations, meta=meta
    )
    fields = {key: getattr(base, key) for key in Tool.model_fields}
    fields.update(fn=handler, parameters=input_schema(name, rt.catalog.names()), is_async=True, context_kwarg=None)
    return ArgumentsTool(**fields, declared_output=output_schema(name))


async def client_roots(ctx: Context[Any, Any]) -> list[Any] | None:
    """The folders the client offers as roots, when it supports roots (else None)."""
    caps = ctx.client_capabilities
    if caps is None or caps.roots is None:
        return None
    from urllib.parse import unquote, urlparse

    from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

    if (ctx.protocol_version or "") >= ROOTS_REMOVED_IN:
        return None  # roots left the protocol (SEP-2577): configured folders only
    try:
        with warnings.catch_warnings():
            # Deliberate: 2025-11-25 clients (most today) still share their folders this way.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            result = await ctx.session.list_roots()
    except MCPError:
        logger.info("client announced roots but did not list them")
        return None
    paths = []
    for root in result.roots:
        parsed = urlparse(str(root.uri))
        if parsed.scheme == "file":
            paths.append(unquote(parsed.path))
    return paths


def record_args(given: Given) -> dict[str, Any]:
    """The arguments as stored on a task: inline image data shortened, never the bytes."""

    def trim(value: Any) -> Any:
        if isinstance(value, str) and len(value) > INLINE_REF_KEEP_CHARS:
            return f"{value[:40]}...<{len(value):,} chars of inline image data>"
        if isinstance(value, list):
            return [trim(v) for v in value]
        return value

    return {"arguments": {k: trim(v) for k, v in given.values.items()}}


async def _image_tool(rt: Runtime, given: Given, ctx: Context[Any, Any]) -> CallToolResult | InputRequiredResult:
    """generate_image / edit_image: validate now, then run as a task (attached unless async)."""
    from mcp_images.server import spending
    from mcp_images.work import provider_jobs, tools
    from mcp_images.work.validation import check_call

    call = check_call(rt, given, saving=True)  # refusals come back at once and create no task
    roots = await client_roots(ctx) if call.edit else None
    try:
        manager = await rt.tasks()
    except ConfigError:
        if call.background:
            raise  # a background job needs somewhere to keep its result: the error says why not
        manager = None
    provider_side = call.background and rt.provider.async_mode is not None and not call.params.stream
    admission = await spending.admit(rt, call, given, ctx, roots)  # limits, the person's yes, a reservation
    if not isinstance(admission, spending.Admission):
        return admission  # refused, or a question for the person (2026-07-28)

    async def job(job_progress: Progress, handle: Any) -> dict[str, Any]:
        async def work() -> tools.Outcome:
            if provider_side:
                return await provider_jobs.submit_provider_job(rt, call, job_progress, handle, roots)
            if call.edit:
                return await tools.edit_image(rt, call, job_progress, roots)
            return await tools.generate_image(rt, call, job_progress)

        outcome = await admission.run(work, job_progress, handle, held=provider_side)
        return rt.scrub(results.outcome_json(outcome, await admission.budget_after()))

    try:
        return await _dispatch(rt, given, ctx, call, manager, job, provider_side)
    except BaseException:
        await admission.release()  # a job that never started holds nothing
        raise


async def _dispatch(
    rt: Runtime, given: Given, ctx: Context[Any, Any], call: Any, manager: Any, job: Any, provider_side: bool
) -> CallToolResult:
    """Run ``job`` as the call asks: in the background, attached with a hand-off, or bare."""
    if manager is None:  # no task database: a plain synchronous call still works
        logger.warning("running %s without a task record: %s", given.tool, rt.tasks_error)
        return CallToolResult.model_validate(await job(Progress(ctx.report_progress), None))
    if call.background:
        provider = rt.provider.name if provider_side else None
        record = await manager.start(given.tool, record_args(given), job, provider=provider, identity=identity_of(ctx))
        return results.task_started(record, poll_after=results.POLL_AFTER_SECONDS)
    handoff = rt.settings.sync_timeout or None
    record = await manager.run_attached(
        given.tool, record_args(given), job, send=ctx.report_progress, handoff_after=handoff,
        identity=identity_of(ctx), handoff=rt.handoff_now,
    )  # fmt: skip
    if not record.finished:
        return results.task_started(record, poll_after=results.POLL_AFTER_SECONDS, handed_off=True)
    return results.task_result(record)


def _task_database_exists(rt: Runtime) -> bool:
    """Whether the (deferred) SQLite task database exists now: another server over the same
    folder may have made it since this one started."""
    from mcp_images.tasks.choice import sqlite_path

    path = sqlite_path(rt.settings)
    return path is None or path.exists()


async def _check_task(rt: Runtime, given: Given, ctx: Context[Any, Any]) -> CallToolResult:
    if rt.tasks_deferred and not _task_database_exists(rt):  # none yet: no task in it; reading makes none
        raise TaskError(f"no task with id {given.get('task_id')} (unknown: no task was ever started here)")
    manager = await rt.tasks()
    wait = float(given.get("wait_seconds", 0))
    record = await manager.wait(given.get("task_id"), wait, send=ctx.report_progress, identity=identity_of(ctx))
    return results.task_result(record)


async def _estimate(rt: Runtime, given: Given, ctx: Context[Any, Any]) -> CallToolResult:
    from mcp_images.work.estimates import estimate
    from mcp_images.work.validation import check_call

    call = check_call(rt, given, saving=False)
    reads = any(given.get(k) is not None for k in ("image", "mask", "markup"))
    roots = await client_roots(ctx) if reads else None
    from mcp_images.server.spending import estimate_budget

    est, n = await estimate(rt, call, roots), call.params.n or 1
    return results.render_estimate(est, n=n, budget=await estimate_budget(rt, ctx, est.breakdown, n, call))


def build_tools(rt: Runtime) -> list[Tool]:
    rows: list[tuple[str, str, str, ToolBody, ToolAnnotations]] = [
        ("generate_image", "Generate image", GENERATE_DESCRIPTION, _image_tool, WRITE),
        ("edit_image", "Edit image", EDIT_DESCRIPTION, _image_tool, WRITE),
        ("check_task", "Check task", CHECK_DESCRIPTION, _check_task, READ),
        ("estimate_cost", "Estimate cost", ESTIMATE_DESCRIPTION, _estimate, READ),
    ]
    return [
        make_tool(rt, name=name, title=title, description=desc, body=body, annotations=ann, meta=tool_meta(name))
        for name, title, desc, body, ann in rows
    ]
