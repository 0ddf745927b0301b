"""Answers of the sandbox: image bodies, event streams, broken answers, disconnect-aware waits.

The stream and the "cut" answers are raw ASGI responses because they do what frameworks
avoid on purpose: break a response half-way, the way a dropped connection does. (uvicorn logs
"ASGI callable returned without completing response." for those: that is the point.)

Decisions on figures no source publishes (all labelled sandbox inventions):

- ``usage`` of a gif or svg call is that of one image of the size and quality (the svg's
  reference image); a gif's frames add nothing.
- ``svg_usage`` counts the prompt plus a fixed instruction as input, the document (characters
  / 4) plus reasoning tokens by ``svg.reasoning.effort`` (default medium) as output; its
  ``model`` is ``svg.model`` or ``sandbox-svg-author``.
- ``safety_identifier`` is echoed (body and completed event) only when the call gave it or
  ``user``; dall-e answers carry nothing but ``created`` and ``data``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from mcp_images.pricing.tokens import builtin_entry, text_tokens, usage_body
from mcp_images.sandbox.modes import Modes
from mcp_images.sandbox.params import Call
from mcp_images.sandbox.render import MIME_TYPES, Picture, render, render_partial
from mcp_images.sandbox.render_formats import render_output
from mcp_images.sandbox.state import RequestRecord, SandboxState

TOKEN_FALLBACK_MODEL = "gpt-image-2"
SVG_DEFAULT_AUTHOR = "sandbox-svg-author"  # when the call names none (no SVG model selection)
SVG_DEFAULT_EFFORT = "medium"
SVG_INSTRUCTION_TOKENS = 200  # what the author is told besides the prompt: a made-up, fixed figure
# Reasoning tokens by effort: invented but monotonic, so a client can tell them apart.
SVG_REASONING_TOKENS = {"none": 0, "minimal": 64, "low": 256, "medium": 1024, "high": 4096,
                        "xhigh": 8192, "max": 16384}  # fmt: skip


def picture(call: Call, index: int) -> Picture:
    """What image ``index`` of ``call`` shows."""
    p = call.params
    return Picture(
        prompt=p.prompt,
        model=call.spec.name,
        width=call.width,
        height=call.height,
        quality=call.quality,
        index=index,
        count=p.n or 1,
        transparent=call.background == "transparent",
        output_format=call.output_format,
        compression=p.get("output_compression"),
        source=call.images[0] if call.images else None,
        markup=call.markup,
        frames=call.frame_count,
        frame_ms=call.frame_duration_ms,
    )


def render_all(call: Call) -> list[bytes]:
    """All n final images (blocking: run it in a worker thread)."""
    return [render_output(picture(call, i)) for i in range(call.params.n or 1)]


def usage_for(call: Call, *, omit: bool) -> dict[str, Any] | None:
    """The usage object the upstream reports for ``call`` (None for dall-e or when omitted)."""
    if omit:
        return None
    p = call.params
    usage = usage_body(
        token_model(call),
        prompt=p.prompt,
        n=p.n or 1,
        width=call.width,
        height=call.height,
        quality=call.usage_quality,
        input_sizes=[(f.width, f.height) for f in call.image_facts],
        input_fidelity_high=p.input_fidelity == "high",
        partial_images=(p.partial_images or 0) if p.stream else 0,
    )
    if usage is not None and call.provider.chat_usage:
        # 302.ai mixes chat-style counters into usage; clients must tolerate them.
        usage = {
            **usage,
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
        }
    return usage


def token_model(call: Call) -> str:
    """Whose token rule ``call``'s usage follows: its own price-table entry, else gpt-image-2's
    for a catalog model the table does not list yet (gpt-image-2.5, 2.6)."""
    name = call.spec.name
    return name if builtin_entry(name) is not None or not call.spec.known else TOKEN_FALLBACK_MODEL


def svg_usage(call: Call, document: bytes) -> dict[str, Any]:
    """The SVG author's own usage: prompt in, the document (and its reasoning) out."""
    svg = call.params.get("svg") or {}
    effort = (svg.get("reasoning") or {}).get("effort") or SVG_DEFAULT_EFFORT
    reasoning = SVG_REASONING_TOKENS.get(effort, SVG_REASONING_TOKENS[SVG_DEFAULT_EFFORT])
    input_tokens = text_tokens(call.params.prompt) + SVG_INSTRUCTION_TOKENS
    output_tokens = text_tokens(document.decode("utf-8")) + reasoning
    return {
        "model": svg.get("model") or SVG_DEFAULT_AUTHOR,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "reasoning_tokens": reasoning,
        "total_tokens": input_tokens + output_tokens,
    }


def image_body(
    call: Call,
    images: list[bytes],
    state: SandboxState,
    origin: str,
    *,
    as_url: bool,
    omit_usage: bool,
) -> dict[str, Any]:
    """The JSON body of a finished generation or edit."""
    items: list[dict[str, Any]] = []
    for data in images:
        if as_url:
            name = state.store_file(data, call.output_format, MIME_TYPES[call.output_format])
            item: dict[str, Any] = {"url": f"{origin}/files/{name}"}
        else:
            item = {"b64_json": base64.b64encode(data).decode()}
        if call.spec.name == "dall-e-3":
            item["revised_prompt"] = f"A sandbox placeholder picture for: {call.params.prompt}"
        items.append(item)
    body: dict[str, Any] = {"created": int(time.time()), "data": items}
    if call.dalle:  # dall-e answers carry nothing else
        return body
    body.update(
        background=call.background,
        output_format=call.output_format,
        quality=call.quality,
        size=f"{call.width}x{call.height}",
    )
    usage = usage_for(call, omit=omit_usage)
    if usage is not None:
        body["usage"] = usage
    if call.output_format == "svg" and images:
        body["svg_usage"] = svg_usage(call, images[0])
    if call.safety_identifier is not None:
        body["safety_identifier"] = call.safety_identifier
    return body


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def stream_events(call: Call, *, omit_usage: bool) -> Iterable[bytes]:
    """The partial events then the completed event (rendered lazily, one by one)."""
    pic = picture(call, 0)
    common = {
        "size": f"{call.width}x{call.height}",
        "quality": call.quality,
        "background": call.background,
        "output_format": call.output_format,
    }
    prefix = call.event_prefix
    for i in range(call.params.partial_images or 0):
        data = base64.b64encode(render_partial(pic, i)).decode()
        yield sse(
            f"{prefix}.partial_image",
            {"type": f"{prefix}.partial_image", "b64_json": data, "partial_image_index": i,
             **common, "created_at": int(time.time())},
        )  # fmt: skip
    completed: dict[str, Any] = {
        "type": f"{prefix}.completed",
        "b64_json": base64.b64encode(render(pic)).decode(),
        **common,
        "created_at": int(time.time()),
    }
    usage = usage_for(call, omit=omit_usage)
    if usage is not None:
        completed["usage"] = usage
    if call.safety_identifier is not None:
        completed["safety_identifier"] = call.safety_identifier
    yield sse(f"{prefix}.completed", completed)
    if call.provider.done_marker:
        yield b"data: [DONE]\n\n"


async def watch_disconnect(receive: Receive, record: RequestRecord | None, scope: anyio.CancelScope) -> None:
    """Wait for the client to go away; then note it and cancel ``scope``."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if record is not None:
                record.disconnected = True
            scope.cancel()
            return


async def wait_unless_disconnected(request: Request, seconds: float, record: RequestRecord | None) -> bool:
    """Sleep ``seconds``; False (and the record marked) if the client went away meanwhile."""
    if seconds <= 0:
        return True
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_disconnect, request.receive, record, tg.cancel_scope)
        await anyio.sleep(seconds)
        tg.cancel_scope.cancel()
    return not (record is not None and record.disconnected)


class EventStream(Response):
    """A ``text/event-stream`` answer: ``events`` spaced by ``delay``, then the end of body.

    ``cut``: None (end normally), ``"abrupt"`` (after the events the connection drops with no
    end of body) or ``"clean"`` (the body ends normally, so a caller sees a stream that simply
    stops without its completed event). A client that goes away is noted on ``record``.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: Iterable[bytes],
        *,
        delay: float,
        record: RequestRecord | None,
        cut: str | None = None,
    ) -> None:
        super().__init__(headers={"cache-control": "no-cache"})
        # The length is unknown up front: chunked transfer, as the real upstream streams.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self.events = events
        self.delay = delay
        self.record = record
        self.cut = cut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_disconnect, receive, self.record, tg.cancel_scope)
            await self._send_events(send)
            tg.cancel_scope.cancel()
        if self.cut == "abrupt" or (self.record is not None and self.record.disconnected):
            return  # returning before the end of the body makes the server drop the connection
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_events(self, send: Send) -> None:
        iterator = iter(self.events)
        first = True
        while True:
            if not first and self.delay > 0:
                await anyio.sleep(self.delay)
            first = False
            # Rendering is CPU work: keep it off the event loop.
            chunk = await anyio.to_thread.run_sync(next, iterator, None)
            if chunk is None:
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


class TruncatedResponse(Response):
    """A JSON answer that promises its full length but stops half-way (the connection drops)."""

    def __init__(self, body: bytes) -> None:
        super().__init__(content=body, media_type="application/json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        await send(
            {
                "type": "http.response.body",
                "body": self.body[: len(self.body) // 2],
                "more_body": True,
            }
        )
        # Returning without the rest of the body makes the server drop the connection.


async def finished_body(request: Request, call: Call, modes: Modes) -> dict[str, Any]:
    """Render ``call`` (in a worker thread) and build its JSON body, honouring url/no-usage."""
    data = await anyio.to_thread.run_sync(render_all, call)
    state: SandboxState = request.app.state.sandbox
    origin = str(request.base_url).rstrip("/")
    as_url = call.response_format == "url" or "url" in modes
    return image_body(call, data, state, origin, as_url=as_url, omit_usage="no-usage" in modes)
