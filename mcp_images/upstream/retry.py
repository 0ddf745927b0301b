"""The retry policy for upstream calls, and the loop that sends a request under it.

The policy is the contract's, which is OpenAI's SDK's: up to MAX_RETRIES more tries after a
connection error, a timeout, HTTP 408/409/429 or a 5xx, but never after 302.ai's 524 (the job
may still run and bill) nor for an exhausted quota; the upstream's ``x-should-retry`` header
overrides the status, and its ``retry-after-ms``/``retry-after`` sets the wait when sane.
Otherwise the wait is exponential backoff with jitter.

Each attempt as a whole, from connecting to the last byte, is bounded by ``total_timeout``
(MCP_IMAGES_TIMEOUT for API calls): httpx2's read timeout only bounds the gap between bytes,
so an upstream dripping one byte a second would never time out. One exception to "a timeout
is retried": an attempt that ran out of total time *after its POST body was fully sent* is
not sent again, because the upstream may be making (and billing) the image; its error says
so. A total timeout while connecting or uploading, on a GET (polls, downloads), and httpx2's
own connect and read (no byte) timeouts are retried as the SDK does. Whether the body went out
is known from the transport's ``trace`` events; a transport that sends none (a test's mock)
counts as "sent". When a streamed answer comes back, the time left of its attempt goes with
it (`within_attempt`) so that reading its body stays under the same bound; our own waits in
between (for a body slot) do not count.

`send_with_retries` only sends and waits: what an answer means is `upstream_errors`' business,
and `upstream.ImagesAPI` turns a final failure into an exception.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import httpx2

from mcp_images.upstream.errors import QUOTA_CODE, AttemptTimeout, error_fields, parse_body

__all__ = [
    "MAX_RETRIES",
    "OnRetry",
    "RequestFactory",
    "Sleep",
    "retry_after_seconds",
    "retry_delay",
    "send_with_retries",
    "should_retry",
    "within_attempt",
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
_SECONDS_LEFT = "mcp_images.seconds_left"  # response extension: the attempt's time left for its body

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
    total_timeout: float | None = None,
) -> httpx2.Response:
    """Send with the retry policy. Returns the last answer, error or not.

    ``make`` builds the request anew for every attempt. An error answer comes back already
    read (at most MAX_ERROR_BODY_BYTES); a success is read too unless ``stream``, in which
    case the caller must close it and read it under `within_attempt`. ``on_retry`` hears of
    each retry before its wait. ``total_timeout`` bounds each attempt, connect to last byte.

    Raises:
        httpx2.TransportError: after the retries, when no answer came; `AttemptTimeout` when
            an attempt ran out of ``total_timeout`` (at once, if its POST may be billed).
    """
    attempt = 0
    while True:
        try:
            response = await _attempt(
                http, make, stream=stream, follow_redirects=follow_redirects, total_timeout=total_timeout
            )
        except httpx2.TransportError as exc:
            if attempt >= max_retries or (isinstance(exc, AttemptTimeout) and exc.maybe_billed):
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


@contextmanager
def within_attempt(response: httpx2.Response) -> Iterator[None]:
    """Read a streamed answer's body within the time its attempt has left.

    Raises:
        AttemptTimeout: the time ran out (``maybe_billed`` for a POST: the upstream answered it).
    """
    left = response.extensions.get(_SECONDS_LEFT)
    if left is None:
        yield
        return
    seconds, total = left
    with anyio.move_on_after(seconds) as scope:
        yield
    if scope.cancelled_caught:
        raise AttemptTimeout(total, maybe_billed=response.request.method == "POST")


@dataclass
class _Sent:
    """How far one attempt got, from the transport's ``trace`` events."""

    method: str
    traced: bool = False
    body_sent: bool = False

    async def trace(self, name: str, info: Mapping[str, Any]) -> None:
        self.traced = True
        if name.endswith(".send_request_body.complete"):
            self.body_sent = True

    @property
    def maybe_billed(self) -> bool:
        # No events at all: a transport that does not say (a mock) counts as "it got there".
        return self.method == "POST" and (self.body_sent or not self.traced)


async def _attempt(
    http: httpx2.AsyncClient,
    make: RequestFactory,
    *,
    stream: bool,
    follow_redirects: bool | None,
    total_timeout: float | None,
) -> httpx2.Response:
    """One request under ``total_timeout``; a streamed success carries the time it has left.

    Raises:
        AttemptTimeout: the attempt ran out of ``total_timeout``.
        httpx2.TransportError: no answer came.
    """
    started = anyio.current_time()
    limit = math.inf if total_timeout is None else total_timeout
    sent: _Sent | None = None
    response: httpx2.Response | None = None
    with anyio.move_on_after(limit) as scope:
        with ExitStack() as files:
            request = make(files)
            sent = _Sent(request.method)
            request.extensions = {**request.extensions, "trace": sent.trace}
            response = await _send(http, request, follow_redirects)
        response = await _read_unless_streamed(response, request, stream=stream)
    if scope.cancelled_caught or response is None:
        raise AttemptTimeout(limit, maybe_billed=sent is not None and sent.maybe_billed)
    if total_timeout is not None and stream and response.is_success:
        response.extensions = {
            **response.extensions,
            _SECONDS_LEFT: (max(total_timeout - (anyio.current_time() - started), 0.0), total_timeout),
        }
    return response


async def _send(http: httpx2.AsyncClient, request: httpx2.Request, follow_redirects: bool | None) -> httpx2.Response:
    """The request sent (files are closed once the body is out); the answer's headers in."""
    if follow_redirects is None:
        return await http.send(request, stream=True)
    return await http.send(request, stream=True, follow_redirects=follow_redirects)


async def _read_unless_streamed(response: httpx2.Response, request: httpx2.Request, *, stream: bool) -> httpx2.Response:
    """An error answer read (capped) into a fresh response; a success read too unless ``stream``."""
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
