"""The tool contract, through the protocol: every argument checked, every refusal structured,
every structuredContent inside the tool's outputSchema, estimate and call refusing alike."""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from mcp import Client
from PIL import Image

from mcp_images.server.build import create_server
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

TOOLS = ("generate_image", "edit_image", "estimate_cost", "check_task")


def text_of(result: Any) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


async def output_schemas(client: Client) -> dict[str, dict[str, Any]]:
    return {t.name: t.output_schema or {} for t in (await client.list_tools()).tools}


def assert_fits(schemas: dict[str, dict[str, Any]], tool: str, result: Any) -> None:
    assert result.structured_content is not None, f"{tool} returned no structuredContent"
    jsonschema.validate(result.structured_content, schemas[tool])


def png_file(path: Path, size: tuple[int, int] = (1024, 1024), *, alpha: bool = False) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGBA" if alpha else "RGB", size, (200, 80, 40, 0) if alpha else (200, 80, 40))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return str(path)


def minimal(tool: str, tmp_path: Path) -> dict[str, Any]:
    if tool == "check_task":
        return {"task_id": "task-0000"}
    args: dict[str, Any] = {"prompt": "a red fox"}
    if tool == "edit_image":
        args["image"] = png_file(tmp_path / "out" / "in.png")
    return args


MISSPELLED = [("qualty", "quality"), ("sise", "size"), ("Prompt", "prompt"), ("output-format", "output_format")]


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize(("wrong", "right"), MISSPELLED)
async def test_a_misspelled_argument_is_refused_naming_the_real_one_and_costs_nothing(
    client: Client, sandbox: Any, tmp_path: Path, tool: str, wrong: str, right: str
) -> None:
    args = minimal(tool, tmp_path)
    if tool == "check_task" and right not in ("prompt",):
        right = {"quality": "task_id", "size": "task_id", "output_format": "task_id"}.get(right, right)
    args[wrong] = "high"
    result = await client.call_tool(tool, args)
    assert result.is_error
    error = result.structured_content["error"]
    assert error["field"] == wrong
    if tool != "check_task":
        assert f"did you mean {right!r}" in error["message"]
        assert error["fix"] == f"did you mean {right!r}?"
    assert sandbox.state.image_requests() == []


def test_an_unknown_argument_names_the_tool_it_belongs_to() -> None:
    from mcp_images.catalog.arguments import parse_arguments
    from mcp_images.errors import ValidationProblem

    with pytest.raises(ValidationProblem) as info:
        parse_arguments("generate_image", {"prompt": "x", "input_fidelity": "high"})
    assert "applies to edit_image and estimate_cost only" in str(info.value)


WRONG = [
    ({"prompt": 5}, "prompt", "must be a string"),
    ({"prompt": "x", "n": "two"}, "n", "whole number"),
    ({"prompt": "x", "n": 2.5}, "n", "whole number"),
    ({"prompt": "x", "n": True}, "n", "whole number"),
    ({"prompt": "x", "n": 17}, "n", "at most 10"),
    ({"prompt": "x" * 32_001}, "prompt", "at most 32,000"),
    ({"prompt": ""}, "prompt", "must not be empty"),
    ({"prompt": "x", "size": "1024X1024"}, "size", "did you mean '1024x1024'"),
    ({"prompt": "x", "quality": "ultra"}, "quality", "one of low, medium"),
    ({"prompt": "x", "quality": "HIGH"}, "quality", "did you mean 'high'"),
    ({"prompt": "x", "stream": "true"}, "stream", "true or false"),
    ({"prompt": "x", "output_compression": 101}, "output_compression", "at most 100"),
    ({"prompt": "x", "frame_count": 1}, "frame_count", "at least 2"),
    ({"prompt": "x", "svg": "gpt-svg"}, "svg", "must be an object"),
    ({"prompt": "x", "svg": {"modle": "m"}}, "svg.modle", "did you mean 'model'"),
    ({"prompt": "x", "svg": {"reasoning": {"effort": "huge"}}}, "svg.reasoning.effort", "one of none"),
    ({}, "prompt", "prompt is required"),
]


@pytest.mark.parametrize(("args", "field", "says"), WRONG)
async def test_a_type_or_bound_error_is_the_projects_structured_error(
    client: Client, sandbox: Any, args: dict[str, Any], field: str, says: str
) -> None:
    schemas = await output_schemas(client)
    result = await client.call_tool("generate_image", args)
    assert result.is_error
    assert "errors.pydantic.dev" not in text_of(result) and "Error executing tool" not in text_of(result)
    assert result.structured_content["error"]["field"] == field
    assert says in result.structured_content["error"]["message"]
    assert_fits(schemas, "generate_image", result)
    assert sandbox.state.image_requests() == []


async def test_every_problem_of_a_call_is_listed_with_its_field(client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": 5, "n": 0, "qualty": "high"})
    error = result.structured_content["error"]
    assert error["message"].startswith("3 problems")
    assert [p["field"] for p in error["problems"]] == ["prompt", "n", "qualty"]


async def test_seventeen_input_images_are_refused_before_any_is_read(client: Client, sandbox: Any) -> None:
    result = await client.call_tool("edit_image", {"prompt": "x", "image": ["/nowhere.png"] * 17})
    assert result.is_error and result.structured_content["error"]["field"] == "image"
    assert "at most 16" in result.structured_content["error"]["message"]
    assert sandbox.state.image_requests() == []


async def test_a_string_argument_is_never_read_as_json(client: Client, sandbox: Any, tmp_path: Path) -> None:
    image = png_file(tmp_path / "out" / "ok.png")
    result = await client.call_tool("edit_image", {"prompt": "x", "image": image, "mask": "null"})
    assert result.is_error, "the mask 'null' must be read as a reference, not as JSON null"
    assert result.structured_content["error"]["field"] == "mask"
    result = await client.call_tool("edit_image", {"prompt": "x", "image": '["a.png", "b.png"]'})
    assert result.is_error and result.structured_content["error"]["field"] == "image"
    assert sandbox.state.image_requests() == []


async def test_json_null_means_the_argument_was_left_out(client: Client, sandbox: Any) -> None:
    result = await client.call_tool("generate_image", {"prompt": "x", "quality": None, "size": None})
    assert not result.is_error, text_of(result)
    assert "quality" not in sandbox.state.image_requests()[0].fields


async def test_every_structured_result_fits_its_tools_output_schema(client: Client, tmp_path: Path) -> None:
    schemas = await output_schemas(client)
    for tool, schema in schemas.items():
        assert schema is not None and schema["type"] == "object", tool
    done = await client.call_tool("generate_image", {"prompt": "a fox", "quality": "low"})
    assert not done.is_error, text_of(done)
    assert_fits(schemas, "generate_image", done)
    failed = await client.call_tool("generate_image", {"prompt": "a fox [sandbox:500]"})
    assert failed.is_error
    assert_fits(schemas, "generate_image", failed)
    started = await client.call_tool("generate_image", {"prompt": "a fox", "async": True})
    assert_fits(schemas, "generate_image", started)
    task_id = started.structured_content["task_id"]
    finished = await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 30})
    assert_fits(schemas, "check_task", finished)
    assert finished.structured_content["task_id"] == task_id
    assert finished.structured_content["status"] == "succeeded"
    assert finished.structured_content["images"]
    unknown = await client.call_tool("check_task", {"task_id": "task-ffffffffffffffff"})
    assert unknown.is_error
    assert_fits(schemas, "check_task", unknown)
    estimate = await client.call_tool("estimate_cost", {"prompt": "a fox", "quality": "high"})
    assert_fits(schemas, "estimate_cost", estimate)
    refused = await client.call_tool("estimate_cost", {"prompt": "a fox", "quality": "ultra"})
    assert_fits(schemas, "estimate_cost", refused)
    edit = await client.call_tool("edit_image", {"prompt": "x", "image": png_file(tmp_path / "out" / "e.png")})
    assert not edit.is_error, text_of(edit)
    assert_fits(schemas, "edit_image", edit)


# --- estimate and call refuse alike ---------------------------------------------------------

CASES_MODELS = ["gpt-image-2", "gpt-image-2.5-sunburst", "gpt-image-1.5", "gpt-image-1-mini", "dall-e-2", "dall-e-3"]
CASES_ARGS: list[dict[str, Any]] = [
    {},
    {"quality": "xhigh"},
    {"quality": "hd"},
    {"background": "transparent"},
    {"background": "transparent", "output_format": "jpeg"},
    {"output_format": "gif", "frame_count": 4},
    {"output_format": "svg", "n": 2},
    {"complexity": "high"},
    {"moderation": "low"},
    {"input_fidelity": "high"},
    {"n": 3, "size": "1792x1024"},
    {"size": "2048x1152"},
    {"stream": True, "partial_images": 2},
]


def _case_id(case: tuple[str, dict[str, Any]]) -> str:
    model, args = case
    return model + ":" + ",".join(f"{k}={v}" for k, v in args.items())


@pytest.mark.parametrize("case", list(itertools.product(CASES_MODELS, CASES_ARGS)), ids=_case_id)
async def test_estimate_and_edit_refuse_exactly_the_same_calls(
    tmp_path: Path, sandbox: Any, case: tuple[str, dict[str, Any]]
) -> None:
    model, extra = case
    settings = make_settings(tmp_path, sandbox.base_url, provider="openai")
    image = png_file(tmp_path / "out" / "in.png")
    args = {"prompt": "a red fox", "model": model, "image": image, **extra}
    async with Client(create_server(settings)) as client:
        estimate = await client.call_tool("estimate_cost", args)
        call = await client.call_tool("edit_image", args)
    assert estimate.is_error == call.is_error, (text_of(estimate), text_of(call))
    if call.is_error:
        assert estimate.structured_content["error"]["field"] == call.structured_content["error"]["field"]
        assert estimate.structured_content["error"]["message"] == call.structured_content["error"]["message"]


@pytest.mark.parametrize("case", list(itertools.product(CASES_MODELS, CASES_ARGS)), ids=_case_id)
async def test_estimate_and_generate_refuse_exactly_the_same_calls(
    client: Client, sandbox: Any, case: tuple[str, dict[str, Any]]
) -> None:
    model, extra = case
    args = {"prompt": "a red fox", "model": model, **{k: v for k, v in extra.items() if k != "input_fidelity"}}
    estimate = await client.call_tool("estimate_cost", args)
    call = await client.call_tool("generate_image", args)
    if estimate.is_error:
        assert call.is_error
        assert estimate.structured_content["error"]["message"] == call.structured_content["error"]["message"]
    else:
        # What the estimate passed, the server sent; the sandbox (checking the same rules) took it.
        assert not call.is_error, text_of(call)


async def test_moderation_on_an_openai_edit_is_refused_by_the_estimate_too(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, provider="openai")
    image = png_file(tmp_path / "out" / "in.png")
    async with Client(create_server(settings)) as client:
        est = await client.call_tool("estimate_cost", {"prompt": "x", "image": image, "moderation": "low"})
    assert est.is_error and est.structured_content["error"]["field"] == "moderation"


# --- models: names, lifecycle, the operator's list ------------------------------------------


async def test_a_case_or_separator_variant_is_sent_as_the_catalog_name(client: Client, sandbox: Any) -> None:
    result = await client.call_tool("generate_image", {"prompt": "x", "model": "GPT_Image-1.5", "quality": "low"})
    assert not result.is_error, text_of(result)
    assert sandbox.state.image_requests()[0].fields["model"] == "gpt-image-1.5"
    assert "read as 'gpt-image-1.5'" in text_of(result)


@pytest.mark.parametrize(("asked", "near"), [("gpt-image-1.6", "gpt-image-1.5"), ("gpt-image2", "gpt-image-2")])
async def test_a_near_miss_model_runs_permissive_and_says_did_you_mean(
    client: Client, sandbox: Any, asked: str, near: str
) -> None:
    result = await client.call_tool("estimate_cost", {"prompt": "x", "model": asked})
    assert f"Did you mean {near!r}?" in text_of(result)


async def test_the_upstreams_refusal_of_a_near_miss_says_did_you_mean(tmp_path: Path, strict_sandbox: Any) -> None:
    settings = make_settings(tmp_path, strict_sandbox.base_url, provider="openai")
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x", "model": "gpt-image2"})
    assert result.is_error and result.structured_content["error"]["type"] == "NotFoundError"
    assert "did you mean 'gpt-image-2'?" in result.structured_content["error"]["message"]


async def test_retired_models_are_refused_on_openais_own_api_naming_the_successor(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, None, provider="openai")
    async with Client(create_server(settings)) as client:
        for model, successor in [("gpt-image-1", "gpt-image-2.5-sunburst"), ("dall-e-3", "gpt-image-2")]:
            result = await client.call_tool("generate_image", {"prompt": "x", "model": model})
            assert result.is_error and result.structured_content["error"]["field"] == "model"
            assert "shut down on OpenAI's API" in text_of(result) and successor in text_of(result)
            est = await client.call_tool("estimate_cost", {"prompt": "x", "model": model})
            assert est.is_error


async def test_retired_models_still_run_elsewhere_with_a_warning(client: Client, sandbox: Any) -> None:
    result = await client.call_tool("generate_image", {"prompt": "x", "model": "gpt-image-1", "quality": "low"})
    assert not result.is_error, text_of(result)
    assert any("OpenAI retired gpt-image-1" in w for w in result.structured_content["warnings"])


async def test_an_operator_list_restricts_the_models(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, allowed_models="gpt-image-2, gpt-image-2.5-flare")
    async with Client(create_server(settings)) as client:
        refused = await client.call_tool("generate_image", {"prompt": "x", "model": "gpt-image-1.5"})
        allowed = await client.call_tool("generate_image", {"prompt": "x", "model": "gpt-image-2", "quality": "low"})
    assert refused.is_error and "gpt-image-2, gpt-image-2.5-flare" in text_of(refused)
    assert not allowed.is_error, text_of(allowed)
    assert [r.fields["model"] for r in sandbox.state.image_requests()] == ["gpt-image-2"]


# --- today's parameters reach the wire --------------------------------------------------------


async def test_new_parameters_go_upstream_as_declared(client: Client, sandbox: Any) -> None:
    args = {
        "prompt": "x",
        "model": "gpt-image-2.5-sunburst",
        "quality": "xhigh",
        "complexity": "high",
        "safety_identifier": "user-7f3a",
    }
    result = await client.call_tool("generate_image", args)
    assert not result.is_error, text_of(result)
    fields = sandbox.state.image_requests()[0].fields
    assert {k: fields.get(k) for k in args if k != "prompt"} == {k: v for k, v in args.items() if k != "prompt"}
    assert "async" not in fields and "output_path" not in fields


def test_a_nested_parameter_is_flattened_for_multipart() -> None:
    from mcp_images.catalog.parameters import form_fields

    body = {"model": "m", "svg": {"model": "svg-1", "reasoning": {"effort": "low"}}}
    assert form_fields(body) == {"model": "m", "svg[model]": "svg-1", "svg[reasoning][effort]": "low"}


# --- protocol error codes and capabilities ----------------------------------------------------


async def test_reading_an_unknown_image_is_resource_not_found_not_an_internal_error(client: Client) -> None:
    from mcp.shared.exceptions import MCPError
    from mcp.types import INVALID_PARAMS

    with pytest.raises(MCPError) as info:
        await client.read_resource("images://0123456789ab")
    # SEP-2164 (final): a resource that is not there is -32602, the code the SDK maps it to.
    assert info.value.error.code == INVALID_PARAMS
    assert "never made here" in info.value.error.message


async def test_only_what_exists_is_advertised(client: Client) -> None:
    caps = client.server_capabilities
    assert caps is not None and caps.tools is not None and caps.resources is not None
    assert caps.prompts is None
