"""Building the upstream's requests: where they go, how they are authorised, what they carry.

`RequestBuilder` applies a provider's quirks (`providers.Provider`): the auth header, which
parameters travel in the query string, Azure's deployment URLs and api-version, 302.ai's poll
URL. Each request comes back as a `retry.RequestFactory`, so that a retry builds it anew (and
reopens the files an edit streams from disk). Nothing here sends anything.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2

from mcp_images.catalog.providers import AsyncSpec, Provider
from mcp_images.errors import ConfigError, InputError, RequestError
from mcp_images.upstream.retry import RequestFactory

__all__ = ["RequestBuilder", "UploadFile", "form_text", "timeouts"]

logger = logging.getLogger(__name__)

# Timeouts, seconds. A high-quality image takes 60-120 s, so the read timeout is minutes.
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 600.0
DEFAULT_WRITE_TIMEOUT = 60.0  # per socket write, not for the whole upload
# Waiting for a free pooled connection is queueing behind our own jobs, not an upstream fault:
# allow as long as an answer itself may take.


def timeouts(read: float) -> httpx2.Timeout:
    """The timeouts of one request: ``read`` seconds to wait for an answer, the rest fixed."""
    return httpx2.Timeout(connect=DEFAULT_CONNECT_TIMEOUT, read=read, write=DEFAULT_WRITE_TIMEOUT, pool=read)


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


def form_text(value: Any) -> str:
    """A parameter as the text a form field or query string carries."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


@dataclass(frozen=True)
class RequestBuilder:
    """The requests of one provider at one base URL, built on the shared httpx2 client."""

    http: httpx2.AsyncClient
    provider: Provider
    base_url: str | None
    key: str | None = field(repr=False)
    timeout: httpx2.Timeout

    def endpoint(self, kind: str, model: Any) -> tuple[str, dict[str, str]]:
        """The URL of ``images/{kind}`` and the query it always needs (Azure's api-version).

        Raises:
            ConfigError: there is no base URL.
            RequestError: Azure without a model (its deployment name).
        """
        base = self._base()
        if self.provider.url_style == "openai":
            return f"{base}/images/{kind}", {}
        if not model:
            raise RequestError("Azure needs a model: give the deployment name as the model")
        url = f"{base}/openai/deployments/{quote(str(model), safe='')}/images/{kind}"
        version = self.provider.api_version
        return url, ({"api-version": version} if version else {})

    def poll_url(self, spec: AsyncSpec) -> str:
        """Where a background job's result is asked for: absolute, or a path on the base's host.

        Raises:
            ConfigError: the path is relative and there is no base URL.
        """
        if spec.poll_path.startswith(("http://", "https://")):
            return spec.poll_path
        origin = httpx2.URL(self._base())
        return str(origin.copy_with(path=spec.poll_path, query=None))

    def headers(self, *, stream: bool) -> dict[str, str]:
        """The auth header in the provider's style, and the answer type to accept.

        Raises:
            ConfigError: no key is set.
        """
        if not self.key:
            raise ConfigError(
                "No API key is set: set MCP_IMAGES_API_KEY (or OPENAI_API_KEY) to the key "
                f"for provider {self.provider.name!r}"
            )
        scheme = self.provider.auth_scheme
        return {
            self.provider.auth_header: f"{scheme} {self.key}" if scheme else self.key,
            "Accept": "text/event-stream" if stream else "application/json",
        }

    def prepare(self, body: dict[str, Any], *, edit: bool) -> tuple[dict[str, Any], dict[str, str]]:
        """(body without Nones and query-string keys, the query-string parameters)."""
        out = {k: v for k, v in body.items() if v is not None}
        wanted = self.provider.response_format
        if wanted and "response_format" not in out:
            out["response_format"] = wanted
        if edit and not self.provider.moderation_on_edits and out.pop("moderation", None):
            logger.info("dropped moderation: %s's edits endpoint does not take it", self.provider.name)
        query = {k: form_text(out.pop(k)) for k in self.provider.query_params if k in out}
        return out, query

    def post_json(self, url: str, body: dict[str, Any], params: dict[str, str], *, stream: bool) -> RequestFactory:
        """A POST with a JSON body.

        Raises:
            ConfigError: no key is set.
        """
        headers = self.headers(stream=stream)

        def make(_: ExitStack) -> httpx2.Request:
            return self.http.build_request("POST", url, json=body, params=params, headers=headers, timeout=self.timeout)

        return make

    def post_multipart(
        self,
        url: str,
        params: dict[str, str],
        form: dict[str, Any],
        images: Sequence[UploadFile],
        files: Mapping[str, UploadFile],
        *,
        stream: bool,
    ) -> RequestFactory:
        """A multipart POST: the form as text fields, then ``image`` (one) or ``image[]`` (several),
        then ``files`` by field name (``mask``, ``markup``).

        Raises:
            RequestError: there is no image.
            ConfigError: no key is set.
            InputError: (when the factory runs) an input file cannot be opened.
        """
        if not images:
            raise RequestError("an edit needs at least one input image")
        data = {k: form_text(v) for k, v in form.items()}
        name = "image" if len(images) == 1 else "image[]"
        headers = self.headers(stream=stream)

        named = dict(files)

        def make(opened: ExitStack) -> httpx2.Request:
            # Opened anew per attempt, so a retry sends the files from their start.
            parts: list[tuple[str, Any]] = [(name, _open(opened, f)) for f in images]
            parts.extend((field_name, _open(opened, f)) for field_name, f in named.items())
            return self.http.build_request(
                "POST", url, data=data, files=parts, params=params, headers=headers,
                timeout=self.timeout,
            )  # fmt: skip

        return make

    def get_json(self, url: str, params: dict[str, str]) -> RequestFactory:
        """A GET that expects JSON (a background job's poll).

        Raises:
            ConfigError: no key is set.
        """
        headers = self.headers(stream=False)

        def make(_: ExitStack) -> httpx2.Request:
            return self.http.build_request("GET", url, params=params, headers=headers, timeout=self.timeout)

        return make

    def _base(self) -> str:
        if not self.base_url:
            raise ConfigError(
                f"provider {self.provider.name!r} has no default base URL: set MCP_IMAGES_BASE_URL "
                "to your service's base URL (including /v1 where it has one)"
            )
        return self.base_url.rstrip("/")


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
