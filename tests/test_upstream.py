"""The upstream client against a fake upstream played by httpx2.MockTransport.

Every test counts the requests the fake saw and records the waits the client asked for
(through a no-op ``sleep``), so retries are checked without waiting.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from mcp_images.catalog.providers import get_provider
from mcp_images.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConnectionError_,
    GatewayTimeoutError,
    ModerationError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    StreamError,
    TimeoutError_,
    UpstreamError,
)
from mcp_images.upstream.client import ImagesAPI, PartialImage
from mcp_images.upstream.requests import UploadFile

KEY = "sk-test-SECRET-0123456789abcdef"
PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 50
OK_BODY = {"created": 1, "data": [{"b64_json": "QUJD"}], "usage": {"total_tokens": 5}}

Handler = Callable[[httpx2.Request], httpx2.Response]


@dataclass
class Fake:
    """A scripted upstream: answers in turn (the last one repeats) and keeps every request."""

    answers: list[httpx2.Response | Exception | Handler]
    requests: list[httpx2.Request] = field(default_factory=list)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer


@dataclass
class Client:
    api: ImagesAPI
    fake: Fake
    delays: list[float]


async def public_resolver(host: str, port: int) -> list[str]:
    """Every name resolves to a public documentation-free address (no DNS in tests)."""
    return ["93.184.215.14"]


@asynccontextmanager
async def upstream(
    *answers: httpx2.Response | Exception | Handler,
    provider: str = "openai",
    base_url: str | None = None,
    api_key: str | None = KEY,
    max_retries: int = 2,
) -> AsyncIterator[Client]:
    fake = Fake(list(answers))
    delays: list[float] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(fake)) as http:
        api = ImagesAPI(
            http,
            provider=get_provider(provider),
            base_url=base_url,
            api_key=api_key,
            max_retries=max_retries,
            sleep=sleep,
        )
        api.resolver = public_resolver  # result-URL hosts here are fake names: resolve them offline
        with anyio.fail_after(5):
            yield Client(api, fake, delays)


def ok(body: Any = None, **headers: str) -> httpx2.Response:
    return httpx2.Response(200, json=OK_BODY if body is None else body, headers=headers)


def error(status: int, code: str | None = None, message: str = "nope", **headers: str) -> httpx2.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}
    return httpx2.Response(status, json=body, headers={"x-request-id": "req_123", **headers})


def sent_json(request: httpx2.Request) -> dict[str, Any]:
    return json.loads(request.content)


def form_parts(request: httpx2.Request) -> list[tuple[str, str | None, bytes]]:
    """(field name, file name, content) for each part of a multipart request, in order."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.content)
    parts = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        parts.append((str(name), part.get_filename(), payload if isinstance(payload, bytes) else b""))
    return parts


def all_text(exc: BaseException) -> str:
    return f"{exc} {exc!r} {vars(exc)}"


# --- generations: URL, headers, body per provider --------------------------------------------


@pytest.mark.anyio
async def test_openai_generation_posts_the_json_body_with_a_bearer_key() -> None:
    async with upstream(ok(None, **{"x-request-id": "req_9"})) as c:
        result = await c.api.generate({"model": "gpt-image-2", "prompt": "a fox", "size": None})
    (request,) = c.fake.requests
    assert str(request.url) == "https://api.openai.com/v1/images/generations"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert sent_json(request) == {"model": "gpt-image-2", "prompt": "a fox"}
    assert result.data[0].b64_json == "QUJD"
    assert result.usage == {"total_tokens": 5}
    assert result.request_id == "req_9"


@pytest.mark.anyio
async def test_302ai_moves_response_format_and_async_into_the_query_string() -> None:
    async with upstream(ok({"data": [{"url": "https://file.302.ai/a.png"}]}), provider="302ai") as c:
        result = await c.api.generate({"model": "gpt-image-1", "prompt": "a fox", "async": False})
    (request,) = c.fake.requests
    assert request.url.path == "/v1/images/generations"
    assert dict(request.url.params) == {"response_format": "url", "async": "false"}
    assert sent_json(request) == {"model": "gpt-image-1", "prompt": "a fox"}
    assert result.data[0].url == "https://file.302.ai/a.png"


@pytest.mark.anyio
async def test_a_callers_response_format_wins_over_the_providers() -> None:
    async with upstream(ok(), provider="302ai") as c:
        await c.api.generate({"model": "dall-e-3", "prompt": "x", "response_format": "b64_json"})
    assert c.fake.requests[0].url.params["response_format"] == "b64_json"


@pytest.mark.anyio
async def test_azure_posts_to_the_deployment_url_with_the_raw_api_key_header() -> None:
    async with upstream(ok(), provider="azure", base_url="https://res.openai.azure.com/") as c:
        await c.api.generate({"model": "my-deployment", "prompt": "x"})
    (request,) = c.fake.requests
    assert request.url.host == "res.openai.azure.com"
    assert request.url.path == "/openai/deployments/my-deployment/images/generations"
    assert request.url.params["api-version"] == get_provider("azure").api_version
    assert request.headers["api-key"] == KEY
    assert "authorization" not in request.headers


@pytest.mark.anyio
async def test_a_base_url_given_by_the_user_replaces_the_providers() -> None:
    async with upstream(ok(), provider="compatible", base_url="http://127.0.0.1:9/v1/") as c:
        await c.api.generate({"model": "m", "prompt": "x"})
    assert str(c.fake.requests[0].url) == "http://127.0.0.1:9/v1/images/generations"


@pytest.mark.anyio
async def test_a_missing_key_is_a_config_error_that_names_the_variable_and_sends_nothing() -> None:
    async with upstream(ok(), api_key=None) as c:
        with pytest.raises(ConfigError, match="MCP_IMAGES_API_KEY"):
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert c.fake.requests == []


@pytest.mark.anyio
async def test_a_provider_without_a_base_url_asks_for_mcp_images_base_url() -> None:
    async with upstream(ok(), provider="agcloud") as c:
        with pytest.raises(ConfigError, match="MCP_IMAGES_BASE_URL"):
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert c.fake.requests == []


# --- edits: multipart ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_one_input_image_is_sent_as_image_with_plain_form_fields(tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    fields = {
        "model": "gpt-image-1.5",
        "prompt": "add a hat",
        "n": 2,
        "stream": False,
        "user": None,
    }
    async with upstream(ok()) as c:
        await c.api.edit(fields, [UploadFile("photo.png", "image/png", path=photo)])
    (request,) = c.fake.requests
    assert str(request.url) == "https://api.openai.com/v1/images/edits"
    parts = form_parts(request)
    assert ("model", None, b"gpt-image-1.5") in parts
    assert ("n", None, b"2") in parts
    assert ("stream", None, b"false") in parts
    assert ("image", "photo.png", PNG) in parts
    assert not any(name == "user" for name, _, _ in parts)


@pytest.mark.anyio
async def test_several_images_are_repeated_image_brackets_and_the_mask_is_mask(
    tmp_path: Path,
) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.webp"
    first.write_bytes(PNG)
    second.write_bytes(b"RIFFxxxxWEBP")
    images = [
        UploadFile("a.png", "image/png", path=first),
        UploadFile("b.webp", "image/webp", path=second),
    ]
    mask = UploadFile("mask.png", "image/png", data=b"MASK")
    async with upstream(ok()) as c:
        await c.api.edit({"model": "gpt-image-2", "prompt": "merge"}, images, {"mask": mask})
    files = [(name, filename, data) for name, filename, data in form_parts(c.fake.requests[0]) if filename]
    assert files == [
        ("image[]", "a.png", PNG),
        ("image[]", "b.webp", b"RIFFxxxxWEBP"),
        ("mask", "mask.png", b"MASK"),
    ]


class _FilePartsSeen(httpx2.MockTransport):
    """Notes the file objects of each multipart request before the mock reads the body."""

    def __init__(self, handler: Handler) -> None:
        super().__init__(handler)
        self.files: list[Any] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        fields = getattr(request.stream, "fields", [])
        self.files.extend(f.file for f in fields if hasattr(f, "file"))
        return await super().handle_async_request(request)


@pytest.mark.anyio
async def test_files_given_by_path_are_streamed_and_sent_whole_again_on_a_retry(
    tmp_path: Path,
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(PNG)
    fake = Fake([error(500), ok()])
    transport = _FilePartsSeen(fake)
    async with httpx2.AsyncClient(transport=transport) as http:
        api = ImagesAPI(http, provider=get_provider("openai"), base_url=None, api_key=KEY, sleep=_no_wait)
        await api.edit({"model": "gpt-image-2", "prompt": "x"}, [UploadFile("p.png", "image/png", path=photo)])
    assert len(fake.requests) == 2
    # Each attempt sent an open file (not bytes read into memory), closed once sent.
    assert len(transport.files) == 2
    assert all(hasattr(f, "read") and f.closed for f in transport.files)
    for request in fake.requests:
        assert ("image", "p.png", PNG) in form_parts(request)


async def _no_wait(seconds: float) -> None:
    return None


@pytest.mark.anyio
async def test_moderation_is_left_out_of_edits_where_the_provider_does_not_take_it() -> None:
    image = [UploadFile("a.png", "image/png", data=PNG)]
    async with upstream(ok()) as c:
        await c.api.edit({"model": "gpt-image-2", "prompt": "x", "moderation": "low"}, image)
    assert not any(name == "moderation" for name, _, _ in form_parts(c.fake.requests[0]))
    async with upstream(ok(), provider="302ai") as c:
        await c.api.edit({"model": "gpt-image-2", "prompt": "x", "moderation": "low"}, image)
    assert ("moderation", None, b"low") in form_parts(c.fake.requests[0])
    assert c.fake.requests[0].url.params["response_format"] == "url"


@pytest.mark.anyio
async def test_azure_edits_go_to_the_deployments_edits_url() -> None:
    async with upstream(ok(), provider="azure", base_url="https://res.openai.azure.com") as c:
        await c.api.edit({"model": "dep", "prompt": "x"}, [UploadFile("a.png", "image/png", data=PNG)])
    assert c.fake.requests[0].url.path == "/openai/deployments/dep/images/edits"


# --- retries ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure",
    [
        error(500),
        error(502),
        error(503),
        error(408),
        error(409),
        error(429, "rate_limit_exceeded"),
        httpx2.ConnectError("refused"),
        httpx2.ReadTimeout("slow"),
    ],
    ids=["500", "502", "503", "408", "409", "429", "connect", "timeout"],
)
async def test_a_passing_failure_is_retried_and_then_succeeds(
    failure: httpx2.Response | Exception,
) -> None:
    async with upstream(failure, ok()) as c:
        result = await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert result.data[0].b64_json == "QUJD"
    assert len(c.fake.requests) == 2
    assert len(c.delays) == 1


@pytest.mark.anyio
async def test_backoff_grows_from_half_a_second_with_jitter_and_gives_up_after_two_retries() -> None:
    async with upstream(error(500)) as c:
        with pytest.raises(ServerError):
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert len(c.fake.requests) == 3
    first, second = c.delays
    assert 0.375 <= first <= 0.5
    assert 0.75 <= second <= 1.0


@pytest.mark.anyio
async def test_max_retries_zero_sends_once() -> None:
    async with upstream(error(503), max_retries=0) as c:
        with pytest.raises(ServerError):
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert len(c.fake.requests) == 1


def _in_30_seconds() -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "low", "high"),
    [
        ({"retry-after-ms": "1500"}, 1.5, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25, 0.25),
        ({"retry-after": "3"}, 3.0, 3.0),
        ({"retry-after": "date"}, 28.0, 30.0),
        ({"retry-after": "500"}, 0.375, 0.5),  # beyond 120 s: ignored, backoff instead
        ({"retry-after": "soon"}, 0.375, 0.5),
    ],
    ids=["ms", "ms-first", "seconds", "http-date", "too-long", "garbled"],
)
async def test_the_upstreams_retry_after_is_honoured(headers: dict[str, str], low: float, high: float) -> None:
    if headers.get("retry-after") == "date":
        headers = {"retry-after": _in_30_seconds()}
    async with upstream(error(429, "rate_limit_exceeded", **headers), ok()) as c:
        await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    (delay,) = c.delays
    assert low <= delay <= high


@pytest.mark.anyio
async def test_a_retry_is_logged_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mcp_images.upstream.client")
    async with upstream(error(503, message=f"echo {KEY}"), ok()) as c:
        await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert "HTTP 503" in caplog.text
    assert "retry 1 of 2" in caplog.text
    assert KEY not in caplog.text


@pytest.mark.anyio
async def test_x_should_retry_false_stops_a_retry() -> None:
    async with upstream(error(500, **{"x-should-retry": "false"}), ok()) as c:
        with pytest.raises(ServerError):
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert len(c.fake.requests) == 1


@pytest.mark.anyio
async def test_x_should_retry_true_retries_even_a_400() -> None:
    async with upstream(error(400, **{"x-should-retry": "true"}), ok()) as c:
        await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert len(c.fake.requests) == 2


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("failure", "raised"),
    [
        (error(400, "invalid_value"), BadRequestError),
        (error(401, "invalid_api_key"), AuthenticationError),
        (error(403), PermissionDeniedError),
        (error(404, "model_not_found"), NotFoundError),
        (error(429, "insufficient_quota"), QuotaExceededError),
        (error(429, "insufficient_quota", **{"x-should-retry": "true"}), QuotaExceededError),
        (error(400, "moderation_blocked"), ModerationError),
        (error(524), GatewayTimeoutError),
    ],
    ids=["400", "401", "403", "404", "quota", "quota-despite-header", "moderation", "524"],
)
async def test_failures_that_a_retry_cannot_fix_are_not_retried(
    failure: httpx2.Response, raised: type[Exception]
) -> None:
    async with upstream(failure, ok()) as c:
        with pytest.raises(raised):
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert len(c.fake.requests) == 1
    assert c.delays == []


# --- error mapping ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "code", "raised"),
    [
        (400, "invalid_value", BadRequestError),
        (400, "moderation_blocked", ModerationError),
        (400, "content_policy_violation", ModerationError),
        (401, "invalid_api_key", AuthenticationError),
        (403, None, PermissionDeniedError),
        (404, "model_not_found", NotFoundError),
        (408, None, UpstreamError),
        (429, "rate_limit_exceeded", RateLimitError),
        (429, "insufficient_quota", QuotaExceededError),
        (500, "server_error", ServerError),
        (503, None, ServerError),
        (524, None, GatewayTimeoutError),
    ],
)
async def test_each_status_maps_to_its_error_class_with_code_and_request_id(
    status: int, code: str | None, raised: type[UpstreamError]
) -> None:
    async with upstream(error(status, code), max_retries=0, provider="302ai") as c:
        with pytest.raises(raised) as caught:
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert type(caught.value) is raised
    assert caught.value.status_code == status
    assert caught.value.request_id == "req_123"
    assert caught.value.code == code
    assert "req_123" in str(caught.value)


@pytest.mark.anyio
async def test_moderation_says_the_safety_system_refused_and_lists_the_categories() -> None:
    body = {
        "error": {
            "message": "Your request was rejected by the safety system.",
            "type": "image_generation_user_error",
            "code": "moderation_blocked",
            "moderation_details": {"categories": ["violence", "self-harm"]},
        }
    }
    async with upstream(httpx2.Response(400, json=body)) as c:
        with pytest.raises(ModerationError) as caught:
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert caught.value.categories == ["violence", "self-harm"]
    assert "safety system refused" in str(caught.value)
    assert "violence, self-harm" in str(caught.value)


@pytest.mark.anyio
async def test_403_keeps_openais_message_about_organization_verification() -> None:
    text = "Your organization must be verified to use the model `gpt-image-1`."
    async with upstream(error(403, message=text)) as c:
        with pytest.raises(PermissionDeniedError, match="must be verified"):
            await c.api.generate({"model": "gpt-image-1", "prompt": "x"})


@pytest.mark.anyio
async def test_524_carries_the_providers_hint_to_use_async() -> None:
    async with upstream(httpx2.Response(524, text="<html>timeout</html>"), provider="302ai") as c:
        with pytest.raises(GatewayTimeoutError, match="async"):
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert len(c.fake.requests) == 1


@pytest.mark.anyio
async def test_a_non_json_error_body_still_gives_a_clear_error() -> None:
    page = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    async with upstream(httpx2.Response(502, text=page), max_retries=0) as c:
        with pytest.raises(ServerError) as caught:
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert "HTTP 502" in str(caught.value)
    assert "502 Bad Gateway" in str(caught.value)
    assert "<h1>" not in str(caught.value)


@pytest.mark.anyio
async def test_an_error_body_with_status_200_is_an_error_not_an_empty_result() -> None:
    async with upstream(ok({"error": {"message": "model busy", "code": "busy"}})) as c:
        with pytest.raises(UpstreamError, match="model busy"):
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure",
    [
        error(401, "invalid_api_key", message=f"Incorrect API key provided: {KEY}."),
        error(400, message=f"bad key {KEY} in request"),
        error(403, message=f"key {KEY} may not use this model"),
        httpx2.Response(500, text=f"proxy error for Bearer {KEY}"),
        httpx2.ConnectError(f"cannot connect with {KEY}"),
    ],
    ids=["401", "400", "403", "text", "connect"],
)
async def test_the_key_never_appears_in_an_error_even_when_the_upstream_echoes_it(
    failure: httpx2.Response | Exception,
) -> None:
    async with upstream(failure, max_retries=0) as c:
        with pytest.raises(UpstreamError) as caught:
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert KEY not in all_text(caught.value)


@pytest.mark.anyio
async def test_a_refused_key_says_to_check_the_variable() -> None:
    async with upstream(error(401, "invalid_api_key")) as c:
        with pytest.raises(AuthenticationError, match="check MCP_IMAGES_API_KEY"):
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})


@pytest.mark.anyio
async def test_a_read_timeout_names_the_seconds_and_the_timeout_setting() -> None:
    async with upstream(httpx2.ReadTimeout("slow")) as c:
        with pytest.raises(TimeoutError_) as caught:
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert "600 s" in str(caught.value)
    assert "MCP_IMAGES_TIMEOUT" in str(caught.value)
    assert len(c.fake.requests) == 3


@pytest.mark.anyio
async def test_waiting_for_a_busy_connection_pool_is_not_blamed_on_the_upstream() -> None:
    async with upstream(httpx2.PoolTimeout("busy"), httpx2.PoolTimeout("busy"), httpx2.PoolTimeout("busy")) as c:
        with pytest.raises(TimeoutError_) as caught:
            await c.api.generate({"model": "gpt-image-2", "prompt": "x"})
    assert "came free" in str(caught.value)
    assert "did not answer" not in str(caught.value)


@pytest.mark.anyio
async def test_an_unreachable_upstream_names_the_base_url() -> None:
    base = "http://127.0.0.1:9/v1"
    async with upstream(httpx2.ConnectError("refused"), provider="compatible", base_url=base) as c:
        with pytest.raises(ConnectionError_, match=r"127\.0\.0\.1:9"):
            await c.api.generate({"model": "m", "prompt": "x"})
    assert len(c.fake.requests) == 3


# --- streaming -------------------------------------------------------------------------------


def sse(*events: dict[str, Any] | str, name: str = "image_generation") -> bytes:
    lines = []
    for event in events:
        if isinstance(event, str):
            lines.append(f"data: {event}\n\n")
            continue
        kind = event.get("type", "")
        lines.append(f"event: {kind}\ndata: {json.dumps(event)}\n\n")
    return "".join(lines).encode()


def partial(index: int, prefix: str = "image_generation") -> dict[str, Any]:
    return {
        "type": f"{prefix}.partial_image",
        "b64_json": f"UA{index}",
        "partial_image_index": index,
        "size": "1024x1024",
    }


def completed(prefix: str = "image_generation", b64: str = "RklOQUw=") -> dict[str, Any]:
    return {
        "type": f"{prefix}.completed",
        "b64_json": b64,
        "created_at": 1765963391,
        "size": "1024x1024",
        "quality": "high",
        "background": "opaque",
        "output_format": "png",
        "usage": {"input_tokens": 10, "output_tokens": 4360, "total_tokens": 4370},
    }


def stream_of(body: bytes) -> httpx2.Response:
    return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream", "x-request-id": "req_s"})


async def generate_streaming(c: Client, partials: list[PartialImage] | None = None) -> Any:
    async def collect(image: PartialImage) -> None:
        if partials is not None:
            partials.append(image)

    return await c.api.generate(
        {"model": "gpt-image-2", "prompt": "x", "stream": True, "partial_images": 2},
        on_partial=collect,
    )


@pytest.mark.anyio
async def test_a_stream_hands_over_partials_and_returns_the_completed_image() -> None:
    got: list[PartialImage] = []
    async with upstream(stream_of(sse(partial(0), partial(1), completed()))) as c:
        result = await generate_streaming(c, got)
    request = c.fake.requests[0]
    assert request.headers["accept"] == "text/event-stream"
    assert sent_json(request)["stream"] is True
    assert [(p.index, p.b64_json) for p in got] == [(0, "UA0"), (1, "UA1")]
    assert got[0].event["size"] == "1024x1024"
    assert result.data[0].b64_json == "RklOQUw="
    assert result.usage["output_tokens"] == 4360
    assert (result.size, result.quality, result.created) == ("1024x1024", "high", 1765963391)
    assert result.request_id == "req_s"


@pytest.mark.anyio
async def test_an_edit_stream_uses_image_edit_events() -> None:
    got: list[PartialImage] = []

    async def collect(image: PartialImage) -> None:
        got.append(image)

    body = sse(partial(0, "image_edit"), completed("image_edit"))
    async with upstream(stream_of(body)) as c:
        result = await c.api.edit(
            {"model": "gpt-image-2", "prompt": "x", "stream": True},
            [UploadFile("a.png", "image/png", data=PNG)],
            on_partial=collect,
        )
    assert [p.index for p in got] == [0]
    assert result.data[0].b64_json == "RklOQUw="


@pytest.mark.anyio
async def test_a_done_line_after_the_completed_event_is_tolerated() -> None:
    async with upstream(stream_of(sse(completed(), "[DONE]"))) as c:
        result = await generate_streaming(c)
    assert result.data[0].b64_json == "RklOQUw="


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [sse(partial(0), partial(1)), sse(partial(0), "[DONE]", completed()), b""],
    ids=["cut", "done-first", "empty"],
)
async def test_a_stream_that_ends_before_the_completed_event_is_a_stream_error(body: bytes) -> None:
    got: list[PartialImage] = []
    async with upstream(stream_of(body)) as c:
        with pytest.raises(StreamError, match="before the image was complete"):
            await generate_streaming(c, got)
    assert len(c.fake.requests) == 1  # a started stream is never sent again


@pytest.mark.anyio
async def test_an_error_event_is_a_stream_error_with_its_code() -> None:
    failure = {"type": "error", "error": {"message": "internal failure", "code": "server_error"}}
    async with upstream(stream_of(sse(partial(0), failure))) as c:
        with pytest.raises(StreamError, match="internal failure") as caught:
            await generate_streaming(c)
    assert caught.value.code == "server_error"
    assert caught.value.request_id == "req_s"


@pytest.mark.anyio
async def test_a_moderation_error_event_is_a_moderation_error() -> None:
    failure = {"error": {"message": "blocked", "code": "moderation_blocked"}}
    async with upstream(stream_of(sse(failure))) as c:
        with pytest.raises(ModerationError):
            await generate_streaming(c)


class _BrokenStream(httpx2.AsyncByteStream):
    """A body that sends one partial and then loses the connection."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield sse(partial(0))
        raise httpx2.RemoteProtocolError("peer closed connection")


@pytest.mark.anyio
async def test_a_connection_lost_mid_stream_is_a_stream_error() -> None:
    got: list[PartialImage] = []
    broken = httpx2.Response(200, stream=_BrokenStream(), headers={"content-type": "text/event-stream"})
    async with upstream(broken) as c:
        with pytest.raises(StreamError, match="broke after 1 partial"):
            await generate_streaming(c, got)
    assert len(got) == 1


@pytest.mark.anyio
async def test_a_provider_that_ignores_stream_and_answers_json_still_gives_the_image() -> None:
    async with upstream(ok()) as c:
        result = await generate_streaming(c)
    assert result.data[0].b64_json == "QUJD"


@pytest.mark.anyio
async def test_an_error_status_on_a_stream_request_is_mapped_and_retried_like_any_other() -> None:
    async with upstream(error(503), stream_of(sse(completed()))) as c:
        result = await generate_streaming(c)
    assert result.data[0].b64_json == "RklOQUw="
    assert len(c.fake.requests) == 2


# --- 302.ai async mode -----------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("answer", [{"task_id": "t-1"}, {"id": "t-1"}], ids=["task_id", "id"])
async def test_an_async_submit_returns_the_providers_task_id(answer: dict[str, str]) -> None:
    async with upstream(ok(answer), provider="302ai") as c:
        task = await c.api.submit_async("generations", {"model": "gpt-image-2", "prompt": "x", "stream": True})
    assert task == "t-1"
    (request,) = c.fake.requests
    assert request.url.path == "/v1/images/generations"
    assert dict(request.url.params) == {"response_format": "url", "async": "true"}
    assert sent_json(request) == {"model": "gpt-image-2", "prompt": "x"}


@pytest.mark.anyio
async def test_an_async_edit_is_submitted_as_multipart_with_async_in_the_query() -> None:
    async with upstream(ok({"task_id": "t-2"}), provider="302ai") as c:
        task = await c.api.submit_async(
            "edits",
            {"model": "gpt-image-2", "prompt": "x"},
            [UploadFile("a.png", "image/png", data=PNG)],
        )
    assert task == "t-2"
    request = c.fake.requests[0]
    assert request.url.path == "/v1/images/edits"
    assert request.url.params["async"] == "true"
    assert ("image", "a.png", PNG) in form_parts(request)


@pytest.mark.anyio
async def test_an_async_submit_without_a_task_id_is_an_error() -> None:
    async with upstream(ok({"status": "queued"}), provider="302ai") as c:
        with pytest.raises(UpstreamError, match="no task id"):
            await c.api.submit_async("generations", {"model": "gpt-image-2", "prompt": "x"})


@pytest.mark.anyio
async def test_a_provider_without_async_mode_refuses_async() -> None:
    async with upstream(ok({"task_id": "t"})) as c:
        with pytest.raises(ConfigError, match="async"):
            await c.api.submit_async("generations", {"model": "gpt-image-2", "prompt": "x"})
        with pytest.raises(ConfigError, match="async"):
            await c.api.poll_async("t")
    assert c.fake.requests == []


DONE_DATA = {
    "created": 2,
    "data": [{"url": "https://file.302.ai/out.png"}],
    "usage": {"total_tokens": 9},
}


@pytest.mark.anyio
@pytest.mark.parametrize("data", [DONE_DATA, json.dumps(DONE_DATA)], ids=["object", "json-string"])
async def test_polling_is_pending_until_the_result_arrives(data: Any) -> None:
    answers = [
        ok({"status_code": 200, "data": "", "err": "result pending"}),
        httpx2.Response(202, json={"status": "running"}),
        httpx2.Response(425),
        ok({"status_code": 200, "data": data, "err": ""}),
    ]
    async with upstream(*answers, provider="302ai") as c:
        results = [await c.api.poll_async("t-1") for _ in answers]
    assert results[:3] == [None, None, None]
    done = results[3]
    assert done is not None
    assert done.data[0].url == "https://file.302.ai/out.png"
    assert done.usage == {"total_tokens": 9}
    request = c.fake.requests[0]
    assert str(request.url) == "https://api.302.ai/async_result?task_id=t-1"
    assert request.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "raised", "text"),
    [
        (
            {"status_code": 500, "data": "", "err": "upstream crashed"},
            ServerError,
            "upstream crashed",
        ),
        ({"status_code": 200, "data": "", "err": "task failed"}, UpstreamError, "task failed"),
        (
            {
                "status_code": 400,
                "data": {"error": {"message": "no", "code": "moderation_blocked"}},
                "err": "x",
            },
            ModerationError,
            "safety system",
        ),
        (
            {
                "status_code": 400,
                "data": json.dumps({"error": {"message": "bad size", "code": "invalid_value"}}),
            },
            BadRequestError,
            "bad size",
        ),
    ],
    ids=["5xx", "err-only", "moderation", "error-as-json-string"],
)
async def test_a_failed_async_job_raises_the_mapped_error(
    answer: dict[str, Any], raised: type[UpstreamError], text: str
) -> None:
    async with upstream(ok(answer), provider="302ai") as c:
        with pytest.raises(raised, match=text):
            await c.api.poll_async("t-1")


@pytest.mark.anyio
async def test_the_poll_path_comes_from_the_provider_data(tmp_path: Path) -> None:
    async with upstream(ok({"data": [{"b64_json": "QUJD"}]}), provider="302ai") as c:
        spec = c.api.provider.async_mode
        assert spec is not None
        c.api.provider = c.api.provider.model_copy(
            update={"async_mode": spec.model_copy(update={"poll_path": "/v1/async_result"})}
        )
        result = await c.api.poll_async("t-9")
    assert result is not None
    assert c.fake.requests[0].url.path == "/v1/async_result"


# --- downloads -------------------------------------------------------------------------------


def _bytes_response(size: int, *, declare: bool = True) -> httpx2.Response:
    body = b"x" * size
    if declare:
        return httpx2.Response(200, content=body)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, size, 1000):
            yield body[start : start + 1000]

    return httpx2.Response(200, content=chunks())


@pytest.mark.anyio
async def test_a_download_returns_the_bytes_and_sends_no_key() -> None:
    async with upstream(httpx2.Response(200, content=PNG)) as c:
        data = await c.api.download("https://file.302.ai/out.png")
    assert data == PNG
    assert "authorization" not in c.fake.requests[0].headers


@pytest.mark.anyio
@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
async def test_a_download_larger_than_max_bytes_is_refused(declare: bool) -> None:
    async with upstream(_bytes_response(5000, declare=declare)) as c:
        with pytest.raises(UpstreamError, match="larger than 4,096 bytes"):
            await c.api.download("https://file.302.ai/big.png", max_bytes=4096)
    async with upstream(_bytes_response(4096, declare=declare)) as c:
        assert len(await c.api.download("https://file.302.ai/ok.png", max_bytes=4096)) == 4096


def _redirect(to: str) -> httpx2.Response:
    return httpx2.Response(302, headers={"location": to})


@pytest.mark.anyio
async def test_a_download_follows_up_to_three_redirects() -> None:
    hops = [_redirect("/b"), _redirect("https://cdn.example/c"), _redirect("/d")]
    async with upstream(*hops, httpx2.Response(200, content=PNG)) as c:
        assert await c.api.download("https://file.302.ai/a") == PNG
    assert [str(r.url) for r in c.fake.requests] == [
        "https://file.302.ai/a",
        "https://file.302.ai/b",
        "https://cdn.example/c",
        "https://cdn.example/d",
    ]
    async with upstream(*hops, _redirect("/e"), httpx2.Response(200, content=PNG)) as c:
        with pytest.raises(UpstreamError, match="redirected more than 3"):
            await c.api.download("https://file.302.ai/a")


@pytest.mark.anyio
async def test_a_failed_download_names_the_host_and_status() -> None:
    async with upstream(httpx2.Response(404), max_retries=0) as c:
        with pytest.raises(UpstreamError, match=r"file\.302\.ai: HTTP 404"):
            await c.api.download("https://file.302.ai/gone.png")


@pytest.mark.anyio
async def test_a_download_url_must_be_http() -> None:
    async with upstream(httpx2.Response(200, content=PNG)) as c:
        with pytest.raises(UpstreamError, match="http"):
            await c.api.download("file:///etc/passwd")
    assert c.fake.requests == []


def test_an_upload_file_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        UploadFile("a.png", "image/png")
    with pytest.raises(ValueError, match="exactly one"):
        UploadFile("a.png", "image/png", path=Path("a.png"), data=b"x")


@pytest.mark.anyio
async def test_a_result_url_pointing_into_the_servers_network_is_refused() -> None:
    async def private(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    async with upstream(httpx2.Response(200, content=PNG)) as c:
        c.api.resolver = private
        with pytest.raises(UpstreamError, match="result URL was refused"):
            await c.api.download("https://files.example.com/out.png")
        with pytest.raises(UpstreamError, match="result URL was refused"):
            await c.api.download("http://169.254.169.254/latest/meta-data/")
    assert c.fake.requests == []


@pytest.mark.anyio
async def test_a_result_url_on_the_upstreams_own_host_is_fetched_even_on_a_private_address() -> None:
    base = "http://10.1.2.3:8080/v1"
    async with upstream(httpx2.Response(200, content=PNG), provider="compatible", base_url=base) as c:
        assert await c.api.download("http://10.1.2.3:8080/files/a.png") == PNG
