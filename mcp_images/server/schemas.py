"""The JSON schemas clients see: each tool's input, from the one declaration
(`catalog.parameters`), and each tool's output, which every ``structuredContent`` it returns
validates against (success, task started or running, estimate, refusal, failure).

Every turn of an agent pays for ``tools/list`` in context, so the schemas carry no titles.
"""

from __future__ import annotations

from typing import Any

from mcp_images.catalog.parameters import MAX_EDIT_IMAGES, Param, params_of

ESTIMATE_IMAGE_HELP = " For estimate_cost, WIDTHxHEIGHT stands in for an image (only dimensions are read)."


def _value_schema(p: Param, models: list[str]) -> dict[str, Any]:
    desc = p.description.replace("{models}", ", ".join(models))
    ref = {"type": "string", "minLength": 1}
    if p.kind == "image_refs":
        listed = {"type": "array", "items": ref, "minItems": 1, "maxItems": MAX_EDIT_IMAGES}
        return {"anyOf": [ref, listed], "description": desc}
    if p.kind == "image_ref":
        return {**ref, "description": desc}
    if p.kind == "object":
        obj: dict[str, Any] = {
            "type": "object",
            "description": desc,
            "properties": {f.name: _value_schema(f, models) for f in p.fields},
            "additionalProperties": False,
        }
        if needed := [f.name for f in p.fields if f.required_in]:
            obj["required"] = needed
        return obj
    out: dict[str, Any] = {"type": p.kind, "description": desc}
    for key, value in (
        ("enum", list(p.values) or None),
        ("minimum", p.minimum),
        ("maximum", p.maximum),
        ("minLength", p.min_length),
        ("maxLength", p.max_length),
        ("pattern", p.pattern),
    ):
        if value is not None:
            out[key] = int(value) if isinstance(value, float) and value.is_integer() else value
    if p.default not in (None, False) or (p.kind == "boolean" and p.default is False):
        out["default"] = p.default
    return out


def input_schema(tool: str, models: list[str]) -> dict[str, Any]:
    """``tool``'s input schema: every declared parameter it takes, nothing else."""
    params = params_of(tool)
    props = {p.name: _value_schema(p, models) for p in params}
    if tool == "estimate_cost":
        props["prompt"] = {**props["prompt"], "description": "The prompt (its length adds text tokens)."}
        props["prompt"].pop("minLength", None)
        props["image"] = {**props["image"], "description": props["image"]["description"] + ESTIMATE_IMAGE_HELP}
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    required = [p.name for p in params if tool in p.required_in]
    if required:
        schema["required"] = required
    return schema


# --- outputs ------------------------------------------------------------------------------

_STR = {"type": "string"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_OPT_STR = {"type": ["string", "null"]}
_STRS = {"type": "array", "items": _STR}

_IMAGE = {
    "type": "object",
    "properties": {
        "id": _STR,
        "uri": _STR,
        "path": _STR,
        "mime_type": _STR,
        "width": _INT,
        "height": _INT,
        "bytes": _INT,
        "note": _STR,
    },
    "required": ["id", "uri", "mime_type", "width", "height", "bytes"],
}
_COST_LINE = {
    "type": "object",
    "properties": {
        "kind": _STR,
        "tokens": {"type": ["integer", "null"]},
        "tokens_max": {"type": ["integer", "null"]},
        "price_per_1m": {"type": ["number", "null"]},
        "usd": {"type": ["number", "null"]},
        "usd_max": {"type": ["number", "null"]},
        "exact": {"type": "boolean"},
        "basis": _STR,
    },
    "required": ["kind"],
}
_COST_FIELDS: dict[str, Any] = {
    "currency": _STR,
    "total_usd": {"type": ["number", "null"]},
    "total_usd_max": {"type": ["number", "null"]},
    "per_image_usd": {"type": ["number", "null"]},
    "per_image_usd_max": {"type": ["number", "null"]},
    "lines": {"type": "array", "items": _COST_LINE},
    "price_table": _STR,
    "price_date": _STR,
    "exact": {"type": "boolean"},
    "source": {"enum": ["estimate", "usage"]},
    "basis": _STR,
    "range_note": _OPT_STR,
    "notes": _STRS,
}
_COST = {
    "type": ["object", "null"],
    "properties": {"model": _STR, **_COST_FIELDS},
    "required": ["total_usd", "currency", "lines"],
}
_USAGE = {"type": ["object", "null"], "additionalProperties": {"type": ["integer", "null"]}}
# The spending guard (pricing/guard.py): today's budget on results and estimates, a refusal's figures.
_BUDGET = {
    "type": "object",
    "properties": {
        "currency": _STR, "day": _STR, "daily_budget": _NUM, "spent_today": _NUM, "held_today": _NUM,
        "committed_today": _NUM, "remaining_today": _NUM, "resets_in": _STR, "verdict": _STR,
    },
}  # fmt: skip
_SPENDING_REFUSAL = {
    "type": "object",
    "properties": {
        "reason": {"enum": ["unknown_price", "per_call_limit", "daily_budget", "needs_confirmation", "declined",
                            "cancelled"]},
        "estimate": {"type": ["number", "null"]}, "currency": _STR, "limit": _NUM, "committed_today": _NUM,
        "remaining": _NUM, "fits_n": _INT, "day": _STR, "confirm_cost": {"type": ["number", "null"]},
    },
    "required": ["reason"],
}  # fmt: skip

IMAGE_RESULT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task_id": _STR,
        "status": {"const": "succeeded"},
        "images": {"type": "array", "items": _IMAGE},
        "model": _STR,
        "size": _OPT_STR,
        "quality": _OPT_STR,
        "background": _OPT_STR,
        "output_format": _OPT_STR,
        "usage": _USAGE,
        "svg_usage": {"type": ["object", "null"]},
        "safety_identifier": _OPT_STR,
        "cost": _COST,
        "revised_prompt": _OPT_STR,
        "request_id": _OPT_STR,
        "partial_images": {"type": "array", "items": _IMAGE},
        "warnings": _STRS,
        "elapsed_seconds": _NUM,
        "budget": _BUDGET,
    },
    "required": ["images", "model", "cost", "warnings"],
}
TASK_STATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task_id": _STR,
        "status": {"enum": ["queued", "running"]},
        "phase": _OPT_STR,
        "elapsed_seconds": _NUM,
        "progress": _STRS,
        "poll_after_seconds": _NUM,
    },
    "required": ["task_id", "status", "poll_after_seconds"],
    "not": {"required": ["images"]},
}
ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": _STR,
                "message": _STR,
                "field": _STR,
                "fix": _STR,
                "problems": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"field": _STR, "message": _STR}},
                },
                "status_code": {"type": ["integer", "null"]},
                "code": _OPT_STR,
                "request_id": _OPT_STR,
                "categories": {"type": ["array", "null"], "items": _STR},
                "task_id": _STR,
                "status": _STR,
                "spending": _SPENDING_REFUSAL,
            },
            "required": ["type", "message"],
        }
    },
    "required": ["error"],
}
ESTIMATE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "model": _STR,
        "n": _INT,
        "input_sizes": {"type": "array", "items": {"type": "array", "items": _INT}},
        "warnings": _STRS,
        **_COST_FIELDS,
        "budget": _BUDGET,
    },
    "required": ["model", "n", "total_usd", "lines"],
}


def output_schema(tool: str) -> dict[str, Any]:
    """What ``tool``'s ``structuredContent`` always is: one of its result shapes, or an error."""
    shapes = [ESTIMATE, ERROR] if tool == "estimate_cost" else [IMAGE_RESULT, TASK_STATE, ERROR]
    return {"type": "object", "anyOf": shapes}
