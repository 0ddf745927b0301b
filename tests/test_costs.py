"""Money through the protocol: estimate_cost before, the actual cost after, a user's price file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import TextContent

from mcp_images.server.build import create_server
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio


def text_of(result: Any) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


CALLS = [
    {"model": "gpt-image-2", "size": "1024x1024", "quality": "low"},
    {"model": "gpt-image-2", "size": "1536x1024", "quality": "high"},
    {"model": "gpt-image-2", "size": "2048x1152", "quality": "medium"},
    {"model": "gpt-image-1.5", "size": "1024x1536", "quality": "medium", "n": 2},
    {"model": "gpt-image-1", "size": "1536x1024", "quality": "high"},
    {"model": "gpt-image-1-mini", "size": "1024x1024", "quality": "low"},
    {"model": "dall-e-3", "size": "1792x1024", "quality": "hd"},
    {"model": "dall-e-2", "size": "512x512", "n": 3},
    {"model": "gpt-image-2", "size": "1024x1024", "quality": "high", "stream": True, "partial_images": 2},
]


@pytest.mark.parametrize("call", CALLS, ids=lambda c: "-".join(str(v) for v in c.values()))
async def test_the_cost_on_a_result_matches_the_estimate_for_the_same_call(
    client: Client, call: dict[str, Any]
) -> None:
    args = {"prompt": "a lighthouse at dawn", **call}
    estimate = await client.call_tool("estimate_cost", args)
    assert not estimate.is_error, text_of(estimate)
    result = await client.call_tool("generate_image", args)
    assert not result.is_error, text_of(result)
    cost = result.structured_content["cost"]
    # Within the labelled approximation: the prompt's text tokens (about characters / 4).
    assert cost["total_usd"] == pytest.approx(estimate.structured_content["total_usd"], abs=0.0005)
    assert "cost: $" in text_of(result)


async def test_an_edit_estimate_from_dimensions_matches_the_edit_cost(client: Client) -> None:
    first = await client.call_tool("generate_image", {"prompt": "base", "size": "1024x1024", "quality": "low"})
    image_id = first.structured_content["images"][0]["id"]
    args = {
        "prompt": "add a boat",
        "model": "gpt-image-1.5",
        "size": "1024x1024",
        "quality": "low",
        "input_fidelity": "high",
    }
    by_size = await client.call_tool("estimate_cost", {**args, "image": "1024x1024"})
    by_ref = await client.call_tool("estimate_cost", {**args, "image": image_id})
    assert by_size.structured_content["total_usd"] == by_ref.structured_content["total_usd"]
    kinds = {line["kind"] for line in by_ref.structured_content["lines"]}
    assert {"image_in", "image_out"} <= kinds
    edit = await client.call_tool("edit_image", {**args, "image": image_id})
    assert not edit.is_error, text_of(edit)
    assert edit.structured_content["cost"]["total_usd"] == pytest.approx(
        by_ref.structured_content["total_usd"], abs=0.0005
    )


async def test_auto_quality_gives_a_range_and_says_so(client: Client) -> None:
    result = await client.call_tool("estimate_cost", {"model": "gpt-image-2", "size": "1024x1024"})
    sc = result.structured_content
    assert sc["total_usd"] == pytest.approx(0.006, abs=0.0005)
    assert sc["total_usd_max"] == pytest.approx(0.211, abs=0.0005)
    assert "auto" in text_of(result)


async def test_estimate_refuses_what_the_real_call_would_refuse(client: Client) -> None:
    result = await client.call_tool("estimate_cost", {"model": "dall-e-3", "n": 2})
    assert result.is_error and "n=1" in text_of(result)
    result = await client.call_tool(
        "estimate_cost", {"model": "gpt-image-2", "image": "1024x1024", "input_fidelity": "high"}
    )
    assert result.is_error and "input_fidelity" in text_of(result)


async def test_a_model_without_a_price_still_gets_a_token_estimate(client: Client) -> None:
    result = await client.call_tool(
        "estimate_cost", {"model": "gpt-image-2.5-flare", "size": "1024x1024", "quality": "low"}
    )
    assert not result.is_error
    assert result.structured_content["total_usd"] is None
    assert "no published price" in text_of(result)
    assert any(line["tokens"] for line in result.structured_content["lines"])


async def test_a_users_price_file_changes_the_estimate_and_the_actual_cost(tmp_path: Path, sandbox: Any) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(
        json.dumps(
            {"name": "my aggregator", "date": "2026-11", "models": {"gpt-image-2": {"per_1m": {"image_out": 60.0}}}}
        )
    )
    settings = make_settings(tmp_path, sandbox.base_url, prices=prices)
    args = {"prompt": "x", "size": "1024x1024", "quality": "high"}
    async with Client(create_server(settings)) as client:
        estimate = await client.call_tool("estimate_cost", args)
        result = await client.call_tool("generate_image", args)
    assert estimate.structured_content["total_usd"] == pytest.approx(0.422, abs=0.001)  # double the list price
    assert result.structured_content["cost"]["total_usd"] == pytest.approx(0.422, abs=0.001)
    assert "my aggregator" in text_of(estimate)


async def test_a_broken_price_file_stops_the_start_with_its_line(tmp_path: Path) -> None:
    from mcp_images.errors import ConfigError

    prices = tmp_path / "prices.json"
    prices.write_text('{"models": {\n  "gpt-image-2": {"per_1m": {"image_out": "sixty"}}\n}}')
    with pytest.raises(ConfigError, match="line 2"):
        create_server(make_settings(tmp_path, "http://127.0.0.1:9/v1", prices=prices))
