"""Long jobs, streams and the upstream at their edges, the way a demanding user meets them.

Cancellations and hand-offs, two servers over one data folder, a busy task database,
302.ai jobs whose poll endpoint stumbles, and answers in odd shapes.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult, TextContent
from PIL import Image

from mcp_images.server.build import create_server
from mcp_images.tasks import manager as tasks
from mcp_images.tasks import store as task_store
from mcp_images.tasks.store import TaskStore
from mcp_images.work import provider_jobs
from tests.conftest import TEST_KEY, make_settings

pytestmark = pytest.mark.anyio


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def records(settings: Any) -> list[dict[str, Any]]:
    """The task rows as stored, oldest first (read with a connection of our own)."""
    db = sqlite3.connect(settings.resolved_data_dir / "tasks.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM tasks ORDER BY created_at")]
    finally:
        db.close()


def saved_files(settings: Any) -> list[Path]:
    return [p for p in Path(settings.output_dir).rglob("*") if p.is_file()]


def png_b64(size: int = 64) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), "teal").save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


PNG_B64 = png_b64()


def sse(*events: dict[str, Any]) -> bytes:
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()


def event_stream(*events: dict[str, Any]) -> httpx2.Response:
    return httpx2.Response(200, content=sse(*events), headers={"content-type": "text/event-stream"})


Handler = Callable[[httpx2.Request], httpx2.Response]


@asynccontextmanager
async def fake_upstream(tmp_path: Path, handler: Handler, **kw: Any) -> AsyncIterator[Client]:
    """A server whose upstream is ``handler`` (httpx2.MockTransport), over the protocol."""
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    settings = make_settings(tmp_path, "http://upstream.test/v1", **kw)
    async with http, Client(create_server(settings, http_client=http)) as client:
        yield client


# -- cancellation, hand-off, several clients and servers ------------------------------------


async def test_a_sync_call_the_client_cancels_is_recorded_cancelled_and_leaves_no_file(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    async with Client(create_server(settings)) as client:
        with anyio.move_on_after(0.5):
            await client.call_tool("generate_image", {"prompt": "[sandbox:slow=5] cancel me"})
        with anyio.fail_after(10):
            while not (sandbox.state.image_requests() and sandbox.state.image_requests()[0].disconnected):
                await anyio.sleep(0.02)
    [record] = records(settings)
    assert record["status"] == "cancelled"
    assert "cancelled on request" in record["error"]
    assert saved_files(settings) == []


async def test_a_handed_off_job_goes_on_when_a_poll_is_cancelled_and_two_polls_get_the_same_result(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, sync_timeout=0.2)
    async with Client(create_server(settings)) as client:
        handed = await client.call_tool("generate_image", {"prompt": "[sandbox:slow=0.6] handed over"})
        task_id = handed.structured_content["task_id"]
        with anyio.move_on_after(0.1):  # the client gives up on one poll: the job goes on
            await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 20})
        results: list[CallToolResult] = []

        async def poll() -> None:
            results.append(await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 20}))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(poll)
                tg.start_soon(poll)
        late = await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 20})
    assert [r.is_error for r in results] == [False, False]
    assert results[0].structured_content == results[1].structured_content == late.structured_content
    assert len(saved_files(settings)) == 1


async def test_a_poll_on_another_server_hears_why_the_job_stopped_and_its_own_jobs_go_on(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    stop, started = anyio.Event(), anyio.Event()
    task_ids: list[str] = []

    async def short_lived_server() -> None:
        async with Client(create_server(settings)) as first:
            started_job = await first.call_tool("generate_image", {"prompt": "[sandbox:slow=5] cut off", "async": True})
            task_ids.append(started_job.structured_content["task_id"])
            started.set()
            await stop.wait()

    waited: list[CallToolResult] = []
    async with Client(create_server(settings)) as second:
        own = await second.call_tool("generate_image", {"prompt": "[sandbox:slow=0.5] mine", "async": True})
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(short_lived_server)
                await started.wait()

                async def wait_on_the_other() -> None:
                    waited.append(await second.call_tool("check_task", {"task_id": task_ids[0], "wait_seconds": 20}))

                tg.start_soon(wait_on_the_other)
                await anyio.sleep(0.2)
                stop.set()
            mine = await second.call_tool(
                "check_task", {"task_id": own.structured_content["task_id"], "wait_seconds": 20}
            )
    assert waited[0].is_error and "server stopped while this job ran" in text_of(waited[0])
    assert not mine.is_error, text_of(mine)


async def test_a_sibling_whose_heartbeat_went_quiet_while_its_process_lives_keeps_its_jobs(tmp_path: Path) -> None:
    # A laptop that slept: the wall clock jumped past the heartbeat limit, yet the sibling on
    # this machine is alive and its request may still come back. Its job must not be failed.
    db = tmp_path / "data" / "tasks.sqlite3"
    store = TaskStore(db)
    store.touch_owner("sibling", os.getpid(), socket.gethostname())
    with sqlite3.connect(db) as other:
        other.execute("UPDATE owners SET seen_at = ?", (time.time() - 10 * tasks.OWNER_STALE_SECONDS,))
    other.close()
    job = store.create("generate_image", {}, owner="sibling", status="running")
    manager = tasks.TaskManager(store, error_to_dict=lambda exc: {"message": str(exc)})
    with anyio.fail_after(5):
        async with manager.running():
            assert (await manager.get(job.id)).status == "running"
    store.close()


# -- the task database ---------------------------------------------------------------------


async def test_a_data_folder_that_cannot_hold_the_database_still_lists_tools_and_says_why(
    tmp_path: Path, sandbox: Any
) -> None:
    (tmp_path / "data").write_text("a file where the data folder should be")
    settings = make_settings(tmp_path, sandbox.base_url)
    async with Client(create_server(settings)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("generate_image", {"prompt": "x", "async": True})
    assert names == {"generate_image", "edit_image", "check_task", "estimate_cost"}
    assert result.is_error
    assert "task database" in text_of(result) and str(tmp_path / "data") in text_of(result)


@pytest.fixture
def quick_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(task_store, "BUSY_TIMEOUT_SECONDS", 0.1)


async def test_a_task_database_locked_by_another_program_gives_a_clear_error_then_recovers(
    tmp_path: Path, sandbox: Any, quick_busy_timeout: None
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    server = create_server(settings)
    async with Client(server) as client:
        await server.runtime.tasks()  # the database is open (it is made on first use)
        other = sqlite3.connect(settings.resolved_data_dir / "tasks.sqlite3", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock, as an open editor would
        refused = await client.call_tool("generate_image", {"prompt": "x"})
        other.execute("ROLLBACK")
        other.close()
        after = await client.call_tool("generate_image", {"prompt": "x"})
    assert refused.is_error
    assert "task database" in text_of(refused) and "locked" in text_of(refused)
    assert len(sandbox.state.image_requests()) == 1  # only the call made after the lock went
    assert not after.is_error, text_of(after)


async def test_a_job_whose_database_locks_midway_still_returns_its_image_and_records_it_later(
    tmp_path: Path, sandbox: Any, quick_busy_timeout: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tasks, "HOUSEKEEPING_SECONDS", 0.05)
    settings = make_settings(tmp_path, sandbox.base_url)
    server = create_server(settings)
    async with Client(server) as client:
        await server.runtime.tasks()  # the database is open (it is made on first use)
        other = sqlite3.connect(settings.resolved_data_dir / "tasks.sqlite3", isolation_level=None)

        async def lock_once_running() -> None:
            while not sandbox.state.image_requests():
                await anyio.sleep(0.01)
            other.execute("BEGIN IMMEDIATE")

        results: list[CallToolResult] = []
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lock_once_running)
                results.append(
                    await client.call_tool("generate_image", {"prompt": "[sandbox:slow=0.3] through a lock"})
                )
            other.execute("ROLLBACK")
            other.close()
            while records(settings)[-1]["status"] != "succeeded":  # written once the lock is gone
                await anyio.sleep(0.02)
            again = await client.call_tool("check_task", {"task_id": records(settings)[-1]["id"]})
    [result] = results
    assert not result.is_error, text_of(result)
    assert Path(result.structured_content["images"][0]["path"]).is_file()
    assert again.structured_content == result.structured_content


async def test_an_expired_task_says_it_is_unknown_or_expired(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, sandbox.base_url, task_ttl_days=0.3 / 86400)
    async with Client(create_server(settings)) as client:
        started = await client.call_tool("generate_image", {"prompt": "brief", "async": True})
        task_id = started.structured_content["task_id"]
        done = await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 10})
        with anyio.fail_after(5):
            while not (gone := await client.call_tool("check_task", {"task_id": task_id})).is_error:
                await anyio.sleep(0.05)
    assert not done.is_error
    assert "unknown, or expired after 0.3 seconds" in text_of(gone)
    assert len(saved_files(settings)) == 1  # the image itself stays


# -- retries and unreachable upstreams ------------------------------------------------------


async def test_a_302ai_gateway_timeout_is_sent_once_and_advises_async(tmp_path: Path, sandbox: Any) -> None:
    settings = make_settings(tmp_path, f"{sandbox.origin}/302ai/v1", provider="302ai")
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("generate_image", {"prompt": "[sandbox:524] long one"})
    assert result.is_error
    assert result.structured_content["error"]["type"] == "GatewayTimeoutError"
    assert "async" in text_of(result)
    assert len(sandbox.state.image_requests()) == 1  # a retry could bill twice


async def test_an_upstream_nobody_listens_on_is_named_without_the_key(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/v1"
    async with Client(create_server(make_settings(tmp_path, base, max_retries=0))) as client:
        result = await client.call_tool("generate_image", {"prompt": "x"})
    assert result.is_error and result.structured_content["error"]["type"] == "ConnectionError"
    assert base in text_of(result) and TEST_KEY not in json.dumps(result.model_dump(mode="json"))


async def test_an_answer_cut_while_it_is_read_is_not_blamed_on_reaching_the_upstream(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    async with Client(create_server(settings)) as client:
        result = await client.call_tool("generate_image", {"prompt": "[sandbox:cut] half a body"})
    assert result.is_error
    assert "could not reach" not in text_of(result)
    assert "cut off" in text_of(result) and "billed" in text_of(result)
    assert len(sandbox.state.image_requests()) == 1  # the image was made: no second bill


# -- streams ---------------------------------------------------------------------------------


async def test_a_stream_with_n_above_one_is_refused_with_the_parameter_named(client: Client) -> None:
    result = await client.call_tool("generate_image", {"prompt": "two", "n": 2, "stream": True})
    assert result.is_error
    assert result.structured_content["error"]["type"] == "BadRequestError"
    assert "n must be 1 when stream=true" in text_of(result)


async def test_stream_events_that_carry_a_null_error_field_are_not_errors(tmp_path: Path) -> None:
    partial = {"type": "image_generation.partial_image", "b64_json": PNG_B64, "partial_image_index": 0, "error": None}
    done = {"type": "image_generation.completed", "b64_json": PNG_B64, "error": None}
    async with fake_upstream(tmp_path, lambda request: event_stream(partial, done)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x", "stream": True, "partial_images": 1})
    assert not result.is_error, text_of(result)
    assert len(result.structured_content["partial_images"]) == 1


async def test_a_partial_image_that_cannot_be_read_does_not_lose_the_final_image(tmp_path: Path) -> None:
    broken = {"type": "image_generation.partial_image", "b64_json": "aGVsbG8=", "partial_image_index": 0}
    done = {"type": "image_generation.completed", "b64_json": PNG_B64}
    async with fake_upstream(tmp_path, lambda request: event_stream(broken, done)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x", "stream": True, "partial_images": 1})
    assert not result.is_error, text_of(result)
    assert len(result.structured_content["images"]) == 1


async def test_a_partial_image_after_the_final_one_is_ignored(tmp_path: Path) -> None:
    first = {"type": "image_generation.partial_image", "b64_json": PNG_B64, "partial_image_index": 0}
    done = {"type": "image_generation.completed", "b64_json": PNG_B64}
    late = {**first, "partial_image_index": 1}
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with fake_upstream(tmp_path, lambda request: event_stream(first, done, late)) as client:
        result = await client.call_tool(
            "generate_image", {"prompt": "x", "stream": True, "partial_images": 2}, progress_callback=on_progress
        )
    assert not result.is_error, text_of(result)
    assert len(result.structured_content["partial_images"]) == 1
    assert [m.split(" ")[0] for m in seen] == ["generating", "partial", "saving"]


# -- answers in odd shapes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ({"data": None, "error": None}, "without any image"),
        ({"data": [], "error": None}, "without any image"),
        ({"data": [{"revised_prompt": "x"}]}, "neither b64_json nor url"),
        ({"error": {"message": "Your credit is gone", "code": "insufficient_quota"}}, "out of credit"),
    ],
    ids=["data-null", "data-empty", "no-bytes", "error-200"],
)
async def test_a_200_without_images_says_what_came(tmp_path: Path, answer: dict[str, Any], says: str) -> None:
    async with fake_upstream(tmp_path, lambda request: httpx2.Response(200, json=answer)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x"})
    assert result.is_error and says in text_of(result)


async def test_an_html_page_with_status_200_is_named_as_such(tmp_path: Path) -> None:
    page = httpx2.Response(200, text="<html><body>Welcome to nginx</body></html>")
    async with fake_upstream(tmp_path, lambda request: page) as client:
        result = await client.call_tool("generate_image", {"prompt": "x"})
    assert result.is_error and "not an images response: Welcome to nginx" in text_of(result)


@pytest.mark.parametrize(
    "extra",
    [{"created": 1765963391.5}, {"usage": None}, {"usage": "n/a"}, {"size": 1024}, {}],
    ids=["created-float", "usage-null", "usage-text", "size-number", "plain"],
)
async def test_odd_metadata_beside_a_good_image_does_not_lose_the_image(tmp_path: Path, extra: dict[str, Any]) -> None:
    answer = {"data": [{"b64_json": PNG_B64}], **extra}
    async with fake_upstream(tmp_path, lambda request: httpx2.Response(200, json=answer)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x"})
    assert not result.is_error, text_of(result)
    assert result.structured_content["usage"] is None
    assert "the upstream sent no usage" in result.structured_content["cost"]["notes"][0]


# -- 302.ai jobs held by the provider ---------------------------------------------------------

DONE_302 = {"status_code": 200, "data": {"data": [{"b64_json": PNG_B64}]}, "err": ""}
PENDING_302 = {"status_code": 200, "data": None, "err": "result pending"}


def provider_302(tmp_path: Path) -> Path:
    providers = tmp_path / "providers.json"
    providers.write_text(json.dumps({"providers": {"302ai": {"async_mode": {"poll_interval_seconds": 0.01}}}}))
    return providers


def polls_answering(answers: list[Any], seen: list[httpx2.Request]) -> Handler:
    """Submit gives task t1; each poll takes the next answer (the last one repeats)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx2.Response(200, json={"task_id": "t1"})
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, httpx2.Response) else httpx2.Response(200, json=answer)

    return handler


async def run_302_job(tmp_path: Path, handler: Handler, **kw: Any) -> CallToolResult:
    async with fake_upstream(
        tmp_path, handler, provider="302ai", providers=provider_302(tmp_path), max_retries=0, **kw
    ) as client:
        started = await client.call_tool("generate_image", {"prompt": "x", "async": True})
        with anyio.fail_after(10):
            return await client.call_tool(
                "check_task", {"task_id": started.structured_content["task_id"], "wait_seconds": 10}
            )


@pytest.mark.parametrize(
    "stumble",
    [httpx2.Response(502, text="bad gateway"), httpx2.Response(429), httpx2.ConnectError("reset")],
    ids=["502", "429", "connect"],
)
async def test_a_provider_held_job_survives_a_poll_endpoint_that_stumbles(tmp_path: Path, stumble: Any) -> None:
    seen: list[httpx2.Request] = []
    answers = [httpx2.Response(202), stumble, PENDING_302, stumble, stumble, httpx2.Response(425), DONE_302]
    done = await run_302_job(tmp_path, polls_answering(answers, seen))
    assert not done.is_error, text_of(done)
    assert len([r for r in seen if r.method == "POST"]) == 1


async def test_a_poll_endpoint_that_stays_down_fails_the_job_naming_the_providers_task_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider_jobs, "MAX_POLL_FAILURES", 3)
    seen: list[httpx2.Request] = []
    failed = await run_302_job(tmp_path, polls_answering([httpx2.Response(503, text="down")], seen))
    assert failed.is_error
    assert "t1" in text_of(failed) and "503" in text_of(failed)
    assert len([r for r in seen if r.method == "GET"]) == 3


async def test_a_job_the_provider_fails_is_failed_at_once_with_its_words(tmp_path: Path) -> None:
    seen: list[httpx2.Request] = []
    failure = {"status_code": 500, "data": None, "err": "the model crashed"}
    failed = await run_302_job(tmp_path, polls_answering([PENDING_302, failure], seen))
    assert failed.is_error and "the model crashed" in text_of(failed)
    assert len([r for r in seen if r.method == "GET"]) == 2


async def test_a_provider_job_pending_past_the_deadline_fails_naming_its_task_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provider_jobs, "PROVIDER_TASK_DEADLINE_SECONDS", 0.3)
    failed = await run_302_job(tmp_path, polls_answering([PENDING_302], []))
    assert failed.is_error
    assert "t1" in text_of(failed) and "still pending after 0.3 seconds" in text_of(failed)


# --- fixed in tools, results and server (found by this review) -----------------------------


async def test_a_call_cancelled_while_saving_keeps_the_paid_images_whole_and_logs_them(
    tmp_path: Any, sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, sandbox.base_url)
    saving = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message and message.startswith("saving"):
            saving.set()

    async with Client(create_server(settings)) as client, anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def call() -> None:
            with scope:
                await client.call_tool(
                    "generate_image",
                    {"prompt": "big", "n": 4, "size": "3840x2160", "quality": "low"},
                    progress_callback=on_progress,
                )

        tg.start_soon(call)
        await saving.wait()
        await anyio.sleep(0.1)  # lands inside the saving threads
        scope.cancel()
    kept = saved_files(settings)
    for path in kept:  # each whole (written atomically), none half-written
        with Image.open(path) as img:
            img.load()
    assert all(str(path) in caplog.text for path in kept)


async def test_one_unusable_image_of_several_is_reported_and_the_good_one_kept(tmp_path: Any) -> None:
    answer = {"data": [{"b64_json": PNG_B64}, {"b64_json": "aGVsbG8="}]}
    async with fake_upstream(tmp_path, lambda r: httpx2.Response(200, json=answer)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x", "n": 2})
    assert not result.is_error, text_of(result)
    assert "image 2 of 2 was not usable" in text_of(result)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert [str(p) for p in files] == [i["path"] for i in result.structured_content["images"]]


async def test_an_answer_with_no_usable_image_leaves_no_file(tmp_path: Any) -> None:
    answer = {"data": [{"b64_json": "aGVsbG8="}, {"b64_json": "aGVsbG8="}]}
    async with fake_upstream(tmp_path, lambda r: httpx2.Response(200, json=answer)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x", "n": 2})
    assert result.is_error
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


async def test_302ai_chat_style_usage_is_shown_in_the_summary(tmp_path: Any) -> None:
    usage = {"prompt_tokens": 12, "completion_tokens": 4160, "total_tokens": 4172}
    answer = {"data": [{"b64_json": PNG_B64}], "usage": usage}
    async with fake_upstream(tmp_path, lambda r: httpx2.Response(200, json=answer)) as client:
        result = await client.call_tool("generate_image", {"prompt": "x"})
    assert "usage: input 12 tokens, output 4160, total 4172" in text_of(result)


async def test_url_answers_report_downloading_before_saving(client: Client) -> None:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((message or "").split(" ")[0])

    await client.call_tool("generate_image", {"prompt": "[sandbox:url] x"}, progress_callback=on_progress)
    assert seen == ["generating", "downloading", "saving"]


async def test_a_sync_call_works_when_the_task_database_cannot_be_opened(tmp_path: Any, sandbox: Any) -> None:
    (tmp_path / "data").write_text("not a folder")
    async with Client(create_server(make_settings(tmp_path, sandbox.base_url))) as client:
        result = await client.call_tool("generate_image", {"prompt": "x"})
    assert not result.is_error, text_of(result)
