"""OAuth 2.1 resource server: JWT access tokens verified here, against the issuer's published keys.

A token passes when its signature checks against a key of the issuer's JWKS (asymmetric
algorithms only: never ``none`` or a shared-secret HMAC, which would let anyone holding the
public JWKS mint tokens), its ``iss`` is the configured issuer, its ``aud`` names this server
(`Settings.oauth_audience`, RFC 8707 / RFC 9068), and it has not expired. Scopes come from
``scope`` (space-separated) or ``scp``; the SDK's middleware answers 403 when a required one
is missing. The caller's identity is the token's ``sub``.

Keys: the JWKS (``MCP_IMAGES_OAUTH_JWKS_URL``, else ``jwks_uri`` from the issuer's metadata,
RFC 8414 ``/.well-known/oauth-authorization-server`` or OpenID ``openid-configuration``) is
fetched on the first token and cached. A token signed with an unknown ``kid`` triggers one
refresh (key rotation), but never more often than `MIN_REFRESH_SECONDS`, so a stream of
made-up ``kid``s cannot turn the server into a load generator against the issuer.

PyJWT (with ``cryptography``) is imported on the first token, not at start-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
from mcp.server.auth.provider import AccessToken, TokenVerifier

logger = logging.getLogger(__name__)

# Asymmetric only: an HS256 token "signed" with the public key is a classic forgery.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
MIN_REFRESH_SECONDS = 30.0  # floor between two JWKS fetches, whatever the tokens say
MAX_KEY_AGE_SECONDS = 3600.0  # keys are fetched again after this, rotation or not
FETCH_TIMEOUT_SECONDS = 10.0  # one metadata or JWKS request, connect to last byte
MAX_DOCUMENT_BYTES = 1024 * 1024  # a JWKS or metadata document larger than this is refused
LEEWAY_SECONDS = 30  # clock skew allowed on exp / nbf / iat


class KeyFetchError(Exception):
    """The issuer's metadata or JWKS could not be fetched or read."""


def metadata_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be: RFC 8414 (path inserted), then OpenID Connect (appended, inserted)."""
    parts = urlsplit(issuer.rstrip("/"))
    origin, path = f"{parts.scheme}://{parts.netloc}", parts.path
    return [
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{origin}{path}/.well-known/openid-configuration",
        f"{origin}/.well-known/openid-configuration{path}",
    ]


async def _get_json(url: str) -> Any:
    import json

    import httpx2

    try:
        async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False) as http:
            with anyio.fail_after(FETCH_TIMEOUT_SECONDS):
                response = await http.get(url, headers={"Accept": "application/json"})
    except (httpx2.HTTPError, TimeoutError) as exc:
        raise KeyFetchError(f"{url}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise KeyFetchError(f"{url}: HTTP {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise KeyFetchError(f"{url}: larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise KeyFetchError(f"{url}: not JSON") from exc


class JWKSCache:
    """The issuer's signing keys by ``kid``, fetched lazily, refreshed with a floor between fetches."""

    def __init__(self, *, issuer: str, jwks_url: str | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url
        self._clock = clock
        self._keys: dict[str | None, Any] = {}  # kid -> PyJWK
        self._fetched_at: float | None = None
        self._lock = anyio.Lock()
        self.fetches = 0  # how many times the JWKS was fetched (tests and metrics)

    async def key(self, kid: str | None) -> Any | None:
        """The key for ``kid`` (None: unknown even after a refresh, or the keys cannot be had)."""
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > MAX_KEY_AGE_SECONDS
        if kid in self._keys and not stale:
            return self._keys[kid]
        async with self._lock:
            fetched = self._fetched_at
            if fetched is None or (self._clock() - fetched >= MIN_REFRESH_SECONDS and (stale or kid not in self._keys)):
                try:
                    await self._refresh()
                except KeyFetchError as exc:
                    logger.warning("cannot fetch the OAuth signing keys: %s", exc)
                    self._fetched_at = self._clock()  # the floor applies to failures too
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        import jwt

        url = self.jwks_url or await self._discover()
        self.fetches += 1
        document = await _get_json(url)
        keys: dict[str | None, Any] = {}
        for entry in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # an algorithm we do not take, or a malformed key: skip it
            if key.algorithm_name in ALGORITHMS:
                keys[entry.get("kid")] = key
        self._keys = keys
        self._fetched_at = self._clock()
        logger.info("OAuth signing keys fetched from %s: %d usable", url, len(keys))

    async def _discover(self) -> str:
        problems = []
        for url in metadata_urls(self.issuer):
            try:
                metadata = await _get_json(url)
            except KeyFetchError as exc:
                problems.append(str(exc))
                continue
            if isinstance(metadata, dict) and isinstance(metadata.get("jwks_uri"), str):
                self.jwks_url = metadata["jwks_uri"]
                return self.jwks_url
            problems.append(f"{url}: no jwks_uri")
        raise KeyFetchError("; ".join(problems))


def token_scopes(claims: dict[str, Any]) -> list[str]:
    scope = claims.get("scope", claims.get("scp", ""))
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scope, list):
        return [str(s) for s in scope]
    return []


class JWTVerifier(TokenVerifier):
    """Verifies JWT access tokens from one issuer for one audience (see the module docstring)."""

    def __init__(
        self, *, issuer: str, audience: str, jwks_url: str | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.keys = JWKSCache(issuer=issuer, jwks_url=jwks_url, clock=clock)

    async def verify_token(self, token: str) -> AccessToken | None:
        import jwt

        if token.count(".") != 2:
            return None
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        if header.get("alg") not in ALGORITHMS:
            return None
        key = await self.keys.key(header.get("kid"))
        if key is None:
            return None
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(ALGORITHMS),
                audience=[self.audience, self.audience.rstrip("/")],
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            logger.info("JWT refused: %s", type(exc).__name__)  # the reason's class, never the token
            return None
        subject = str(claims["sub"])
        return AccessToken(
            token=token,
            client_id=subject,
            subject=subject,
            scopes=token_scopes(claims),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            claims={"iss": claims["iss"], "azp": claims.get("azp") or claims.get("client_id")},
        )
