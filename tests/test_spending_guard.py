"""The spending guard through the protocol: per-call limit, daily budget, races, unpriced models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent

from mcp_images.server.build import create_server
from tests.conftest import make_settings

HIGH = {"prompt": "a lighthouse at dawn", "size": "1024x1024", "quality": "high"}  # $0.21073 each
MEDIUM = {"prompt": "a lighthouse at dawn", "size": "1024x1024", "quality": "medium"}  # $0.05269 each


def text(result: CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, TextContent)
    return block.text


def refusal(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error and result.structured_content is not None
    error = result.structured_content["error"]
    assert error["type"] == "SpendingRefused"
    return error


def cost_of(result: CallToolResult) -> float:
    assert not result.is_error and result.structured_content is not None, text(result)
    return float(result.structured_content["cost"]["total_usd"])


@pytest.mark.anyio
async def test_a_call_over_the_per_call_limit_is_refused_with_its_figures_before_any_request(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, max_cost_per_call=0.5)
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("generate_image", {**HIGH, "n": 10})
    error = refusal(result)
    figures = error["spending"]
    assert figures["reason"] == "per_call_limit" and figures["limit"] == 0.5
    assert figures["estimate"] == pytest.approx(2.107, abs=0.001) and figures["fits_n"] == 2
    assert "n=2 fits; n=10 does not" in error["message"] and "$2.11" in error["message"]
    assert sandbox.state.image_requests() == []


@pytest.mark.anyio
async def test_the_daily_budget_is_reached_across_calls_and_the_refusal_says_what_still_fits(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, daily_budget=0.5)
    async with Client(create_server(settings)) as client:
        spent = [cost_of(await client.call_tool("generate_image", {**MEDIUM, "n": 3})) for _ in range(2)]
        result = await client.call_tool("generate_image", {**MEDIUM, "n": 10})
        assert (await client.call_tool("generate_image", {**MEDIUM, "n": 3})).is_error is False
    figures = refusal(result)["spending"]
    assert figures["reason"] == "daily_budget" and figures["limit"] == 0.5
    assert figures["committed_today"] == pytest.approx(sum(spent))
    assert figures["remaining"] == pytest.approx(0.5 - sum(spent)) and figures["fits_n"] == 3
    assert "n=3 fits; n=10 does not" in refusal(result)["message"]
    assert len(sandbox.state.image_requests()) == 3


@pytest.mark.anyio
async def test_concurrent_calls_racing_for_the_last_dollars_never_overspend(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, daily_budget=1.0)
    results: list[CallToolResult] = []
    async with Client(create_server(settings)) as client:

        async def one(i: int) -> None:
            # The sandbox holds each answer a moment, so every call is in flight at once.
            results.append(await client.call_tool("generate_image", {**HIGH, "prompt": f"[sandbox:slow=0.3] race {i}"}))

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(10):
                    tg.start_soon(one, i)
    done = [r for r in results if not r.is_error]
    assert len(done) == 4  # 4 x $0.2107 = $0.84; a fifth would make $1.05
    assert sum(cost_of(r) for r in done) <= 1.0
    assert all(refusal(r)["spending"]["reason"] == "daily_budget" for r in results if r.is_error)
    assert len(sandbox.state.image_requests()) == 4


@pytest.mark.anyio
async def test_an_unpriced_model_under_a_budget_is_refused_until_a_price_file_prices_it(
    tmp_path: Path, sandbox: Any
) -> None:
    call = {"prompt": "a red fox", "model": "flux-dev", "size": "1024x1024", "quality": "low"}
    async with Client(create_server(make_settings(tmp_path, sandbox.base_url, daily_budget=1.0))) as client:
        result = await client.call_tool("generate_image", call)
    error = refusal(result)
    assert error["spending"]["reason"] == "unknown_price" and error["field"] == "model"
    assert "MCP_IMAGES_PRICES" in error["message"]
    assert sandbox.state.image_requests() == []

    prices = tmp_path / "prices.json"
    model = {"per_1m": {"text_in": 5.0, "image_out": 30.0}, "output_rule": "gpt-image-2-formula"}
    prices.write_text(json.dumps({"name": "mine", "date": "2026-11", "models": {"flux-dev": model}}))
    settings = make_settings(tmp_path, sandbox.base_url, daily_budget=1.0, prices=prices)
    async with Client(create_server(settings)) as client:
        assert cost_of(await client.call_tool("generate_image", call)) > 0


@pytest.mark.anyio
async def test_results_and_estimates_say_how_much_of_todays_budget_remains(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, daily_budget=1.0, confirm_above=0.25)
    async with Client(create_server(settings)) as client:
        made = await client.call_tool("generate_image", HIGH)
        estimate = await client.call_tool("estimate_cost", {**HIGH, "n": 2})
        too_much = await client.call_tool("estimate_cost", {**HIGH, "n": 10})
    budget = made.structured_content["budget"] if made.structured_content else {}
    assert budget["remaining_today"] == pytest.approx(1.0 - cost_of(made))
    assert "budget: $0.789 of $1.00 left today" in text(made)
    assert estimate.structured_content is not None
    assert estimate.structured_content["budget"]["verdict"].startswith("needs a person's confirmation")
    assert "left today" in text(estimate)
    assert too_much.structured_content is not None
    assert too_much.structured_content["budget"]["verdict"].startswith("would be refused: today's budget")


@pytest.mark.anyio
async def test_without_any_spending_setting_calls_go_and_say_nothing_of_a_budget(client: Client) -> None:
    result = await client.call_tool("generate_image", MEDIUM)
    assert result.is_error is False
    assert result.structured_content is not None and "budget" not in result.structured_content
    assert "budget:" not in text(result)


@pytest.mark.anyio
async def test_refusals_budgets_and_estimates_fit_the_declared_output_schemas(tmp_path: Path, sandbox: Any) -> None:
    import jsonschema

    settings = make_settings(tmp_path, sandbox.base_url, daily_budget=0.3, max_cost_per_call=0.25, confirm_above=0.1)
    async with Client(create_server(settings)) as client:
        schemas = {t.name: t.output_schema or {} for t in (await client.list_tools()).tools}
        seen = [
            ("generate_image", await client.call_tool("generate_image", {**MEDIUM, "n": 3})),  # needs confirmation
            ("generate_image", await client.call_tool("generate_image", {**HIGH, "n": 2})),  # over the per-call limit
            ("generate_image", await client.call_tool("generate_image", {**HIGH, "confirm_cost": 0.22})),  # goes
            ("generate_image", await client.call_tool("generate_image", {**HIGH, "confirm_cost": 0.22})),  # budget
            ("estimate_cost", await client.call_tool("estimate_cost", HIGH)),
        ]
    reasons = [
        r.structured_content["error"]["spending"]["reason"] for _, r in seen if r.is_error and r.structured_content
    ]
    assert reasons == ["needs_confirmation", "per_call_limit", "daily_budget"]
    for tool, result in seen:
        jsonschema.validate(result.structured_content, schemas[tool])
