"""Serving a team over HTTP: who may call, by static token or OAuth JWT (issue 11, item 1).

A real uvicorn server on a loopback port, in this process (`team_server`); the upstream is the
sandbox; an OAuth issuer (metadata and JWKS, signed by a test RSA key) is served on loopback too.
The helpers here are shared by the other ``test_http_*`` files.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import jwt.algorithms
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mcp_images.errors import ConfigError
from mcp_images.server.auth import parse_token_pairs
from mcp_images.server.drain import DrainingServer
from mcp_images.server.http_app import build_http_app, exposure_problem
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice-token-0123456789abcdef", "bob-token-0123456789abcdef"
TOKENS = f"alice:{ALICE},bob:{BOB}"
TIMEOUT = 20.0  # seconds for any one test's HTTP exchange


@dataclass
class Served:
    port: int
    server: DrainingServer
    built: Any

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"


@asynccontextmanager
async def serve_app(app: Any, built: Any = None) -> AsyncIterator[tuple[int, Any]]:
    """``app`` under a real uvicorn on a free loopback port, until the block ends."""
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", lifespan="on" if built is not None else "off")
    server = DrainingServer(config, built) if built is not None else uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(TIMEOUT):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield sock.getsockname()[1], server
        finally:
            server.should_exit = True


@asynccontextmanager
async def team_server(tmp_path: Path, base_url: str, **settings: Any) -> AsyncIterator[Served]:
    """mcp-images's whole HTTP app (auth, limits, routes) on loopback, with these settings."""
    from mcp_images.server.build import create_server

    server = create_server(make_settings(tmp_path, base_url, **settings), transport="http")
    built = build_http_app(server, host="127.0.0.1")
    async with serve_app(built.app, built) as (port, uv):
        served = Served(port, uv, built)
        with anyio.fail_after(TIMEOUT):  # the task database opens in the background
            while built.runtime.task_manager is None:
                await anyio.sleep(0.01)
        yield served


@asynccontextmanager
async def client_for(url: str, token: str | None, *, terminate: bool = True) -> AsyncIterator[Client]:
    """An MCP client over HTTP; ``terminate=False`` for a server that stops first (no DELETE at the end)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=TIMEOUT)
    transport = streamable_http_client(url, http_client=http, terminate_on_close=terminate)
    async with http, Client(transport) as client:
        yield client


def initialize_body() -> dict[str, Any]:
    params = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}
    return {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}


async def post_mcp(url: str, headers: dict[str, str]) -> httpx2.Response:
    head = {"Accept": "application/json, text/event-stream", **headers}
    async with httpx2.AsyncClient(timeout=TIMEOUT) as http:
        return await http.post(url, json=initialize_body(), headers=head)


class AccessLines(logging.Handler):
    """The access log's lines, as the server writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines() -> Any:
    handler = AccessLines()
    logger = logging.getLogger("mcp_images.access")
    logger.addHandler(handler)
    yield handler.lines
    logger.removeHandler(handler)


# -- an OAuth authorization server, as far as a resource server sees it ------------------------


@dataclass
class Issuer:
    url: str
    key: Any
    kid: str
    jwks_requests: list[str]

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        kid = claims.pop("kid", self.kid)
        body = {"iss": self.url, "sub": "carol", "aud": "AUDIENCE", "exp": now + 300, "iat": now, "scope": "images"}
        body.update(claims)
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": kid})


def rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@asynccontextmanager
async def oauth_issuer(keys: dict[str, Any]) -> AsyncIterator[Issuer]:
    """An issuer on loopback with RFC 8414 metadata and a JWKS of ``keys`` (kid -> private key)."""
    issuer: Issuer | None = None

    async def metadata(_: Request) -> JSONResponse:
        assert issuer is not None
        return JSONResponse({"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks.json"})

    async def jwks(_: Request) -> JSONResponse:
        assert issuer is not None
        issuer.jwks_requests.append("jwks")
        entries = []
        for kid, key in keys.items():
            entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
            entries.append({**entry, "kid": kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": entries})

    routes = [
        Route("/.well-known/oauth-authorization-server", metadata),
        Route("/jwks.json", jwks),
    ]
    async with serve_app(Starlette(routes=routes)) as (port, _):
        kid = next(iter(keys))
        issuer = Issuer(f"http://127.0.0.1:{port}", keys[kid], kid, [])
        yield issuer


# -- static tokens ------------------------------------------------------------------------------


async def test_without_a_token_or_with_a_wrong_one_the_server_answers_401_and_runs_nothing(
    tmp_path: Path, sandbox: Any
) -> None:
    async with team_server(tmp_path, sandbox.base_url, http_tokens=TOKENS) as served:
        none = await post_mcp(served.url, {})
        wrong = await post_mcp(served.url, {"Authorization": "Bearer alice-token-0123456789abcdeX"})
        right = await post_mcp(served.url, {"Authorization": f"Bearer {ALICE}"})
    assert none.status_code == wrong.status_code == 401
    assert none.headers["www-authenticate"].startswith("Bearer ")
    assert right.status_code == 200
    assert ALICE not in wrong.text + str(wrong.headers)
    assert sandbox.state.image_requests() == []


async def test_the_right_token_calls_tools_and_only_its_name_reaches_logs_and_task_records(
    tmp_path: Path, sandbox: Any, access_lines: list[str]
) -> None:
    async with team_server(tmp_path, sandbox.base_url, http_tokens=TOKENS) as served:
        async with client_for(served.url, ALICE) as client:
            made = await client.call_tool("generate_image", {"prompt": "a fox", "quality": "low"})
        assert not made.is_error
        task_id = made.structured_content["task_id"]  # type: ignore[index]
        record = await served.built.runtime.task_manager.get(task_id)
    assert record.identity == "alice"
    line = next(line for line in access_lines if "generate_image" in line)
    assert "identity=alice" in line and "status=ok" in line and "cost_usd=" in line
    stored = (tmp_path / "data" / "tasks.sqlite3").read_bytes()
    for secret in (ALICE, BOB):
        assert secret not in "\n".join(access_lines) and secret.encode() not in stored
        assert secret not in made.model_dump_json()


async def test_the_tokens_are_scrubbed_from_anything_the_server_says(tmp_path: Path, sandbox: Any) -> None:
    async with team_server(tmp_path, sandbox.base_url, http_tokens=TOKENS) as served:
        said = served.built.runtime.scrub({"message": f"upstream echoed Bearer {BOB} back"})
    assert BOB not in json.dumps(said)


def test_a_malformed_token_entry_stops_the_start_naming_the_entry_but_never_the_token() -> None:
    with pytest.raises(ConfigError) as short:
        parse_token_pairs("alice:short-secret", source="MCP_IMAGES_HTTP_TOKENS", separator=",")
    with pytest.raises(ConfigError) as nameless:
        parse_token_pairs(f"{ALICE}", source="MCP_IMAGES_HTTP_TOKENS", separator=",")
    assert "alice" in str(short.value) and "short-secret" not in str(short.value)
    assert ALICE not in str(nameless.value) and "entry 1" in str(nameless.value)


def test_a_public_address_without_authentication_is_refused_and_with_it_allowed(tmp_path: Path) -> None:
    bare = make_settings(tmp_path, None)
    assert "loopback" in (exposure_problem(bare, "0.0.0.0") or "")
    assert exposure_problem(bare, "127.0.0.1") is None
    assert exposure_problem(make_settings(tmp_path, None, http_tokens=TOKENS), "0.0.0.0") is None


async def test_a_foreign_origin_or_host_is_refused_even_with_a_good_token(tmp_path: Path, sandbox: Any) -> None:
    settings = {"http_tokens": TOKENS, "http_allowed_hosts": "images.example.com"}
    async with team_server(tmp_path, sandbox.base_url, **settings) as served:
        auth = {"Authorization": f"Bearer {ALICE}"}
        origin = await post_mcp(served.url, {**auth, "Origin": "https://evil.example"})
        host = await post_mcp(served.url, {**auth, "Host": "evil.example"})
        public = await post_mcp(served.url, {**auth, "Host": "images.example.com"})
    assert origin.status_code == 403
    assert host.status_code == 421
    assert public.status_code == 200


# -- OAuth 2.1: JWT access tokens ---------------------------------------------------------------


@asynccontextmanager
async def oauth_server(tmp_path: Path, sandbox: Any, issuer: Issuer) -> AsyncIterator[tuple[Served, str]]:
    """mcp-images as a resource server of ``issuer``; yields it and its audience (resource URL)."""
    audience = "http://127.0.0.1/mcp"  # what tokens must name; the port is not known before binding
    settings = {"oauth_issuer": issuer.url, "oauth_audience": audience, "oauth_scopes": "images"}
    async with team_server(tmp_path, sandbox.base_url, **settings) as served:
        yield served, audience


async def test_jwts_pass_only_with_the_right_signature_issuer_audience_expiry_and_scope(
    tmp_path: Path, sandbox: Any
) -> None:
    async with oauth_issuer({"k1": rsa_key()}) as issuer, oauth_server(tmp_path, sandbox, issuer) as (served, aud):
        good = issuer.token(aud=aud)
        cases = {
            "good": good,
            "expired": issuer.token(aud=aud, exp=int(time.time()) - 3600),
            "wrong audience": issuer.token(aud="https://other.example/mcp"),
            "wrong issuer": issuer.token(aud=aud, iss="https://evil.example"),
            "no scope": issuer.token(aud=aud, scope="profile"),
            "forged": jwt.encode(jwt.decode(good, options={"verify_signature": False}), rsa_key(), "RS256"),
        }
        statuses = {name: (await post_mcp(served.url, {"Authorization": f"Bearer {t}"})) for name, t in cases.items()}
        async with client_for(served.url, good) as client:
            made = await client.call_tool("generate_image", {"prompt": "x", "quality": "low"})
        record = await served.built.runtime.task_manager.get(made.structured_content["task_id"])  # type: ignore[index]
    codes = {name: r.status_code for name, r in statuses.items()}
    assert codes == {
        "good": 200, "expired": 401, "wrong audience": 401, "wrong issuer": 401, "no scope": 403, "forged": 401,
    }  # fmt: skip
    challenge = statuses["expired"].headers["www-authenticate"]
    assert (
        challenge.startswith("Bearer ")
        and 'resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource/mcp"' in challenge
    )
    assert "insufficient_scope" in statuses["no scope"].headers["www-authenticate"]
    assert record.identity == "carol"  # the token's subject


async def test_the_protected_resource_metadata_names_the_resource_its_issuer_and_scopes(
    tmp_path: Path, sandbox: Any
) -> None:
    async with (
        oauth_issuer({"k1": rsa_key()}) as issuer,
        oauth_server(tmp_path, sandbox, issuer) as (served, aud),
        httpx2.AsyncClient(timeout=TIMEOUT) as http,
    ):
        answer = await http.get(f"{served.base}/.well-known/oauth-protected-resource/mcp")
    metadata = answer.json()
    assert answer.status_code == 200
    assert metadata["resource"] == aud
    assert [s.rstrip("/") for s in metadata["authorization_servers"]] == [issuer.url]
    assert metadata["scopes_supported"] == ["images"]


async def test_a_rotated_key_is_fetched_once_and_made_up_key_ids_do_not_refetch(tmp_path: Path, sandbox: Any) -> None:
    keys = {"k1": rsa_key()}
    async with oauth_issuer(keys) as issuer, oauth_server(tmp_path, sandbox, issuer) as (served, aud):
        first = await post_mcp(served.url, {"Authorization": f"Bearer {issuer.token(aud=aud)}"})
        keys["k2"] = rsa_key()  # the issuer rotates; the new key signs from now on
        issuer.key, issuer.kid = keys["k2"], "k2"
        from mcp_images.server import jwt_auth

        jwt_auth.MIN_REFRESH_SECONDS, floor = 0.0, jwt_auth.MIN_REFRESH_SECONDS  # as if the floor had passed
        try:
            rotated = await post_mcp(served.url, {"Authorization": f"Bearer {issuer.token(aud=aud)}"})
        finally:
            jwt_auth.MIN_REFRESH_SECONDS = floor
        fetched = len(issuer.jwks_requests)
        for kid in ("x1", "x2", "x3"):
            await post_mcp(served.url, {"Authorization": f"Bearer {issuer.token(aud=aud, kid=kid)}"})
    assert first.status_code == rotated.status_code == 200
    assert fetched == 2
    assert len(issuer.jwks_requests) == fetched  # within the floor: no fetch per made-up kid
