"""The request fields the sandbox knows, typed and bounded as the one declaration says.

Which fields exist, their types, their value lists and their bounds all come from
`mcp_images.catalog.parameters` (every ``Param`` with ``wire="body"``); the sandbox adds only
``response_format``, which the server never declares (OpenAI refuses it for GPT image models,
the dall-e imitation and the aggregators take it). Per-model rules are not checked here but
by the catalog's `check_params` (see `mcp_images.sandbox.params`).

Decisions (OpenAI's documented behaviour where the declaration is stricter or silent):

- Multipart bodies flatten objects into bracket fields (``svg[model]``,
  ``svg[reasoning][effort]``); they are parsed back into ``{"svg": {"model": ...}}``.
- An empty ``safety_identifier`` counts as left out (the SDK: "If omitted, null, or empty,
  the API uses ``user``").
- ``frame_duration_ms`` above 655,350 is capped, not refused (the SDK: GIF output "caps the
  encoded delay at 655,350 ms per frame"); below the declared minimum it is refused.
- Errors are worded and coded the way OpenAI words them (``invalid_type``,
  ``integer_below_min_value``, ``invalid_value``, ``unknown_parameter``), with ``param`` the
  field's dotted path (``svg.reasoning.effort``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mcp_images.catalog.parameters import PARAMS, Param
from mcp_images.sandbox.modes import SandboxError, bad_request

RESPONSE_FORMAT = Param("response_format", "string", "url or b64_json (dall-e, aggregators).", frozenset(),
                        values=("url", "b64_json"))  # fmt: skip
WIRE_PARAMS: dict[str, Param] = {p.name: p for p in PARAMS if p.wire == "body"} | {"response_format": RESPONSE_FORMAT}
KNOWN_FIELDS = frozenset(WIRE_PARAMS)
FRAME_DURATION_CAP_MS = 655_350  # GIF delays are 16-bit centiseconds: 65,535 x 10 ms
BRACKETS = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[[^\[\]]*\])+)$")


def _kind_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else "null"


def _wrong_type(where: str, expected: str, value: Any) -> SandboxError:
    return bad_request(
        f"Invalid type for '{where}': expected {expected}, but got {_kind_name(value)} instead.",
        param=where,
        code="invalid_type",
    )


def _integer(p: Param, where: str, value: Any, *, form: bool) -> int:
    if form and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _wrong_type(where, "an integer", "text") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong_type(where, "an integer", value)
    if p.name == "frame_duration_ms":
        value = min(value, FRAME_DURATION_CAP_MS)
    if p.minimum is not None and value < p.minimum:
        raise bad_request(
            f"Invalid '{where}': integer below minimum value. Expected a value >= {p.minimum:g}, but got {value} instead.",
            param=where,
            code="integer_below_min_value",
        )
    if p.maximum is not None and value > p.maximum:
        raise bad_request(
            f"Invalid '{where}': integer above maximum value. Expected a value <= {p.maximum:g}, but got {value} instead.",
            param=where,
            code="integer_above_max_value",
        )
    return value


def _string(p: Param, where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong_type(where, "a string", value)
    if p.max_length is not None and len(value) > p.max_length:
        raise bad_request(
            f"Invalid '{where}': string too long. Expected a string with maximum length {p.max_length}, "
            f"but got a string with length {len(value)} instead.",
            param=where,
            code="string_above_max_length",
        )
    if p.values and value not in p.values:
        allowed = ", ".join(f"'{v}'" for v in p.values)
        raise bad_request(f"Invalid value: '{value}'. Supported values are: {allowed}.", param=where)
    if p.pattern and not re.match(p.pattern, value):
        raise bad_request(f"Invalid '{where}': {value!r}.", param=where)
    return value


def _object(p: Param, where: str, value: Any, *, form: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong_type(where, "an object", value)
    members = {m.name: m for m in p.fields}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        member = members.get(key)
        if member is None:
            raise bad_request(f"Unknown parameter: '{where}.{key}'.", param=f"{where}.{key}", code="unknown_parameter")
        if inner is not None:
            out[key] = typed_value(member, f"{where}.{key}", inner, form=form)
    return out


def typed_value(p: Param, where: str, value: Any, *, form: bool) -> Any:
    """``value`` with the declared type of ``p``, within its bounds (form text converted).

    Raises:
        SandboxError: a wrong type, a value out of bounds or off the declared list (400).
    """
    if p.kind in ("integer", "number"):
        return _integer(p, where, value, form=form)
    if p.kind == "boolean":
        if form and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise _wrong_type(where, "a boolean", value)
        return value
    if p.kind == "object":
        return _object(p, where, value, form=form)
    return _string(p, where, value)


def unflatten(text: Mapping[str, str]) -> dict[str, Any]:
    """Multipart text fields with bracket names folded back into objects.

    ``{"svg[model]": "m", "svg[reasoning][effort]": "low"}`` -> ``{"svg": {"model": "m",
    "reasoning": {"effort": "low"}}}``; other names are kept as they are.

    Raises:
        SandboxError: a name is used both as a plain field and as an object.
    """
    out: dict[str, Any] = {}
    for name, value in text.items():
        m = BRACKETS.match(name)
        if m is None or name.endswith("[]"):
            out[name] = value
            continue
        keys = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))]
        node = out
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise _wrong_type(key, "an object", child)
            node = child
        node[keys[-1]] = value
    return out


def read_fields(raw: Mapping[str, Any], *, strict: bool, form: bool) -> dict[str, Any]:
    """Known fields, typed and bounded; unknown ones refused (``strict``) or dropped.

    Raises:
        SandboxError: an unknown field (strict providers), a wrong type or an out-of-bounds value.
    """
    source = unflatten(raw) if form else dict(raw)
    out: dict[str, Any] = {}
    for name, value in source.items():
        p = WIRE_PARAMS.get(name)
        if p is None:
            if strict:
                raise bad_request(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
            continue
        if value is None or (name == "safety_identifier" and value == ""):
            continue
        out[name] = typed_value(p, name, value, form=form)
    return out
