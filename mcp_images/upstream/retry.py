"""The retry policy for upstream calls, and the loop that sends a request under it.

The policy is the contract's, which is OpenAI's SDK's: up to MAX_RETRIES more tries after a
connection error, a timeout, HTTP 408/409/429 or a 5xx, but never after 302.ai's 524 (the job
may still run and bill) nor for an exhausted quota; the upstream's ``x-should-retry`` header
overrides the status, and its ``retry-after-ms``/``retry-after`` sets the wait when sane.
Otherwise the wait is exponential backoff with jitter.

`send_with_retries` only sends and waits: what an answer means is `upstream_errors`' business,
and `upstream.ImagesAPI` turns a final failure into an exception.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx2

from mcp_images.upstream.errors import QUOTA_CODE, error_fields, parse_body

__all__ = [
    "MAX_RETRIES",
    "OnRetry",
    "RequestFactory",
    "Sleep",
    "retry_after_seconds",
    "retry_delay",
    "send_with_retries",
    "should_retry",
]

# Delays in seconds.
MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 120.0
RETRY_STATUSES = frozenset({408, 409, 429})  # and every 5xx except NO_RETRY_STATUSES
NO_RETRY_STATUSES = frozenset({524})  # 302.ai's gateway cut: the job may still run and bill

MAX_ERROR_BODY_BYTES = 1024 * 1024
_WIRE = frozenset({"content-encoding", "content-length", "transfer-encoding"})

Sleep = Callable[[float], Awaitable[None]]
RequestFactory = Callable[[ExitStack], httpx2.Request]
OnRetry = Callable[[str, int, float], None]  # (reason, number of the retry, seconds to wait)


def retry_after_seconds(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The wait the upstream asked for: ``retry-after-ms``, then ``retry-after`` (s or date)."""
    if value := headers.get("retry-after-ms"):
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return (when - (now or datetime.now(UTC))).total_seconds()


def retry_delay(headers: Mapping[str, str], attempt: int) -> float:
    """Seconds to wait before retry number ``attempt + 1``.

    The upstream's own wait when it is between 0 and MAX_RETRY_AFTER; otherwise exponential
    backoff from INITIAL_RETRY_DELAY, capped at MAX_RETRY_DELAY, with up to 25 % jitter.
    """
    asked = retry_after_seconds(headers)
    if asked is not None and 0 <= asked <= MAX_RETRY_AFTER:
        return asked
    backoff = min(INITIAL_RETRY_DELAY * 2**attempt, MAX_RETRY_DELAY)
    return backoff * (1 - 0.25 * random.random())


def should_retry(status: int, headers: Mapping[str, str], payload: Any) -> bool:
    """Whether an error answer is worth another try (quota never; x-should-retry decides)."""
    code, error_type = error_fields(payload)[1:3]
    if QUOTA_CODE in (code, error_type):
        return False
    override = headers.get("x-should-retry", "").lower()
    if override in ("true", "false"):
        return override == "true"
    if status in RETRY_STATUSES:
        return True
    return 500 <= status < 600 and status not in NO_RETRY_STATUSES


async def send_with_retries(
    http: httpx2.AsyncClient,
    make: RequestFactory,
    *,
    stream: bool,
    follow_redirects: bool | None = None,
    max_retries: int = MAX_RETRIES,
    sleep: Sleep = anyio.sleep,
    on_retry: OnRetry | None = None,
) -> httpx2.Response:
    """Send with the retry policy. Returns the last answer, error or not.

    ``make`` builds the request anew for every attempt. An error answer comes back already
    read (at most MAX_ERROR_BODY_BYTES); a success is read too unless ``stream``, in which
    case the caller must close it. ``on_retry`` hears of each retry before its wait.

    Raises:
        httpx2.TransportError: after the retries, when no answer came.
    """
    attempt = 0
    while True:
        try:
            response = await _attempt(http, make, stream=stream, follow_redirects=follow_redirects)
        except httpx2.TransportError as exc:
            if attempt >= max_retries:
                raise
            delay = retry_delay({}, attempt)
            reason = type(exc).__name__
        else:
            if response.is_success or response.has_redirect_location:
                return response
            payload = parse_body(response.content)
            if attempt >= max_retries or not should_retry(response.status_code, response.headers, payload):
                return response
            delay = retry_delay(response.headers, attempt)
            reason = f"HTTP {response.status_code}"
        attempt += 1
        if on_retry is not None:
            on_retry(reason, attempt, delay)
        await sleep(delay)


async def _attempt(
    http: httpx2.AsyncClient, make: RequestFactory, *, stream: bool, follow_redirects: bool | None
) -> httpx2.Response:
    """One request; files are closed once the body is sent."""
    with ExitStack() as files:
        request = make(files)
        if follow_redirects is None:
            response = await http.send(request, stream=True)
        else:
            response = await http.send(request, stream=True, follow_redirects=follow_redirects)
    try:
        if not response.is_success:
            body = await _read_capped(response, MAX_ERROR_BODY_BYTES)
            await response.aclose()
            # The body is decoded now: drop the headers that describe its wire form.
            headers = [(k, v) for k, v in response.headers.multi_items() if k not in _WIRE]
            return httpx2.Response(response.status_code, headers=headers, content=body, request=request)
        if not stream:
            await response.aread()
    except BaseException:
        await response.aclose()
        raise
    return response


async def _read_capped(response: httpx2.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]
