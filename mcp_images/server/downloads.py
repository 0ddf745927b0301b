"""Full-size images for remote clients: signed, expiring download URLs, and the endpoint behind them.

With ``MCP_IMAGES_PUBLIC_URL`` set, every image in a result sent over HTTP gets
``{public}/images/{id}?exp=<unix time>&sig=<HMAC-SHA256>`` (``MCP_IMAGES_URL_SECRET``, valid
``MCP_IMAGES_URL_TTL`` seconds, default 1 h): in ``structuredContent.images[].url``, as an extra
``resource_link`` per image, and in place of the server-side path in the text (a remote
client cannot open that path; without a public URL the path is labelled as the server's).

URLs are added when a result leaves for a client (`for_client`, called by
`results.task_result`), not when the job finishes: a task's stored result holds no
signature, and ``check_task`` an hour later hands out a fresh URL, not an expired one.

The endpoint checks the signature in constant time (`hmac.compare_digest`) and the expiry,
then serves the original bytes with the MIME type of their content. A URL is a bearer
credential for one image until it expires: anyone holding it can download that image.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["RemoteView", "UrlSigner", "download_route", "for_client", "remote_view"]


@dataclass(frozen=True)
class UrlSigner:
    base_url: str
    secret: bytes
    ttl: float

    def signature(self, image_id: str, expires: int) -> str:
        mac = hmac.new(self.secret, f"images/{image_id}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def url_for(self, image_id: str, *, now: float | None = None) -> tuple[str, int]:
        """The signed URL for ``image_id`` and its expiry (unix seconds)."""
        expires = int((time.time() if now is None else now) + self.ttl)
        sig = self.signature(image_id, expires)
        return f"{self.base_url.rstrip('/')}/images/{image_id}?exp={expires}&sig={sig}", expires

    def check(self, image_id: str, exp: str, sig: str, *, now: float | None = None) -> str | None:
        """Why this download is refused (None: it is good)."""
        try:
            expires = int(exp)
        except ValueError:
            return "bad signature"
        if not hmac.compare_digest(self.signature(image_id, expires).encode(), sig.encode("utf-8", "replace")):
            return "bad signature"
        if expires < (time.time() if now is None else now):
            return "expired"
        return None


@dataclass(frozen=True)
class RemoteView:
    """Set for each HTTP request: the caller is not on this machine (and maybe a signer for URLs)."""

    signer: UrlSigner | None


remote_view: ContextVar[RemoteView | None] = ContextVar("mcp_images_remote_view", default=None)


def _label(path: str, url: str | None) -> str:
    return url if url else f"{path.rsplit('/', 1)[-1]} (a file on the server, not on your machine)"


def for_client(result: Any) -> Any:
    """``result`` (a CallToolResult) as a remote client should see it; unchanged over stdio."""
    view = remote_view.get()
    structured = result.structured_content
    if view is None or not isinstance(structured, dict) or not isinstance(structured.get("images"), list):
        return result
    from mcp.types import ResourceLink, TextContent

    images, links, swaps = [], [], {}
    for image in structured["images"]:
        image = dict(image)
        url = None
        if view.signer is not None and isinstance(image.get("id"), str):
            url, expires = view.signer.url_for(image["id"])
            image["url"] = url
            until = datetime.fromtimestamp(expires, UTC).isoformat(timespec="seconds")
            links.append(
                ResourceLink(
                    type="resource_link", name=f"{image['id']} (download)", uri=url, mime_type=image.get("mime_type"),
                    description=f"full size, signed download URL valid until {until}",
                )
            )  # fmt: skip
        if isinstance(image.get("path"), str):
            swaps[image["path"]] = _label(image["path"], url)
        images.append(image)
    content = []
    for block in result.content:
        if isinstance(block, TextContent):
            text = block.text
            for path, shown in swaps.items():
                text = text.replace(path, shown)
            block = TextContent(type="text", text=text)
        content.append(block)
    return result.model_copy(
        update={"content": content + links, "structured_content": {**structured, "images": images}}
    )


def download_route(rt: Any) -> Route:
    """``GET /images/{id}?exp=&sig=``: the saved image, when the signature and expiry check out."""
    from mcp_images.imaging.formats import sniff_format
    from mcp_images.imaging.mime import mime_type
    from mcp_images.storage.store import id_from_ref

    async def download(request: Request) -> Response:
        signer = rt.public_downloads
        image_id = request.path_params["image_id"]
        if signer is None or id_from_ref(image_id) is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        why = signer.check(image_id, request.query_params.get("exp", ""), request.query_params.get("sig", ""))
        if why is not None:
            return JSONResponse({"error": why}, status_code=403)
        path = rt.store.find(image_id)
        if path is None:
            return JSONResponse({"error": "not found (deleted?)"}, status_code=404)
        import anyio

        data = await anyio.Path(path).read_bytes()
        headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
        return Response(data, media_type=mime_type(sniff_format(data[:4096])), headers=headers)

    return Route("/images/{image_id}", download, methods=["GET"])
