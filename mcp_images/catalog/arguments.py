"""Reading a tool call's raw JSON arguments against the declaration in `parameters`.

This runs before anything else (the SDK's own validation is bypassed, see
`server.tools`), so every refusal is the project's structured error: an unknown argument
names the closest real one, a type or bound names the field and what to send, and a
string is never reinterpreted as JSON (``"null"`` stays the four letters it is).
All problems are collected and reported together.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from mcp_images.catalog.parameters import BY_NAME, MAX_EDIT_IMAGES, Given, Param, params_of
from mcp_images.errors import ValidationProblem

Problem = tuple[str, str]  # (field, message)


def closest(name: str, candidates: list[str]) -> str | None:
    """The candidate ``name`` was most likely meant to be (case and separators ignored)."""
    flat = {c.lower().replace("-", "_"): c for c in candidates}
    key = name.lower().replace("-", "_").replace(" ", "_")
    if key in flat:
        return flat[key]
    found = difflib.get_close_matches(key, list(flat), n=1, cutoff=0.75)
    return flat[found[0]] if found else None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_string(p: Param, where: str, value: Any, out: list[Problem]) -> Any:
    if not isinstance(value, str):
        out.append((where, f"{where} must be a string; you sent {_json_kind(value)} ({_shown(value)})"))
        return None
    if p.min_length is not None and len(value) < p.min_length:
        out.append((where, f"{where} must not be empty"))
    elif p.max_length is not None and len(value) > p.max_length:
        out.append((where, f"{where} is {len(value):,} characters; at most {p.max_length:,} are allowed"))
    if p.values and value not in p.values:
        near = closest(value, list(p.values))
        hint = f" (did you mean {near!r}?)" if near else ""
        out.append((where, f"{where} must be one of {', '.join(p.values)}; you sent {_shown(value)}{hint}"))
    if p.pattern and not re.match(p.pattern, value):
        lowered = value.strip().lower()
        hint = f"; did you mean {lowered!r}?" if re.match(p.pattern, lowered) else ""
        out.append(
            (where, f"{where} must be {p.pattern_hint or 'of the documented form'}; you sent {_shown(value)}{hint}")
        )
    return value


def _check_number(p: Param, where: str, value: Any, out: list[Problem]) -> Any:
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not isinstance(value, int | float) or (p.kind == "integer" and not integral):
        want = "a whole number" if p.kind == "integer" else "a number"
        out.append((where, f"{where} must be {want}; you sent {_json_kind(value)} ({_shown(value)})"))
        return None
    number = int(value) if p.kind == "integer" else value
    if p.minimum is not None and number < p.minimum:
        out.append((where, f"{where} must be at least {p.minimum:g}; you sent {number}"))
    elif p.maximum is not None and number > p.maximum:
        out.append((where, f"{where} must be at most {p.maximum:g}; you sent {number}"))
    return number


def _check_refs(p: Param, where: str, value: Any, out: list[Problem]) -> Any:
    if p.kind == "image_ref" or isinstance(value, str):
        if not isinstance(value, str) or not value:
            what = "an image reference" if p.kind == "image_ref" else "an image reference or a list of them"
            out.append((where, f"{where} must be {what} (a non-empty string); you sent {_json_kind(value)}"))
            return None
        return value
    if not isinstance(value, list) or not value:
        out.append((where, f"{where} must be an image reference or a list of 1-{MAX_EDIT_IMAGES} of them"))
        return None
    if len(value) > MAX_EDIT_IMAGES:
        out.append((where, f"{where} lists {len(value)} images; at most {MAX_EDIT_IMAGES} are allowed"))
    if not all(isinstance(v, str) and v for v in value):
        out.append((where, f"every entry of {where} must be a non-empty string (an image reference)"))
    return list(value)


def _check_object(p: Param, where: str, value: Any, out: list[Problem]) -> Any:
    if not isinstance(value, dict):
        out.append((where, f"{where} must be an object; you sent {_json_kind(value)} ({_shown(value)})"))
        return None
    return _check_members(p.fields, value, out, prefix=f"{where}.", tool=None)


def check_value(p: Param, where: str, value: Any, out: list[Problem]) -> Any:
    """``value`` as ``p`` declares it (problems appended to ``out``)."""
    if p.kind == "string":
        return _check_string(p, where, value, out)
    if p.kind in ("integer", "number"):
        return _check_number(p, where, value, out)
    if p.kind == "boolean":
        if not isinstance(value, bool):
            out.append((where, f"{where} must be true or false; you sent {_json_kind(value)} ({_shown(value)})"))
            return None
        return value
    if p.kind == "object":
        return _check_object(p, where, value, out)
    return _check_refs(p, where, value, out)


def _unknown(name: str, known: list[str], tool: str | None) -> str:
    other = BY_NAME.get(name)
    if tool is not None and other is not None and other.tools:
        owners = " and ".join(sorted(other.tools))
        return f"{name} applies to {owners} only, not {tool}; leave it out"
    near = closest(name, known)
    hint = f"; did you mean {near!r}?" if near else f"; known arguments: {', '.join(known)}"
    return f"unknown argument {name!r}{hint}"


def _check_members(
    params: tuple[Param, ...], raw: Mapping[str, Any], out: list[Problem], *, prefix: str, tool: str | None
) -> dict[str, Any]:
    declared = {p.name: p for p in params}
    values: dict[str, Any] = {}
    for name, value in raw.items():
        p = declared.get(name)
        if p is None:
            out.append((prefix + name, _unknown(name, list(declared), tool)))
        elif value is not None:  # JSON null: the same as leaving it out
            checked = check_value(p, prefix + name, value, out)
            if checked is not None:
                values[name] = checked
    for p in params:
        needed = tool in p.required_in if tool is not None else bool(p.required_in)
        if needed and name_missing(p.name, values, raw):
            out.append((prefix + p.name, f"{prefix}{p.name} is required: {p.description}"))
    return values


def name_missing(name: str, values: Mapping[str, Any], raw: Mapping[str, Any]) -> bool:
    return name not in values and raw.get(name) is None


def parse_arguments(tool: str, raw: Mapping[str, Any] | None) -> Given:
    """The arguments of one call to ``tool``, checked against the declaration.

    Raises:
        ValidationProblem: every unknown, missing, mistyped or out-of-bounds argument.
    """
    problems: list[Problem] = []
    values = _check_members(params_of(tool), raw or {}, problems, prefix="", tool=tool)
    if problems:
        raise problem_from(problems)
    return Given(tool=tool, values=values)


def problem_from(problems: list[Problem]) -> ValidationProblem:
    """One `ValidationProblem` for every problem found, numbered when there are several."""
    if len(problems) == 1:
        message = problems[0][1]
    else:
        message = f"{len(problems)} problems: " + "; ".join(f"({i}) {m}" for i, (_, m) in enumerate(problems, 1))
    return ValidationProblem(message, field=problems[0][0], problems=problems)
