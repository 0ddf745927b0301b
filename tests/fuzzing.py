"""Property-based fuzzing of every tool through the protocol, shared by the test and the long run.

`tool_calls()` draws (tool, arguments) pairs: declared names with values of every JSON type
(valid ones from the declaration mixed in, so calls get past the first check), misspelled
and invented names, hostile strings (``"null"``, ``"../.."``, JSON text, control characters).
`judge()` says what is wrong with one answer, or None: an answer is either a success whose
``structuredContent`` fits the tool's outputSchema, or the project's structured error naming
the argument — never the SDK's generic text, a traceback or "internal error".
"""

from __future__ import annotations

from typing import Any

import jsonschema
from hypothesis import strategies as st

from mcp_images.catalog.parameters import PARAMS, Param, params_of

TOOLS = ("generate_image", "edit_image", "estimate_cost", "check_task")
OUR_ERRORS = frozenset(
    {
        "ValidationProblem",
        "InputError",
        "ConfigError",
        "TaskError",
        "RequestError",
        "BadRequestError",
        "NotFoundError",
        "ModerationError",
        "UpstreamError",
        "SpendingRefused",
    }
)
HOSTILE = [
    "null",
    "true",
    "[]",
    '["a.png"]',
    "{}",
    "../../etc/passwd",
    "/etc/passwd",
    "1024X1024",
    "auto",
    "",
    " ",
    "\x00",
    "\n",
    "images://../../x",
    "data:image/png;base64,AAAA",
    "file:///etc/hosts",
    "http://127.0.0.1:1/x.png",
    "gpt-image-2",
    "é" * 3,
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10, max_value=70_000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(HOSTILE),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)


def valid_value(p: Param) -> st.SearchStrategy[Any]:
    """A value the declaration itself accepts (the model may still refuse it)."""
    if p.values:
        return st.sampled_from(p.values)
    if p.kind == "boolean":
        return st.booleans()
    if p.kind in ("integer", "number"):
        low = int(p.minimum) if p.minimum is not None else 0
        high = int(p.maximum) if p.maximum is not None else 10
        return st.integers(min_value=low, max_value=high)
    if p.name == "size":
        return st.sampled_from(["auto", "1024x1024", "1536x1024", "2048x1152", "1000x1000", "256x256", "4096x4096"])
    if p.name == "prompt":
        return st.sampled_from(["a red fox", "x", "a fox " * 50])
    if p.kind == "object":
        return st.fixed_dictionaries({"model": st.sampled_from(["svg-1", "m"])})
    return st.sampled_from(["low", "a.png", "out/sub", "name"])


def misspelled(name: str) -> st.SearchStrategy[str]:
    return st.integers(min_value=0, max_value=max(len(name) - 1, 0)).map(lambda i: name[:i] + name[i + 1 :] or "x")


@st.composite
def tool_calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    tool = draw(st.sampled_from(TOOLS))
    params = params_of(tool)
    args: dict[str, Any] = {}
    if tool != "check_task" and draw(st.integers(0, 9)) > 1:
        args["prompt"] = draw(st.sampled_from(["a red fox", "a fox [low]"]))
    for _ in range(draw(st.integers(0, 5))):
        p = draw(st.sampled_from(params))
        args[p.name] = draw(st.one_of(valid_value(p), valid_value(p), json_values))
    if draw(st.booleans()) and draw(st.integers(0, 3)) == 0:
        other = draw(st.sampled_from(PARAMS))
        args[draw(st.one_of(misspelled(other.name), st.text(min_size=1, max_size=12)))] = draw(json_values)
    return tool, args


def judge(tool: str, args: dict[str, Any], result: Any, schema: dict[str, Any]) -> str | None:
    """Why ``result`` is not an acceptable answer to ``tool(args)``, or None."""
    text = "\n".join(getattr(b, "text", "") for b in result.content)
    if "Error executing tool" in text or "errors.pydantic.dev" in text or "Traceback" in text:
        return f"generic SDK error: {text[:200]}"
    if result.structured_content is None:
        return "no structuredContent"
    try:
        jsonschema.validate(result.structured_content, schema)
    except jsonschema.ValidationError as exc:
        return f"structuredContent outside the outputSchema: {exc.message}"
    if not result.is_error:
        return None
    error = result.structured_content["error"]
    if error.get("type") not in OUR_ERRORS and not str(error.get("type", "")).endswith("Error"):
        return f"unexpected error type {error.get('type')}: {error.get('message')}"
    if "internal error" in str(error.get("message", "")).lower():
        return f"internal error: {error.get('message')}"
    field = error.get("field")
    if error.get("type") == "ValidationProblem":
        if not field:
            return f"a refusal without a field: {error.get('message')}"
        named = field in args or field.split(".")[0] in args
        if not named and field not in ("prompt", "image", "task_id", "model"):
            return f"a refusal names {field!r}, which the call did not send"
    return None
