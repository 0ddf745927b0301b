"""The per-model and cross-parameter checks of a call, read from the declaration and the catalog.

`check_params` walks the declared parameters (`parameters.PARAMS`): a ``per_model`` one is
judged by the model's ``accepts`` row, and every `parameters.RULES` entry ties values
together (transparent needs png or webp, gif takes no stream, ...). Sizes, counts and
prompt lengths are the model's own fields. Every broken rule is listed in one message.
"""

from __future__ import annotations

import re
from typing import Any

from mcp_images.catalog.arguments import problem_from
from mcp_images.catalog.models import ImageParams, ModelSpec, SizeRule
from mcp_images.catalog.parameters import BY_NAME
from mcp_images.catalog.rules import RULES

SIZE_PATTERN = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
Problem = tuple[str, str]


def parse_size(size: str) -> tuple[int, int] | None:
    """``"1536x1024"`` -> ``(1536, 1024)``; ``None`` for ``auto`` or anything else."""
    m = SIZE_PATTERN.match(size)
    return (int(m.group(1)), int(m.group(2))) if m else None


def size_rule_problem(rule: SizeRule, width: int, height: int) -> str | None:
    """Why ``width x height`` breaks a free-size rule, or None when it fits."""
    long, short = max(width, height), min(width, height)
    pixels = width * height
    if width % rule.multiple or height % rule.multiple:
        w = round(width / rule.multiple) * rule.multiple
        h = round(height / rule.multiple) * rule.multiple
        return f"both sides must be multiples of {rule.multiple} (nearest: {w}x{h})"
    if long > rule.max_side:
        return f"the longest side may be at most {rule.max_side} px"
    if long / short > rule.max_ratio:
        return f"the aspect ratio may be at most {rule.max_ratio:g}:1"
    if pixels < rule.min_pixels:
        return f"the image must have at least {rule.min_pixels:,} pixels (e.g. 1024x640); it has {pixels:,}"
    if pixels > rule.max_pixels:
        return f"the image may have at most {rule.max_pixels:,} pixels (e.g. 3840x2160); it has {pixels:,}"
    return None


def one_of(values: list[Any]) -> str:
    """A list of allowed values as a message shows it."""
    return ", ".join(str(v) for v in values)


def _size_problems(spec: ModelSpec, size: str, out: list[Problem], warnings: list[str]) -> None:
    name = spec.name
    dims = parse_size(size)
    if size in spec.sizes or not spec.known:
        pass
    elif size == "auto":
        out.append(("size", f"{name} has no size=auto; pick one of {one_of(spec.sizes)}"))
    elif spec.size_rule is not None and dims is not None:
        why = size_rule_problem(spec.size_rule, *dims)
        if why:
            out.append(("size", f"size {size} does not fit {name}: {why}"))
    else:
        out.append(("size", f"{name} takes size {one_of(spec.sizes)}; you sent {size!r}"))
    limit = spec.size_rule.experimental_above_pixels if spec.size_rule else None
    if limit and dims and dims[0] * dims[1] > limit:
        warnings.append(f"size {size} is above 2560x1440: OpenAI calls such outputs experimental")


def model_refusal(spec: ModelSpec, name: str, value: Any) -> str | None:
    """Why ``spec`` does not take ``name=value`` (its ``accepts`` row), or None when it does."""
    if not spec.known:
        return None
    allowed = spec.accepts.get(name)
    if allowed is None or allowed is False or allowed == []:
        return spec.refusals.get(name) or BY_NAME[name].not_taken.format(model=spec.name, name=name)
    if isinstance(allowed, list) and value not in allowed:
        special = spec.refusals.get(f"{name}={value}")
        return special or f"{spec.name} takes {name} {one_of(allowed)}; you sent {value!r}"
    if isinstance(allowed, dict):
        top, bottom = allowed.get("max"), allowed.get("min")
        if top is not None and value > top:
            return f"{spec.name} takes {name} up to {top:g}; you sent {value}"
        if bottom is not None and value < bottom:
            return f"{spec.name} takes {name} from {bottom:g}; you sent {value}"
    return None


def _rule_message(template: str, given: dict[str, Any]) -> str:
    shown = {k: (given.get(k, BY_NAME[k].default) if k in BY_NAME else None) for k in BY_NAME}
    shown["n"] = given.get("n", 1)
    return template.format(**shown)


def check_params(spec: ModelSpec, p: ImageParams, *, edit: bool = False) -> list[str]:
    """Every rule of ``spec`` and of the declaration that ``p`` breaks.

    Returns warnings (not errors) such as "experimental size" or "not in the catalog".

    Raises:
        ValidationProblem: one or more rules are broken; all are listed, each saying what to change.
    """
    problems: list[Problem] = []
    warnings: list[str] = []
    name = spec.name
    if edit and not spec.edits:
        problems.append(("model", f"{name} cannot edit images (generation only); use gpt-image-2 for edits"))
    if len(p.prompt) > spec.prompt_max:
        problems.append(
            ("prompt", f"prompt is {len(p.prompt):,} characters; {name} accepts at most {spec.prompt_max:,}")
        )
    if p.n is not None and p.n > spec.n_max:
        plural = "s" if spec.n_max > 1 else ""
        problems.append(("n", f"{name} makes at most n={spec.n_max} image{plural} per call; you asked for {p.n}"))
    if p.size is not None:
        _size_problems(spec, p.size, problems, warnings)
    for key, value in p.values.items():
        param = BY_NAME.get(key)
        if param is not None and param.per_model and (why := model_refusal(spec, key, value)):
            problems.append((key, why))
    given = {**p.values, "prompt": p.prompt}
    for rule in RULES:
        if rule.broken(given) and not any(f == rule.field for f, _ in problems):
            problems.append((rule.field, _rule_message(rule.message, given)))
    if p.get("user") is not None and p.get("safety_identifier") is not None:
        warnings.append("user is deprecated and ignored when safety_identifier is given")
    if problems:
        raise problem_from(problems)
    if not spec.known and spec.notes:
        warnings.append(spec.notes)
    return warnings
