"""Render an `Outcome` as an MCP tool result every client can show.

Content, in order: one text summary; per image a preview (``ImageContent``, downscaled so
the whole result stays far below the 1 MiB Claude Desktop accepts) and a ``ResourceLink``
to ``images://<id>``. ``structuredContent`` carries the same facts for programs.
"""

from __future__ import annotations

import base64
from typing import Any

from mcp.types import CallToolResult, ContentBlock, ImageContent, ResourceLink, TextContent

from mcp_images.tools import Outcome


def _human_bytes(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} MB"
    return f"{n / 1000:.0f} KB"


def usage_line(usage: dict[str, Any] | None) -> str | None:
    if not usage:
        return None
    details = usage.get("input_tokens_details") or {}
    parts = [f"input {usage.get('input_tokens', 0)} tokens"]
    if details:
        parts[0] += f" (text {details.get('text_tokens', 0)}, image {details.get('image_tokens', 0)})"
    parts.append(f"output {usage.get('output_tokens', 0)}")
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
        "cost": outcome.cost.model_dump(mode="json") if outcome.cost else None,
        "revised_prompt": outcome.revised_prompts[0] if outcome.revised_prompts else None,
        "request_id": outcome.request_id,
        "partial_images": [s.as_dict() for s in outcome.partials],
        "warnings": outcome.warnings,
        "elapsed_seconds": round(outcome.elapsed, 2),
    }


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


def summary(outcome: Outcome) -> str:
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
        lines.append(f"{i}. {st.path} — {st.width}x{st.height} {st.format}, {_human_bytes(st.bytes)} — {st.uri}")
    if outcome.partials:
        lines.append("partial images: " + ", ".join(s.uri for s in outcome.partials))
    if (u := usage_line(outcome.usage)) is not None:
        lines.append(u)
    if outcome.cost is not None:
        lines.append("cost: " + outcome.cost.summary())
    for prompt in outcome.revised_prompts[:1]:
        lines.append(f"revised prompt: {prompt}")
    lines.extend(f"note: {w}" for w in outcome.warnings)
    if any(s.preview for s in outcome.images):
        lines.append("The images below are previews; the files above are full size.")
    return "\n".join(lines)


def render(outcome: Outcome) -> CallToolResult:
    content: list[ContentBlock] = [TextContent(type="text", text=summary(outcome))]
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
    return CallToolResult(content=content, structured_content=structured(outcome))
