"""``POST /uploads``: a large input image sent once, outside a JSON call, then used by id.

Over HTTP an edit's image goes inline as base64 (a third larger, parsed whole by the SDK) or
as a URL the server can reach. An upload takes the raw bytes instead: the request body
itself (``Content-Type: image/...``) or one ``file`` field of a multipart form. It is
read in chunks and cut at the input limit (`InputPolicy.max_file_bytes`, 50 MiB, the most
any model takes), checked to be a complete PNG, JPEG, WebP or GIF by content, and saved like a
result. The answer is ``{"id": ..., "uri": "images://...", "mime_type", "width", "height",
"bytes"}``; the ``uri`` works as ``image`` or ``mask`` in ``edit_image`` and ``estimate_cost``.

Authenticated like ``/mcp`` (the same bearer middleware wraps it), and behind the same Host
and Origin checks, so a web page cannot upload through a browser on the server's machine.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from mcp_images.identity import identity_of

logger = logging.getLogger(__name__)

UPLOAD_FORMATS = frozenset({"png", "jpeg", "webp", "gif"})


class UploadTooLarge(Exception):
    pass


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _multipart_file(request: Request, limit: int) -> bytes | None:
    form = await request.form(max_files=1, max_fields=4, max_part_size=limit)
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            return None
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise UploadTooLarge
        return data
    finally:
        await form.close()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": "InputError", "message": message}}, status_code=status)


class UploadEndpoint:
    """The ASGI endpoint (see the module docstring); ``security`` is the transport's Host/Origin settings."""

    def __init__(self, rt: Any, security: Any) -> None:
        from mcp.server.transport_security import TransportSecurityMiddleware

        self.rt = rt
        self.guard = TransportSecurityMiddleware(security)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Any:
        refused = await self.guard.validate_request(request, is_post=False)
        if refused is not None:
            return refused
        from mcp_images.inputs.references import InputPolicy

        limit = InputPolicy().max_file_bytes
        kind = request.headers.get("content-type", "").lower()
        try:
            if kind.startswith("multipart/form-data"):
                data = await _multipart_file(request, limit)
                if data is None:
                    return _error(400, "a multipart upload needs one file field named 'file'")
            else:
                data = await _read_capped(request, limit)
        except UploadTooLarge:
            return _error(413, f"the image is over {limit // (1024 * 1024)} MiB, the most any model takes")
        return await self._save(request, data)

    async def _save(self, request: Request, data: bytes) -> JSONResponse:
        import anyio

        from mcp_images.errors import InputError
        from mcp_images.imaging.formats import probe, sniff_format

        fmt = sniff_format(data[:1024])
        if fmt not in UPLOAD_FORMATS:
            return _error(415, "send a PNG, JPEG, WebP or GIF image (checked by content, not by name)")
        try:
            info = await anyio.to_thread.run_sync(probe, data, limiter=self.rt.image_threads)
        except InputError as exc:
            return _error(400, str(exc))
        try:
            stored = await anyio.to_thread.run_sync(
                lambda: self.rt.store.save(data, fmt=fmt, prompt="upload", width=info.width, height=info.height)
            )
        except OSError:
            logger.exception("could not save an upload")
            return _error(507, "the server could not save the image (its folder is full or not writable)")
        logger.info("upload %s saved for %s (%d bytes)", stored.id, identity_of(None), len(data))
        body = {k: v for k, v in stored.as_dict().items() if k != "path"}  # the path is the server's business
        return JSONResponse(body, status_code=201)
