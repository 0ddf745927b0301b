"""The sandbox upstream behaves as the upstream contract says, through a real loopback server."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import pytest
from PIL import Image

from mcp_images.pricing.tokens import PARTIAL_IMAGE_TOKENS, usage_body
from mcp_images.sandbox import SandboxServer, create_app, serve_sandbox

KEY = "sk-sandbox-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
GUARD = 10  # seconds: no single test may hang longer


@pytest.fixture
async def api(sandbox: SandboxServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=sandbox.origin, headers=AUTH, timeout=GUARD) as client:
        yield client


def decode(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def png(size: tuple[int, int], mode: str = "RGB", colour: Any = "red") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, "PNG")
    return out.getvalue()


def events(text: str) -> list[tuple[str | None, Any]]:
    """Server-sent events as (event name, parsed data) pairs; ``[DONE]`` kept as a string."""
    out: list[tuple[str | None, Any]] = []
    for block in text.strip().split("\n\n"):
        name, data = None, None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                raw = line.removeprefix("data: ")
                data = raw if raw == "[DONE]" else json.loads(raw)
        out.append((name, data))
    return out


async def generate(api: httpx2.AsyncClient, prefix: str = "/v1", **body: Any) -> httpx2.Response:
    return await api.post(f"{prefix}/images/generations", json={"prompt": "a red fox", **body})


# --- generations -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "size", "fmt"),
    [
        ({"model": "gpt-image-2", "size": "1536x1024"}, (1536, 1024), "PNG"),
        (
            {"model": "gpt-image-2", "size": "1024x640", "output_format": "webp"},
            (1024, 640),
            "WEBP",
        ),
        ({"model": "gpt-image-1.5", "size": "auto", "output_format": "jpeg"}, (1024, 1024), "JPEG"),
        (
            {"model": "dall-e-2", "size": "256x256", "response_format": "b64_json"},
            (256, 256),
            "PNG",
        ),
    ],
)
@pytest.mark.anyio
async def test_a_generation_returns_decodable_images_of_the_requested_size_and_format(
    api: httpx2.AsyncClient, body: dict[str, Any], size: tuple[int, int], fmt: str
) -> None:
    response = await generate(api, **body)
    assert response.status_code == 200
    img = decode(response.json()["data"][0]["b64_json"])
    assert (img.size, img.format) == (size, fmt)
    assert response.headers["x-request-id"].startswith("req_sandbox_")


@pytest.mark.anyio
async def test_a_transparent_background_has_real_alpha_around_an_opaque_card(
    api: httpx2.AsyncClient,
) -> None:
    response = await generate(api, model="gpt-image-1.5", background="transparent")
    body = response.json()
    img = decode(body["data"][0]["b64_json"]).convert("RGBA")
    assert body["background"] == "transparent"
    assert img.getpixel((2, 2))[3] == 0  # type: ignore[index]
    assert img.getpixel((512, 512))[3] == 255  # type: ignore[index]


@pytest.mark.anyio
async def test_jpeg_compression_changes_the_bytes(api: httpx2.AsyncClient) -> None:
    sizes = []
    for compression in (10, 95):
        r = await generate(api, model="gpt-image-1", output_format="jpeg", output_compression=compression)
        sizes.append(len(base64.b64decode(r.json()["data"][0]["b64_json"])))
    assert sizes[0] < sizes[1]


@pytest.mark.anyio
async def test_n_three_gives_three_distinct_images(api: httpx2.AsyncClient) -> None:
    data = (await generate(api, model="gpt-image-1-mini", n=3, quality="low")).json()["data"]
    assert len({item["b64_json"] for item in data}) == 3


@pytest.mark.anyio
async def test_the_body_reports_resolved_settings_and_the_usage_of_the_token_rules(
    api: httpx2.AsyncClient,
) -> None:
    body = (await generate(api, model="gpt-image-2", size="1536x1024", n=2)).json()
    assert {k: body[k] for k in ("background", "output_format", "quality", "size")} == {
        "background": "opaque",
        "output_format": "png",
        "quality": "medium",  # auto, resolved
        "size": "1536x1024",
    }
    expected = usage_body("gpt-image-2", prompt="a red fox", n=2, width=1536, height=1024, quality="medium")
    assert body["usage"] == expected


@pytest.mark.anyio
async def test_dall_e_3_answers_with_a_url_by_default_and_a_revised_prompt_but_no_usage(
    api: httpx2.AsyncClient,
) -> None:
    body = (await generate(api, model="dall-e-3", quality="hd")).json()
    item = body["data"][0]
    assert set(body) == {"created", "data"}
    assert "a red fox" in item["revised_prompt"]
    file = await api.get(item["url"])
    assert file.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(file.content)).size == (1024, 1024)


# --- edits -------------------------------------------------------------------------------


A = ("a.png", png((640, 480)), "image/png")
B = ("b.png", png((64, 64)), "image/png")
MASK = ("m.png", png((640, 480), "RGBA", (0, 0, 0, 0)), "image/png")


@pytest.mark.parametrize(
    ("files", "fields", "input_sizes"),
    [
        ([("image", A)], ["image"], [(640, 480)]),
        ([("image[]", A), ("image[]", B)], ["image[]", "image[]"], [(640, 480), (64, 64)]),
        ([("image", A), ("mask", MASK)], ["image", "mask"], [(640, 480)]),
    ],
)
@pytest.mark.anyio
async def test_an_edit_takes_one_image_several_images_or_a_mask(
    api: httpx2.AsyncClient,
    sandbox: SandboxServer,
    files: list[Any],
    fields: list[str],
    input_sizes: list[tuple[int, int]],
) -> None:
    form = {"model": "gpt-image-1.5", "prompt": "add a hat", "size": "1536x1024"}
    response = await api.post("/v1/images/edits", data=form, files=files)
    assert response.status_code == 200, response.text
    assert decode(response.json()["data"][0]["b64_json"]).size == (1536, 1024)
    record = sandbox.state.image_requests()[-1]
    assert [u.field for u in record.uploads] == fields
    assert record.fields == form
    expected = usage_body(
        "gpt-image-1.5", prompt="add a hat", n=1, width=1536, height=1024, quality="medium",
        input_sizes=input_sizes,
    )  # fmt: skip
    assert response.json()["usage"] == expected


@pytest.mark.anyio
async def test_an_edit_stream_sends_image_edit_events(api: httpx2.AsyncClient) -> None:
    response = await api.post(
        "/v1/images/edits",
        data={"model": "gpt-image-1", "prompt": "x", "stream": "true", "partial_images": "1"},
        files=[("image", ("a.png", png((32, 32)), "image/png"))],
    )
    assert [name for name, _ in events(response.text)] == [
        "image_edit.partial_image",
        "image_edit.completed",
    ]


# --- validation --------------------------------------------------------------------------


def _edit(files: list[Any], **fields: str) -> dict[str, Any]:
    return {"edit": True, "files": files, "fields": {"prompt": "x", **fields}}


INVALID = [
    ({"model": "dall-e-3", "n": 2}, "n"),
    ({"model": "gpt-image-2", "size": "1000x1000"}, "size"),
    (
        {"model": "gpt-image-1.5", "background": "transparent", "output_format": "jpeg"},
        "background",
    ),
    ({"model": "gpt-image-2", "background": "transparent"}, "background"),
    ({"model": "gpt-image-1", "quality": "hd"}, "quality"),
    ({"model": "gpt-image-1", "stream": True, "n": 2}, "n"),
    ({"model": "gpt-image-1", "response_format": "b64_json"}, "response_format"),
    (
        {"model": "gpt-image-1", "output_compression": 101, "output_format": "jpeg"},
        "output_compression",
    ),
    ({"model": "gpt-image-1", "n": "2"}, "n"),
    ({"model": "gpt-image-1", "seed": 3}, "seed"),
    ({"model": "gpt-image-1", "prompt": None}, "prompt"),
    ({"model": "gpt-image-2", "output_format": "svg", "svg": "gpt-5.5"}, "svg"),
    ({"model": "gpt-image-2", "output_format": "svg", "svg": {"model": "m", "temperature": 1}}, "svg.temperature"),
    ({"model": "gpt-image-2", "output_format": "gif", "frame_count": 1}, "frame_count"),
    ({"model": "gpt-image-2", "output_format": "gif", "frame_duration_ms": 5}, "frame_duration_ms"),
    ({"model": "gpt-image-2", "output_format": "gif", "output_compression": 50}, "output_compression"),
    ({"model": "gpt-image-2", "output_format": "gif", "partial_images": 1}, "partial_images"),
    ({"model": "gpt-image-2", "safety_identifier": 42}, "safety_identifier"),
    (
        _edit([("image", ("a.png", png((64, 64)), "image/png"))], model="gpt-image-2.5-flare", frame_count="x"),
        "frame_count",
    ),
    (_edit([("image", ("a.png", png((64, 64)), "image/png"))], model="gpt-image-2", **{"svg[model]": "m"}), "svg"),
    (_edit([("image", ("a.png", png((600, 400)), "image/png"))], model="dall-e-2"), "image"),
    (_edit([("image", ("a.txt", b"not an image", "image/png"))], model="gpt-image-1"), "image"),
    (_edit([], model="gpt-image-1"), "image"),
    (_edit([("image", ("a.png", png((64, 64)), "image/png"))], model="dall-e-3"), "model"),
    (
        _edit(
            [
                ("image", ("a.png", png((64, 64)), "image/png")),
                ("mask", ("m.png", png((32, 32), "RGBA"), "image/png")),
            ],
            model="gpt-image-1",
        ),
        "mask",
    ),
    (
        _edit(
            [
                ("image", ("a.png", png((64, 64)), "image/png")),
                ("mask", ("m.png", png((64, 64), "RGB"), "image/png")),
            ],
            model="gpt-image-1",
        ),
        "mask",
    ),
]


@pytest.mark.parametrize(("request_spec", "param"), INVALID)
@pytest.mark.anyio
async def test_a_request_that_breaks_a_rule_gets_a_400_naming_the_param(
    api: httpx2.AsyncClient, request_spec: dict[str, Any], param: str
) -> None:
    if request_spec.get("edit"):
        files = request_spec["files"] or None
        data = request_spec["fields"]
        if files is None:  # no file at all: send the text fields as multipart anyway
            files = [("unused", ("u.txt", b"", "text/plain"))]
        response = await api.post("/v1/images/edits", data=data, files=files)
    else:
        response = await api.post("/v1/images/generations", json={"prompt": "x", **request_spec})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert error["message"]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, None),
        ({"Authorization": "Basic dXNlcjpwdw=="}, None),
        ({"Authorization": "Bearer sk-sandbox-bad"}, "invalid_api_key"),
    ],
)
@pytest.mark.anyio
async def test_a_missing_or_refused_key_gets_a_401_that_never_echoes_the_key(
    sandbox: SandboxServer, headers: dict[str, str], code: str | None
) -> None:
    async with httpx2.AsyncClient(base_url=sandbox.origin, headers=headers) as client:
        response = await generate(client)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert "sk-sandbox-bad" not in response.text


@pytest.mark.anyio
async def test_the_record_keeps_fields_and_headers_but_never_the_key(
    api: httpx2.AsyncClient, sandbox: SandboxServer
) -> None:
    await generate(api, model="gpt-image-1", quality="low")
    record = sandbox.state.image_requests()[0]
    assert record.fields == {"prompt": "a red fox", "model": "gpt-image-1", "quality": "low"}
    assert record.status == 200
    assert KEY not in repr(sandbox.state.requests)
    assert record.headers["authorization"] == "<redacted>"


# --- failure modes -----------------------------------------------------------------------

MODES = [
    ("moderation", "gpt-image-1", 400, "moderation_blocked"),
    ("moderation", "dall-e-2", 400, "content_policy_violation"),
    ("401", "gpt-image-1", 401, "invalid_api_key"),
    ("403", "gpt-image-1", 403, None),
    ("404", "gpt-image-1", 404, "model_not_found"),
    ("429", "gpt-image-1", 429, "rate_limit_exceeded"),
    ("quota", "gpt-image-1", 429, "insufficient_quota"),
    ("500", "gpt-image-1", 500, None),
    ("503", "gpt-image-1", 503, "engine_overloaded"),
]


@pytest.mark.parametrize(("mode", "model", "status", "code"), MODES)
@pytest.mark.parametrize("via", ["header", "prompt"])
@pytest.mark.anyio
async def test_each_error_mode_answers_with_its_status_and_code(
    api: httpx2.AsyncClient, mode: str, model: str, status: int, code: str | None, via: str
) -> None:
    if via == "header":
        response = await api.post(
            "/v1/images/generations",
            json={"model": model, "prompt": "x"},
            headers={"X-Sandbox-Mode": mode},
        )
    else:
        response = await generate(api, model=model, prompt=f"x [sandbox:{mode}]")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.headers["x-request-id"].startswith("req_sandbox_")


@pytest.mark.anyio
async def test_moderation_names_its_categories_and_rate_limits_say_when_to_retry(
    api: httpx2.AsyncClient,
) -> None:
    blocked = (await generate(api, model="gpt-image-2", prompt="[sandbox:moderation]")).json()["error"]
    assert blocked["moderation_details"]["categories"] == ["violence"]
    limited = await generate(api, model="gpt-image-2", prompt="[sandbox:429]")
    assert limited.headers["retry-after-ms"] == "10"
    assert "organization must be verified" in (await generate(api, prompt="[sandbox:403]")).json()["error"]["message"]


@pytest.mark.anyio
async def test_a_524_is_a_gateway_html_page(api: httpx2.AsyncClient) -> None:
    response = await generate(api, prompt="[sandbox:524] x")
    assert response.status_code == 524
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(("mode", "status"), [("500-once", 500), ("429-once", 429), ("503-once", 503)])
@pytest.mark.anyio
async def test_a_once_mode_fails_the_first_attempt_and_succeeds_on_the_retry(
    api: httpx2.AsyncClient, sandbox: SandboxServer, mode: str, status: int
) -> None:
    prompt = f"[sandbox:{mode}] a cat"
    first = await generate(api, model="gpt-image-1", prompt=prompt)
    second = await generate(api, model="gpt-image-1", prompt=prompt)
    other = await generate(api, model="gpt-image-1", prompt=prompt + " with a hat")
    assert [first.status_code, second.status_code, other.status_code] == [status, 200, status]
    assert [r.status for r in sandbox.state.image_requests()] == [status, 200, status]


@pytest.mark.anyio
async def test_an_unknown_mode_is_refused_with_the_known_ones_listed(
    api: httpx2.AsyncClient,
) -> None:
    response = await generate(api, prompt="[sandbox:explode]")
    assert response.status_code == 400
    assert "slow=<seconds>" in response.json()["error"]["message"]


@pytest.mark.anyio
async def test_url_mode_answers_with_a_url_that_serves_the_image(api: httpx2.AsyncClient) -> None:
    body = (await generate(api, model="gpt-image-1", output_format="webp", prompt="[sandbox:url] x")).json()
    file = await api.get(body["data"][0]["url"])
    assert file.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(file.content)).format == "WEBP"
    assert (await api.get("/files/nope.png")).status_code == 404


@pytest.mark.anyio
async def test_no_usage_mode_leaves_usage_out(api: httpx2.AsyncClient) -> None:
    body = (await generate(api, model="gpt-image-1", prompt="[sandbox:no-usage] x")).json()
    assert "usage" not in body


@pytest.mark.anyio
async def test_cut_mode_breaks_a_plain_answer_half_way(api: httpx2.AsyncClient) -> None:
    with pytest.raises(httpx2.RemoteProtocolError):
        await generate(api, model="gpt-image-1", prompt="[sandbox:cut] x")


async def call_then_leave(sandbox: SandboxServer, prompt: str) -> Any:
    """Start a generation, give up once the sandbox has read it, and return its record."""
    with anyio.fail_after(GUARD):
        async with (
            httpx2.AsyncClient(base_url=sandbox.origin, headers=AUTH) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(lambda: generate(client, prompt=prompt))
            while not (sandbox.state.image_requests() and sandbox.state.image_requests()[0].fields):
                await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        record = sandbox.state.image_requests()[0]
        while not record.disconnected:  # the sandbox notices the closed connection by itself
            await anyio.sleep(0.01)
    return record


@pytest.mark.anyio
async def test_slow_mode_notices_when_the_client_gives_up(sandbox: SandboxServer) -> None:
    record = await call_then_leave(sandbox, "[sandbox:slow=30] x")
    assert record.disconnected and record.modes == ["slow"]


# --- streaming ---------------------------------------------------------------------------


@pytest.mark.parametrize("partials", [0, 1, 2, 3])
@pytest.mark.anyio
async def test_a_stream_sends_the_partial_images_then_the_completed_event_with_usage(
    api: httpx2.AsyncClient, partials: int
) -> None:
    response = await generate(api, model="gpt-image-1", stream=True, partial_images=partials, size="1024x1536")
    assert response.headers["content-type"].startswith("text/event-stream")
    got = events(response.text)
    names = [name for name, _ in got]
    assert names == ["image_generation.partial_image"] * partials + ["image_generation.completed"]
    for i, (_, data) in enumerate(got[:-1]):
        assert data["partial_image_index"] == i
        assert decode(data["b64_json"]).size == (1024, 1536)
        assert {"size", "quality", "background", "output_format", "created_at"} <= set(data)
    completed = got[-1][1]
    assert decode(completed["b64_json"]).size == (1024, 1536)
    base = usage_body("gpt-image-1", prompt="a red fox", n=1, width=1024, height=1536, quality="medium")
    assert base is not None
    assert completed["usage"]["output_tokens"] == base["output_tokens"] + PARTIAL_IMAGE_TOKENS * partials


@pytest.mark.anyio
async def test_a_cut_stream_drops_the_connection_after_the_first_partial(
    api: httpx2.AsyncClient,
) -> None:
    received = b""
    with pytest.raises(httpx2.RemoteProtocolError):
        body = {
            "model": "gpt-image-1",
            "prompt": "[sandbox:cut]",
            "stream": True,
            "partial_images": 2,
        }
        async with api.stream("POST", "/v1/images/generations", json=body) as response:
            async for chunk in response.aiter_bytes():
                received += chunk
    assert [name for name, _ in events(received.decode())] == ["image_generation.partial_image"]


@pytest.mark.anyio
async def test_a_clean_cut_stream_ends_without_a_completed_event(api: httpx2.AsyncClient) -> None:
    response = await generate(api, model="gpt-image-1", prompt="[sandbox:cut-clean]", stream=True, partial_images=2)
    assert [name for name, _ in events(response.text)] == ["image_generation.partial_image"]


@pytest.mark.anyio
async def test_moderation_inside_a_stream_is_an_error_event(api: httpx2.AsyncClient) -> None:
    response = await generate(api, model="gpt-image-1", prompt="[sandbox:moderation]", stream=True)
    ((name, data),) = events(response.text)
    assert (response.status_code, name, data["error"]["code"]) == (
        200,
        "error",
        "moderation_blocked",
    )


# --- provider imitations -----------------------------------------------------------------


@pytest.mark.anyio
async def test_302ai_async_answers_pending_then_the_result_as_object_or_string(
    api: httpx2.AsyncClient, sandbox: SandboxServer
) -> None:
    results = []
    for _ in range(2):
        submit = await api.post(
            "/302ai/v1/images/generations?async=true&response_format=url",
            json={"model": "gpt-image-1", "prompt": "x"},
        )
        task_id = submit.json()["task_id"]
        polls = [(await api.get("/302ai/async_result", params={"task_id": task_id})).json() for _ in range(3)]
        assert [p["err"] for p in polls] == ["result pending", "result pending", ""]
        results.append(polls[-1]["data"])
    assert isinstance(results[0], dict)
    assert isinstance(results[1], str)
    body = json.loads(results[1])
    assert body["usage"]["prompt_tokens"] == body["usage"]["input_tokens"]  # 302.ai's mixed usage
    assert (await api.get(body["data"][0]["url"])).status_code == 200


@pytest.mark.anyio
async def test_302ai_async_failures_come_back_from_the_poll_and_524_at_once(
    api: httpx2.AsyncClient,
) -> None:
    submit = await api.post("/302ai/v1/images/generations?async=true", json={"prompt": "[sandbox:500] x"})
    task_id = submit.json()["task_id"]
    polls = [(await api.get("/302ai/v1/async_result", params={"task_id": task_id})).json() for _ in range(3)]
    assert (polls[-1]["status_code"], polls[-1]["data"]) == (500, None)
    assert polls[-1]["err"]
    gateway = await api.post("/302ai/v1/images/generations?async=true", json={"prompt": "[sandbox:524] x"})
    assert gateway.status_code == 524


@pytest.mark.anyio
async def test_302ai_streams_end_with_done(api: httpx2.AsyncClient) -> None:
    response = await generate(api, "/302ai/v1", model="gpt-image-1", stream=True)
    assert events(response.text)[-1] == (None, "[DONE]")


@pytest.mark.anyio
async def test_azure_takes_the_api_key_header_and_the_deployment_as_the_model(
    sandbox: SandboxServer,
) -> None:
    path = "/azure/openai/deployments/dall-e-3/images/generations"
    async with httpx2.AsyncClient(base_url=sandbox.origin) as client:
        ok = await client.post(
            path,
            params={"api-version": "2025-04-01-preview"},
            headers={"api-key": KEY},
            json={"prompt": "x"},
        )
        refused = await client.post(path, params={"api-version": "v"}, json={"prompt": "x"})
        too_many = await client.post(
            path,
            params={"api-version": "v"},
            headers={"api-key": KEY},
            json={"prompt": "x", "n": 2},
        )
        no_version = await client.post(path, headers={"api-key": KEY}, json={"prompt": "x"})
    assert ok.status_code == 200 and "revised_prompt" in ok.json()["data"][0]
    assert refused.status_code == 401 and set(refused.json()["error"]) == {"code", "message"}
    assert too_many.status_code == 400 and too_many.json()["error"]["param"] == "n"
    assert no_version.status_code == 404


@pytest.mark.anyio
async def test_yescale_takes_any_model_and_returns_urls_on_request(api: httpx2.AsyncClient) -> None:
    response = await generate(api, "/yescale/v1", model="flux-1.1-pro", size="1184x880", response_format="url")
    assert response.status_code == 200
    file = await api.get(response.json()["data"][0]["url"])
    assert Image.open(io.BytesIO(file.content)).size == (1184, 880)


@pytest.mark.parametrize("path", ["/v1/images/generations", "/azure/openai/deployments/my-art/images/generations"])
@pytest.mark.anyio
async def test_openai_and_azure_answer_an_unknown_model_with_404_unless_told_to_be_permissive(
    strict_sandbox: SandboxServer, sandbox: SandboxServer, path: str
) -> None:
    body = {"prompt": "x", "model": "my-art", "size": "1024x1024"}
    params = {"api-version": "2025-04-01-preview"}
    async with httpx2.AsyncClient(base_url=strict_sandbox.origin, headers=AUTH, timeout=GUARD) as strict:
        refused = await strict.post(path, json=body, params=params)
    async with httpx2.AsyncClient(base_url=sandbox.origin, headers=AUTH, timeout=GUARD) as permissive:
        served = await permissive.post(path, json=body, params=params)
    assert refused.status_code == 404
    code = refused.json()["error"]["code"]
    assert code == ("DeploymentNotFound" if path.startswith("/azure") else "model_not_found")
    assert served.status_code == 200 and decode(served.json()["data"][0]["b64_json"]).size == (1024, 1024)


@pytest.mark.parametrize(("fmt", "mime"), [("gif", "image/gif"), ("svg", "image/svg+xml")])
@pytest.mark.anyio
async def test_gif_and_svg_answers_are_served_as_urls_with_their_media_type(
    api: httpx2.AsyncClient, fmt: str, mime: str
) -> None:
    response = await generate(api, "/yescale/v1", model="gpt-image-2.5-flare", output_format=fmt,
                              size="1024x640", response_format="url")  # fmt: skip
    body = response.json()
    file = await api.get(body["data"][0]["url"])
    assert (body["output_format"], file.headers["content-type"]) == (fmt, mime)
    assert ("svg_usage" in body) == (fmt == "svg")


def test_the_sandbox_command_takes_a_permissive_models_flag() -> None:
    from mcp_images.cli import build_parser

    assert build_parser().parse_args(["sandbox", "--permissive-models"]).permissive_models is True
    assert build_parser().parse_args(["sandbox"]).permissive_models is False


# --- in-process and command line ---------------------------------------------------------


@pytest.mark.anyio
async def test_the_app_works_in_process_and_defaults_to_dall_e_2() -> None:
    app = create_app()
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://sandbox", headers=AUTH) as client:
        health = await client.get("/healthz")
        body = (await generate(client, response_format="b64_json")).json()
        unknown = await client.get("/v1/nothing")
    assert health.json()["status"] == "ok"
    assert decode(body["data"][0]["b64_json"]).size == (1024, 1024)
    assert set(body) == {"created", "data"}  # dall-e-2: no usage, no settings echoed
    assert unknown.status_code == 404 and unknown.json()["error"]["message"].startswith("Invalid URL")
    assert [r.path for r in app.state.sandbox.requests] == ["/v1/images/generations", "/v1/nothing"]


@pytest.mark.anyio
async def test_the_latency_setting_makes_every_call_wait_and_notices_a_client_that_leaves() -> None:
    async with serve_sandbox(latency=30) as sandbox:
        record = await call_then_leave(sandbox, "x")
    assert record.disconnected and record.modes == []


def test_run_prints_the_listening_line_first() -> None:
    code = "from mcp_images.sandbox import run; run()"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("sandbox listening on http://127.0.0.1:") and first.endswith("/v1")
        assert "MCP_IMAGES_BASE_URL=" in proc.stdout.readline()
        health = httpx2.get(
            first.removeprefix("sandbox listening on ").removesuffix("/v1") + "/healthz",
            timeout=GUARD,
        )
        assert health.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=GUARD)


@pytest.mark.anyio
async def test_the_sandbox_lists_its_models_for_a_good_key_and_refuses_a_bad_one(sandbox: Any) -> None:
    async with httpx2.AsyncClient(base_url=sandbox.base_url) as http:
        good = await http.get("/models", headers={"Authorization": "Bearer sk-anything"})
        bad = await http.get("/models", headers={"Authorization": "Bearer sk-sandbox-bad"})
    assert good.status_code == 200 and "gpt-image-2.5-sunburst" in {m["id"] for m in good.json()["data"]}
    assert bad.status_code == 401
