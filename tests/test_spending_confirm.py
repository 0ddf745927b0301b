"""Calls above MCP_IMAGES_CONFIRM_ABOVE: the person is asked (elicitation, both protocol
versions the SDK serves), or, on a client without elicitation, ``confirm_cost`` stands in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult

from mcp_images.server.build import create_server
from tests.conftest import make_settings
from tests.test_spending_guard import HIGH, cost_of, refusal

TWO_HIGH = {**HIGH, "n": 2}  # $0.42: above the $0.25 threshold
MODES = ["auto", "legacy"]  # 2026-07-28 (InputRequiredResult) and 2025-11-25 (elicitation/create)


class Person:
    """An elicitation callback that answers as told and remembers what it was shown."""

    def __init__(self, action: str, content: dict[str, Any] | None = None) -> None:
        self.action = action
        self.content = content if content is not None else ({"approve": True} if action == "accept" else None)
        self.shown: list[ElicitRequestParams] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.shown.append(params)
        return ElicitResult(action=self.action, content=self.content)  # type: ignore[arg-type]


async def call(settings: Any, arguments: dict[str, Any], *, person: Person | None, mode: str) -> CallToolResult:
    async with Client(create_server(settings), mode=mode, elicitation_callback=person) as client:  # type: ignore[arg-type]
        return await client.call_tool("generate_image", arguments)


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_person_who_accepts_sees_the_estimate_and_its_arguments_and_the_call_goes(
    tmp_path: Path, sandbox: Any, mode: str
) -> None:
    person = Person("accept")
    settings = make_settings(tmp_path, sandbox.base_url, daily_budget=1.0, confirm_above=0.25)
    result = await call(settings, TWO_HIGH, person=person, mode=mode)
    assert cost_of(result) == pytest.approx(0.42, abs=0.01)
    assert len(person.shown) == 1
    message = person.shown[0].message
    for fact in ("up to $0.421", "model gpt-image-2", "n=2", "size 1024x1024", "quality high", "a lighthouse"):
        assert fact in message
    assert "$1.00 left today" in message
    assert len(sandbox.state.image_requests()) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("action", "content", "reason"),
    [("decline", None, "declined"), ("cancel", None, "cancelled"), ("accept", {"approve": False}, "declined")],
)
async def test_a_person_who_declines_or_cancels_stops_the_call_before_anything_is_sent(
    tmp_path: Path, sandbox: Any, mode: str, action: str, content: dict[str, Any] | None, reason: str
) -> None:
    person = Person(action, content)
    settings = make_settings(tmp_path, sandbox.base_url, confirm_above=0.25)
    result = await call(settings, TWO_HIGH, person=person, mode=mode)
    assert refusal(result)["spending"]["reason"] == reason
    assert len(person.shown) == 1
    assert sandbox.state.image_requests() == []


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_calls_under_the_threshold_are_not_asked_about(tmp_path: Path, sandbox: Any, mode: str) -> None:
    person = Person("decline")
    settings = make_settings(tmp_path, sandbox.base_url, confirm_above=0.25)
    assert cost_of(await call(settings, HIGH, person=person, mode=mode)) < 0.25
    assert person.shown == []


@pytest.mark.anyio
async def test_confirm_cost_does_not_skip_a_person_the_client_can_ask(tmp_path: Path, sandbox: Any) -> None:
    person = Person("decline")
    settings = make_settings(tmp_path, sandbox.base_url, confirm_above=0.25)
    result = await call(settings, {**TWO_HIGH, "confirm_cost": 5}, person=person, mode="auto")
    assert refusal(result)["spending"]["reason"] == "declined" and len(person.shown) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("mode", MODES)
async def test_a_client_without_elicitation_is_refused_with_the_figure_and_confirm_cost_then_lets_it_go(
    tmp_path: Path, sandbox: Any, mode: str
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, confirm_above=0.25)
    first = refusal(await call(settings, TWO_HIGH, person=None, mode=mode))
    assert first["spending"]["reason"] == "needs_confirmation" and first["field"] == "confirm_cost"
    assert first["spending"]["confirm_cost"] == 0.43
    assert "confirm_cost=0.43" in first["message"] and "$0.25" in first["message"]
    assert sandbox.state.image_requests() == []

    too_low = refusal(await call(settings, {**TWO_HIGH, "confirm_cost": 0.3}, person=None, mode=mode))
    assert too_low["spending"]["reason"] == "needs_confirmation" and "more than confirm_cost=0.3" in too_low["message"]
    assert cost_of(await call(settings, {**TWO_HIGH, "confirm_cost": 0.43}, person=None, mode=mode)) > 0.25
    assert len(sandbox.state.image_requests()) == 1


@pytest.mark.anyio
async def test_confirm_cost_cannot_raise_a_limit(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, max_cost_per_call=0.3, confirm_above=0.25)
    result = await call(settings, {**TWO_HIGH, "confirm_cost": 100}, person=Person("accept"), mode="auto")
    assert refusal(result)["spending"]["reason"] == "per_call_limit"
    assert sandbox.state.image_requests() == []
