"""Who may call the HTTP server: static bearer tokens, or an OAuth 2.1 authorization server's JWTs.

Both are `TokenVerifier`s for the SDK's bearer middleware, which answers 401 (with
``WWW-Authenticate: Bearer ... resource_metadata=...``) when a verifier says no and 403 when a
token lacks a required scope. The `AccessToken` they return names the caller in ``client_id``:
a static token's configured *name*, a JWT's ``sub``. That name is what `identity.identity_of`
reads for task ownership, limits and logs; the token itself goes nowhere but this module.

Static tokens (``MCP_IMAGES_HTTP_TOKENS`` or ``MCP_IMAGES_HTTP_TOKENS_FILE``): every presented
token is compared with every configured one by `hmac.compare_digest`, all of them, so the time
taken says nothing about which (or whether one) matched.

JWTs (`server.jwt_auth`): verified here, against the issuer's keys, never sent anywhere.

Threat model: anyone who can reach the port. Residual risk: a stolen token works until it is
removed from the settings (static) or expires (JWT); there is no revocation list.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mcp.server.auth.provider import AccessToken, TokenVerifier

from mcp_images.config_files import read_config_text
from mcp_images.errors import ConfigError

if TYPE_CHECKING:
    from mcp.server.auth.settings import AuthSettings

    from mcp_images.config import Settings

logger = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16  # a shorter static token is guessable; refused at start-up
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")
# AuthSettings needs an issuer even when only static tokens are used; nothing is served from it.
STATIC_ONLY_ISSUER = "http://localhost/"


def parse_token_pairs(text: str, *, source: str, separator: str) -> dict[str, str]:
    """``name:token`` pairs -> {name: token}. Blank entries and ``#`` lines are skipped.

    Raises:
        ConfigError: a pair is malformed, a name repeats, or a token is too short. The
            message names the entry by its position and name, never the token.
    """
    pairs: dict[str, str] = {}
    entries = [e.strip() for e in text.split(separator)]
    for number, entry in enumerate(entries, 1):
        if not entry or entry.startswith("#"):
            continue
        name, colon, token = entry.partition(":")
        name, token = name.strip(), token.strip()
        where = f"{source}, entry {number}"
        if not colon or not name or not token:
            raise ConfigError(f"{where}: expected name:token; for example alice:{'x' * MIN_TOKEN_CHARS}")
        if not set(name) <= NAME_CHARS:
            raise ConfigError(f"{where}: the name may hold only letters, digits and . _ - @")
        if name in pairs:
            raise ConfigError(f"{where}: the name {name!r} is used twice")
        if len(token) < MIN_TOKEN_CHARS or any(not "!" <= c <= "~" for c in token):
            raise ConfigError(
                f"{where} ({name}): the token must be at least {MIN_TOKEN_CHARS} printable characters "
                "without spaces (make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        pairs[name] = token
    return pairs


def static_tokens(settings: Settings) -> dict[str, str]:
    """The static tokens from MCP_IMAGES_HTTP_TOKENS and MCP_IMAGES_HTTP_TOKENS_FILE (merged).

    Raises:
        ConfigError: a malformed entry, a name in both, or an unreadable file.
    """
    pairs: dict[str, str] = {}
    if settings.http_tokens is not None:
        pairs = parse_token_pairs(
            settings.http_tokens.get_secret_value(), source="MCP_IMAGES_HTTP_TOKENS", separator=","
        )
    if settings.http_tokens_file is not None:
        text = read_config_text(settings.http_tokens_file, setting="MCP_IMAGES_HTTP_TOKENS_FILE", what="tokens file")
        more = parse_token_pairs(
            text, source=f"MCP_IMAGES_HTTP_TOKENS_FILE {settings.http_tokens_file}", separator="\n"
        )
        if clash := sorted(set(pairs) & set(more)):
            raise ConfigError(f"the token name {clash[0]!r} is in MCP_IMAGES_HTTP_TOKENS and the tokens file")
        pairs.update(more)
    return pairs


class StaticTokenVerifier(TokenVerifier):
    """Accepts the configured tokens; the AccessToken names the token's owner, not the token."""

    def __init__(self, tokens: Mapping[str, str], *, scopes: Sequence[str] = ()) -> None:
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]
        self._scopes = list(scopes)

    async def verify_token(self, token: str) -> AccessToken | None:
        presented = token.encode("utf-8", "surrogateescape")
        found: str | None = None
        for name, known in self._tokens:  # no early exit: the time is the same for any token
            if hmac.compare_digest(presented, known):
                found = name
        if found is None:
            return None
        # Static tokens stand for the whole of this server: they carry the required scopes.
        return AccessToken(token=token, client_id=found, subject=found, scopes=self._scopes)


class ChainVerifier(TokenVerifier):
    """Static tokens first, then JWTs (a token with three dot-separated parts)."""

    def __init__(self, verifiers: Sequence[TokenVerifier]) -> None:
        self._verifiers = list(verifiers)

    async def verify_token(self, token: str) -> AccessToken | None:
        for verifier in self._verifiers:
            found = await verifier.verify_token(token)
            if found is not None:
                return found
        return None


@dataclass(frozen=True)
class HttpAuth:
    """What the HTTP app needs to protect its routes."""

    verifier: TokenVerifier
    settings: AuthSettings
    secrets: tuple[str, ...]  # the static tokens, for the scrubber
    names: tuple[str, ...]  # static token names (for the start-up log line)


def scope_list(text: str) -> list[str]:
    return [s for s in text.replace(",", " ").split() if s]


def http_auth(settings: Settings) -> HttpAuth | None:
    """The authentication the settings ask for (None: none configured).

    Raises:
        ConfigError: a token entry is malformed, or OAuth is half-configured.
    """
    import warnings

    from mcp.server.auth.settings import AuthSettings
    from mcp.shared.exceptions import MCPDeprecationWarning

    tokens = static_tokens(settings)
    scopes = scope_list(settings.oauth_scopes)
    verifiers: list[TokenVerifier] = []
    if tokens:
        verifiers.append(StaticTokenVerifier(tokens, scopes=scopes))
    oauth = settings.oauth_issuer is not None or settings.oauth_audience is not None
    if oauth:
        if settings.oauth_issuer is None or settings.oauth_audience is None:
            raise ConfigError(
                "OAuth needs both MCP_IMAGES_OAUTH_ISSUER (the authorization server) and MCP_IMAGES_OAUTH_AUDIENCE "
                "(this server's resource URL); for example MCP_IMAGES_OAUTH_AUDIENCE=https://images.example.com/mcp"
            )
        from mcp_images.server.jwt_auth import JWTVerifier

        verifiers.append(
            JWTVerifier(
                issuer=settings.oauth_issuer, audience=settings.oauth_audience, jwks_url=settings.oauth_jwks_url
            )
        )
    if not verifiers:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        auth = AuthSettings(
            issuer_url=settings.oauth_issuer or STATIC_ONLY_ISSUER,  # type: ignore[arg-type]
            # Protected-resource metadata only when an authorization server exists to point at:
            # with static tokens alone a client could do nothing with it.
            resource_server_url=settings.oauth_audience if oauth else None,  # type: ignore[arg-type]
            required_scopes=scopes or None,
            validate_token_resource=False,  # JWTVerifier checks the audience itself
        )
    verifier = verifiers[0] if len(verifiers) == 1 else ChainVerifier(verifiers)
    return HttpAuth(verifier=verifier, settings=auth, secrets=tuple(tokens.values()), names=tuple(tokens))
