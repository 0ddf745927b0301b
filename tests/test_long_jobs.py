"""Long jobs through the protocol: async tasks, check_task, restarts, streaming, cancellation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.types import TextContent

from mcp_images.server.build import create_server
from mcp_images.work.progress import Progress
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio


def text_of(result: Any) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def provider_302(tmp_path: Path, sandbox: Any, **kw: Any) -> Any:
    """Settings for the 302.ai profile against the sandbox's 302 imitation.

    The poll path lives in provider data; a user file points it at the sandbox's prefix.
    """
    providers = tmp_path / "providers.json"
    providers.write_text(
        json.dumps(
            {
                "providers": {
                    "302ai": {"async_mode": {"poll_path": "/302ai/async_result", "poll_interval_seconds": 0.05}}
                }
            }
        )
    )
    return make_settings(tmp_path, f"{sandbox.origin}/302ai/v1", provider="302ai", providers=providers, **kw)


async def test_an_async_call_returns_a_task_id_and_check_task_returns_the_same_result(client: Client) -> None:
    started = await client.call_tool("generate_image", {"prompt": "a heron", "async": True, "quality": "high"})
    assert not started.is_error, text_of(started)
    sc = started.structured_content
    assert sc["status"] in ("queued", "running") and sc["poll_after_seconds"] > 0
    assert "check_task" in text_of(started)
    done = await client.call_tool("check_task", {"task_id": sc["task_id"], "wait_seconds": 20})
    assert not done.is_error, text_of(done)
    assert [b.type for b in done.content] == ["text", "image", "resource_link"]
    assert Path(done.structured_content["images"][0]["path"]).is_file()
    assert done.structured_content["usage"]["output_tokens"] == 7024
    assert done.structured_content["cost"]["total_usd"] > 0
    again = await client.call_tool("check_task", {"task_id": sc["task_id"]})
    assert again.structured_content == done.structured_content


async def test_check_task_without_waiting_reports_a_running_task(client: Client) -> None:
    started = await client.call_tool("generate_image", {"prompt": "[sandbox:slow=2] slow", "async": True})
    status = await client.call_tool("check_task", {"task_id": started.structured_content["task_id"]})
    assert not status.is_error
    assert status.structured_content["status"] == "running"
    assert status.structured_content["elapsed_seconds"] >= 0
    assert "check_task again" in text_of(status)


async def test_an_unknown_task_id_says_so(client: Client) -> None:
    result = await client.call_tool("check_task", {"task_id": "task-does-not-exist"})
    assert result.is_error and "no task with id" in text_of(result)


async def test_a_failed_task_carries_the_same_error_as_a_direct_call(client: Client) -> None:
    direct = await client.call_tool("generate_image", {"prompt": "[sandbox:moderation] x"})
    started = await client.call_tool("generate_image", {"prompt": "[sandbox:moderation] x", "async": True})
    failed = await client.call_tool(
        "check_task", {"task_id": started.structured_content["task_id"], "wait_seconds": 20}
    )
    assert failed.is_error and direct.is_error
    assert failed.structured_content["error"]["type"] == direct.structured_content["error"]["type"] == "ModerationError"
    assert "safety system" in text_of(failed)


async def test_the_provider_runs_the_job_itself_when_it_can(tmp_path: Path, sandbox: Any) -> None:
    async with Client(create_server(provider_302(tmp_path, sandbox))) as client:
        started = await client.call_tool("generate_image", {"prompt": "a provider-side job", "async": True})
        assert not started.is_error, text_of(started)
        done = await client.call_tool(
            "check_task", {"task_id": started.structured_content["task_id"], "wait_seconds": 20}
        )
    assert not done.is_error, text_of(done)
    assert Path(done.structured_content["images"][0]["path"]).is_file()
    submits = [r for r in sandbox.state.requests if r.path.endswith("/images/generations")]
    polls = [r for r in sandbox.state.requests if r.path.endswith("async_result")]
    assert submits[0].query.get("async") == "true"
    assert len(polls) >= 2  # pending at first, then the result


async def test_finished_results_survive_a_restart(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    async with Client(create_server(settings)) as first:
        started = await first.call_tool("generate_image", {"prompt": "kept", "async": True})
        task_id = started.structured_content["task_id"]
        done = await first.call_tool("check_task", {"task_id": task_id, "wait_seconds": 20})
    async with Client(create_server(settings)) as second:
        again = await second.call_tool("check_task", {"task_id": task_id})
    assert again.structured_content == done.structured_content


async def test_a_local_job_cut_off_by_a_restart_is_reported_failed_not_lost(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    async with Client(create_server(settings)) as first:
        started = await first.call_tool("generate_image", {"prompt": "[sandbox:slow=5] cut off", "async": True})
        task_id = started.structured_content["task_id"]
    async with Client(create_server(settings)) as second:
        result = await second.call_tool("check_task", {"task_id": task_id})
    assert result.is_error
    assert "stopped while this job ran" in text_of(result)


async def test_a_provider_held_job_is_polled_again_after_a_restart(tmp_path: Path, sandbox: Any) -> None:
    settings = provider_302(tmp_path, sandbox)
    async with Client(create_server(settings)) as first:
        started = await first.call_tool("generate_image", {"prompt": "survives", "async": True})
        task_id = started.structured_content["task_id"]
        with anyio.fail_after(10):  # until the provider's task id is on the record
            while not any(
                "accepted the job" in p
                for p in (await first.call_tool("check_task", {"task_id": task_id})).structured_content.get(
                    "progress", []
                )
            ):
                await anyio.sleep(0.02)
    async with Client(create_server(settings)) as second:
        done = await second.call_tool("check_task", {"task_id": task_id, "wait_seconds": 20})
    assert not done.is_error, text_of(done)
    assert Path(done.structured_content["images"][0]["path"]).is_file()


@pytest.mark.parametrize("partials", [0, 1, 2, 3])
async def test_streaming_saves_each_partial_image_and_announces_it(client: Client, partials: int) -> None:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    result = await client.call_tool(
        "generate_image",
        {"prompt": "streamed", "stream": True, "partial_images": partials},
        progress_callback=on_progress,
    )
    assert not result.is_error, text_of(result)
    saved = result.structured_content["partial_images"]
    assert len(saved) == partials
    announced = [m for m in seen if m.startswith("partial image")]
    assert len(announced) == partials
    for item, message in zip(saved, announced, strict=True):
        assert item["uri"] in message and Path(item["path"]).is_file()
    assert len(result.structured_content["images"]) == 1


async def test_a_stream_cut_in_the_middle_is_an_error_not_a_truncated_image(client: Client, settings: Any) -> None:
    result = await client.call_tool(
        "generate_image", {"prompt": "[sandbox:cut] x", "stream": True, "partial_images": 2}
    )
    assert result.is_error
    assert result.structured_content["error"]["type"] in ("StreamError", "ConnectionError")
    finals = [p for p in Path(settings.output_dir).glob("*") if "partial" not in p.name and p.is_file()]
    assert finals == []


async def test_a_cancelled_call_aborts_the_upstream_request(client: Client, sandbox: Any, settings: Any) -> None:
    with pytest.raises(MCPError):
        await client.call_tool("generate_image", {"prompt": "[sandbox:slow=5] cancel me"}, read_timeout_seconds=0.5)
    with anyio.fail_after(10):
        while not (sandbox.state.image_requests() and sandbox.state.image_requests()[0].disconnected):
            await anyio.sleep(0.02)
    assert not [p for p in Path(settings.output_dir).glob("*") if p.is_file()]


async def test_a_slow_synchronous_call_hands_over_to_a_task(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, sync_timeout=0.3)
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("generate_image", {"prompt": "[sandbox:slow=1] handed over"})
        assert not result.is_error
        assert result.structured_content["status"] == "running"
        assert "check_task" in text_of(result)
        done = await client.call_tool(
            "check_task", {"task_id": result.structured_content["task_id"], "wait_seconds": 20}
        )
    assert not done.is_error, text_of(done)


async def test_a_call_sends_progress_for_each_phase(client: Client) -> None:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    await client.call_tool("generate_image", {"prompt": "phases"}, progress_callback=on_progress)
    assert any(m.startswith("generating") for m in seen)
    assert any(m.startswith("saving") for m in seen)


async def test_a_heartbeat_repeats_the_phase_while_waiting() -> None:
    sent: list[str] = []

    async def send(progress: float, total: float | None, message: str) -> None:
        sent.append(message)

    progress = Progress(send, heartbeat=0.01)
    await progress.phase("generating")
    async with progress.beating():
        with anyio.fail_after(5):
            while len(sent) < 4:
                await anyio.sleep(0.005)
    assert all(m.startswith("generating") for m in sent)


async def test_ten_background_generations_are_all_collected_across_a_restart(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with Client(create_server(settings)) as first:
        started = [
            await first.call_tool(
                "generate_image", {"prompt": f"[sandbox:slow=0.3] cathedral {i}", "quality": "high", "async": True}
            )
            for i in range(10)
        ]
        ids = [r.structured_content["task_id"] for r in started]
        with anyio.fail_after(30):
            for task_id in ids:
                done = await first.call_tool(
                    "check_task", {"task_id": task_id, "wait_seconds": 20}, progress_callback=on_progress
                )
                assert not done.is_error, text_of(done)
    assert any(m.startswith(("generating", "saving")) for m in seen)  # progress while waiting
    async with Client(create_server(settings)) as second:
        collected = [await second.call_tool("check_task", {"task_id": task_id}) for task_id in ids]
    paths = {Path(r.structured_content["images"][0]["path"]) for r in collected}
    assert len(paths) == 10 and all(p.is_file() for p in paths)


async def test_no_folder_is_made_at_start_up_and_the_task_database_comes_with_the_first_task(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    async with Client(create_server(settings)) as client:
        await client.list_tools()
        await client.call_tool("estimate_cost", {"prompt": "a fox"})
        unknown = await client.call_tool("check_task", {"task_id": "task-0123456789abcdef"})
        assert unknown.is_error and "no task with id" in text_of(unknown)
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither the output nor the data folder
        made = await client.call_tool("generate_image", {"prompt": "a fox", "quality": "low"})
        assert not made.is_error, text_of(made)
    assert (tmp_path / "data" / "tasks.sqlite3").is_file() and any((tmp_path / "out").iterdir())
