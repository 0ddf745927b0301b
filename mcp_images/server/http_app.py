"""The streamable HTTP app for a team: authentication, limits, health, downloads, uploads, drain.

`build_http_app` puts together, around the SDK's streamable HTTP app:

- bearer authentication through the SDK's `TokenVerifier`/`AuthSettings` (`server.auth`):
  static tokens and/or OAuth JWTs; 401 with ``WWW-Authenticate: Bearer ...
  resource_metadata="..."``, 403 for a missing scope, RFC 9728 protected-resource metadata;
- Host and Origin checks (DNS rebinding), for loopback names plus the configured public ones;
- per-identity and overall call limits and one access-log line per call (`server.access_log`);
- ``/healthz`` and ``/readyz`` (`server.health`), unauthenticated;
- signed image downloads (`server.downloads`) and authenticated uploads (`server.uploads`);
- the request body limit outside everything (`server.http_limits`).

`run_http` serves it with uvicorn and drains on SIGTERM (`DrainingServer`).

Refusal to start: a non-loopback address without authentication (`exposure_problem`).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mcp_images.errors import ConfigError
from mcp_images.server.limits import CallLimits

logger = logging.getLogger("mcp_images")

LOCAL_HOST_NAMES = ("127.0.0.1", "localhost", "[::1]")
MCP_PATH = "/mcp"


def exposure_problem(settings: Any, host: str) -> str | None:
    """Why serving on ``host`` with these settings is refused (None: it is fine)."""
    from mcp_images.cli import is_loopback

    authenticated = bool(settings.http_tokens or settings.http_tokens_file or settings.oauth_issuer)
    if is_loopback(host) or authenticated:
        return None
    return (
        f"refusing to serve HTTP on {host} without authentication: only loopback (127.0.0.1, ::1, localhost) "
        "is allowed without it. Set MCP_IMAGES_HTTP_TOKENS (name:token pairs) or MCP_IMAGES_OAUTH_ISSUER with "
        "MCP_IMAGES_OAUTH_AUDIENCE, or use --host 127.0.0.1 behind your own proxy."
    )


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def transport_security(host: str, settings: Any) -> Any:
    """DNS-rebinding protection: loopback names, the bound address, and the configured public names.

    A public name comes from MCP_IMAGES_HTTP_ALLOWED_HOSTS, MCP_IMAGES_PUBLIC_URL and the OAuth
    audience; it is allowed with and without a port (a reverse proxy on 443 sends none).
    """
    from mcp.server.transport_security import TransportSecuritySettings

    bare = host.strip("[]").lower()
    hosts = [*LOCAL_HOST_NAMES, f"[{bare}]" if ":" in bare else bare]
    origins = [f"http://{name}:*" for name in hosts]
    public = _names(settings.http_allowed_hosts)
    for url in (settings.public_url, settings.oauth_audience):
        if url:
            parts = urlsplit(url)
            public.append(parts.netloc)
            origins.append(f"{parts.scheme}://{parts.netloc}")
    allowed_hosts = [f"{name}:*" for name in dict.fromkeys(hosts)]
    for name in dict.fromkeys(public):
        allowed_hosts += [name, f"{name.rsplit(':', 1)[0] if name.count(':') == 1 else name}:*"]
    origins += _names(settings.http_allowed_origins)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(allowed_hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


@dataclass
class HttpApp:
    """The ASGI app and the state its drain needs."""

    app: Any
    limits: CallLimits
    runtime: Any
    grace: float


def _configure_access_log(json_format: bool) -> None:
    """Access lines go to stderr as they are (a JSON object a line), not under the usual prefix."""
    access = logging.getLogger("mcp_images.access")
    if not access.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s" if json_format else "access %(message)s"))
        access.addHandler(handler)
        access.propagate = False
    access.setLevel(logging.INFO)


def _protected(endpoint: Any, auth: Any) -> Any:
    """An ASGI endpoint behind the SDK's bearer check (401/403 with WWW-Authenticate), when auth is on."""
    if auth is None:
        return endpoint
    from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
    from mcp.server.auth.routes import build_resource_metadata_url

    settings = auth.settings
    metadata = build_resource_metadata_url(settings.resource_server_url) if settings.resource_server_url else None
    return RequireAuthMiddleware(endpoint, settings.required_scopes or [], metadata)


def build_http_app(server: Any, *, host: str) -> HttpApp:
    """The whole HTTP app for ``server`` (an `ImagesServer`) bound to ``host``.

    Raises:
        ConfigError: the authentication or download settings are unusable.
    """
    from starlette.routing import Route

    from mcp_images.server.access_log import CallGate
    from mcp_images.server.auth import http_auth
    from mcp_images.server.health import health_routes
    from mcp_images.server.http_limits import limit_request_bodies

    rt = server.runtime
    settings = rt.settings
    auth = http_auth(settings)
    if auth is not None:
        rt.http_secrets = auth.secrets
        rt.__dict__.pop("scrubber", None)  # built again with the tokens in it
    _setup_downloads(rt)
    from mcp_images.server.telemetry import telemetry_from_env

    rt.telemetry = telemetry_from_env(settings.provider)
    limits = CallLimits(per_identity=settings.http_max_calls_per_identity, total=settings.http_max_calls)
    _configure_access_log(settings.log_format == "json")
    server.middleware.append(CallGate(limits, json_format=settings.log_format == "json", telemetry=rt.telemetry))
    security = transport_security(host, settings)
    routes: list[Any] = [*health_routes(rt, lambda: limits.draining)]
    from mcp_images.server.downloads import download_route
    from mcp_images.server.uploads import UploadEndpoint

    routes.append(download_route(rt))
    routes.append(Route("/uploads", _protected(UploadEndpoint(rt, security), auth), methods=["POST"]))
    routes += server._custom_starlette_routes  # pyright: ignore[reportPrivateUsage]
    app = server._lowlevel_server.streamable_http_app(  # pyright: ignore[reportPrivateUsage]
        streamable_http_path=MCP_PATH,
        max_request_body_size=settings.http_max_body_bytes,
        stateless_http=rt.stateless,  # --stateless: no Mcp-Session-Id, any replica answers any request
        transport_security=security,
        host=host.strip("[]"),
        auth=auth.settings if auth else None,
        token_verifier=auth.verifier if auth else None,
        custom_starlette_routes=routes,
        debug=False,
    )
    if auth is not None:
        who = ", ".join(auth.names) or "none"
        logger.info("HTTP authentication on: static tokens for %s; OAuth %s", who, settings.oauth_issuer or "off")
    grace = settings.http_shutdown_grace
    marked = RemoteMarker(app, rt)
    return HttpApp(limit_request_bodies(marked, settings.http_max_body_bytes), limits, rt, grace)


class RemoteMarker:
    """ASGI middleware: every request over HTTP comes from a remote client (`downloads.remote_view`)."""

    def __init__(self, app: Any, rt: Any) -> None:
        self.app = app
        self.rt = rt

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from mcp_images.server.downloads import RemoteView, remote_view

        token = remote_view.set(RemoteView(self.rt.public_downloads))
        try:
            await self.app(scope, receive, send)
        finally:
            remote_view.reset(token)


def _setup_downloads(rt: Any) -> None:
    settings = rt.settings
    if settings.public_url is None:
        return
    if settings.url_secret is None or len(settings.url_secret.get_secret_value()) < 32:
        raise ConfigError(
            "MCP_IMAGES_PUBLIC_URL needs MCP_IMAGES_URL_SECRET, at least 32 characters, to sign download URLs; "
            "for example MCP_IMAGES_URL_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    from mcp_images.server.downloads import UrlSigner

    rt.public_downloads = UrlSigner(
        base_url=settings.public_url, secret=settings.url_secret.get_secret_value().encode(), ttl=settings.url_ttl
    )


def run_http(server: Any, *, host: str, sock: Any, log_level: str) -> int:
    """Serve ``server`` on the bound socket ``sock`` until SIGTERM/SIGINT, then drain. Returns 0 or 2."""
    import anyio
    import uvicorn

    from mcp_images.server.drain import DrainingServer

    try:
        built = build_http_app(server, host=host)
    except ConfigError as exc:
        sys.stderr.write("".join(f"mcp-images: {line}\n" for line in str(exc).splitlines()))
        return 2
    from mcp_images.cli import http_url

    logger.info("serving streamable HTTP at %s", http_url(host, sock.getsockname()[1]))
    config = uvicorn.Config(
        built.app,
        host=host.strip("[]"),
        log_level=log_level.lower(),
        timeout_graceful_shutdown=int(built.grace) + 5,  # our drain decides; this is the backstop
    )
    anyio.run(DrainingServer(config, built).serve, [sock])
    return 0
