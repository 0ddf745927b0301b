"""The upstream image API over httpx2: one method per endpoint, and what each answer means.

`ImagesAPI` speaks the OpenAI images API (generations as JSON, edits as multipart) for one
provider (`providers.Provider`: its auth, query-string parameters, Azure URLs, 302.ai's async
mode) and turns every failure into an `errors.UpstreamError` subclass whose message never
holds the key. `upstream_requests` builds the requests; they go out through
`retry.send_with_retries`; failures are classed by `upstream_errors`; `sse` sorts a streamed
answer's events and this module acts on them; `upstream_answers` says what a read answer means
(images, a pending job, an error). `upstream_download` fetches result URLs.

The HTTP client is shared and owned by the server; this module only borrows it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import anyio
import httpx2
from pydantic import SecretStr

from mcp_images.catalog.providers import AsyncSpec, Provider
from mcp_images.concurrency import BodySlot
from mcp_images.errors import ConfigError, ConnectionError_, TimeoutError_, UpstreamError
from mcp_images.inputs.netguard import HostResolver, system_resolver
from mcp_images.units import format_bytes
from mcp_images.upstream.answers import (
    ImagesResponse,
    answer_error,
    images_from,
    parse_answer,
    poll_result,
    task_id_from,
)
from mcp_images.upstream.downloads import DEFAULT_DOWNLOAD_MAX_BYTES, download_result
from mcp_images.upstream.errors import (
    parse_body,
    request_id_from,
    scrub,
    shown_url,
    stream_error,
    transport_error,
)
from mcp_images.upstream.requests import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    RequestBuilder,
    UploadFile,
    timeouts,
)
from mcp_images.upstream.retry import (
    MAX_RETRIES,
    RequestFactory,
    Sleep,
    send_with_retries,
    should_retry,
    within_attempt,
)
from mcp_images.upstream.sse import OnPartial, PartialImage, is_event_stream, read_image_stream

__all__ = [
    "ImagesAPI",
    "OnPartial",
    "OnUnavailable",
    "PartialImage",
]

logger = logging.getLogger(__name__)

# An answer's body is refused past this many bytes per image asked for: a 3840x2160 PNG in
# base64 is ~35 MB, so this leaves room, while a hostile or broken answer cannot fill memory.
MAX_ANSWER_BYTES = 96 * 1024 * 1024
MAX_IMAGES_PER_CALL = 10  # a polled job's answer: the size of the job is not known here
# How much one read of an answer's body may take off the socket. httpcore reads 64 KiB at a
# time, each read a timeout scope and an event-loop turn: 45 of them for a 1024x1024 photo's
# 2.9 MB answer. At 1 MiB a read takes what the event loop has buffered (up to 256 KiB): 12
# reads, ~2-3 ms less CPU per such answer (measured, benchmarks/README.md).
BODY_READ_BYTES = 1024 * 1024


OnUnavailable = Callable[[UpstreamError], Awaitable[None]]


# --- the client ----------------------------------------------------------------------------


class ImagesAPI:
    """The images endpoints of one provider, through a shared httpx2 client."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        provider: Provider,
        base_url: str | None,
        api_key: str | SecretStr | None,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_retries: int = MAX_RETRIES,
        sleep: Sleep = anyio.sleep,
        total_timeout: float | None = None,
    ) -> None:
        """``read_timeout``: longest wait for the next byte; ``total_timeout`` (default: the
        same, which is MCP_IMAGES_TIMEOUT): longest one attempt may take, connect to last byte."""
        self._http = http
        self.provider = provider
        self._base_url = base_url or provider.base_url
        self.allowed_hosts: tuple[str, ...] = ()  # MCP_IMAGES_ALLOWED_HOSTS: result URLs fetched from these too
        self.resolver: HostResolver = system_resolver  # how a result URL's host is resolved for its check
        self._key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        # How messages and logs name the upstream: no credentials, no query, never the key.
        self._shown_base = scrub(shown_url(self._base_url), self._key) if self._base_url else "(no base URL)"
        self._read_timeout = read_timeout
        self._total_timeout = read_timeout if total_timeout is None else total_timeout
        self._timeout = timeouts(read=read_timeout)
        self._max_retries = max_retries
        self._sleep = sleep

    # -- public endpoints -----------------------------------------------------------------

    async def generate(
        self, body: dict[str, Any], *, on_partial: OnPartial | None = None, body_slot: BodySlot | None = None
    ) -> ImagesResponse:
        """``POST {base}/images/generations`` with a JSON body; streams when ``body["stream"]``.

        ``body_slot`` is taken before a JSON answer's body is read (see `BodySlot`); the caller
        releases it.

        Raises:
            ConfigError: no key or no base URL is set.
            UpstreamError: any subclass, as the upstream answered (or did not).
        """
        build = self._requests()
        json_body, query = build.prepare(body, edit=False)
        url, params = build.endpoint("generations", json_body.get("model"))
        stream = bool(json_body.get("stream"))
        make = build.post_json(url, json_body, params | query, stream=stream)
        return await self._call(
            make, stream=stream, expect=_count(json_body), on_partial=on_partial, body_slot=body_slot
        )

    async def edit(
        self,
        fields: dict[str, Any],
        images: Sequence[UploadFile],
        files: Mapping[str, UploadFile] | None = None,
        *,
        on_partial: OnPartial | None = None,
        body_slot: BodySlot | None = None,
    ) -> ImagesResponse:
        """``POST {base}/images/edits`` as multipart: ``image`` (one) or ``image[]`` (several),
        then ``files`` by field name (``mask``, ``markup``).

        Files given by path are streamed from disk; a retry reads them again from the start.

        Raises:
            ConfigError: no key or no base URL is set.
            InputError: an input file cannot be opened.
            UpstreamError: any subclass, as the upstream answered (or did not).
        """
        build = self._requests()
        form, query = build.prepare(fields, edit=True)
        url, params = build.endpoint("edits", form.get("model"))
        stream = bool(form.get("stream"))
        make = build.post_multipart(url, params | query, form, images, files or {}, stream=stream)
        return await self._call(make, stream=stream, expect=_count(form), on_partial=on_partial, body_slot=body_slot)

    async def submit_async(
        self,
        kind: Literal["generations", "edits"],
        body_or_fields: dict[str, Any],
        images: Sequence[UploadFile] = (),
        files: Mapping[str, UploadFile] | None = None,
    ) -> str:
        """Start a background job (302.ai's ``?async=true``); returns the provider's task id.

        Raises:
            ConfigError: the provider has no async mode, or no key or base URL is set.
            UpstreamError: the upstream refused the job or answered without a task id.
        """
        spec = self._async_spec()
        build = self._requests()
        body, query = build.prepare(body_or_fields, edit=kind == "edits")
        body.pop("stream", None)  # a background job has nobody to stream to
        url, params = build.endpoint(kind, body.get("model"))
        params = params | query | spec.submit_query
        if kind == "edits":
            make = build.post_multipart(url, params, body, images, files or {}, stream=False)
        else:
            make = build.post_json(url, body, params, stream=False)

        return task_id_from(spec, await self._json_call(make), secret=self._key)

    async def poll_async(
        self,
        provider_task_id: str,
        *,
        body_slot: BodySlot | None = None,
        on_unavailable: OnUnavailable | None = None,
    ) -> ImagesResponse | None:
        """The result of a background job, or None while it runs.

        A poll that gets no usable answer from the poll endpoint itself (unreachable, cut off,
        timed out, or a status the retry policy would retry: 5xx, 429...), after the retries,
        says nothing about the job, which may still finish at the provider. With
        ``on_unavailable`` such a failure is handed to it and the poll counts as pending (it
        may raise to give up); without it, the failure is raised.

        Raises:
            ConfigError: the provider has no async mode, or no key or base URL is set.
            UpstreamError: the job failed (mapped like a direct answer) or the answer is garbled.
        """
        spec = self._async_spec()
        build = self._requests()
        make = build.get_json(build.poll_url(spec), {spec.poll_query_param: provider_task_id})
        try:
            response = await self._send(make, stream=True)
        except (ConnectionError_, TimeoutError_) as exc:
            return await _unavailable(exc, on_unavailable)
        try:
            if response.status_code in spec.pending_statuses:
                return None
            if not response.is_success:
                error = self._error(response)
                if should_retry(response.status_code, response.headers, parse_body(response.content)):
                    return await _unavailable(error, on_unavailable)
                raise error
            if body_slot is not None:
                await body_slot.acquire()
            try:
                content = await self._read_or_raise(response, images=MAX_IMAGES_PER_CALL)
            except (ConnectionError_, TimeoutError_) as exc:
                return await _unavailable(exc, on_unavailable)
            return poll_result(spec, parse_answer(content), response.headers, provider=self.provider, secret=self._key)
        finally:
            await response.aclose()

    async def download(self, url: str, *, max_bytes: int = DEFAULT_DOWNLOAD_MAX_BYTES) -> bytes:
        """The bytes behind a result URL: bounded, with a timeout, following up to 3 redirects.

        No key is sent: the URL is on the provider's file host, not its API.

        Raises:
            UpstreamError: the URL cannot be fetched, redirects too often or is too large.
        """
        return await download_result(
            self._http,
            url,
            max_bytes=max_bytes,
            max_retries=self._max_retries,
            sleep=self._sleep,
            secret=self._key,
            trusted_hosts=self._trusted_hosts(),
            resolver=self.resolver,
        )

    def _trusted_hosts(self) -> list[str]:
        """The upstream's own host (with its port) and the hosts the user allows."""
        hosts = list(self.allowed_hosts)
        if self._base_url:
            base = httpx2.URL(self._base_url)
            host = base.raw_host.decode("ascii").lower()
            hosts += [host, f"{host}:{base.port or (443 if base.scheme == 'https' else 80)}"]
        return hosts

    # -- request building (see `upstream_requests`) ---------------------------------------

    def _requests(self) -> RequestBuilder:
        # Made per call from the current attributes: `provider` is a public, replaceable field.
        return RequestBuilder(self._http, self.provider, self._base_url, self._key, self._timeout)

    def _async_spec(self) -> AsyncSpec:
        if self.provider.async_mode is None:
            raise ConfigError(f"provider {self.provider.name!r} has no async mode")
        return self.provider.async_mode

    # -- sending, retrying, reading -------------------------------------------------------

    async def _send(self, make: RequestFactory, *, stream: bool) -> httpx2.Response:
        """Send with the retry policy and log each retry. Returns the last answer, error or not.

        An error answer comes back already read (at most `retry.MAX_ERROR_BODY_BYTES`); a
        success is read too unless ``stream``, in which case the caller must close it.

        Raises:
            TimeoutError_, ConnectionError_: after the retries, when no answer came.
        """

        def log_retry(reason: str, attempt: int, delay: float) -> None:
            logger.warning(
                "%s: %s; retry %d of %d in %.2f s", self._shown_base, reason, attempt, self._max_retries, delay
            )

        try:
            return await send_with_retries(
                self._http,
                make,
                stream=stream,
                max_retries=self._max_retries,
                sleep=self._sleep,
                on_retry=log_retry,
                total_timeout=self._total_timeout,
            )
        except httpx2.TransportError as exc:
            raise self._transport_error(exc) from exc

    async def _call(
        self,
        make: RequestFactory,
        *,
        stream: bool,
        expect: int,
        on_partial: OnPartial | None,
        body_slot: BodySlot | None = None,
    ) -> ImagesResponse:
        # Always opened as a stream: the headers say which kind of answer it is, and a JSON
        # body (megabytes of base64) is read only once a body slot is free.
        response = await self._send(make, stream=True)
        try:
            if not response.is_success:
                raise self._error(response)
            if stream and is_event_stream(response):
                return await self._read_stream(response, expect=expect, on_partial=on_partial)
            if body_slot is not None:
                await body_slot.acquire()
            content = await self._read_or_raise(response, images=expect)
            return images_from(parse_answer(content), response.headers, provider=self.provider, secret=self._key)
        finally:
            await response.aclose()

    async def _read_stream(
        self, response: httpx2.Response, *, expect: int, on_partial: OnPartial | None
    ) -> ImagesResponse:
        """Raises: StreamError, ModerationError, TimeoutError_ (see `sse.read_image_stream`)."""
        try:
            with within_attempt(response):
                body = await read_image_stream(
                    response,
                    expect=expect,
                    on_partial=on_partial,
                    error_for=lambda payload: stream_error(self.map_error(None, payload, response.headers)),
                )
        except httpx2.TimeoutException as exc:  # the read timeout, or the attempt's total time
            raise self._transport_error(exc) from exc
        return images_from(body, response.headers, provider=self.provider, secret=self._key)

    async def _json_call(self, make: RequestFactory) -> Any:
        response = await self._send(make, stream=False)
        if not response.is_success:
            raise self._error(response)
        return parse_body(response.content)

    async def _read_or_raise(self, response: httpx2.Response, *, images: int = 1) -> bytearray:
        """Read the body of an answer whose headers are in, at most `MAX_ANSWER_BYTES` per image.

        The body goes into one buffer, sized from Content-Length when the body is not
        compressed: each chunk is copied once, and no join doubles the peak at the end.
        The cap counts decoded bytes, so a small compressed answer cannot inflate without end.
        The read stays within the time its attempt has left (`retry.within_attempt`).

        Raises:
            UpstreamError: the answer is larger than the cap.
            TimeoutError_: the body stopped coming for longer than the read timeout, or did not
                end within the attempt's total time.
            ConnectionError_: the connection broke part-way: the upstream did answer, so the
                image may be made and billed, and the message says so (no retry here).
        """
        limit = max(images, 1) * MAX_ANSWER_BYTES
        _read_big_chunks()
        body = bytearray(_expected_length(response, limit))
        # An unencoded body still to come is read raw: httpx2's decoder and chunker would only
        # pass it on (~1 ms of CPU for a 2.9 MB answer). One already read (a mock transport's)
        # comes from aiter_bytes, which serves the content it holds.
        raw = _unencoded(response) and not response.is_stream_consumed
        chunks = response.aiter_raw() if raw else response.aiter_bytes()
        size = 0
        try:
            with within_attempt(response):
                async for chunk in chunks:
                    end = size + len(chunk)
                    if end > limit:
                        raise UpstreamError(
                            f"the upstream's answer is larger than {format_bytes(limit)}; refused unread",
                            request_id=request_id_from(response.headers),
                        )
                    body[size:end] = chunk  # in place while it fits the declared length, else it grows
                    size = end
            del body[size:]  # a shorter body than declared: what came
            return body
        except httpx2.TimeoutException as exc:
            raise self._transport_error(exc) from exc
        except httpx2.TransportError as exc:
            detail = scrub(str(exc), self._key) or type(exc).__name__
            raise ConnectionError_(
                f"the answer from {self._shown_base} was cut off while it was read ({detail}); "
                "the image may already be made and billed: try again",
                request_id=request_id_from(response.headers),
            ) from exc

    # -- answers into results and errors (see `upstream_answers`) ---------------------------

    def map_error(self, status: int | None, payload: Any, headers: Mapping[str, str]) -> UpstreamError:
        """`upstream_errors.map_error` with this provider's hints and key."""
        return answer_error(status, payload, headers, provider=self.provider, secret=self._key)

    def _error(self, response: httpx2.Response) -> UpstreamError:
        return self.map_error(response.status_code, parse_body(response.content), response.headers)

    def _transport_error(self, exc: httpx2.TransportError) -> UpstreamError:
        return transport_error(
            exc,
            where=str(self._base_url),
            connect_seconds=DEFAULT_CONNECT_TIMEOUT,
            read_seconds=self._read_timeout,
            hint=" (raise MCP_IMAGES_TIMEOUT, or ask for a lower quality or a smaller size)",
            secret=self._key,
        )


async def _unavailable(error: UpstreamError, on_unavailable: OnUnavailable | None) -> None:
    """Hand a failed poll to ``on_unavailable`` (the poll then counts as pending), else raise it."""
    if on_unavailable is None:
        raise error
    await on_unavailable(error)


def _read_big_chunks() -> None:
    """Let httpcore's HTTP/1.1 connections read up to `BODY_READ_BYTES` at a time (its
    ``READ_NUM_BYTES``, a class setting: a read returns what has arrived, never waits for more)."""
    import httpcore2

    connection = getattr(httpcore2, "AsyncHTTP11Connection", None)
    if connection is not None and getattr(connection, "READ_NUM_BYTES", BODY_READ_BYTES) < BODY_READ_BYTES:
        connection.READ_NUM_BYTES = BODY_READ_BYTES


def _unencoded(response: httpx2.Response) -> bool:
    """Whether the body comes as it is meant (no Content-Encoding but identity)."""
    return response.headers.get("content-encoding", "identity").strip().lower() in ("", "identity")


def _expected_length(response: httpx2.Response, limit: int) -> int:
    """The body's length from Content-Length when it is what the read yields (no content
    encoding) and within ``limit``; else 0 (the buffer grows as the body comes)."""
    if not _unencoded(response):
        return 0
    try:
        declared = int(response.headers.get("content-length", ""))
    except ValueError:
        return 0
    return declared if 0 <= declared <= limit else 0


def _count(body: Mapping[str, Any]) -> int:
    """How many images a call asks for (completed events to wait for when streaming)."""
    try:
        return max(1, int(body.get("n") or 1))
    except (TypeError, ValueError):
        return 1
