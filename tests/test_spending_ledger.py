"""The spending ledger: every upstream call accounted for, read through the protocol and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextResourceContents

from mcp_images.cli import main
from mcp_images.pricing import guard
from mcp_images.pricing.guard import Ask, Limits, SpendingRefused
from mcp_images.pricing.ledger import Ledger, NewCall, SqliteLedger
from mcp_images.server.build import create_server
from tests.conftest import make_settings
from tests.test_spending_confirm import Person
from tests.test_spending_guard import HIGH, MEDIUM, cost_of, refusal
from tests.test_store_seams import fresh_schema_url


async def spending(client: Client, period: str = "today") -> dict[str, Any]:
    contents = (await client.read_resource(f"spending://{period}")).contents[0]
    assert isinstance(contents, TextResourceContents) and contents.mime_type == "application/json"
    return json.loads(contents.text)


async def cancelled_once_generating(client: Client, arguments: dict[str, Any]) -> None:
    """Call, and cancel the call as soon as it says it is generating (no timing guesses)."""
    with anyio.CancelScope() as scope:

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            if message and message.startswith("generating"):
                scope.cancel()

        await client.call_tool("generate_image", arguments, progress_callback=on_progress)
    assert scope.cancelled_caught


@pytest.mark.anyio
async def test_the_ledger_accounts_for_successes_failures_and_cancellations(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, daily_budget=5.0, max_retries=0)
    async with Client(create_server(settings)) as client:
        made = [await client.call_tool("generate_image", args) for args in (HIGH, {**MEDIUM, "n": 2})]
        failed = await client.call_tool("generate_image", {**HIGH, "prompt": "[sandbox:500] a fox"})
        await cancelled_once_generating(client, {**MEDIUM, "prompt": "[sandbox:slow=30] a slow fox"})
        cut = await client.call_tool(
            "generate_image", {**MEDIUM, "prompt": "[sandbox:cut] a fox", "stream": True, "partial_images": 1}
        )
        view = await spending(client)
    assert failed.is_error and cut.is_error
    rows = {row["id"]: row for row in view["calls"]}
    assert [rows[i]["status"] for i in sorted(rows)] == ["succeeded", "succeeded", "failed", "cancelled", "failed"]
    assert [rows[i]["billed"] for i in sorted(rows)] == ["yes", "yes", "no", "unknown", "unknown"]
    day = view["day"]
    assert day["calls"] == 5 and day["held"] == 0
    assert day["spent"] == pytest.approx(sum(cost_of(r) for r in made), abs=1e-6)  # every cent of the results
    unknown = [row["estimate_usd"] for row in view["calls"] if row["billed"] == "unknown"]
    assert day["estimated"] == pytest.approx(sum(unknown))  # may have been billed: counted at the estimate
    assert view["budget"]["remaining_today"] == pytest.approx(5.0 - day["spent"] - day["estimated"])
    assert view["by_model"]["gpt-image-2"]["calls"] == 5
    assert all(row["task_id"].startswith("task-") for row in view["calls"])


@pytest.mark.anyio
async def test_with_a_dollar_a_day_and_a_quarter_threshold_no_loop_spends_more_and_every_big_call_is_approved(
    tmp_path: Path, sandbox: Any
) -> None:
    person = Person("accept")
    settings = make_settings(tmp_path, sandbox.base_url, daily_budget=1.0, confirm_above=0.25)
    results: list[CallToolResult] = []
    async with Client(create_server(settings), elicitation_callback=person) as client:
        for i in range(12):  # an agent that keeps going, big and small, confirm_cost or not
            args = {**HIGH, "prompt": f"fox {i}", "n": 1 + i % 2, "confirm_cost": 100}
            results.append(await client.call_tool("generate_image", args))
        view = await spending(client)
    spent = sum(cost_of(r) for r in results if not r.is_error)
    assert spent <= 1.0 and view["day"]["committed"] <= 1.0
    assert view["day"]["spent"] == pytest.approx(spent, abs=1e-6)
    big = [r for r in results if not r.is_error and cost_of(r) > 0.25]
    assert len(person.shown) >= len(big) >= 1  # every call above $0.25 went past a person
    assert {refusal(r)["spending"]["reason"] for r in results if r.is_error} == {"daily_budget"}


async def two_ledgers(kind: str, tmp_path: Path) -> list[Ledger]:
    """Two servers' ledgers over one store: one SQLite file, or one PostgreSQL database."""
    if kind == "sqlite":
        return [SqliteLedger(tmp_path / "spending.sqlite3") for _ in range(2)]
    from mcp_images.pricing.pg_ledger import PostgresLedger

    url = await fresh_schema_url()
    return [await PostgresLedger.open(url) for _ in range(2)]


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_two_ledgers_over_one_store_cannot_both_take_the_last_dollars(kind: str, tmp_path: Path) -> None:
    """Two servers on one store: the reservation is one transaction in it."""
    ledgers = await two_ledgers(kind, tmp_path)
    limits = Limits(daily_budget=1.0)
    now = 1_800_000_000.0
    ask = Ask("generate_image", "gpt-image-2", 1, "1024x1024", "high", 0.3, 0.0, "USD", "$0.30")
    call = NewCall("local", "generate_image", "gpt-image-2", 1, "1024x1024", "high", 0.3, "USD",
                   guard.day_of(now), guard.month_of(now), now)  # fmt: skip
    taken: list[int] = []
    refused: list[SpendingRefused] = []

    async def reserve(ledger: Ledger) -> None:
        try:
            taken.append(
                await ledger.reserve(
                    call, scope=None, admit=lambda c: guard.check_limits(limits, ask, committed=c, now=now)
                )
            )
        except SpendingRefused as exc:
            refused.append(exc)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(reserve, ledgers[i % 2])
        assert len(taken) == 3 and len(refused) == 5
        for ledger in ledgers:  # both see the same day
            totals = (await ledger.totals(period=guard.day_of(now), scope=None))[""]
            assert totals.held == pytest.approx(0.9) and totals.calls == 3
        assert len(await ledgers[1].rows(period=guard.day_of(now), scope=None)) == 3
    finally:
        for ledger in ledgers:
            await ledger.close()


@pytest.mark.anyio
async def test_the_spending_command_prints_today_this_month_and_by_model(
    tmp_path: Path, sandbox: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    async with Client(create_server(settings)) as client:
        cost = cost_of(await client.call_tool("generate_image", MEDIUM))
        month = (await spending(client, "month"))["month"]
    assert month["spent"] == pytest.approx(cost) and month["calls"] == 1

    assert await anyio.to_thread.run_sync(main, ["spending", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "spent in 1 call" in out and "by model (this month):" in out and "gpt-image-2" in out
    assert (
        await anyio.to_thread.run_sync(main, ["spending", "month", "--json", "--data-dir", str(tmp_path / "data")]) == 0
    )
    assert json.loads(capsys.readouterr().out)["month"]["calls"] == 1


@pytest.mark.anyio
async def test_the_spending_command_reads_the_replicas_ledger_in_postgresql_without_its_password(
    tmp_path: Path, sandbox: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = await fresh_schema_url()
    settings = make_settings(tmp_path, sandbox.base_url, database_url=url)
    async with Client(create_server(settings)) as client:
        cost = cost_of(await client.call_tool("generate_image", MEDIUM))
    monkeypatch.setenv("MCP_IMAGES_DATABASE_URL", url)
    empty_folder = tmp_path / "elsewhere"  # nothing in a data folder: the rows are in the database
    assert await anyio.to_thread.run_sync(main, ["spending", "--json", "--data-dir", str(empty_folder)]) == 0
    out = capsys.readouterr().out
    view = json.loads(out)
    assert view["day"]["calls"] == 1 and view["day"]["spent"] == pytest.approx(cost)
    password = urlsplit(url).password
    assert password and password not in out and view["ledger"].startswith("postgresql://")


@pytest.mark.anyio
async def test_an_unknown_spending_period_is_not_found(client: Client) -> None:
    from mcp.shared.exceptions import MCPError

    with pytest.raises(MCPError, match="no spending period"):
        await client.read_resource("spending://yesterday")


@pytest.mark.anyio
async def test_a_call_billed_then_lost_on_saving_is_recorded_at_its_real_cost_not_the_estimate(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, daily_budget=5.0, max_retries=0)
    server = create_server(settings)
    server.runtime.store.kept_dirs = []  # nowhere to keep it: the save fails after the answer
    async with Client(server) as client:
        out = tmp_path / "out"
        out.parent.mkdir(parents=True, exist_ok=True)
        server.runtime.store.output_dir = out / "gone"
        out.write_text("a file where the output folder should be")
        server.runtime.store.check_writable = lambda: None  # type: ignore[method-assign]  # it passed the check earlier
        failed = await client.call_tool("generate_image", {"prompt": "a fox", "quality": "high"})
        view = await spending(client)
    assert failed.is_error
    row = view["calls"][0]
    assert row["billed"] == "yes" and row["actual_usd"] is not None
    assert row["actual_usd"] == pytest.approx(0.211, abs=0.01)  # the usage the sandbox reported, priced


@pytest.mark.anyio
async def test_with_no_spending_setting_each_call_is_recorded_settled_with_its_task(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, max_retries=0)
    async with Client(create_server(settings)) as client:
        made = await client.call_tool("generate_image", MEDIUM)
        failed = await client.call_tool("generate_image", {**MEDIUM, "prompt": "[sandbox:500] a fox"})
        view = await spending(client)
    assert not made.is_error and failed.is_error
    ok, bad = sorted(view["calls"], key=lambda row: row["id"])
    assert (ok["status"], ok["billed"], bad["status"], bad["billed"]) == ("succeeded", "yes", "failed", "no")
    assert ok["actual_usd"] == pytest.approx(cost_of(made)) and ok["estimate_usd"] is not None
    assert ok["task_id"].startswith("task-") and bad["task_id"].startswith("task-") and ok["finished_at"]
    assert view["day"]["calls"] == 2 and view["day"]["held"] == 0
