"""Attacks a hostile agent or a hostile upstream could try, each through the real code.

The standards: the key never appears in a result, an error, a log line or the task database;
a hostile reference reads no file and reaches no address it should not; bad input gets a
clear error that says what to change, before anything is spent, and nothing is overwritten.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import os
import sqlite3
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.types import TextContent
from PIL import Image
from pydantic import ValidationError

from mcp_images import cli
from mcp_images.config import Settings
from mcp_images.errors import ConfigError, InputError
from mcp_images.inputs.netguard import FetchRules, check_url, download
from mcp_images.inputs.references import InputPolicy, load_image_ref
from mcp_images.inputs.sources import locate
from mcp_images.runtime import Runtime
from mcp_images.server.build import create_server
from mcp_images.storage.store import ImageStore, id_from_ref, safe_stem, safe_subdir
from mcp_images.upstream.errors import map_error, transport_error
from tests.conftest import TEST_KEY, make_settings
from tests.test_e2e import child, free_port, server_env

pytestmark = pytest.mark.anyio

UPSTREAM = "https://up.example/v1"
GUARD = 10.0  # seconds: no attack here may hang the test


def png(size: tuple[int, int] = (16, 16), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, "PNG")
    return buffer.getvalue()


def declared_png(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG that declares ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (1 + width) * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def text_of(result: Any) -> str:
    return "\n".join(b.text for b in result.content if isinstance(b, TextContent))


def no_ids(image_id: str) -> Path | None:
    return None


async def refused(ref: str, policy: InputPolicy, **kw: Any) -> str:
    with pytest.raises(InputError) as caught:
        await load_image_ref(ref, label="image 1", policy=policy, resolve_id=no_ids, **kw)
    return str(caught.value)


async def call_hostile(
    tmp_path: Path, handler: Callable[[httpx2.Request], httpx2.Response], tool: str, args: dict[str, Any], **kw: Any
) -> Any:
    """One tool call through the protocol, against an upstream played by ``handler``."""
    settings = make_settings(tmp_path, kw.pop("base_url", UPSTREAM), **kw)
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    async with Client(create_server(settings, http_client=http)) as client:
        with anyio.fail_after(GUARD):
            return await client.call_tool(tool, args)


def database_text(tmp_path: Path) -> str:
    with sqlite3.connect(tmp_path / "data" / "tasks.sqlite3") as db:
        return "\n".join(db.iterdump())


# -- the key ----------------------------------------------------------------------------------

ECHOES = {
    "code, param and type": {"error": {"message": "no", "code": TEST_KEY, "param": TEST_KEY, "type": TEST_KEY}},
    "moderation categories": {
        "error": {"message": "blocked", "code": "moderation_blocked", "moderation_details": {"categories": [TEST_KEY]}}
    },
    "a key that straddles the snippet's cut": "x" * 190 + TEST_KEY,
    "the message of a 403": {"error": {"message": f"key {TEST_KEY} may not use this model"}},
}


@pytest.mark.parametrize(
    ("status", "body"), [(400, b) for b in ECHOES.values()] + [(403, ECHOES["the message of a 403"])]
)
async def test_a_key_the_upstream_echoes_anywhere_in_an_error_reaches_neither_the_result_nor_the_database(
    tmp_path: Path, status: int, body: Any
) -> None:
    def echo(request: httpx2.Request) -> httpx2.Response:
        headers = {"x-request-id": TEST_KEY}
        if isinstance(body, str):
            return httpx2.Response(status, text=body, headers=headers)
        return httpx2.Response(status, json=body, headers=headers)

    result = await call_hostile(tmp_path, echo, "generate_image", {"prompt": "a fox"})
    assert result.is_error
    assert TEST_KEY not in result.model_dump_json()
    assert TEST_KEY[:12] not in result.model_dump_json()  # not even the start of it
    assert TEST_KEY not in database_text(tmp_path)


async def test_a_timeout_never_shows_a_key_that_sits_in_the_base_urls_query(tmp_path: Path) -> None:
    def unreachable(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectTimeout("timed out", request=request)

    base_url = f"https://up.example/v1?key={TEST_KEY}"
    result = await call_hostile(
        tmp_path, unreachable, "generate_image", {"prompt": "a fox"}, base_url=base_url, max_retries=0
    )
    assert result.is_error and "could not connect to https://up.example/v1" in text_of(result)
    assert TEST_KEY not in result.model_dump_json()
    assert TEST_KEY not in database_text(tmp_path)


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ConnectTimeout("t"),
        httpx2.ReadTimeout("t"),
        httpx2.PoolTimeout("t"),
        httpx2.ConnectError(f"cannot reach https://bob:{TEST_KEY}@up.example"),
    ],
)
def test_a_failed_connection_shows_the_host_without_credentials_query_or_key(exc: httpx2.TransportError) -> None:
    where = f"https://bob:hunter2@up.example/v1?key={TEST_KEY}"
    message = str(transport_error(exc, where=where, connect_seconds=1, read_seconds=1, secret=TEST_KEY))
    assert "up.example/v1" in message
    assert "hunter2" not in message and TEST_KEY not in message


def test_an_error_event_mid_stream_loses_every_copy_of_the_key() -> None:
    payload = {"type": "error", "error": {"message": f"bad {TEST_KEY}", "code": TEST_KEY, "param": TEST_KEY}}
    mapped = map_error(None, payload, request_id=TEST_KEY, secret=TEST_KEY)
    assert TEST_KEY not in str(mapped)
    assert TEST_KEY not in json.dumps([mapped.code, mapped.param, mapped.error_type, mapped.request_id])


def test_a_base_url_with_a_password_is_refused_without_repeating_it() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, base_url=f"https://bob:{TEST_KEY}@up.example/v1")  # type: ignore[call-arg]
    assert "MCP_IMAGES_API_KEY" in str(caught.value)
    assert TEST_KEY not in str(caught.value)


def test_a_bad_setting_at_start_up_names_the_setting_but_never_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", TEST_KEY)
    monkeypatch.setenv("MCP_IMAGES_BASE_URL", f"https://{TEST_KEY}@up.example/v1")
    assert cli.main(["serve"]) == 2
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr()
    assert "base_url" in out.err
    assert TEST_KEY not in out.err + out.out


def test_the_http_clients_loggers_stay_at_warning_when_the_server_logs_at_debug() -> None:
    root = logging.getLogger()
    saved = (root.level, [logging.getLogger(n).level for n in cli.QUIET_LOGGERS])
    try:
        cli.configure_logging("DEBUG")
        assert all(logging.getLogger(n).getEffectiveLevel() == logging.WARNING for n in cli.QUIET_LOGGERS)
        cli.configure_logging("ERROR")
        assert all(logging.getLogger(n).getEffectiveLevel() == logging.ERROR for n in cli.QUIET_LOGGERS)
    finally:
        root.setLevel(saved[0])
        for name, level in zip(cli.QUIET_LOGGERS, saved[1], strict=True):
            logging.getLogger(name).setLevel(level)


async def test_nothing_logged_at_debug_holds_the_key(
    tmp_path: Path, sandbox: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with Client(create_server(make_settings(tmp_path, sandbox.base_url))) as client:
        with anyio.fail_after(GUARD):
            refused_key = await client.call_tool("generate_image", {"prompt": "a fox [sandbox:401]"})
            made = await client.call_tool("generate_image", {"prompt": "a fox", "quality": "low"})
    assert refused_key.is_error and not made.is_error
    assert "HTTP Request" in caplog.text  # the client's own request lines were captured too
    assert TEST_KEY not in caplog.text


# -- local references ---------------------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "allowed"
    folder.mkdir()
    (folder / "ok.png").write_bytes(png())
    return folder


@pytest.fixture
def policy(root: Path) -> InputPolicy:
    return InputPolicy(roots=(root,))


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ("{root}/../outside/secret.png", "outside the folders"),
        ("file://{root}/%2e%2e/outside/secret.png", "outside the folders"),
        ("file://evil.example/etc/passwd", "must name a file on this machine"),
        ("{root}/link-out/secret.png", "outside the folders"),
        ("{root}/file-link.png", "outside the folders"),
        ("{root}/ok.png\x00.txt", "NUL character"),
        ("file://{root}/ok.png%00.txt", "NUL character"),
        ("~nosuchuser-mcp-images/x.png", "unknown home folder"),
        ("C:\\Windows\\win.ini", "relative path"),
        ("\\\\server\\share\\x.png", "relative path"),
        ("images://../../etc/passwd", "is not an image id"),
        ("images://0123456789ab/../../x", "is not an image id"),
    ],
)
async def test_hostile_local_references_are_refused_with_a_reason(
    tmp_path: Path, root: Path, policy: InputPolicy, ref: str, reason: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png())
    (root / "link-out").symlink_to(outside)
    (root / "file-link.png").symlink_to(outside / "secret.png")
    message = await refused(ref.format(root=root), policy)
    assert reason in message


async def test_a_huge_reference_is_not_echoed_back_whole(policy: InputPolicy) -> None:
    message = await refused("relative.folder/" + "a" * 1_000_000, policy)
    assert "relative path" in message and len(message) < 500


async def test_a_client_root_without_a_path_grants_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.png").write_bytes(png())
    with pytest.raises(InputError, match="outside the folders"):
        await locate(str(tmp_path / "here.png"), "image 1", local_roots=[Path("")], fetch=FetchRules(),
                     resolve_id=no_ids, http=None)  # fmt: skip


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/stdin"])
async def test_a_device_is_refused_at_once_instead_of_read_forever(device: str) -> None:
    with anyio.fail_after(GUARD):
        assert "not a regular file" in await refused(device, InputPolicy(roots=(Path("/dev"),)))


async def test_a_fifo_is_refused_at_once(root: Path, policy: InputPolicy) -> None:
    os.mkfifo(root / "pipe.png")
    with anyio.fail_after(GUARD):
        assert "not a regular file" in await refused(str(root / "pipe.png"), policy)


async def test_a_50_gb_sparse_file_is_refused_by_its_size_before_it_is_read(root: Path, policy: InputPolicy) -> None:
    big = root / "huge.png"
    with big.open("wb") as f:  # a PNG header, then an IDAT chunk that claims 2 GB
        f.write(declared_png(100, 100)[:33] + struct.pack(">I", 2**31 - 1) + b"IDAT")
        f.truncate(50 * 1024**3)
    with anyio.fail_after(2):
        message = await refused(str(big), policy)
    assert "50 GiB" in message and "under 50 MiB" in message


async def test_a_png_declaring_a_billion_pixels_is_a_clear_input_error(policy: InputPolicy) -> None:
    data = base64.b64encode(declared_png(40000, 40000)).decode()
    assert "too many pixels" in await refused(f"data:image/png;base64,{data}", policy)


async def test_a_small_gif_with_huge_dimensions_is_not_decoded_for_conversion(policy: InputPolicy) -> None:
    buffer = io.BytesIO()
    Image.new("P", (9000, 9000)).save(buffer, "GIF")  # 81 megapixels in about 50 KB
    data = base64.b64encode(buffer.getvalue()).decode()
    with anyio.fail_after(GUARD):
        message = await refused(f"data:image/gif;base64,{data}", policy)
    assert "9000x9000 GIF" in message and "convert it to a PNG or JPEG yourself" in message


async def test_a_huge_black_and_white_mask_is_not_decoded_for_conversion(policy: InputPolicy) -> None:
    buffer = io.BytesIO()
    Image.new("L", (7000, 7000)).save(buffer, "PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    with pytest.raises(InputError, match="too large to be converted to an alpha mask"):
        await load_image_ref(
            f"data:image/png;base64,{data}", label="the mask", is_mask=True, resolve_id=no_ids,
            policy=InputPolicy(convert_bw_mask=True),
        )  # fmt: skip


# -- the store's ids ----------------------------------------------------------------------------


def test_an_id_never_finds_a_symlink_planted_in_the_output_folder(tmp_path: Path) -> None:
    out, secret = tmp_path / "out", tmp_path / "secret.png"
    out.mkdir()
    secret.write_bytes(png())
    (out / "planted-aaaaaaaaaaaa.png").symlink_to(secret)
    (out / "zero-bbbbbbbbbbbb.png").symlink_to("/dev/zero")
    store = ImageStore(out)
    assert store.find("aaaaaaaaaaaa") is None and store.find("bbbbbbbbbbbb") is None


def test_an_agent_chosen_name_cannot_answer_for_another_id(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    saved = store.save(png(), fmt="png", prompt="x", width=16, height=16, stem=safe_stem("x-cccccccccccc.b.png"))
    assert store.find("cccccccccccc") is None
    assert store.find(saved.id) == saved.path


@pytest.mark.parametrize("ref", ["images://0123456789ab\n", "0123456789ab\n", "images://0123456789AB"])
def test_an_id_with_a_trailing_newline_or_capitals_is_not_an_id(ref: str) -> None:
    assert id_from_ref(ref) is None


async def test_a_resource_read_with_traversal_in_the_id_reads_nothing(client: Client) -> None:
    for uri in ("images://../../etc/passwd", "images://%2e%2e%2fetc%2fpasswd", "images://0123456789ab%0A"):
        with pytest.raises(Exception) as caught:  # the SDK raises its own error type for a failed read
            await client.read_resource(uri)
        assert "root:" not in str(caught.value)


# -- where images are saved ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output_path", "reason"),
    [
        ("a\x00b", "control characters"),
        ("line\nbreak", "control characters"),
        ("~nosuchuser-mcp-images/x", "unknown home folder"),
        ("a" * 300, "longer than 255 bytes"),
        ("a-file/sub", "a-file, which is a file"),
        ("a-file", "is a file, not a folder"),
        ("../escape", "outside the output folder"),
        ("/etc", "outside the output folder"),
        ("link-out/x", "outside the output folder"),
    ],
)
async def test_a_bad_output_path_is_refused_before_anything_is_spent(
    tmp_path: Path, sandbox: Any, output_path: str, reason: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a-file").write_text("not a folder")
    (out / "link-out").symlink_to(tmp_path)
    async with Client(create_server(make_settings(tmp_path, sandbox.base_url))) as client:
        result = await client.call_tool("generate_image", {"prompt": "a fox", "output_path": output_path})
    assert result.is_error and reason in text_of(result)
    assert result.structured_content["error"]["field"] == "output_path"
    assert sandbox.state.image_requests() == []  # refused before the upstream was asked (and paid)


def test_an_output_path_in_a_read_only_folder_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    # Root may write anywhere, so the permission check is answered as for an ordinary user.
    monkeypatch.setattr("mcp_images.storage.store.os.access", lambda path, mode: Path(path) != locked)
    with pytest.raises(InputError, match="is not writable"):
        safe_subdir(tmp_path, "locked/new")
    assert safe_subdir(tmp_path, "open/new") == Path("open/new")


@pytest.mark.parametrize("make", ["a file", "a file above it", "read-only"])
def test_an_output_folder_images_cannot_be_saved_in_is_named_with_the_setting_to_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: str
) -> None:
    blocker = tmp_path / "blocker"
    out = {"a file": blocker, "a file above it": blocker / "out", "read-only": tmp_path / "ro" / "out"}[make]
    if make == "read-only":
        (tmp_path / "ro").mkdir()
        monkeypatch.setattr("mcp_images.storage.store.os.access", lambda path, mode: Path(path) != tmp_path / "ro")
    else:
        blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="MCP_IMAGES_OUTPUT_DIR"):
        ImageStore(out).check_writable()
    ImageStore(tmp_path / "fine" / "out").check_writable()  # missing folders are made on first save


@pytest.mark.parametrize(
    "filename", ["../../.bashrc", "/etc/passwd", ".bashrc", "CON", "\u202egnp.exe", "é" * 200, "a/b\\c..d"]
)
async def test_an_agent_chosen_filename_stays_in_the_output_folder_as_a_plain_visible_file(
    tmp_path: Path, filename: str
) -> None:
    store = ImageStore(tmp_path / "out")
    saved = store.save(png(), fmt="png", prompt="x", width=16, height=16, stem=safe_stem(filename + "x"))
    assert saved.path.parent == tmp_path / "out"
    assert not saved.path.name.startswith(".") and len(saved.path.name) < 120
    assert saved.path.name.isascii()


def test_a_save_never_overwrites_an_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mcp_images.storage.store.new_id", lambda: "0123456789ab")
    store = ImageStore(tmp_path)
    first = store.save(png(), fmt="png", prompt="x", width=16, height=16, stem="same")
    with pytest.raises(FileExistsError):
        store.save(b"other bytes", fmt="png", prompt="x", width=1, height=1, stem="same")
    assert first.path.read_bytes() == png()
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temporary file left behind


# -- URLs ---------------------------------------------------------------------------------------


async def resolve(host: str, port: int) -> list[str]:
    return {"rebind.example.com": ["93.184.215.14", "fec0::1"]}.get(host, ["93.184.215.14"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://0/", "unspecified"),
        ("https://0177.0.0.1/x.png", "https://0177.0.0.1/x.png is not a valid URL"),  # octal: refused unparsed
        ("https://[fec0::1]/x.png", "site-local"),
        ("https://192.0.0.8/x.png", "reserved"),
        ("https://[64:ff9b::7f00:1]/x.png", "loopback"),
        ("https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x.png", "loopback"),  # Teredo of 127.0.0.1
        ("https://rebind.example.com/x.png", "site-local"),
        ("https://LOCALHOST./x.png", "loopback"),
    ],
)
async def test_more_disguised_private_addresses_are_refused(url: str, reason: str) -> None:
    with pytest.raises(InputError) as caught:
        await check_url(url, allowed_hosts=frozenset(), resolver=resolve)
    assert reason in str(caught.value)


@pytest.fixture
async def trickle() -> AsyncIterator[int]:
    """A loopback server that answers 200 and then sends one byte at a time, for ever (slowloris)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(stream: Any) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-type: image/png\r\n\r\n\x89")
            while True:
                await anyio.sleep(0.05)
                await stream.send(b"\0")

    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        yield port
        group.cancel_scope.cancel()


async def test_a_download_that_trickles_for_ever_stops_at_its_deadline(trickle: int) -> None:
    rules = FetchRules(allowed_hosts=frozenset({"127.0.0.1"}), timeout=0.5)
    with anyio.fail_after(GUARD), pytest.raises(InputError, match=r"took longer than 0\.5 s"):
        await download(f"http://127.0.0.1:{trickle}/x.png", client=None, rules=rules)


# -- a hostile upstream -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://[::1", "file:///etc/passwd", "data:image/png;base64,AAAA", "https:///x.png"])
async def test_a_result_url_that_is_not_a_web_address_is_a_clear_upstream_error(tmp_path: Path, url: str) -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        assert request.url.host == "up.example", "nothing else may be fetched"
        return httpx2.Response(200, json={"data": [{"url": url}]})

    result = await call_hostile(tmp_path, answer, "generate_image", {"prompt": "a fox"})
    assert result.is_error and result.structured_content["error"]["type"] == "UpstreamError"
    assert "internal error" not in text_of(result)


async def test_a_decompression_bomb_from_the_upstream_is_refused_without_a_crash(tmp_path: Path) -> None:
    bomb = base64.b64encode(declared_png(40000, 40000)).decode()
    result = await call_hostile(
        tmp_path, lambda request: httpx2.Response(200, json={"data": [{"b64_json": bomb}]}), "generate_image",
        {"prompt": "a fox"},
    )  # fmt: skip
    assert result.is_error and "too many pixels" in text_of(result)
    assert not list((tmp_path / "out").rglob("*.png"))  # nothing half-saved


# -- the HTTP transport -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("[::1]", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.nip.io", False),
    ],
)
def test_only_loopback_hosts_may_serve_http(host: str, loopback: bool) -> None:
    assert cli.is_loopback(host) is loopback


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


async def wait_listening(proc: subprocess.Popen[bytes], host: str, port: int, log: Path) -> None:
    with anyio.fail_after(20):
        while True:
            assert proc.poll() is None, f"the server exited: {log.read_text(errors='replace')}"
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                await anyio.sleep(0.05)
            else:
                await stream.aclose()
                return


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2"])
async def test_a_real_http_server_refuses_a_foreign_host_or_origin_dns_rebinding(tmp_path: Path, host: str) -> None:
    port = free_port()
    args = [sys.executable, "-m", "mcp_images", "--transport", "http", "--host", host, "--port", str(port)]
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    with child(args, server_env(tmp_path, "http://127.0.0.1:9/v1"), tmp_path) as proc:
        await wait_listening(proc, host, port, tmp_path / "child.log")
        async with httpx2.AsyncClient(base_url=f"http://{host}:{port}", timeout=GUARD) as http:
            foreign_host = await http.post("/mcp", json=INITIALIZE, headers={**headers, "host": f"evil.example:{port}"})
            foreign_origin = await http.post(
                "/mcp", json=INITIALIZE, headers={**headers, "origin": "http://evil.example"}
            )
            own = await http.post("/mcp", json=INITIALIZE, headers=headers)
    assert foreign_host.status_code == 421
    assert foreign_origin.status_code == 403
    assert own.status_code == 200, own.text


# --- fixed in the server, tools and runtime (found by this review) --------------------------


async def test_a_key_the_upstream_echoes_in_a_successful_answer_is_not_in_the_result(tmp_path: Path) -> None:
    def echo(request: httpx2.Request) -> httpx2.Response:
        datum = {"b64_json": base64.b64encode(png()).decode(), "revised_prompt": f"a fox {TEST_KEY}"}
        return httpx2.Response(200, json={"data": [datum], "size": TEST_KEY}, headers={"x-request-id": TEST_KEY})

    result = await call_hostile(tmp_path, echo, "generate_image", {"prompt": "a fox"})
    assert not result.is_error
    assert TEST_KEY not in result.model_dump_json()


async def test_a_key_in_a_broken_stream_event_is_not_in_the_error(tmp_path: Path) -> None:
    def echo(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, content=f"data: oops {TEST_KEY}\n\n".encode(), headers={"content-type": "text/event-stream"}
        )

    result = await call_hostile(tmp_path, echo, "generate_image", {"prompt": "a fox", "stream": True})
    assert result.is_error and TEST_KEY not in result.model_dump_json()


def test_over_http_client_roots_do_not_widen_the_configured_folders(tmp_path: Path) -> None:
    rt = Runtime(make_settings(tmp_path, None, input_dirs=str(tmp_path / "in")))
    rt.transport_kind = "http"
    policy = rt.input_policy(["/"])  # a client announcing the whole disk as its root
    assert Path("/") not in policy.roots


async def test_a_decompression_bomb_from_the_upstream_is_an_upstream_error_even_without_previews(
    tmp_path: Path,
) -> None:
    bomb = base64.b64encode(declared_png(40000, 40000)).decode()
    result = await call_hostile(
        tmp_path,
        lambda r: httpx2.Response(200, json={"data": [{"b64_json": bomb}]}),
        "generate_image",
        {"prompt": "a fox"},
        inline="none",
    )
    assert result.is_error and result.structured_content["error"]["type"] == "UpstreamError"


async def test_an_output_folder_that_cannot_be_written_is_refused_before_the_upstream_is_paid(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file where the output folder should be")
    asked: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        asked.append(request)
        return httpx2.Response(200, json={"data": [{"b64_json": base64.b64encode(png()).decode()}]})

    result = await call_hostile(tmp_path, answer, "generate_image", {"prompt": "a fox"})
    assert result.is_error and "MCP_IMAGES_OUTPUT_DIR" in text_of(result)
    assert asked == []


async def test_a_gzip_bomb_answer_is_refused_before_it_is_inflated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mcp_images.upstream.client.MAX_ANSWER_BYTES", 1024 * 1024, raising=True)
    body = gzip.compress(b'{"data": [{"b64_json": "' + b"A" * (8 * 1024 * 1024) + b'"}]}')

    def bomb(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, content=body, headers={"content-encoding": "gzip", "content-type": "application/json"}
        )

    result = await call_hostile(tmp_path, bomb, "generate_image", {"prompt": "a fox"})
    assert result.is_error and "larger than" in text_of(result)
