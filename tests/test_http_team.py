"""Serving a team over HTTP: limits, health, drain, signed downloads, uploads (issue 11, items 3-4).

A real uvicorn server on loopback in this process (`tests.test_http_auth.team_server`), the
sandbox as upstream.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import pytest
from PIL import Image

from tests.test_http_auth import ALICE, BOB, TIMEOUT, TOKENS, client_for, team_server

pytestmark = pytest.mark.anyio

SECRET = "a-test-url-signing-secret-of-40-characters"


def png_bytes(size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), "teal").save(out, format="PNG")
    return out.getvalue()


async def wait_for(condition: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        while not condition():
            await anyio.sleep(0.01)


async def test_a_call_over_the_per_identity_limit_is_refused_at_once_and_others_still_run(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = {"http_tokens": TOKENS, "http_max_calls_per_identity": 1, "http_shutdown_grace": 0}
    async with team_server(tmp_path, sandbox.base_url, **settings) as served:
        limits = served.built.limits
        refused: Any = None
        other: Any = None
        async with (
            client_for(served.url, ALICE) as first,
            client_for(served.url, ALICE) as second,
            client_for(served.url, BOB) as bob,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(first.call_tool, "generate_image", {"prompt": "[sandbox:slow=5] long", "quality": "low"})
            await wait_for(lambda: limits.in_flight == 1)
            with anyio.fail_after(TIMEOUT):
                refused = await second.call_tool("generate_image", {"prompt": "again", "quality": "low"})
                other = await bob.call_tool("generate_image", {"prompt": "bob's", "quality": "low"})
            tg.cancel_scope.cancel()
    assert refused.is_error
    error = refused.structured_content["error"]  # type: ignore[index]
    assert error["code"] == "busy" and error["identity"] == "alice" and error["retry_after_seconds"] >= 1
    assert refused.content[0].text.startswith("busy: 1 call running for alice; retry after ")  # type: ignore[union-attr]
    assert not other.is_error


async def test_healthz_answers_without_auth_and_readyz_reports_each_check_without_secrets(
    tmp_path: Path, sandbox: Any
) -> None:
    async with (
        team_server(tmp_path, sandbox.base_url, http_tokens=TOKENS) as served,
        httpx2.AsyncClient(base_url=served.base, timeout=TIMEOUT) as http,
    ):
        live, ready = await http.get("/healthz"), await http.get("/readyz")
        served.built.limits.draining = True
        draining = await http.get("/readyz")
        served.built.limits.draining = False
    assert live.status_code == 200 and live.json() == {"ok": True}
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert set(ready.json()["checks"]) == {"tasks", "output", "upstream", "accepting_calls"}
    assert draining.status_code == 503
    for answer in (live, ready, draining):
        assert ALICE not in answer.text and str(tmp_path) not in answer.text


async def test_progress_still_arrives_over_sse_with_auth_on(tmp_path: Path, sandbox: Any) -> None:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    async with (
        team_server(tmp_path, sandbox.base_url, http_tokens=TOKENS) as served,
        client_for(served.url, ALICE) as client,
    ):
        made = await client.call_tool(
            "generate_image", {"prompt": "a fox", "quality": "low"}, progress_callback=on_progress
        )
    assert not made.is_error
    assert any(m.startswith("generating") for m in seen) and any(m.startswith("saving") for m in seen)


def task_rows(tmp_path: Path) -> list[tuple[str, str | None]]:
    """(status, error) of every task the server recorded, read once it has stopped."""
    import sqlite3

    with sqlite3.connect(tmp_path / "data" / "tasks.sqlite3") as db:
        return list(db.execute("SELECT status, error FROM tasks"))


async def call_then_stop(served: Any, prompt: str) -> None:
    """Start an image call, send the server the stop uvicorn's SIGTERM handler sends, wait for the end.

    What the client then receives is not checked here: the SDK's client opens a new connection
    after the call (refused once the listener is closed); the task record says what happened.
    """
    limits = served.built.limits
    try:
        async with client_for(served.url, ALICE, terminate=False) as client, anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "generate_image", {"prompt": prompt, "quality": "low"})
            await wait_for(lambda: limits.in_flight == 1)
            served.server.should_exit = True  # what uvicorn's SIGTERM handler does
            await wait_for(lambda: limits.draining)
            assert limits.check("bob") is not None  # no new calls from now on
            await wait_for(lambda: limits.in_flight == 0)
    except* (httpx2.HTTPError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the client's next request finds the server gone


async def test_a_sigterm_lets_a_running_call_finish_within_the_grace(tmp_path: Path, sandbox: Any) -> None:
    async with team_server(tmp_path, sandbox.base_url, http_tokens=TOKENS, http_shutdown_grace=20) as served:
        await call_then_stop(served, "[sandbox:slow=1] finish me")
        assert not served.built.runtime.handoff_now.is_set()
    assert [status for status, _ in task_rows(tmp_path)] == ["succeeded"]
    assert len(list((tmp_path / "out").glob("*.png"))) == 1


async def test_a_call_still_running_when_the_grace_ends_is_handed_off_and_recorded_not_half_written(
    tmp_path: Path, sandbox: Any
) -> None:
    async with team_server(tmp_path, sandbox.base_url, http_tokens=TOKENS, http_shutdown_grace=0) as served:
        await call_then_stop(served, "[sandbox:slow=30] too long")
        assert served.built.runtime.handoff_now.is_set()
    [(status, error)] = task_rows(tmp_path)
    assert status == "failed" and "server stopped" in (error or "")
    assert not any(p.suffix == ".png" for p in (tmp_path / "out").glob("**/*"))


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_a_signed_download_url_serves_the_image_and_fails_once_altered_or_expired(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = {"http_tokens": TOKENS, "public_url": "https://images.example.com", "url_secret": SECRET}
    async with team_server(tmp_path, sandbox.base_url, **settings) as served:
        async with client_for(served.url, ALICE) as client:
            made = await client.call_tool("generate_image", {"prompt": "a fox", "quality": "low"})
        image = made.structured_content["images"][0]  # type: ignore[index]
        signer = served.built.runtime.public_downloads
        expired, _ = signer.url_for(image["id"], now=time.time() - 7200)
        async with httpx2.AsyncClient(base_url=served.base, timeout=TIMEOUT) as http:
            good = await http.get(local_path(image["url"]))
            altered = await http.get(local_path(image["url"]).replace("exp=", "exp=9"))
            old = await http.get(local_path(expired))
    assert image["url"].startswith("https://images.example.com/images/")
    assert good.status_code == 200 and good.content == Path(image["path"]).read_bytes()
    assert good.headers["content-type"] == image["mime_type"]
    assert altered.status_code == 403 and old.status_code == 403 and old.json()["error"] == "expired"
    text = made.content[0].text  # type: ignore[union-attr]
    assert image["path"] not in text and image["url"] in text
    assert any(getattr(b, "uri", "") == image["url"] for b in made.content)
    assert SECRET not in made.model_dump_json()


async def test_an_uploaded_image_is_usable_by_id_as_an_edit_input(tmp_path: Path, sandbox: Any) -> None:
    async with team_server(tmp_path, sandbox.base_url, http_tokens=TOKENS) as served:
        async with httpx2.AsyncClient(base_url=served.base, timeout=TIMEOUT) as http:
            anonymous = await http.post("/uploads", content=png_bytes(), headers={"Content-Type": "image/png"})
            auth = {"Authorization": f"Bearer {ALICE}"}
            raw = await http.post("/uploads", content=png_bytes(), headers={**auth, "Content-Type": "image/png"})
            form = await http.post("/uploads", files={"file": ("x.png", png_bytes(32), "image/png")}, headers=auth)
            junk = await http.post("/uploads", content=b"%PDF-1.7 not an image", headers=auth)
        async with client_for(served.url, ALICE) as client:
            edited = await client.call_tool("edit_image", {"prompt": "add a boat", "image": raw.json()["uri"]})
    assert anonymous.status_code == 401
    assert raw.status_code == form.status_code == 201
    assert raw.json()["uri"] == f"images://{raw.json()['id']}" and "path" not in raw.json()
    assert form.json()["width"] == 32
    assert junk.status_code == 415
    assert not edited.is_error
