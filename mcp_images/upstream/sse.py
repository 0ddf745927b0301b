"""The image APIs' server-sent events, sorted into partial, completed and error events.

OpenAI streams ``image_generation.partial_image`` / ``image_edit.partial_image`` events, then
``*.completed``; each carries a JSON ``data:`` line. A ``data: [DONE]`` line may close the
stream; a JSON holding an ``error`` object is a failure. Framing comes from httpx2's
`EventSource`; this module knows the image events and folds them into the body of an
ordinary images response, which `upstream.ImagesAPI` then reads like any other answer.

No retry happens here: once events flow, partials are out and the image may be billed.
A partial image is a preview of the final one: one that cannot be used is skipped (and
logged), never a reason to lose the final image.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal

import httpx2

from mcp_images.errors import McpImagesError, StreamError, UpstreamError

logger = logging.getLogger(__name__)

# A completed event carries a whole image as base64: 3840x2160 PNG is well over 10 MB.
MAX_EVENT_BYTES = 128 * 1024 * 1024
DONE = "[DONE]"

EventKind = Literal["partial", "completed", "error", "other"]


@dataclass
class PartialImage:
    """A partial image from a stream; ``event`` is the whole event as sent."""

    index: int
    b64_json: str
    event: dict[str, Any]


OnPartial = Callable[[PartialImage], Awaitable[None]]
ErrorFor = Callable[[dict[str, Any]], UpstreamError]


@dataclass
class ImageEvent:
    """One event of an image stream: its kind and its JSON payload."""

    kind: EventKind
    payload: dict[str, Any]


def is_event_stream(response: httpx2.Response) -> bool:
    """Whether the answer is ``text/event-stream`` (a provider may ignore ``stream``)."""
    content_type = response.headers.get("content-type", "").partition(";")[0]
    return content_type.strip().lower() == "text/event-stream"


def classify(name: str, payload: dict[str, Any]) -> EventKind:
    """The kind of an event from its JSON ``type`` (or the SSE event name).

    Some gateways put ``"error": null`` on every event: only an error that is there counts.
    """
    if payload.get("error") or payload.get("type") == "error" or name == "error":
        return "error"
    kind = str(payload.get("type") or name)
    if kind.endswith(".partial_image"):
        return "partial"
    if kind.endswith(".completed"):
        return "completed"
    return "other"


async def image_events(response: httpx2.Response) -> AsyncGenerator[ImageEvent]:
    """The events of a streamed answer, up to the end of the body or ``[DONE]``.

    Transport errors (a cut connection, a read timeout) pass through as httpx2 errors, so the
    caller decides how to report them.

    Raises:
        StreamError: an event is not JSON, or is larger than MAX_EVENT_BYTES.
    """
    source = httpx2.EventSource(response, max_event_size=MAX_EVENT_BYTES)
    try:
        async for sse in source:
            data = sse.data.strip()
            if not data:
                continue
            if data == DONE:
                return
            try:
                payload = json.loads(data)
            except json.JSONDecodeError as exc:
                raise StreamError(f"the upstream sent an event that is not JSON: {data[:80]!r}") from exc
            if isinstance(payload, dict):
                yield ImageEvent(classify(sse.event, payload), payload)
    except httpx2.SSEError as exc:
        raise StreamError(f"the upstream's event stream is broken: {exc}") from exc


async def read_image_stream(
    response: httpx2.Response,
    *,
    expect: int = 1,
    on_partial: OnPartial | None = None,
    error_for: ErrorFor,
) -> dict[str, Any]:
    """Hand partials to ``on_partial``; fold ``expect`` completed events into a response body.

    ``error_for`` turns an error event's payload into the exception to raise (so moderation
    keeps its own class). A read timeout passes through as `httpx2.TimeoutException`.

    Raises:
        StreamError: the stream broke, or ended before a completed event.
        UpstreamError: what ``error_for`` made of an error event.
    """
    request_id = response.headers.get("x-request-id")
    completed: list[dict[str, Any]] = []
    partials = 0
    try:
        async with aclosing(image_events(response)) as events:
            async for event in events:
                payload = event.payload
                if event.kind == "error":
                    raise error_for(payload)
                if event.kind == "partial" and isinstance(payload.get("b64_json"), str):
                    partials += 1
                    if on_partial is not None:
                        await _hand_over(on_partial, _partial(payload))
                elif event.kind == "completed":
                    completed.append(payload)
                    if len(completed) >= expect:
                        break
    except httpx2.TimeoutException:
        raise
    except httpx2.TransportError as exc:
        raise StreamError(
            f"the stream broke after {partials} partial image(s): {type(exc).__name__}",
            request_id=request_id,
        ) from exc
    if not completed:
        raise StreamError(
            f"the stream ended before the image was complete ({partials} partial image(s) came); "
            "try again, or without stream",
            request_id=request_id,
        )
    return response_body(completed)


async def _hand_over(on_partial: OnPartial, partial: PartialImage) -> None:
    """Give a partial image to ``on_partial``; one it cannot use is skipped, not fatal."""
    try:
        await on_partial(partial)
    except McpImagesError as exc:
        logger.warning("partial image %d skipped: %s", partial.index + 1, exc)


def _partial(event: dict[str, Any]) -> PartialImage:
    index = event.get("partial_image_index", 0)
    return PartialImage(index=index if isinstance(index, int) else 0, b64_json=event["b64_json"], event=event)


def response_body(completed: list[dict[str, Any]]) -> dict[str, Any]:
    """An images-response body from completed events: one image each, the last one's details."""
    last = completed[-1]
    usage = next((e["usage"] for e in reversed(completed) if isinstance(e.get("usage"), dict)), None)
    created = last.get("created_at", last.get("created"))
    images = [{k: e[k] for k in ("b64_json", "url", "revised_prompt") if e.get(k) is not None} for e in completed]
    body: dict[str, Any] = {"created": created if isinstance(created, int) else None}
    body |= {"data": images, "usage": usage}
    body |= {k: last.get(k) for k in ("background", "output_format", "quality", "size")}
    return body
