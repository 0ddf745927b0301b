"""The upstream image API over httpx2: one method per endpoint, and what each answer means.

`ImagesAPI` speaks the OpenAI images API (generations as JSON, edits as multipart), applies a
provider's quirks from `providers.Provider` (auth header, query-string parameters, Azure URLs,
302.ai's async mode) and turns every failure into an `errors.UpstreamError` subclass whose
message never holds the key. Requests go out through `retry.send_with_retries`; failures are
classed by `upstream_errors`; `sse` sorts a streamed answer's events and this module acts on them.

The HTTP client is shared and owned by the server; this module only borrows it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import anyio
import httpx2
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from mcp_images.errors import ConfigError, InputError, RequestError, UpstreamError
from mcp_images.providers import AsyncSpec, Provider
from mcp_images.retry import MAX_RETRIES, RequestFactory, Sleep, send_with_retries
from mcp_images.sse import OnPartial, PartialImage, is_event_stream, read_image_stream
from mcp_images.upstream_errors import (
    map_error,
    parse_body,
    request_id_from,
    scrub,
    snippet,
    stream_error,
    transport_error,
)

__all__ = [
    "ImageDatum",
    "ImagesAPI",
    "ImagesResponse",
    "OnPartial",
    "PartialImage",
    "UploadFile",
]

logger = logging.getLogger(__name__)

# Timeouts, seconds. A high-quality image takes 60-120 s, so the read timeout is minutes.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 600.0
DEFAULT_WRITE_TIMEOUT = 60.0  # per socket write, not for the whole upload
DEFAULT_POOL_TIMEOUT = 10.0
DOWNLOAD_READ_TIMEOUT = 120.0

# Sizes, bytes.
DEFAULT_DOWNLOAD_MAX_BYTES = 64 * 1024 * 1024
MAX_DOWNLOAD_REDIRECTS = 3


@dataclass
class UploadFile:
    """One file for an edit: on disk (streamed, never read whole) or already in memory."""

    filename: str
    mime_type: str
    path: Path | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.data is None):
            raise ValueError("UploadFile needs exactly one of path or data")


class ImageDatum(BaseModel):
    """One image of a response: base64 bytes or a URL to download at once."""

    model_config = ConfigDict(extra="allow")

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    """The images API's answer. Unknown fields (302.ai's chat-style usage) are kept."""

    model_config = ConfigDict(extra="allow")

    created: int | None = None
    data: list[ImageDatum] = []
    usage: dict[str, Any] | None = None
    background: str | None = None
    output_format: str | None = None
    quality: str | None = None
    size: str | None = None
    request_id: str | None = None


def _form_text(value: Any) -> str:
    """A parameter as the text a form field or query string carries."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


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
    ) -> None:
        self._http = http
        self.provider = provider
        self._base_url = base_url or provider.base_url
        self._key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        self._read_timeout = read_timeout
        self._timeout = httpx2.Timeout(
            connect=DEFAULT_CONNECT_TIMEOUT,
            read=read_timeout,
            write=DEFAULT_WRITE_TIMEOUT,
            pool=DEFAULT_POOL_TIMEOUT,
        )
        self._max_retries = max_retries
        self._sleep = sleep

    # -- public endpoints -----------------------------------------------------------------

    async def generate(self, body: dict[str, Any], *, on_partial: OnPartial | None = None) -> ImagesResponse:
        """``POST {base}/images/generations`` with a JSON body; streams when ``body["stream"]``.

        Raises:
            ConfigError: no key or no base URL is set.
            UpstreamError: any subclass, as the upstream answered (or did not).
        """
        json_body, query = self._prepare(body, edit=False)
        url, params = self._endpoint("generations", json_body.get("model"))
        stream = bool(json_body.get("stream"))
        make = self._json_factory(url, json_body, params | query, stream=stream)
        return await self._call(make, stream=stream, expect=_count(json_body), on_partial=on_partial)

    async def edit(
        self,
        fields: dict[str, Any],
        images: Sequence[UploadFile],
        mask: UploadFile | None = None,
        *,
        on_partial: OnPartial | None = None,
    ) -> ImagesResponse:
        """``POST {base}/images/edits`` as multipart: ``image`` (one) or ``image[]`` (several).

        Files given by path are streamed from disk; a retry reads them again from the start.

        Raises:
            ConfigError: no key or no base URL is set.
            InputError: an input file cannot be opened.
            UpstreamError: any subclass, as the upstream answered (or did not).
        """
        form, query = self._prepare(fields, edit=True)
        url, params = self._endpoint("edits", form.get("model"))
        stream = bool(form.get("stream"))
        make = self._multipart_factory(url, params | query, form, images, mask, stream=stream)
        return await self._call(make, stream=stream, expect=_count(form), on_partial=on_partial)

    async def submit_async(
        self,
        kind: Literal["generations", "edits"],
        body_or_fields: dict[str, Any],
        images: Sequence[UploadFile] = (),
        mask: UploadFile | None = None,
    ) -> str:
        """Start a background job (302.ai's ``?async=true``); returns the provider's task id.

        Raises:
            ConfigError: the provider has no async mode, or no key or base URL is set.
            UpstreamError: the upstream refused the job or answered without a task id.
        """
        spec = self._async_spec()
        body, query = self._prepare(body_or_fields, edit=kind == "edits")
        body.pop("stream", None)  # a background job has nobody to stream to
        url, params = self._endpoint(kind, body.get("model"))
        params = params | query | spec.submit_query
        if kind == "edits":
            make = self._multipart_factory(url, params, body, images, mask, stream=False)
        else:
            make = self._json_factory(url, body, params, stream=False)

        answer = await self._json_call(make)
        if isinstance(answer, dict):
            for name in spec.id_fields:
                value = answer.get(name)
                if isinstance(value, str | int) and str(value):
                    return str(value)
        looked = ", ".join(spec.id_fields)
        raise UpstreamError(
            f"the upstream accepted the async request but sent no task id (looked for {looked}): "
            f"{snippet(scrub(json.dumps(answer), self._key))}"
        )

    async def poll_async(self, provider_task_id: str) -> ImagesResponse | None:
        """The result of a background job, or None while it runs.

        Raises:
            ConfigError: the provider has no async mode, or no key or base URL is set.
            UpstreamError: the job failed (mapped like a direct answer) or the answer is garbled.
        """
        spec = self._async_spec()
        url = self._poll_url(spec)
        params = {spec.poll_query_param: provider_task_id}
        headers = self._headers(stream=False)

        def make(_: ExitStack) -> httpx2.Request:
            return self._http.build_request("GET", url, params=params, headers=headers, timeout=self._timeout)

        response = await self._send(make, stream=False)
        if response.status_code in spec.pending_statuses:
            return None
        if not response.is_success:
            raise self._error(response)
        return self._poll_result(spec, parse_body(response.content), response.headers)

    async def download(self, url: str, *, max_bytes: int = DEFAULT_DOWNLOAD_MAX_BYTES) -> bytes:
        """The bytes behind a result URL: bounded, with a timeout, following up to 3 redirects.

        No key is sent: the URL is on the provider's file host, not its API.

        Raises:
            UpstreamError: the URL cannot be fetched, redirects too often or is too large.
        """
        timeout = httpx2.Timeout(
            connect=DEFAULT_CONNECT_TIMEOUT, read=DOWNLOAD_READ_TIMEOUT,
            write=DEFAULT_WRITE_TIMEOUT, pool=DEFAULT_POOL_TIMEOUT,
        )  # fmt: skip
        current = httpx2.URL(url)
        for _ in range(MAX_DOWNLOAD_REDIRECTS + 1):
            if current.scheme not in ("http", "https"):
                raise UpstreamError(f"the result URL must be http or https; got {current.scheme!r}")
            target = current

            def make(_: ExitStack, target: httpx2.URL = target) -> httpx2.Request:
                return self._http.build_request("GET", target, timeout=timeout)

            response = await self._send(make, stream=True, follow_redirects=False, api=False)
            try:
                if response.has_redirect_location:
                    current = target.join(response.headers["location"])
                    continue
                return await self._read_download(response, target, max_bytes)
            finally:
                await response.aclose()
        raise UpstreamError(f"the result URL redirected more than {MAX_DOWNLOAD_REDIRECTS} times: {url}")

    # -- request building -----------------------------------------------------------------

    def _base(self) -> str:
        if not self._base_url:
            raise ConfigError(
                f"provider {self.provider.name!r} has no default base URL: set MCP_IMAGES_BASE_URL "
                "to your service's base URL (including /v1 where it has one)"
            )
        return self._base_url.rstrip("/")

    def _endpoint(self, kind: str, model: Any) -> tuple[str, dict[str, str]]:
        """The URL of ``images/{kind}`` and the query it always needs (Azure's api-version)."""
        base = self._base()
        if self.provider.url_style == "openai":
            return f"{base}/images/{kind}", {}
        if not model:
            raise RequestError("Azure needs a model: give the deployment name as the model")
        url = f"{base}/openai/deployments/{quote(str(model), safe='')}/images/{kind}"
        version = self.provider.api_version
        return url, ({"api-version": version} if version else {})

    def _poll_url(self, spec: AsyncSpec) -> str:
        if spec.poll_path.startswith(("http://", "https://")):
            return spec.poll_path
        origin = httpx2.URL(self._base())
        return str(origin.copy_with(path=spec.poll_path, query=None))

    def _headers(self, *, stream: bool) -> dict[str, str]:
        if not self._key:
            raise ConfigError(
                "No API key is set: set MCP_IMAGES_API_KEY (or OPENAI_API_KEY) to the key "
                f"for provider {self.provider.name!r}"
            )
        scheme = self.provider.auth_scheme
        return {
            self.provider.auth_header: f"{scheme} {self._key}" if scheme else self._key,
            "Accept": "text/event-stream" if stream else "application/json",
        }

    def _prepare(self, body: dict[str, Any], *, edit: bool) -> tuple[dict[str, Any], dict[str, str]]:
        """(body without Nones and query-string keys, the query-string parameters)."""
        out = {k: v for k, v in body.items() if v is not None}
        wanted = self.provider.response_format
        if wanted and "response_format" not in out:
            out["response_format"] = wanted
        if edit and not self.provider.moderation_on_edits and out.pop("moderation", None):
            logger.info("dropped moderation: %s's edits endpoint does not take it", self.provider.name)
        query = {k: _form_text(out.pop(k)) for k in self.provider.query_params if k in out}
        return out, query

    def _json_factory(self, url: str, body: dict[str, Any], params: dict[str, str], *, stream: bool) -> RequestFactory:
        headers = self._headers(stream=stream)

        def make(_: ExitStack) -> httpx2.Request:
            return self._http.build_request(
                "POST", url, json=body, params=params, headers=headers, timeout=self._timeout
            )

        return make

    def _multipart_factory(
        self,
        url: str,
        params: dict[str, str],
        form: dict[str, Any],
        images: Sequence[UploadFile],
        mask: UploadFile | None,
        *,
        stream: bool,
    ) -> RequestFactory:
        if not images:
            raise RequestError("an edit needs at least one input image")
        data = {k: _form_text(v) for k, v in form.items()}
        name = "image" if len(images) == 1 else "image[]"
        headers = self._headers(stream=stream)

        def make(files: ExitStack) -> httpx2.Request:
            # Opened anew per attempt, so a retry sends the files from their start.
            parts: list[tuple[str, Any]] = [(name, _open(files, f)) for f in images]
            if mask is not None:
                parts.append(("mask", _open(files, mask)))
            return self._http.build_request(
                "POST", url, data=data, files=parts, params=params, headers=headers,
                timeout=self._timeout,
            )  # fmt: skip

        return make

    def _async_spec(self) -> AsyncSpec:
        if self.provider.async_mode is None:
            raise ConfigError(f"provider {self.provider.name!r} has no async mode")
        return self.provider.async_mode

    # -- sending, retrying, reading -------------------------------------------------------

    async def _send(
        self,
        make: RequestFactory,
        *,
        stream: bool,
        follow_redirects: bool | None = None,
        api: bool = True,
    ) -> httpx2.Response:
        """Send with the retry policy and log each retry. Returns the last answer, error or not.

        An error answer comes back already read (at most `retry.MAX_ERROR_BODY_BYTES`); a
        success is read too unless ``stream``, in which case the caller must close it.

        Raises:
            TimeoutError_, ConnectionError_: after the retries, when no answer came.
        """
        where = self._base_url if api else "image download"

        def log_retry(reason: str, attempt: int, delay: float) -> None:
            logger.warning("%s: %s; retry %d of %d in %.2f s", where, reason, attempt, self._max_retries, delay)

        try:
            return await send_with_retries(
                self._http,
                make,
                stream=stream,
                follow_redirects=follow_redirects,
                max_retries=self._max_retries,
                sleep=self._sleep,
                on_retry=log_retry,
            )
        except httpx2.TransportError as exc:
            raise self._transport_error(exc, api=api) from exc

    async def _call(
        self, make: RequestFactory, *, stream: bool, expect: int, on_partial: OnPartial | None
    ) -> ImagesResponse:
        response = await self._send(make, stream=stream)
        try:
            if not response.is_success:
                raise self._error(response)
            if stream and is_event_stream(response):
                return await self._read_stream(response, expect=expect, on_partial=on_partial)
            if stream:  # the provider ignored stream=true and answered with plain JSON
                await self._read_or_raise(response)
            return self._images(parse_body(response.content), response.headers)
        finally:
            await response.aclose()

    async def _read_stream(
        self, response: httpx2.Response, *, expect: int, on_partial: OnPartial | None
    ) -> ImagesResponse:
        """Raises: StreamError, ModerationError, TimeoutError_ (see `sse.read_image_stream`)."""
        try:
            body = await read_image_stream(
                response,
                expect=expect,
                on_partial=on_partial,
                error_for=lambda payload: stream_error(self.map_error(None, payload, response.headers)),
            )
        except httpx2.TimeoutException as exc:
            raise self._transport_error(exc, api=True) from exc
        return self._images(body, response.headers)

    async def _json_call(self, make: RequestFactory) -> Any:
        response = await self._send(make, stream=False)
        if not response.is_success:
            raise self._error(response)
        return parse_body(response.content)

    async def _read_or_raise(self, response: httpx2.Response) -> None:
        try:
            await response.aread()
        except httpx2.TransportError as exc:
            raise self._transport_error(exc, api=True) from exc

    async def _read_download(self, response: httpx2.Response, url: httpx2.URL, max_bytes: int) -> bytes:
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
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise too_big
                chunks.append(chunk)
        except httpx2.TransportError as exc:
            raise self._transport_error(exc, api=False) from exc
        return b"".join(chunks)

    # -- turning answers into results and errors ------------------------------------------

    def _images(self, payload: Any, headers: Mapping[str, str]) -> ImagesResponse:
        """An images response from a parsed body; an ``error`` body raises instead."""
        if isinstance(payload, dict) and "error" in payload and not payload.get("data"):
            raise self.map_error(None, payload, headers)
        try:
            result = ImagesResponse.model_validate(payload)
        except ValidationError as exc:
            text = payload if isinstance(payload, str) else json.dumps(payload)
            raise UpstreamError(
                "the upstream's answer is not an images response: " + snippet(scrub(text, self._key)),
                request_id=request_id_from(headers),
            ) from exc
        if result.request_id is None:
            result.request_id = request_id_from(headers)
        return result

    def _poll_result(self, spec: AsyncSpec, body: Any, headers: Mapping[str, str]) -> ImagesResponse | None:
        """Reads ``{"status_code", "data", "err"}``: None while pending, else result or error."""
        if isinstance(body, dict) and isinstance(body.get("data"), list) and "err" not in body:
            return self._images(body, headers)  # a plain images response
        if not isinstance(body, dict):
            return self._images(body, headers)  # raises with a snippet of what came
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
            raise self.map_error(status if status and status >= 400 else None, payload, headers)
        if not data:
            return None
        return self._images(data, headers)

    def map_error(self, status: int | None, payload: Any, headers: Mapping[str, str]) -> UpstreamError:
        """`upstream_errors.map_error` with this provider's hints and key."""
        return map_error(
            status,
            payload,
            request_id=request_id_from(headers),
            provider=self.provider,
            secret=self._key,
        )

    def _error(self, response: httpx2.Response) -> UpstreamError:
        return self.map_error(response.status_code, parse_body(response.content), response.headers)

    def _transport_error(self, exc: httpx2.TransportError, *, api: bool) -> UpstreamError:
        hint = " (raise MCP_IMAGES_TIMEOUT, or ask for a lower quality or a smaller size)" if api else ""
        return transport_error(
            exc,
            where=str(self._base_url) if api else "the image host",
            connect_seconds=DEFAULT_CONNECT_TIMEOUT,
            read_seconds=self._read_timeout if api else DOWNLOAD_READ_TIMEOUT,
            hint=hint,
            secret=self._key,
        )


def _open(files: ExitStack, upload: UploadFile) -> tuple[str, Any, str]:
    """A multipart file part; a path is opened (and closed by ``files``), never read whole.

    Raises:
        InputError: the file cannot be opened.
    """
    if upload.path is None:
        return upload.filename, upload.data, upload.mime_type
    try:
        handle = files.enter_context(upload.path.open("rb"))
    except OSError as exc:
        raise InputError(f"cannot read {upload.filename}: {exc.strerror}") from exc
    return upload.filename, handle, upload.mime_type


def _count(body: Mapping[str, Any]) -> int:
    """How many images a call asks for (completed events to wait for when streaming)."""
    try:
        return max(1, int(body.get("n") or 1))
    except (TypeError, ValueError):
        return 1
