"""The sandbox: a local OpenAI-images-compatible upstream, for tests, demos and benchmarks.

It validates like the real API (the model catalog's rules), renders real placeholder images
with Pillow (labelled "SANDBOX — not a real model"), streams, and fails on request. Image calls
need ``Authorization: Bearer <any non-empty key>``; the key ``sk-sandbox-bad`` gets a 401.
Every answer carries an ``x-request-id`` header.

| path (POST: generations take JSON, edits multipart) | imitates |
|---|---|
| ``/v1/images/generations``, ``/v1/images/edits`` | OpenAI (1) |
| ``/302ai/v1/images/generations``, ``.../edits`` | 302.ai (2) |
| ``GET /302ai/async_result?task_id=ID`` (or ``/302ai/v1/...``, ``/async_result``) | 302.ai's poll (3) |
| ``/yescale/v1/images/generations``, ``.../edits`` | Yescale (4) |
| ``/azure/openai/deployments/{deployment}/images/...?api-version=V`` | Azure OpenAI (5) |
| ``GET /files/{name}`` | the file host behind ``url`` answers |
| ``GET /healthz`` | liveness |

1. Unknown fields are refused; ``response_format`` only for dall-e (whose default is ``url``);
   a model name the catalog does not hold gets 404 ``model_not_found`` (Azure:
   ``DeploymentNotFound``) unless ``create_app(permissive_models=True)``
   (``mcp-images sandbox --permissive-models``).
2. ``?response_format=url`` and ``?async=true`` in the query string; ``usage`` also carries
   chat-style ``prompt_tokens`` / ``completion_tokens``; streams end with ``data: [DONE]``.
3. ``{"status_code", "data", "err"}``: ``err`` is ``"result pending"`` for the first polls,
   then ``""`` with ``data``; ``data`` alternates between an object and a JSON string from one
   task to the next. Unknown task: ``status_code`` 400 and an ``err``.
4. Any model name (unknown ones get the permissive profile); ``response_format`` for all.
5. Key in the ``api-key`` header (or Bearer); the deployment is the model; errors shaped
   ``{"error": {"code", "message"}}``; without ``api-version``: 404.

Fields, their types and bounds come from the one parameter declaration (`fields`), the rules
from the catalog (`params`). ``output_format=gif`` answers an animated GIF, ``svg`` an SVG
document with ``svg_usage`` (`render_formats`); ``safety_identifier`` (else ``user``) is echoed.

Without ``model`` a call uses dall-e-2, or gpt-image-1 when a GPT-image-only field is given
(as OpenAI documents). ``stream=true`` with ``n`` > 1 is refused (400, param ``n``): a completed
event carries one image and no index, so a stream holds one image.

Failure modes: header ``X-Sandbox-Mode: <mode>[,<mode>...]`` or ``[sandbox:<mode>]`` anywhere
in the prompt (the way to reach them through an MCP client). Every error mode also works as
``<mode>-once``: only the first attempt with that exact prompt fails, later attempts succeed.

| mode | answer |
|---|---|
| ``moderation`` | 400 ``moderation_blocked``, ``moderation_details.categories`` (6) |
| ``401`` | 401 ``invalid_api_key`` |
| ``403`` | 403 "Your organization must be verified to use the model ..." |
| ``404`` | 404 ``model_not_found`` |
| ``429`` | 429 ``rate_limit_exceeded``, ``retry-after-ms: 10``, ``x-ratelimit-*`` |
| ``429-once`` | 429 on the first attempt of that prompt, then success |
| ``quota`` | 429 ``insufficient_quota`` (not to be retried) |
| ``500``, ``500-once`` | 500 ``server_error`` (always / first attempt only) |
| ``503`` | 503 ``engine_overloaded`` |
| ``524`` | 524 with an HTML gateway page; synchronous even in async mode |
| ``slow=<seconds>`` | waits before answering; notes a client that goes away (7) |
| ``url`` | ``url`` items (served at ``/files/...``) instead of ``b64_json`` |
| ``cut`` | stream: connection drops after the first partial; else half a JSON body |
| ``cut-clean`` | stream: the body ends after the first partial, no completed event |
| ``no-usage`` | leaves ``usage`` out |

6. dall-e models: ``content_policy_violation``. With ``stream=true``: a 200 stream holding
   one ``error`` event.
7. ``RequestRecord.disconnected``; ``latency`` (see `create_app`) waits the same way.

In 302.ai async mode the error modes (but 524 and 401-404, which answer at once) come back from
the poll as ``{"status_code": <status>, "data": null, "err": "<message>"}``.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_images.sandbox import async302
from mcp_images.sandbox.fields import read_fields
from mcp_images.sandbox.modes import (
    GATEWAY_TIMEOUT_PAGE,
    HEADER,
    Failure,
    Modes,
    SandboxError,
    failure_for,
    parse_modes,
    unauthorized,
)
from mcp_images.sandbox.params import Call, Kind, Provider, build_call
from mcp_images.sandbox.respond import (
    EventStream,
    TruncatedResponse,
    finished_body,
    sse,
    stream_events,
    wait_unless_disconnected,
)
from mcp_images.sandbox.state import SandboxSettings, SandboxState, UploadRecord
from mcp_images.sandbox.uploads import Uploads, check_uploads, read_uploads

BAD_KEY = "sk-sandbox-bad"
CLIENT_CLOSED = 499  # nobody reads it: the status recorded when the client went away
EARLY_MODES = ("401", "403", "404")  # refused before the request is even checked

OPENAI = Provider("openai", strict_fields=True, known_models_only=True)
AI302 = Provider(
    "302ai",
    strict_fields=False,
    query_params=True,
    chat_usage=True,
    done_marker=True,
    any_response_format=True,
)
YESCALE = Provider("yescale", strict_fields=False, any_response_format=True)
AZURE = Provider("azure", strict_fields=True, known_models_only=True)


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


def _settings(request: Request) -> SandboxSettings:
    return request.app.state.settings


def _check_auth(request: Request, provider: Provider) -> None:
    """Raises: SandboxError: 401 for a missing, empty or refused key."""
    key = ""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        key = auth[7:].strip()
    if provider is AZURE and not key:
        key = request.headers.get("api-key", "").strip()
    if not key:
        raise SandboxError(unauthorized(missing=True))
    if key == BAD_KEY:
        raise SandboxError(unauthorized())


async def _read_body(request: Request, kind: Kind, provider: Provider) -> tuple[dict[str, Any], Uploads]:
    """Typed fields and the uploaded files (images, mask, markup).

    Raises:
        SandboxError: the body cannot be parsed or a field has the wrong type.
    """
    record = request.state.record
    if kind == "generation":
        try:
            raw = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise SandboxError(Failure(400, "We could not parse the JSON body of your request.")) from None
        if not isinstance(raw, dict):
            raise SandboxError(Failure(400, "The request body must be a JSON object."))
        record.fields = dict(raw)
        return read_fields(raw, strict=provider.strict_fields, form=False), Uploads()
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise SandboxError(Failure(400, "Edits take multipart/form-data (image files and text fields)."))
    form = await request.form(max_part_size=1024 * 1024)
    items = list(form.multi_items())
    text = {k: v for k, v in items if isinstance(v, str)}
    record.fields = dict(text)
    record.uploads = [
        UploadRecord(field=k, filename=v.filename, content_type=v.content_type, size=v.size or 0)
        for k, v in items
        if isinstance(v, UploadFile)
    ]
    uploads = await read_uploads(items)
    return read_fields(text, strict=provider.strict_fields, form=True), uploads


def _pick_failure(request: Request, modes: Modes, call_model: str, *, dalle: bool, early: bool) -> Failure | None:
    """The first error mode that fires now (``-once`` modes only on the first attempt)."""
    state = _state(request)
    prompt = request.state.prompt
    for mode, once in modes.errors():
        if (mode in EARLY_MODES) != early:
            continue
        if once and not state.first_attempt(mode, prompt):
            continue
        return failure_for(mode, model=call_model, dalle=dalle, request_id=request.state.record.request_id)
    return None


async def images_endpoint(request: Request, kind: Kind, provider: Provider, deployment: str | None = None) -> Response:
    """One generation or edit, from the key check to the answer."""
    _check_auth(request, provider)
    if provider is AZURE and "api-version" not in request.query_params:
        raise SandboxError(Failure(404, "Resource not found", code="404"))
    fields, uploads = await _read_body(request, kind, provider)
    request.state.prompt = prompt = fields.get("prompt") or ""
    modes = parse_modes(request.headers.get(HEADER), prompt)
    request.state.record.modes = list(modes.names)
    model_hint = deployment or fields.get("model") or "dall-e-2"
    early = _pick_failure(request, modes, model_hint, dalle=model_hint.startswith("dall-e"), early=True)
    if early is not None:
        raise SandboxError(early)
    call = build_call(
        kind,
        provider,
        fields,
        model_override=deployment,
        query=dict(request.query_params),
        files=uploads.present,
        permissive_models=_settings(request).permissive_models,
    )
    if kind == "edit":
        check_uploads(call, uploads)
    if call.async_mode:
        if call.params.stream:
            raise SandboxError(Failure(400, "async=true cannot be combined with stream=true.", param="stream"))
        failure = _pick_failure(request, modes, call.spec.name, dalle=call.dalle, early=False)
        if failure is not None and failure.html:  # the gateway cut-off is synchronous by nature
            raise SandboxError(failure)
        return await async302.submit(request, call, modes, failure)
    if not await wait_unless_disconnected(request, _settings(request).latency + modes.slow, request.state.record):
        return Response(status_code=CLIENT_CLOSED)
    failure = _pick_failure(request, modes, call.spec.name, dalle=call.dalle, early=False)
    if failure is not None and not (failure.code == "moderation_blocked" and call.params.stream):
        raise SandboxError(failure)
    if call.params.stream:
        return _stream(request, call, modes, failure)
    return await _answer(request, call, modes)


async def _answer(request: Request, call: Call, modes: Modes) -> Response:
    body = await finished_body(request, call, modes)
    if "cut" in modes:
        return TruncatedResponse(json.dumps(body).encode())
    return JSONResponse(body)


def _stream(request: Request, call: Call, modes: Modes, failure: Failure | None) -> Response:
    record = request.state.record
    delay = _settings(request).stream_delay
    if failure is not None:  # moderation inside a stream: one error event
        return EventStream([sse("error", {"type": "error", **failure.body()})], delay=delay, record=record)
    events = stream_events(call, omit_usage="no-usage" in modes)
    if "cut" in modes or "cut-clean" in modes:
        first = [next(iter(events))] if call.params.partial_images else []
        return EventStream(first, delay=delay, record=record, cut="abrupt" if "cut" in modes else "clean")
    return EventStream(events, delay=delay, record=record)


def _images_route(path: str, kind: Kind, provider: Provider) -> Route:
    async def endpoint(request: Request) -> Response:
        return await images_endpoint(request, kind, provider, request.path_params.get("deployment"))

    return Route(path, endpoint, methods=["POST"])


async def serve_file(request: Request) -> Response:
    stored = _state(request).files.get(request.path_params["name"])
    if stored is None:
        raise SandboxError(
            Failure(
                404,
                "No such file (sandbox files live as long as the sandbox).",
                code="file_not_found",
            )
        )
    return Response(stored.data, media_type=stored.content_type)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "sandbox": True})


async def poll_302(request: Request) -> Response:
    _check_auth(request, AI302)
    return async302.poll(request)


async def on_sandbox_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SandboxError)
    failure = exc.failure
    if failure.html:
        return HTMLResponse(GATEWAY_TIMEOUT_PAGE, status_code=failure.status, headers=failure.headers)
    body = failure.azure_body() if request.url.path.startswith("/azure/") else failure.body()
    return JSONResponse(body, status_code=failure.status, headers=failure.headers)


async def on_http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    failure = Failure(status, f"Invalid URL ({request.method} {request.url.path})")
    return JSONResponse(failure.body(), status_code=status)


class RecordRequests:
    """ASGI middleware: records requests, stamps ``x-request-id``, notes status and disconnects."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = dict(Request(scope).query_params)
        record = self.state.record(scope["method"], scope["path"], query, headers)
        if scope["path"] == "/healthz":
            self.state.requests.remove(record)
        scope.setdefault("state", {})["record"] = record

        async def send_stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", record.request_id.encode()),
                ]
                record.status = message["status"]
            try:
                await send(message)
            except OSError:
                record.disconnected = True
                raise

        await self.app(scope, receive, send_stamped)


def _models_route(path: str, provider: Provider) -> Route:
    """``GET {base}/models``: the catalog's model names, as OpenAI lists models (the cheap,
    authenticated request `mcp-images doctor` makes; 401 for a missing or refused key)."""

    async def endpoint(request: Request) -> Response:
        from mcp_images.catalog.models import load_catalog

        _check_auth(request, provider)
        data = [{"id": name, "object": "model", "owned_by": "sandbox"} for name in load_catalog().names()]
        return JSONResponse({"object": "list", "data": data})

    return Route(path, endpoint, methods=["GET"])


def create_app(
    *,
    latency: float = 0.0,
    stream_delay: float = 0.05,
    async_pending_polls: int = 2,
    permissive_models: bool = False,
) -> Starlette:
    """The sandbox as an ASGI app; ``app.state.sandbox`` is its `SandboxState`.

    ``latency``: seconds every image call waits before answering (slow-upstream benchmarks);
    ``stream_delay``: seconds between stream events; ``async_pending_polls``: how many polls
    of a 302.ai task answer "result pending" before the result; ``permissive_models``: the
    OpenAI and Azure imitations serve unknown model names (permissive profile) instead of 404.
    """
    state = SandboxState()
    routes = [
        Route("/healthz", healthz),
        Route("/files/{name}", serve_file),
        Route("/302ai/async_result", poll_302),
        Route("/302ai/v1/async_result", poll_302),
        # A client that puts the poll path at the host's root (as for api.302.ai) lands here.
        Route("/async_result", poll_302),
        Route("/v1/async_result", poll_302),
    ]
    for prefix, provider in (("/v1", OPENAI), ("/302ai/v1", AI302), ("/yescale/v1", YESCALE)):
        routes.append(_images_route(f"{prefix}/images/generations", "generation", provider))
        routes.append(_images_route(f"{prefix}/images/edits", "edit", provider))
        routes.append(_models_route(f"{prefix}/models", provider))
    azure = "/azure/openai/deployments/{deployment}/images"
    routes.append(_images_route(f"{azure}/generations", "generation", AZURE))
    routes.append(_images_route(f"{azure}/edits", "edit", AZURE))
    routes.append(_models_route("/azure/openai/models", AZURE))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RecordRequests, state=state)],
        exception_handlers={SandboxError: on_sandbox_error, 404: on_http_error, 405: on_http_error},
    )
    app.state.sandbox = state
    app.state.settings = SandboxSettings(
        latency=latency,
        stream_delay=stream_delay,
        async_pending_polls=async_pending_polls,
        permissive_models=permissive_models,
    )
    return app
