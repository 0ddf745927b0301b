"""What a failed upstream call becomes: an `errors.UpstreamError` subclass the user can act on.

An error answer is classed by HTTP status and by the body's ``code``/``type`` (moderation and
quota win over the status), keeps the upstream's own words, and loses every copy of the key.
Error bodies come in many shapes (OpenAI's ``{"error": {...}}``, a bare string, a proxy's HTML
page), so `error_fields` reads them all. A connection that failed or timed out, and an error
event mid-stream, are mapped here too. `upstream.ImagesAPI` calls these; `retry` reads the
same fields to decide whether to try again.

A timeout's error says which limit was hit, in words and in its ``code``: ``connect_timeout``
(no connection within DEFAULT_CONNECT_TIMEOUT), ``read_timeout`` (no byte for the read
timeout), ``pool_timeout`` (our own connections all busy) or ``total_timeout`` (the attempt as
a whole, connect to last byte, ran past MCP_IMAGES_TIMEOUT: `AttemptTimeout`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx2

from mcp_images.errors import (
    AuthenticationError,
    BadRequestError,
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

if TYPE_CHECKING:
    from mcp_images.catalog.providers import Provider

__all__ = [
    "MODERATION_CODES",
    "QUOTA_CODE",
    "REDACTED",
    "AttemptTimeout",
    "error_fields",
    "map_error",
    "parse_body",
    "request_id_from",
    "scrub",
    "scrub_json",
    "shown_url",
    "snippet",
    "stream_error",
    "transport_error",
]

MODERATION_CODES = frozenset({"moderation_blocked", "content_policy_violation"})
QUOTA_CODE = "insufficient_quota"
REDACTED = "[redacted]"
# Shorter "keys" (a test's "k") are not secrets and are everywhere in ordinary text: replacing
# them would mangle results ("resource_link" -> "resource_lin[redacted]"). Real keys are 20+.
MIN_SECRET_CHARS = 8


class AttemptTimeout(httpx2.TimeoutException):
    """One attempt ran past its total time (connect to last byte); raised by `retry`.

    ``maybe_billed``: a POST whose body had gone out, so the upstream may be making the image.
    """

    def __init__(self, seconds: float, *, maybe_billed: bool) -> None:
        super().__init__(f"the attempt did not finish within {seconds:g} s")
        self.seconds = seconds
        self.maybe_billed = maybe_billed


def scrub(text: str, secret: str | None) -> str:
    """``text`` with every copy of ``secret`` replaced, so no key leaves in a message."""
    return text.replace(secret, REDACTED) if secret and len(secret) >= MIN_SECRET_CHARS else text


def scrub_json(value: Any, secret: str | None) -> Any:
    """A parsed JSON value with ``secret`` scrubbed from every string in it, keys included.

    A hostile or careless upstream may echo the key in any field (``code``, ``param``,
    moderation categories), not only in the message.
    """
    if not secret or len(secret) < MIN_SECRET_CHARS:
        return value
    if isinstance(value, str):
        return scrub(value, secret)
    if isinstance(value, dict):
        return {scrub_json(k, secret): scrub_json(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_json(v, secret) for v in value]
    return value


def shown_url(text: str) -> str:
    """A URL as messages show it: scheme, host, port and path; no user:password@, query or fragment.

    Anything that is not an http(s) URL comes back unchanged.
    """
    try:
        url = httpx2.URL(text)
    except httpx2.InvalidURL:
        return text
    if url.scheme not in ("http", "https") or not url.host:
        return text
    port = f":{url.port}" if url.port else ""
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}{port}{url.path}"


def snippet(text: str, limit: int = 200) -> str:
    """``text`` without markup, on one line, cut at ``limit`` characters."""
    plain = " ".join(re.sub(r"<[^>]*>", " ", text).split())
    return plain if len(plain) <= limit else plain[:limit] + "..."


def parse_body(content: bytes) -> Any:
    """JSON when it is JSON, else the text (so a proxy's HTML page still says something)."""
    text = content.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The upstream's request id, for a support ticket."""
    return headers.get("x-request-id") or headers.get("request-id")


def error_fields(payload: Any) -> tuple[str, str | None, str | None, str | None, list[str]]:
    """(message, code, type, param, moderation categories) from an error body of any shape."""
    if isinstance(payload, str):
        return snippet(payload), None, None, None, []
    if not isinstance(payload, dict):
        return "", None, None, None, []
    err = payload.get("error", payload)
    if isinstance(err, str):
        return err, None, None, None, []
    if not isinstance(err, dict):
        return "", None, None, None, []
    message = err.get("message") or err.get("detail") or err.get("msg") or ""
    details = err.get("moderation_details") or payload.get("moderation_details") or {}
    categories = details.get("categories") if isinstance(details, dict) else None

    def text(key: str) -> str | None:
        value = err.get(key)
        return str(value) if value is not None else None

    cats = [str(c) for c in categories] if isinstance(categories, list) else []
    return str(message), text("code"), text("type"), text("param"), cats


def map_error(
    status: int | None,
    payload: Any,
    *,
    request_id: str | None = None,
    provider: Provider | None = None,
    secret: str | None = None,
) -> UpstreamError:
    """The exception for an error answer: class by status and code, upstream's words kept.

    ``payload`` is the parsed JSON body, or the raw text when it was not JSON. The key
    (``secret``) is scrubbed from everything the upstream said.
    """
    # Scrubbed before anything is cut short: a snippet could keep half a key.
    message, code, error_type, param, categories = error_fields(scrub_json(payload, secret))
    request_id = scrub(request_id, secret) if request_id else request_id
    said = f"HTTP {status}" if status is not None else "an error"
    if not message:
        message = f"the upstream answered {said} with no message"
    elif not isinstance(payload, dict):
        message = f"the upstream answered {said} without a JSON error body: {message}"
    kw: dict[str, Any] = {
        "status_code": status,
        "code": code,
        "error_type": error_type,
        "param": param,
        "request_id": request_id,
    }
    if code in MODERATION_CODES or error_type in MODERATION_CODES:
        found = f" (categories: {', '.join(categories)})" if categories else ""
        text = f"the upstream's safety system refused this request{found}: {message}"
        return ModerationError(text, categories=categories, **kw)
    if QUOTA_CODE in (code, error_type):
        return QuotaExceededError(f"the account is out of credit: {message}", **kw)
    if status == 401:
        # Never the upstream's words: OpenAI's 401 quotes part of the key.
        return AuthenticationError("the upstream refused the API key (check MCP_IMAGES_API_KEY)", **kw)
    if status == 524:
        hint = provider.gateway_timeout_hint if provider else None
        return GatewayTimeoutError(hint or f"the upstream's gateway timed out: {message}", **kw)
    classes: dict[int, type[UpstreamError]] = {
        400: BadRequestError,
        403: PermissionDeniedError,
        404: NotFoundError,
        429: RateLimitError,
    }
    if status == 404:
        message += " (check the model name and the base URL, MCP_IMAGES_BASE_URL)"
    if status is not None and status in classes:
        return classes[status](message, **kw)
    if status is not None and status >= 500:
        return ServerError(message, **kw)
    return UpstreamError(message, **kw)


def stream_error(mapped: UpstreamError) -> UpstreamError:
    """An error event's exception: moderation and quota keep their classes, the rest is a StreamError."""
    if isinstance(mapped, ModerationError | QuotaExceededError):
        return mapped
    return StreamError(
        f"the upstream reported an error mid-stream: {mapped.message}",
        code=mapped.code,
        error_type=mapped.error_type,
        param=mapped.param,
        request_id=mapped.request_id,
    )


def transport_error(
    exc: httpx2.TransportError,
    *,
    where: str,
    connect_seconds: float,
    read_seconds: float,
    hint: str = "",
    secret: str | None = None,
    total_setting: str = "MCP_IMAGES_TIMEOUT",
) -> UpstreamError:
    """The exception for a call that got no answer: could not connect, timed out, or dropped.

    ``where`` names the host for the message (a URL loses its credentials and query, see
    `shown_url`); ``hint`` follows a timeout's message; ``total_setting`` names what sets an
    attempt's total time. ``secret`` is scrubbed from all of it.
    """
    where = scrub(shown_url(where), secret)
    if isinstance(exc, AttemptTimeout):
        return _total_timeout(exc, where, hint, total_setting)
    if isinstance(exc, httpx2.ConnectTimeout):
        return ConnectionError_(
            f"could not connect to {where} within {connect_seconds:g} s (connect timeout)", code="connect_timeout"
        )
    if isinstance(exc, httpx2.PoolTimeout):
        return TimeoutError_(
            f"no connection to {where} came free within {read_seconds:g} s: too many jobs at once; "
            "wait for running tasks to finish, or start fewer",
            code="pool_timeout",
        )
    if isinstance(exc, httpx2.TimeoutException):
        return TimeoutError_(f"{where} sent no byte for {read_seconds:g} s (read timeout){hint}", code="read_timeout")
    detail = scrub(str(exc), secret) or type(exc).__name__
    return ConnectionError_(f"could not reach {where}: {detail}")


def _total_timeout(exc: AttemptTimeout, where: str, hint: str, total_setting: str) -> TimeoutError_:
    subject = f"the upstream ({where})" if "://" in where else where
    message = f"{subject} did not finish answering within {exc.seconds:g} s ({total_setting})"
    if exc.maybe_billed:
        message += (
            "; not sent again: the upstream had the whole request and may already be making and billing "
            "the image, so check the provider's usage page before trying again"
        )
    return TimeoutError_(message + hint, code="total_timeout")
