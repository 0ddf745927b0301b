"""What the upstream's answers mean: images, a background job's state, or an error.

Plain functions over a parsed body (`upstream_errors.parse_body`) and the answer's headers:
`upstream.ImagesAPI` sends and reads, these decide what came back. Every error they raise is an
`errors.UpstreamError` subclass whose message never holds the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pydantic_core
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from mcp_images.catalog.providers import AsyncSpec, Provider
from mcp_images.errors import UpstreamError
from mcp_images.upstream.errors import map_error, parse_body, request_id_from, scrub, snippet

__all__ = [
    "ImageDatum",
    "ImagesResponse",
    "answer_error",
    "images_from",
    "parse_answer",
    "poll_result",
    "task_id_from",
]


class ImageDatum(BaseModel):
    """One image of a response: base64 bytes or a URL to download at once."""

    model_config = ConfigDict(extra="allow")

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    """The images API's answer. Unknown fields (302.ai's chat-style usage) are kept.

    Only ``data`` must be right: a paid image is never thrown away because a descriptive
    field beside it (``created``, ``size``, ``usage``...) has an unexpected type; such a
    field is read as absent.
    """

    model_config = ConfigDict(extra="allow")

    created: int | None = None
    data: list[ImageDatum] = []
    usage: dict[str, Any] | None = None
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None
    request_id: str | None = None

    @field_validator("data", mode="before")
    @classmethod
    def _null_data_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("created", "usage", "background", "output_format", "quality", "size", mode="wrap")
    @classmethod
    def _odd_is_absent(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            return None


def parse_answer(content: bytes | bytearray) -> Any:
    """A success answer's body: JSON parsed straight from the bytes, else `parse_body`'s reading.

    pydantic-core's parser reads the bytes as they are (no UTF-8 decode to a str first) and
    makes each string once: 0.3 ms for a 2.5 MB answer holding one 1024x1024 image as base64,
    against 2.2 ms for ``json.loads``. A body it refuses (not JSON, bad UTF-8) goes to
    `parse_body`, which says what it was.
    """
    try:
        return pydantic_core.from_json(content)
    except ValueError:
        return parse_body(bytes(content))


def answer_error(
    status: int | None, payload: Any, headers: Mapping[str, str], *, provider: Provider, secret: str | None
) -> UpstreamError:
    """`upstream_errors.map_error` with the provider's hints and the answer's request id."""
    return map_error(status, payload, request_id=request_id_from(headers), provider=provider, secret=secret)


def images_from(payload: Any, headers: Mapping[str, str], *, provider: Provider, secret: str | None) -> ImagesResponse:
    """An images response from a parsed body.

    Raises:
        UpstreamError: an ``error`` body (mapped to its subclass), or not an images response.
    """
    if isinstance(payload, dict) and payload.get("error") and not payload.get("data"):
        # an "error": null (some gateways) is no error
        raise answer_error(None, payload, headers, provider=provider, secret=secret)
    try:
        result = ImagesResponse.model_validate(payload)
    except ValidationError as exc:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        ctype = headers.get("content-type", "")
        kind = f" ({ctype}, not JSON)" if ctype and "json" not in ctype.lower() else ""
        raise UpstreamError(
            f"the upstream's answer{kind} is not an images response: " + snippet(scrub(text, secret)),
            request_id=request_id_from(headers),
        ) from exc
    if result.request_id is None:
        result.request_id = request_id_from(headers)
    return result


def poll_result(
    spec: AsyncSpec, body: Any, headers: Mapping[str, str], *, provider: Provider, secret: str | None
) -> ImagesResponse | None:
    """Reads ``{"status_code", "data", "err"}``: None while pending, else result or error.

    Raises:
        UpstreamError: the job failed (mapped like a direct answer) or the answer is garbled.
    """
    if isinstance(body, dict) and isinstance(body.get("data"), list) and "err" not in body:
        return images_from(body, headers, provider=provider, secret=secret)  # a plain images response
    if not isinstance(body, dict):
        return images_from(body, headers, provider=provider, secret=secret)  # raises with a snippet of what came
    err = str(body.get("err") or "")
    if any(marker.lower() in err.lower() for marker in spec.pending_errs):
        return None
    data = body.get("data")
    if isinstance(data, str) and data.strip():
        data = parse_body(data.encode())
    status = body.get("status_code")
    status = status if isinstance(status, int) else None
    if err or (status is not None and status >= 400):
        payload = data if isinstance(data, dict) and "error" in data else {"error": {"message": err}}
        raise answer_error(
            status if status and status >= 400 else None, payload, headers, provider=provider, secret=secret
        )
    if not data:
        return None
    return images_from(data, headers, provider=provider, secret=secret)


def task_id_from(spec: AsyncSpec, answer: Any, *, secret: str | None) -> str:
    """The provider's task id in the answer to an async submit.

    Raises:
        UpstreamError: none of the spec's id fields holds one.
    """
    if isinstance(answer, dict):
        for name in spec.id_fields:
            value = answer.get(name)
            if isinstance(value, str | int) and str(value):
                return str(value)
    looked = ", ".join(spec.id_fields)
    raise UpstreamError(
        f"the upstream accepted the async request but sent no task id (looked for {looked}): "
        f"{snippet(scrub(json.dumps(answer), secret))}"
    )
