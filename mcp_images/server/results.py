"""Render an `Outcome` as an MCP tool result every client can show.

Content, in order: one text summary; per image a preview (``ImageContent``, downscaled so
the whole result stays far below the 1 MiB Claude Desktop accepts) and a ``ResourceLink``
to ``images://<id>``. ``structuredContent`` carries the same facts for programs.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from mcp.types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent

from mcp_images.units import format_bytes
from mcp_images.work.tools import Outcome

if TYPE_CHECKING:
    from mcp_images.tasks.store import TaskRecord
    from mcp_images.work.estimates import Estimate


def usage_line(usage: dict[str, Any] | None) -> str | None:
    if not usage:
        return None
    details = usage.get("input_tokens_details") or {}
    # 302.ai reports chat-style names (prompt_tokens, completion_tokens) instead.
    parts = [f"input {usage.get('input_tokens', usage.get('prompt_tokens', 0))} tokens"]
    if details:
        parts[0] += f" (text {details.get('text_tokens', 0)}, image {details.get('image_tokens', 0)})"
    parts.append(f"output {usage.get('output_tokens', usage.get('completion_tokens', 0))}")
    parts.append(f"total {usage.get('total_tokens', 0)}")
    return "usage: " + ", ".join(parts)


def structured(outcome: Outcome) -> dict[str, Any]:
    """The machine-readable result (also what check_task returns for a finished task)."""
    p = outcome.params
    resp = outcome.response
    first = outcome.images[0].stored if outcome.images else None
    actual_size = f"{first.width}x{first.height}" if first else None
    return {
        "images": [s.stored.as_dict() for s in outcome.images],
        "model": outcome.model,
        "size": resp.get("size") or (p.size if p.size != "auto" else None) or actual_size,
        "quality": resp.get("quality") or p.quality,
        "background": resp.get("background") or p.background,
        "output_format": resp.get("output_format") or (outcome.images[0].stored.format if outcome.images else None),
        "usage": _usage_fields(outcome.usage),
        "svg_usage": _of_type(resp.get("svg_usage"), dict),
        "safety_identifier": _of_type(resp.get("safety_identifier"), str),
        "cost": outcome.cost.model_dump(mode="json") if outcome.cost else None,
        "revised_prompt": outcome.revised_prompts[0] if outcome.revised_prompts else None,
        "request_id": outcome.request_id,
        "partial_images": [s.as_dict() for s in outcome.partials],
        "warnings": outcome.warnings,
        "elapsed_seconds": round(outcome.elapsed, 2),
    }


def _of_type(value: Any, kind: type) -> Any:
    """An upstream's descriptive field when it has the documented type, else None (never an error)."""
    return value if isinstance(value, kind) else None


def _usage_fields(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    if not usage:
        return None
    in_details = usage.get("input_tokens_details") or {}
    return {
        "input_tokens": usage.get("input_tokens", usage.get("prompt_tokens")),
        "input_text_tokens": in_details.get("text_tokens"),
        "input_image_tokens": in_details.get("image_tokens"),
        "output_tokens": usage.get("output_tokens", usage.get("completion_tokens")),
        "total_tokens": usage.get("total_tokens"),
    }


def budget_line(budget: dict[str, Any]) -> str:
    """``budget: $0.58 of $1.00 left today (UTC 2026-11-22: $0.42 spent)``."""
    from mcp_images.pricing.costs import format_money

    def money(key: str) -> str:
        return format_money(float(budget.get(key) or 0.0), str(budget.get("currency", "USD")))

    line = f"budget: {money('remaining_today')} of {money('daily_budget')} left today (UTC {budget.get('day')}: "
    line += f"{money('spent_today')} spent"
    line += f", {money('held_today')} held by calls running or of unknown cost)" if budget.get("held_today") else ")"
    return line + (f"; this call: {budget['verdict']}" if budget.get("verdict") else "")


def summary(outcome: Outcome, budget: dict[str, Any] | None = None) -> str:
    verb = "Edited" if outcome.edit else "Generated"
    count = len(outcome.images)
    p = outcome.params
    head = f"{verb} {count} image{'s' if count != 1 else ''} with {outcome.model}"
    facts = [x for x in (outcome.response.get("size") or p.size, outcome.response.get("quality") or p.quality) if x]
    if facts:
        head += f" ({', '.join(facts)})"
    lines = [head + f" in {outcome.elapsed:.1f} s:"]
    for i, s in enumerate(outcome.images, 1):
        st = s.stored
        lines.append(f"{i}. {st.path} — {st.width}x{st.height} {st.format}, {format_bytes(st.bytes)} — {st.uri}")
    if outcome.partials:
        lines.append("partial images: " + ", ".join(s.uri for s in outcome.partials))
    if (u := usage_line(outcome.usage)) is not None:
        lines.append(u)
    if outcome.cost is not None:
        lines.append("cost: " + outcome.cost.summary())
    for prompt in outcome.revised_prompts[:1]:
        lines.append(f"revised prompt: {prompt}")
    lines.extend(f"note: {w}" for w in outcome.warnings)
    if budget is not None:
        lines.append(budget_line(budget))
    if any(s.preview for s in outcome.images):
        lines.append("The images below are previews; the files above are full size.")
    return "\n".join(lines)


def render(outcome: Outcome, budget: dict[str, Any] | None = None) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=summary(outcome, budget))]
    for saved in outcome.images:
        st = saved.stored
        if saved.inline_full:
            data = base64.b64encode(st.path.read_bytes()).decode()
            content.append(ImageContent(type="image", data=data, mime_type=st.mime_type))
        elif saved.preview is not None:
            pv = saved.preview
            content.append(ImageContent(type="image", data=base64.b64encode(pv.data).decode(), mime_type=pv.mime_type))
        content.append(
            ResourceLink(
                type="resource_link",
                name=st.path.name,
                uri=st.uri,
                mime_type=st.mime_type,
                size=st.bytes,
                description=f"{st.width}x{st.height} {st.format}, full size",
            )
        )
    data = structured(outcome)
    if budget is not None:
        data["budget"] = budget
    return CallToolResult(content=content, structured_content=data)


# --- errors, tasks and estimates ----------------------------------------------------------

POLL_AFTER_SECONDS = 15.0  # what an agent is told to wait between check_task calls


def error_result_from_dict(detail: dict[str, Any], *, task_id: str | None = None) -> CallToolResult:
    """A tool error from `errors.error_dict` (already scrubbed of the key): message, code, request id."""
    text = str(detail.get("message", "failed"))
    if task_id:
        detail = {**detail, "task_id": task_id}
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content={"error": detail}, is_error=True
    )


def outcome_json(outcome: Any, budget: dict[str, Any] | None = None) -> dict[str, Any]:
    return render(outcome, budget).model_dump(mode="json", by_alias=True, exclude_none=True)


def task_started(record: TaskRecord, *, poll_after: float, handed_off: bool = False) -> CallToolResult:
    why = (
        f"It took longer than {record.elapsed_seconds:.0f} s, so it goes on in the background"
        if handed_off
        else "It runs in the background"
    )
    text = (
        f"Task {record.id} is {record.status}. {why}: call check_task with task_id={record.id!r} "
        f"and wait_seconds=30 to collect the images (nothing is lost if you come back later)."
    )
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={"task_id": record.id, "status": record.status, "poll_after_seconds": poll_after},
    )


def task_result(record: TaskRecord) -> CallToolResult:
    """A task's state as a tool result: the stored result once it has succeeded."""
    if record.status == "succeeded" and record.result is not None:
        from mcp_images.server.downloads import for_client

        result = CallToolResult.model_validate(record.result)
        if result.structured_content is not None and not result.is_error:
            result.structured_content = {"task_id": record.id, "status": "succeeded", **result.structured_content}
        return for_client(result)  # a remote client: download URLs, no server paths to open
    if record.status in ("failed", "cancelled"):
        detail = dict(record.error or {"type": "TaskError", "message": f"task {record.id} {record.status}"})
        if record.status == "cancelled":
            detail["message"] = f"task {record.id} was cancelled: {detail.get('message', '')}".rstrip(": ")
        return error_result_from_dict({**detail, "status": record.status}, task_id=record.id)
    partials = [p for p in record.progress if "images://" in p]
    text = (
        f"Task {record.id} is {record.status} ({record.phase or 'queued'}, {record.elapsed_seconds:.0f} s so far"
        f"{f'; {len(partials)} partial image(s): ' + ', '.join(p.split(': ')[-1] for p in partials) if partials else ''}). "
        "Call check_task again with wait_seconds=30."
    )
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content={
            "task_id": record.id,
            "status": record.status,
            "phase": record.phase,
            "elapsed_seconds": round(record.elapsed_seconds, 1),
            "progress": record.progress,
            "poll_after_seconds": POLL_AFTER_SECONDS,
        },
    )


def render_estimate(est: Estimate, *, n: int, budget: dict[str, Any] | None = None) -> CallToolResult:
    """estimate_cost's answer: one summary line, one line per token kind, notes."""
    b = est.breakdown
    lines = [f"{est.model}, n={n}: {b.summary()}"]
    for line in b.lines:
        tokens = f"{line.tokens:,}" if line.tokens is not None else "-"
        if line.tokens_max is not None and line.tokens_max != line.tokens:
            tokens += f"-{line.tokens_max:,}"
        price = f" @ ${line.price_per_1m:g}/1M" if line.price_per_1m is not None else ""
        label = "exact" if line.exact else "estimate"
        lines.append(f"- {line.kind}: {tokens} tokens{price} ({label}: {line.basis})")
    lines.extend(f"note: {n}" for n in [*b.notes, *est.warnings])
    if budget is not None:
        lines.append(budget_line(budget) if "daily_budget" in budget else f"this call: {budget['verdict']}")
    structured = {
        "model": est.model, "n": n, "input_sizes": est.input_sizes, "warnings": est.warnings,
        **b.model_dump(mode="json"), **({"budget": budget} if budget is not None else {}),
    }  # fmt: skip
    return CallToolResult(content=[TextContent(type="text", text="\n".join(lines))], structured_content=structured)
