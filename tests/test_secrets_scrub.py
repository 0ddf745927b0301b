"""The key never leaves in any form: raw, repr-escaped, JSON-escaped, URL-encoded or base64."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import CallToolResult
from pydantic import SecretStr

from mcp_images.secrets import REDACTED, make_scrubber
from mcp_images.server.build import create_server
from tests.conftest import make_settings

# Printable ASCII (so the settings take it) with every character that some encoding changes.
KEY = "sk-test/0123+4567\\89'secret~x y"
GUARD = 20.0  # seconds any one call may take


def b64(text: str, *, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return encode(text.encode()).decode()


FORMS = {
    "raw": KEY,
    "str repr": repr("Bearer " + KEY),
    "str repr in double quotes": repr('"' + KEY),
    "bytes repr, as in Illegal header value": repr(("Bearer " + KEY + "\n").encode()),
    "JSON-escaped": json.dumps({"authorization": KEY}),
    "quote": quote(KEY),
    "quote, nothing safe": quote(KEY, safe=""),
    "quote_plus": quote_plus(KEY),
    "lower-case percent hex": quote(KEY, safe="").lower(),  # KEY's letters are lower case already
    "base64 of the key": b64(KEY),
    "urlsafe base64 of the key": b64(KEY, urlsafe=True),
    "base64 of :key": b64(":" + KEY),
    "base64 of key:": b64(KEY + ":"),
    "base64 of a one-letter user": b64("u:" + KEY),
    "base64 of a two-letter user": b64("ab:" + KEY),
    "base64 of a long user": b64("api-user-name:" + KEY),
    "urlsafe base64 of a user": b64("bob:" + KEY, urlsafe=True),
    "unpadded base64": b64("bob:" + KEY).rstrip("="),
}


def revealing(text: str) -> list[str]:
    """The forms of KEY still in ``text`` (the encoded ones, and the key's longer pieces)."""
    found = [name for name, form in FORMS.items() if form in text]
    return found + [piece for piece in ("0123+4567", "89'secret", "sk-test/") if piece in text]


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_every_form_of_the_key_is_cut_out_of_a_message(form: str) -> None:
    scrub = make_scrubber([KEY])
    text = scrub(f"could not reach https://up.example: {form} (and more)")
    assert form not in text
    assert REDACTED in text
    assert text.startswith("could not reach https://up.example: ") and text.endswith(" (and more)")


def test_a_secret_shorter_than_eight_characters_changes_nothing() -> None:
    scrub = make_scrubber(["k", "link", None, ""])
    assert scrub({"type": "resource_link", "uri": "images://abc"}) == {"type": "resource_link", "uri": "images://abc"}
    assert not scrub


def test_several_secrets_are_all_cut_from_keys_and_values_of_nested_json() -> None:
    token = "tok-0123456789abcdef"
    scrub = make_scrubber([KEY, token])
    value = {KEY: [f"a {token} b", {"n": 1, "deep": [quote(KEY)]}], "ok": True, "none": None}
    assert scrub(value) == {REDACTED: [f"a {REDACTED} b", {"n": 1, "deep": [REDACTED]}], "ok": True, "none": None}


def test_a_scrubber_without_secrets_hands_values_back_untouched() -> None:
    value = {"a": ["b"]}
    assert make_scrubber([])(value) is value


# -- through the server ---------------------------------------------------------------------


def database_text(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "data" / "tasks.sqlite3") as db:
        return "\n".join(db.iterdump())


def everything(result: CallToolResult) -> str:
    """The result as the client sees it: text blocks and structuredContent."""
    return result.model_dump_json() + json.dumps(result.structured_content)


def echo_every_form(request: httpx2.Request) -> httpx2.Response:
    """A hostile upstream: an error whose every field quotes the key in another encoding."""
    forms = list(FORMS.values())
    body = {"error": {"message": " | ".join(forms), "code": forms[5], "param": forms[9], "type": forms[3]}}
    return httpx2.Response(400, json=body, headers={"x-request-id": b64("bob:" + KEY)})


@pytest.mark.anyio
async def test_a_key_the_upstream_echoes_encoded_reaches_neither_the_result_nor_the_task_database(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, "http://upstream.test/v1", api_key=KEY, max_retries=0)
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(echo_every_form))
    async with http, Client(create_server(settings, http_client=http)) as client:
        with anyio.fail_after(GUARD):
            direct = await client.call_tool("generate_image", {"prompt": "a fox"})
            started = await client.call_tool("generate_image", {"prompt": "a fox", "async": True})
            task_id = started.structured_content["task_id"] if started.structured_content else ""
            later = await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 10})
    assert direct.is_error and later.is_error
    assert revealing(everything(direct)) == []
    assert revealing(everything(later)) == []
    assert revealing(database_text(tmp_path)) == []


@pytest.mark.anyio
async def test_a_key_with_a_line_break_that_reaches_the_client_is_not_quoted_back_escaped(
    tmp_path: Path, sandbox: Any
) -> None:
    # Settings strip the line end now; an embedder that builds them around the check still
    # gets no key back from the HTTP library's "Illegal header value b'Bearer ...\n'".
    settings = make_settings(tmp_path, sandbox.base_url, max_retries=0)
    settings = settings.model_copy(update={"api_key": SecretStr(KEY + "\n")})
    async with Client(create_server(settings)) as client:
        with anyio.fail_after(GUARD):
            result = await client.call_tool("generate_image", {"prompt": "a fox", "quality": "low"})
    assert result.is_error
    assert revealing(everything(result)) == []
    assert revealing(database_text(tmp_path)) == []
