"""Fetching a result image from the URL the upstream answered with.

Bounded in size, with its own timeouts (no byte for DOWNLOAD_READ_TIMEOUT; each attempt,
connect to last byte, within DOWNLOAD_TOTAL_TIMEOUT, so a host dripping bytes cannot hold a
job forever), following a few redirects by hand (each hop must
stay http or https), retried like an API call. No key is sent: the URL is on the provider's
file host, not its API. This is not `netguard`: the URL comes from the configured upstream,
not from the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import ExitStack

import httpx2

from mcp_images.errors import InputError, UpstreamError
from mcp_images.inputs.netguard import HostResolver, check_url, system_resolver
from mcp_images.upstream.errors import request_id_from, scrub, shown_url, transport_error
from mcp_images.upstream.requests import DEFAULT_CONNECT_TIMEOUT, timeouts
from mcp_images.upstream.retry import RequestFactory, Sleep, send_with_retries, within_attempt

__all__ = ["DEFAULT_DOWNLOAD_MAX_BYTES", "download_result"]

logger = logging.getLogger(__name__)

DOWNLOAD_READ_TIMEOUT = 120.0  # seconds without a byte
DOWNLOAD_TOTAL_TIMEOUT = 300.0  # seconds per attempt: 64 MB at ~220 kB/s still arrives
DEFAULT_DOWNLOAD_MAX_BYTES = 64 * 1024 * 1024
MAX_DOWNLOAD_REDIRECTS = 3
_WHERE = "the image host"


async def download_result(
    http: httpx2.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    max_retries: int,
    sleep: Sleep,
    secret: str | None,
    trusted_hosts: Iterable[str] = (),
    resolver: HostResolver = system_resolver,
    total_timeout: float = DOWNLOAD_TOTAL_TIMEOUT,
) -> bytes:
    """The bytes behind ``url``; ``secret`` is scrubbed from any failure's message.

    ``total_timeout`` bounds each attempt of each hop, from connecting to the last byte; a
    download is a GET, so one that runs out before the answer's headers is retried like any
    timeout (a body cut short is not, as with any broken body).

    A hop on one of ``trusted_hosts`` (the upstream's own host, and the hosts the user allows)
    is fetched as it is. Any other host must pass the same guard as an image URL an agent gives
    (public https only): a hostile or broken upstream cannot point this server at its own
    network.

    Raises:
        UpstreamError: the URL cannot be fetched, is refused, redirects too often or is too large.
    """
    timeout = timeouts(read=DOWNLOAD_READ_TIMEOUT)
    current = _parse(url, secret)
    for _ in range(MAX_DOWNLOAD_REDIRECTS + 1):
        if current.scheme not in ("http", "https") or not current.host:
            raise UpstreamError(
                f"the result URL must be an http or https URL with a host; got {scrub(shown_url(str(current)), secret)!r}"
            )
        try:
            await check_url(current, allowed_hosts=trusted_hosts, resolver=resolver)
        except InputError as exc:
            raise UpstreamError(f"the upstream's result URL was refused: {scrub(str(exc), secret)}") from exc
        target = current

        def make(_: ExitStack, target: httpx2.URL = target) -> httpx2.Request:
            return http.build_request("GET", target, timeout=timeout)

        response = await _send(http, make, max_retries=max_retries, sleep=sleep, secret=secret, total=total_timeout)
        try:
            if response.has_redirect_location:
                current = _parse(response.headers["location"], secret, base=target)
                continue
            return await _read_bounded(response, target, max_bytes, secret)
        finally:
            await response.aclose()
    raise UpstreamError(
        f"the result URL redirected more than {MAX_DOWNLOAD_REDIRECTS} times: {scrub(shown_url(url), secret)}"
    )


def _parse(url: str, secret: str | None, *, base: httpx2.URL | None = None) -> httpx2.URL:
    """The result URL (or a redirect's target, joined to ``base``) as an httpx2 URL.

    Raises:
        UpstreamError: the upstream sent something that is not a URL.
    """
    try:
        return base.join(url) if base is not None else httpx2.URL(url)
    except httpx2.InvalidURL as exc:
        what = "a redirect to an invalid URL" if base is not None else "an invalid result URL"
        raise UpstreamError(f"the upstream sent {what}: {scrub(url[:100], secret)!r} ({exc})") from exc


async def _send(
    http: httpx2.AsyncClient, make: RequestFactory, *, max_retries: int, sleep: Sleep, secret: str | None, total: float
) -> httpx2.Response:
    """One hop under the retry policy, not following redirects; the caller closes the answer.

    Raises:
        TimeoutError_, ConnectionError_: after the retries, when no answer came.
    """

    def log_retry(reason: str, attempt: int, delay: float) -> None:
        logger.warning("image download: %s; retry %d of %d in %.2f s", reason, attempt, max_retries, delay)

    try:
        return await send_with_retries(
            http,
            make,
            stream=True,
            follow_redirects=False,
            max_retries=max_retries,
            sleep=sleep,
            on_retry=log_retry,
            total_timeout=total,
        )
    except httpx2.TransportError as exc:
        raise _transport_error(exc, secret) from exc


async def _read_bounded(response: httpx2.Response, url: httpx2.URL, max_bytes: int, secret: str | None) -> bytes:
    """The body of a final answer, refused as soon as it passes ``max_bytes``.

    Raises:
        UpstreamError: an error status, a body over ``max_bytes``, or a connection cut mid-body.
    """
    host = url.host
    if not response.is_success:
        raise UpstreamError(
            f"could not download the result image from {host}: HTTP {response.status_code}",
            status_code=response.status_code,
            request_id=request_id_from(response.headers),
        )
    too_big = UpstreamError(f"the result image at {host} is larger than {max_bytes:,} bytes; not downloaded")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    try:
        with within_attempt(response):
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise too_big
                chunks.append(chunk)
    except httpx2.TransportError as exc:  # AttemptTimeout too: the body did not end in time
        raise _transport_error(exc, secret) from exc
    return b"".join(chunks)


def _transport_error(exc: httpx2.TransportError, secret: str | None) -> UpstreamError:
    return transport_error(
        exc,
        where=_WHERE,
        connect_seconds=DEFAULT_CONNECT_TIMEOUT,
        read_seconds=DOWNLOAD_READ_TIMEOUT,
        secret=secret,
        total_setting="the download limit",
    )
