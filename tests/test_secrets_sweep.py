"""The secrets sweep: after a run of succeeding and failing calls over HTTP with a distinctive
API key, HTTP tokens and URL-signing secret, none of them is found — in any form a message may
carry it (raw, escaped, URL-encoded, base64) — in a result, a log line, a task record, the
ledger, or a saved file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest

from mcp_images.secrets import secret_forms
from tests.test_http_auth import ALICE, BOB, TIMEOUT, TOKENS, client_for, team_server

pytestmark = pytest.mark.anyio

API_KEY = "sk-sweep-7Qz\\x-42-distinctive-key"  # a backslash: its repr-escaped form differs
URL_SECRET = "url-signing-secret-sweep-0123456789abcdef"

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("generate_image", {"prompt": "a fox", "quality": "low"}),
    ("generate_image", {"prompt": "a fox [sandbox:401]"}),
    ("generate_image", {"prompt": "a fox [sandbox:500]"}),
    ("generate_image", {"prompt": "a fox [sandbox:moderation]"}),
    ("generate_image", {"prompt": "a fox", "qualty": "high"}),
    ("generate_image", {"prompt": "a fox", "stream": True, "partial_images": 1, "quality": "low"}),
    ("generate_image", {"prompt": "a fox [sandbox:url]", "quality": "low"}),
    ("generate_image", {"prompt": "in the background", "async": True, "quality": "low"}),
    ("estimate_cost", {"prompt": "a fox", "image": "/etc/passwd"}),
    ("edit_image", {"prompt": "x", "image": "http://127.0.0.1:9/none.png"}),
    ("check_task", {"task_id": "task-0000000000000000"}),
]


@asynccontextmanager
async def echoing_upstream() -> AsyncIterator[str]:
    """An upstream that answers every image call with an error quoting the Authorization header
    it got, raw, repr-escaped, URL-encoded and base64 — the worst an upstream can do."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        auth, length = "", 0
        await reader.readline()
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "authorization":
                auth = value.strip()
            elif name.lower() == "content-length":
                length = int(value.strip())
        await reader.readexactly(length)
        key = auth.removeprefix("Bearer ")
        said = f"bad key {key} / {key!r} / {quote(key)} / {base64.b64encode(f'user:{key}'.encode()).decode()}"
        body = json.dumps({"error": {"message": said, "type": "invalid_request_error", "code": "bad_key"}})
        head = f"HTTP/1.1 400 Bad\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write((head + "Connection: close\r\n\r\n" + body).encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


def every_form(secrets: list[str]) -> set[str]:
    return {form for secret in secrets for form in secret_forms(secret) if len(form) >= 8}


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_no_secret_in_any_form_reaches_results_logs_task_records_or_files(
    tmp_path: Path, sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers: list[str] = []
    settings = {"api_key": API_KEY, "http_tokens": TOKENS, "public_url": "http://127.0.0.1:1", "url_secret": URL_SECRET}
    async with team_server(tmp_path, sandbox.base_url, **settings) as served:
        async with client_for(served.url, ALICE) as alice, client_for(served.url, BOB) as bob:
            for tool, args in CALLS:
                with anyio.fail_after(TIMEOUT):
                    result = await alice.call_tool(tool, args)
                answers.append(result.model_dump_json())
                if tool == "generate_image" and args.get("async") and result.structured_content:
                    task_id = result.structured_content["task_id"]
                    for who in (alice, bob):
                        with anyio.fail_after(TIMEOUT):
                            polled = await who.call_tool("check_task", {"task_id": task_id, "wait_seconds": 10})
                        answers.append(polled.model_dump_json())
        async with (
            echoing_upstream() as echo,
            team_server(tmp_path / "echo", echo, **settings) as hostile,
            client_for(hostile.url, ALICE) as alice,
        ):
            for tool, args in CALLS[:2] + CALLS[7:8]:
                with anyio.fail_after(TIMEOUT):
                    answers.append((await alice.call_tool(tool, args)).model_dump_json())
    assert any("bad key" in a for a in answers), "the echoing upstream must have been reached"
    forms = every_form([API_KEY, ALICE, BOB, URL_SECRET])
    places: dict[str, str] = {f"answer {i}": text for i, text in enumerate(answers)}
    places["log"] = caplog.text
    for path in files_under(tmp_path):
        places[str(path)] = path.read_bytes().decode("latin-1")  # the SQLite files are read raw
    leaks = [(where, form) for where, text in places.items() for form in forms if form in text]
    assert len(places) > len(CALLS) + 3, "the sweep must cover results, the log and the files"
    assert leaks == [], f"secrets found: {leaks[:5]}"
