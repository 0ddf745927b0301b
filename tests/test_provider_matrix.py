"""The same user scenarios against every provider profile, each aimed at the sandbox's imitation.

Each test runs through the protocol (the SDK's in-memory client), so what is checked is what a
user of that provider would see: files, previews, usage and cost, errors that keep the
upstream's code and request id, retries, background tasks, and never the key.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent
from PIL import Image

from mcp_images.config import Settings
from mcp_images.server.build import create_server
from tests.conftest import TEST_KEY, make_settings

pytestmark = pytest.mark.anyio

PROVIDERS = ["openai", "302ai", "yescale", "agcloud", "compatible", "azure"]


@dataclass(frozen=True)
class Target:
    """One provider profile pointed at the sandbox, and where its calls should land."""

    provider: str
    settings: Settings
    prefix: str  # the sandbox path prefix of this provider's image calls


def _poll_fast(tmp_path: Path) -> Path:
    """A user providers file that only shortens 302.ai's poll interval (the shipped poll path stays)."""
    path = tmp_path / "providers.json"
    path.write_text(json.dumps({"providers": {"302ai": {"async_mode": {"poll_interval_seconds": 0.05}}}}))
    return path


def target_for(provider: str, tmp_path: Path, sandbox: Any) -> Target:
    origin = sandbox.origin
    if provider == "302ai":
        settings = make_settings(tmp_path, f"{origin}/302ai/v1", provider=provider, providers=_poll_fast(tmp_path))
        return Target(provider, settings, "/302ai/v1/images/")
    if provider == "yescale":
        return Target(
            provider, make_settings(tmp_path, f"{origin}/yescale/v1", provider=provider), "/yescale/v1/images/"
        )
    if provider == "azure":
        # Azure's base is the resource root; the deployment (= model) goes into the path.
        settings = make_settings(tmp_path, f"{origin}/azure", provider=provider)
        return Target(provider, settings, "/azure/openai/deployments/gpt-image-2/images/")
    return Target(provider, make_settings(tmp_path, sandbox.base_url, provider=provider), "/v1/images/")


@pytest.fixture(params=PROVIDERS)
def target(request: pytest.FixtureRequest, tmp_path: Path, sandbox: Any) -> Target:
    return target_for(request.param, tmp_path, sandbox)


@pytest.fixture
async def client(target: Target) -> AsyncIterator[Client]:
    async with Client(create_server(target.settings)) as c:
        yield c


def text_of(result: CallToolResult) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def assert_no_key(result: CallToolResult) -> None:
    assert TEST_KEY not in json.dumps(result.model_dump(mode="json"))


def image_calls(sandbox: Any) -> list[Any]:
    return sandbox.state.image_requests()


async def generate(client: Client, prompt: str, **args: Any) -> CallToolResult:
    result = await client.call_tool("generate_image", {"prompt": prompt, **args})
    assert_no_key(result)
    return result


async def test_a_generation_saves_the_file_and_shows_a_preview_usage_and_cost(
    client: Client, target: Target, sandbox: Any
) -> None:
    result = await generate(client, "a red fox", size="1024x1024", quality="low")
    assert not result.is_error, text_of(result)
    sc = result.structured_content
    assert sc is not None
    image = sc["images"][0]
    path = Path(image["path"])
    assert path.is_file() and path.stat().st_size == image["bytes"]
    assert Image.open(path).size == (1024, 1024)
    preview = next(b for b in result.content if isinstance(b, ImageContent))
    assert Image.open(io.BytesIO(base64.b64decode(preview.data))).size[0] > 0
    assert any(isinstance(b, ResourceLink) and b.uri == image["uri"] for b in result.content)
    assert sc["usage"]["output_tokens"] == 196  # gpt-image-2, 1024x1024 low
    assert sc["cost"]["total_usd"] > 0
    assert "cost: $" in text_of(result) and "usage:" in text_of(result)
    assert [r.path for r in image_calls(sandbox)] == [target.prefix + "generations"]


async def test_an_edit_takes_two_earlier_images_by_id_and_a_mask(client: Client, target: Target, sandbox: Any) -> None:
    first = await generate(client, "a lake", size="1024x1024", quality="low")
    second = await generate(client, "a boat", size="1024x1024", quality="low")
    assert not first.is_error and not second.is_error, text_of(first) + text_of(second)
    ids = [r.structured_content["images"][0]["uri"] for r in (first, second)]  # type: ignore[index]
    mask = Image.new("RGBA", (1024, 1024), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (400, 400, 600, 600))
    mask_path = target.settings.resolved_output_dir / "mask.png"
    mask.save(mask_path)
    result = await client.call_tool(
        "edit_image", {"prompt": "put the boat on the lake", "image": ids, "mask": str(mask_path), "quality": "low"}
    )
    assert_no_key(result)
    assert not result.is_error, text_of(result)
    assert "Edited 1 image" in text_of(result)
    assert Path(result.structured_content["images"][0]["path"]).is_file()  # type: ignore[index]
    edit = image_calls(sandbox)[-1]
    assert edit.path == target.prefix + "edits"
    assert [u.field for u in edit.uploads] == ["image[]", "image[]", "mask"]


async def test_a_streamed_generation_saves_two_partial_images_and_the_final_one(client: Client, sandbox: Any) -> None:
    seen: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(message or "")

    result = await client.call_tool(
        "generate_image",
        {"prompt": "streamed", "stream": True, "partial_images": 2, "quality": "low"},
        progress_callback=on_progress,
    )
    assert_no_key(result)
    assert not result.is_error, text_of(result)
    sc = result.structured_content
    assert sc is not None
    assert len(sc["partial_images"]) == 2 and len(sc["images"]) == 1
    assert all(Path(p["path"]).is_file() for p in sc["partial_images"])
    assert len([m for m in seen if m.startswith("partial image")]) == 2
    sent = image_calls(sandbox)[0]
    assert sent.fields.get("stream") in (True, "true") and sent.status == 200


async def test_a_moderation_refusal_keeps_the_code_and_request_id(client: Client, sandbox: Any) -> None:
    result = await generate(client, "[sandbox:moderation] a cat")
    assert result.is_error
    error = result.structured_content["error"]  # type: ignore[index]
    assert error["type"] == "ModerationError"
    assert error["code"] == "moderation_blocked"
    assert error["request_id"] == image_calls(sandbox)[0].request_id
    assert error["request_id"] in text_of(result)
    assert len(image_calls(sandbox)) == 1  # a refusal is never retried


async def test_a_passing_server_error_is_retried_and_the_call_succeeds(client: Client, sandbox: Any) -> None:
    result = await generate(client, "[sandbox:500-once] a cat", quality="low")
    assert not result.is_error, text_of(result)
    assert [r.status for r in image_calls(sandbox)] == [500, 200]


async def test_an_async_call_is_collected_with_check_task(client: Client, target: Target, sandbox: Any) -> None:
    started = await generate(client, "a heron", quality="low", **{"async": True})
    assert not started.is_error, text_of(started)
    task_id = started.structured_content["task_id"]  # type: ignore[index]
    done = await client.call_tool("check_task", {"task_id": task_id, "wait_seconds": 20})
    assert_no_key(done)
    assert not done.is_error, text_of(done)
    assert Path(done.structured_content["images"][0]["path"]).is_file()  # type: ignore[index]
    submit = image_calls(sandbox)[0]
    polls = [r for r in sandbox.state.requests if r.path.endswith("async_result")]
    if target.provider == "302ai":  # the provider runs the job itself; we poll it
        assert submit.query.get("async") == "true"
        assert len(polls) >= 3  # "result pending" twice, then the result
        assert {r.path for r in polls} == {"/async_result"}  # the shipped poll path, at the host's root
    else:  # a local background task makes a normal call
        assert "async" not in submit.query and polls == []


async def test_an_async_edit_is_collected_with_check_task(client: Client, target: Target, sandbox: Any) -> None:
    first = await generate(client, "a lake", size="1024x1024", quality="low")
    uri = first.structured_content["images"][0]["uri"]  # type: ignore[index]
    started = await client.call_tool("edit_image", {"prompt": "add a boat", "image": uri, "async": True})
    assert not started.is_error, text_of(started)
    done = await client.call_tool(
        "check_task",
        {"task_id": started.structured_content["task_id"], "wait_seconds": 20},  # type: ignore[index]
    )
    assert_no_key(done)
    assert not done.is_error, text_of(done)
    assert "Edited 1 image" in text_of(done)
    edit = image_calls(sandbox)[-1]
    assert edit.path == target.prefix + "edits" and [u.field for u in edit.uploads] == ["image"]
    assert (edit.query.get("async") == "true") == (target.provider == "302ai")


async def test_errors_and_results_never_carry_the_key(client: Client, sandbox: Any) -> None:
    for prompt in ("[sandbox:401] x", "[sandbox:quota] x", "[sandbox:404] x", "fine"):
        result = await generate(client, prompt, quality="low")
        assert result.is_error == (prompt != "fine"), text_of(result)


async def test_yescale_passes_another_vendors_model_through_with_a_note(tmp_path: Path, sandbox: Any) -> None:
    settings = target_for("yescale", tmp_path, sandbox).settings
    async with Client(create_server(settings)) as client:
        result = await generate(client, "a castle", model="flux-1.1-pro")
    assert not result.is_error, text_of(result)
    assert "not in the model catalog" in text_of(result)
    sent = image_calls(sandbox)[0]
    assert sent.path == "/yescale/v1/images/generations" and sent.fields["model"] == "flux-1.1-pro"


async def test_azure_puts_the_deployment_in_the_path_and_the_key_in_the_api_key_header(
    tmp_path: Path, sandbox: Any
) -> None:
    settings = target_for("azure", tmp_path, sandbox).settings
    async with Client(create_server(settings)) as client:
        result = await generate(client, "a bridge", model="gpt-image-1.5", quality="low")
    assert not result.is_error, text_of(result)
    sent = image_calls(sandbox)[0]
    assert sent.path == "/azure/openai/deployments/gpt-image-1.5/images/generations"
    assert sent.query.get("api-version")
    assert "api-key" in sent.headers and "authorization" not in sent.headers


async def test_302ai_asks_for_urls_in_the_query_and_saves_the_downloaded_image(tmp_path: Path, sandbox: Any) -> None:
    settings = target_for("302ai", tmp_path, sandbox).settings
    async with Client(create_server(settings)) as client:
        result = await generate(client, "a lighthouse", quality="low")
    assert not result.is_error, text_of(result)
    sent = image_calls(sandbox)[0]
    assert sent.query.get("response_format") == "url" and "response_format" not in sent.fields
    assert any(r.path.startswith("/files/") for r in sandbox.state.requests)
    assert Path(result.structured_content["images"][0]["path"]).is_file()  # type: ignore[index]
