"""Image references -> checked inputs: every form, every refusal, URLs on a real loopback server."""

from __future__ import annotations

import base64
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import httpx2
import pytest
from PIL import Image

from mcp_images.errors import InputError
from mcp_images.inputs.references import (
    InputImage,
    InputPolicy,
    load_image_ref,
    load_image_refs,
)
from mcp_images.inputs.sources import ID_PATTERN

IMAGE_ID = "3f9a0c1b2d4e"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 4
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64


def encode(mode: str = "RGB", fmt: str = "PNG", size: tuple[int, int] = (8, 6)) -> bytes:
    color: int | tuple[int, ...] = 255 if mode in ("L", "1", "P") else (200,) * len(mode)
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def bw_mask(size: tuple[int, int] = (8, 6)) -> bytes:
    """A greyscale mask, no alpha: white (the area to edit) on the left half, black elsewhere."""
    im = Image.new("L", size, 0)
    im.paste(255, (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    im.save(buffer, "PNG")
    return buffer.getvalue()


PNG = encode()
RGBA_PNG = encode("RGBA")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "allowed"
    folder.mkdir()
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


@pytest.fixture
def policy(root: Path) -> InputPolicy:
    return InputPolicy(roots=(root,))


def no_ids(image_id: str) -> Path | None:
    return None


async def load(ref: str, policy: InputPolicy, **kw: object) -> InputImage:
    return await load_image_ref(ref, label="image 1", policy=policy, resolve_id=no_ids, **kw)  # type: ignore[arg-type]


async def refused(ref: str, policy: InputPolicy, **kw: object) -> str:
    with pytest.raises(InputError) as caught:
        await load(ref, policy, **kw)
    return str(caught.value)


# -- local paths ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_absolute_path_inside_a_root_is_kept_as_a_path_and_not_read_into_memory(
    root: Path, policy: InputPolicy
) -> None:
    (root / "cat.png").write_bytes(PNG)
    image = await load(str(root / "cat.png"), policy)
    assert (image.format, image.width, image.height, image.bytes) == ("png", 8, 6, len(PNG))
    assert image.path == (root / "cat.png").resolve()
    assert image.data is None
    assert (image.filename, image.mime_type, image.note) == ("cat.png", "image/png", None)
    with image.open() as stream:
        assert stream.read() == PNG


@pytest.mark.anyio
async def test_the_upload_filename_is_sanitised_and_takes_the_extension_of_the_real_format(
    root: Path, policy: InputPolicy
) -> None:
    (root / "my photo (1).PNG").write_bytes(encode(fmt="JPEG"))
    image = await load(str(root / "my photo (1).PNG"), policy)
    assert (image.format, image.filename, image.mime_type) == (
        "jpeg",
        "my-photo-1.jpg",
        "image/jpeg",
    )


@pytest.mark.anyio
async def test_a_home_relative_path_is_expanded(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(root))
    (root / "cat.webp").write_bytes(encode(fmt="WEBP"))
    image = await load("~/cat.webp", InputPolicy(roots=(root,)))
    assert image.format == "webp"


@pytest.mark.anyio
async def test_a_relative_path_is_refused_with_a_request_for_an_absolute_one(
    policy: InputPolicy,
) -> None:
    assert "give an absolute path" in await refused("pictures/cat.png", policy)


@pytest.mark.anyio
async def test_a_file_uri_is_percent_decoded(root: Path, policy: InputPolicy) -> None:
    (root / "a cat.png").write_bytes(PNG)
    image = await load((root / "a cat.png").as_uri(), policy)
    assert image.path == (root / "a cat.png").resolve()


@pytest.mark.anyio
async def test_a_path_outside_the_roots_is_refused_naming_the_roots_and_the_fix(
    root: Path, outside: Path, policy: InputPolicy
) -> None:
    (outside / "cat.png").write_bytes(PNG)
    message = await refused(str(outside / "cat.png"), policy)
    assert str(root.resolve()) in message
    assert "MCP_IMAGES_INPUT_DIRS" in message and "root" in message


@pytest.mark.anyio
async def test_a_symlink_inside_a_root_pointing_outside_is_refused(
    root: Path, outside: Path, policy: InputPolicy
) -> None:
    (outside / "secret.png").write_bytes(PNG)
    (root / "innocent.png").symlink_to(outside / "secret.png")
    assert "outside the folders" in await refused(str(root / "innocent.png"), policy)


@pytest.mark.anyio
async def test_a_dot_dot_traversal_out_of_a_root_is_refused(root: Path, outside: Path, policy: InputPolicy) -> None:
    (outside / "cat.png").write_bytes(PNG)
    assert "outside the folders" in await refused(f"{root}/../outside/cat.png", policy)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: None, "there is no file"),
        (lambda p: p.write_bytes(b""), "is empty"),
        (lambda p: os.mkfifo(p), "is not a regular file"),  # reading it would block
    ],
    ids=["directory", "missing", "empty", "fifo"],
)
async def test_a_path_that_is_not_a_readable_image_file_is_refused_clearly(
    root: Path, policy: InputPolicy, make: object, expected: str
) -> None:
    target = root / "thing.png"
    make(target)  # type: ignore[operator]
    assert expected in await refused(str(target), policy)


@pytest.mark.anyio
async def test_local_paths_are_refused_when_they_are_off_but_server_ids_still_work(
    root: Path,
) -> None:
    (root / "made.png").write_bytes(PNG)
    off = InputPolicy(roots=(root,), allow_local_paths=False)
    message = await refused(str(root / "made.png"), off)
    assert "local paths are off over HTTP" in message and "MCP_IMAGES_INPUT_DIRS" in message
    found = {IMAGE_ID: root / "made.png"}.get
    image = await load_image_ref(f"images://{IMAGE_ID}", label="image 1", policy=off, resolve_id=found)
    assert image.format == "png"


# -- ids --------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("ref", [f"images://{IMAGE_ID}", IMAGE_ID])
async def test_an_images_uri_or_a_bare_id_resolves_through_the_store_even_outside_the_roots(
    outside: Path, ref: str
) -> None:
    (outside / f"cat-{IMAGE_ID}.png").write_bytes(PNG)
    found = {IMAGE_ID: outside / f"cat-{IMAGE_ID}.png"}.get
    image = await load_image_ref(ref, label="image 1", policy=InputPolicy(), resolve_id=found)
    assert image.path == outside / f"cat-{IMAGE_ID}.png"
    assert ID_PATTERN.fullmatch(IMAGE_ID)


@pytest.mark.anyio
async def test_an_unknown_id_says_where_ids_come_from(policy: InputPolicy) -> None:
    message = await refused(f"images://{IMAGE_ID}", policy)
    assert f"no image with id {IMAGE_ID} was made by this server" in message
    assert "generate_image/edit_image" in message


# -- base64 -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "ref",
    [
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        base64.b64encode(PNG).decode(),
        base64.b64encode(encode(fmt="JPEG")).decode(),  # starts "/9j/", like a path
        base64.urlsafe_b64encode(PNG).decode().rstrip("="),
    ],
    ids=["data-uri", "raw", "raw-jpeg", "urlsafe-unpadded"],
)
async def test_base64_image_data_is_decoded_and_checked_by_content(policy: InputPolicy, ref: str) -> None:
    image = await load(ref, policy)
    assert image.format in ("png", "jpeg") and image.data is not None and image.path is None
    assert image.filename == f"image-1.{'jpg' if image.format == 'jpeg' else 'png'}"


@pytest.mark.anyio
@pytest.mark.parametrize("ref", ["data:image/png;base64,iVBORw0KGgo!!!!", "data:image/png,rawbytes", "data:image/png"])
async def test_broken_data_uris_are_refused_clearly(policy: InputPolicy, ref: str) -> None:
    message = await refused(ref, policy)
    assert "base64" in message or "','" in message


@pytest.mark.anyio
async def test_garbage_base64_is_refused_as_not_an_image(policy: InputPolicy) -> None:
    message = await refused(base64.b64encode(b"hello world, not a picture " * 4).decode(), policy)
    assert "not an image" in message


# -- content checks ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "kind"),
    [(PDF, "a PDF file"), (ZIP, "a ZIP archive"), (b"just some text\n" * 3, "a text file")],
    ids=["pdf", "zip", "text"],
)
async def test_a_non_image_renamed_png_is_refused_by_content(
    root: Path, policy: InputPolicy, content: bytes, kind: str
) -> None:
    (root / "photo.png").write_bytes(content)
    message = await refused(str(root / "photo.png"), policy)
    assert message.startswith(f"image 1 (photo.png) is {kind}")
    assert "not an image (checked by content, not by name)" in message


@pytest.mark.anyio
@pytest.mark.parametrize("fmt", ["BMP", "GIF", "TIFF"])
async def test_bmp_gif_and_tiff_are_converted_to_png_with_a_note(root: Path, policy: InputPolicy, fmt: str) -> None:
    (root / f"old.{fmt.lower()}").write_bytes(encode(fmt=fmt))
    image = await load(str(root / f"old.{fmt.lower()}"), policy)
    assert image.format == "png" and image.data is not None and image.data.startswith(b"\x89PNG")
    assert (image.filename, image.note) == ("old.png", f"image 1 was {fmt}; converted to PNG")
    assert (image.width, image.height, image.bytes) == (8, 6, len(image.data))


@pytest.mark.anyio
async def test_bmp_is_refused_naming_the_accepted_types_when_conversion_is_off(root: Path, policy: InputPolicy) -> None:
    (root / "old.bmp").write_bytes(encode(fmt="BMP"))
    message = await refused(str(root / "old.bmp"), replace(policy, convert_formats=False))
    assert "BMP" in message and "PNG, JPEG or WebP" in message


@pytest.mark.anyio
async def test_heic_is_refused_with_the_conversion_advice(policy: InputPolicy) -> None:
    message = await refused("data:image/heic;base64," + base64.b64encode(HEIC).decode(), policy)
    assert "HEIC is not supported: convert to PNG or JPEG first" in message


@pytest.mark.anyio
async def test_a_valid_png_is_passed_on_byte_for_byte(policy: InputPolicy) -> None:
    big = encode(size=(300, 200))
    image = await load("data:image/png;base64," + base64.b64encode(big).decode(), policy)
    assert image.data == big and image.note is None


# -- masks ------------------------------------------------------------------------------------


async def load_mask(data: bytes, policy: InputPolicy) -> InputImage:
    ref = "data:image/png;base64," + base64.b64encode(data).decode()
    return await load_image_ref(ref, label="the mask", policy=policy, resolve_id=no_ids, is_mask=True)


@pytest.mark.anyio
async def test_a_mask_with_alpha_passes_unchanged(policy: InputPolicy) -> None:
    mask = await load_mask(RGBA_PNG, policy)
    assert mask.has_alpha and mask.data == RGBA_PNG and mask.filename == "the-mask.png"


@pytest.mark.anyio
async def test_a_black_and_white_mask_without_alpha_is_refused_with_the_exact_fix(
    policy: InputPolicy,
) -> None:
    with pytest.raises(InputError) as caught:
        await load_mask(bw_mask(), policy)
    assert caught.value.field == "mask"
    assert "save it as RGBA PNG where the area to edit is fully transparent" in str(caught.value)
    assert "MCP_IMAGES_CONVERT_MASK=true" in str(caught.value)


@pytest.mark.anyio
async def test_a_black_and_white_mask_is_converted_to_alpha_when_allowed(
    policy: InputPolicy,
) -> None:
    mask = await load_mask(bw_mask(), replace(policy, convert_bw_mask=True))
    assert mask.format == "png" and mask.has_alpha and mask.note and "converted" in mask.note
    assert mask.data is not None
    with Image.open(io.BytesIO(mask.data)) as im:
        assert im.getchannel("A").getpixel((0, 0)) == 0  # white: the area to edit
        assert im.getchannel("A").getpixel((7, 0)) == 255


@pytest.mark.anyio
async def test_a_jpeg_mask_is_refused_as_not_a_png_with_alpha(policy: InputPolicy) -> None:
    with pytest.raises(InputError, match="alpha"):
        await load_mask(encode(fmt="JPEG"), policy)


# -- several at once --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_several_references_are_labelled_in_order(root: Path, policy: InputPolicy) -> None:
    (root / "a.png").write_bytes(PNG)
    refs = [str(root / "a.png"), base64.b64encode(encode(fmt="JPEG")).decode()]
    images = await load_image_refs(refs, policy=policy, resolve_id=no_ids)
    assert [(i.label, i.format) for i in images] == [("image 1", "png"), ("image 2", "jpeg")]


@pytest.mark.anyio
async def test_every_bad_reference_is_listed_in_one_error(root: Path, policy: InputPolicy) -> None:
    (root / "a.png").write_bytes(PNG)
    (root / "b.png").write_bytes(PDF)
    refs = [str(root / "a.png"), str(root / "b.png"), "relative.png"]
    with pytest.raises(InputError) as caught:
        await load_image_refs(refs, policy=policy, resolve_id=no_ids)
    message = str(caught.value)
    assert message.startswith("2 problems") and "image 2 (b.png) is a PDF" in message
    assert "image 3" in message and caught.value.field == "image"


# -- URLs against a real loopback server --------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[str]
    release: threading.Event

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.seen.append(path)
        port = self.headers["Host"].rsplit(":", 1)[1]
        routes = {
            "/cat.png": lambda: self.send_body(PNG),
            "/fake.png": lambda: self.send_body(PDF),
            "/big.png": lambda: self.send_body(PNG + b"\x00" * 10_000),
            "/endless": self.send_endless,
            "/stall": lambda: self.release.wait(10),
            "/to-localhost": lambda: self.redirect(f"http://localhost:{port}/cat.png"),
            "/to-metadata": lambda: self.redirect("http://169.254.169.254/latest/meta-data/"),
            "/missing.png": lambda: self.send_body(b"not found", status=404),
        }
        if path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            self.redirect(f"/hop/{left - 1}" if left > 1 else "/cat.png")
        else:
            routes[path]()

    def send_body(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            return  # the client refused the body early (the size cap): expected

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_endless(self) -> None:
        """A chunked body with no Content-Length that goes on until the client hangs up."""
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = PNG + b"\x00" * (16_384 - len(PNG))
        try:
            for _ in range(4096):  # 64 MB at most, so a broken client cannot hang the test
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            return  # the client stopped reading: what the test wants


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    release = threading.Event()
    handler = type("H", (Handler,), {"seen": seen, "release": release})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    httpd.block_on_close = False
    thread = threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def url_policy() -> InputPolicy:
    return InputPolicy(allowed_hosts=frozenset({"127.0.0.1"}), download_timeout=5.0)


async def fetch(ref: str, policy: InputPolicy) -> InputImage:
    async with httpx2.AsyncClient(trust_env=False) as client:
        with anyio.fail_after(10):
            return await load(ref, policy, http=client)


async def fetch_refused(ref: str, policy: InputPolicy) -> str:
    with pytest.raises(InputError) as caught:
        await fetch(ref, policy)
    return str(caught.value)


@pytest.mark.anyio
async def test_a_url_on_an_allowed_host_is_downloaded_and_checked(
    server: tuple[str, list[str]], url_policy: InputPolicy
) -> None:
    base, _ = server
    image = await fetch(f"{base}/cat.png?sig=secret", url_policy)
    assert (image.format, image.data, image.filename) == ("png", PNG, "cat.png")


@pytest.mark.anyio
async def test_a_url_is_downloaded_with_a_private_client_when_none_is_shared(
    server: tuple[str, list[str]], url_policy: InputPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    base, _ = server
    with anyio.fail_after(10):
        image = await load(f"{base}/cat.png", url_policy)
    assert image.data == PNG


@pytest.mark.anyio
async def test_an_allowed_host_entry_may_name_the_port(server: tuple[str, list[str]]) -> None:
    base, _ = server
    host_port = base.removeprefix("http://")
    image = await fetch(f"{base}/cat.png", InputPolicy(allowed_hosts=frozenset({host_port})))
    assert image.format == "png"


@pytest.mark.anyio
async def test_a_download_without_content_length_stops_as_soon_as_it_passes_the_cap(
    server: tuple[str, list[str]], url_policy: InputPolicy
) -> None:
    base, _ = server
    message = await fetch_refused(f"{base}/endless", replace(url_policy, max_download_bytes=65_536))
    assert "more than the 64 KiB download limit" in message


@pytest.mark.anyio
async def test_a_content_length_over_the_cap_is_refused_before_reading(
    server: tuple[str, list[str]], url_policy: InputPolicy
) -> None:
    base, _ = server
    message = await fetch_refused(f"{base}/big.png", replace(url_policy, max_download_bytes=1024))
    assert "over the 1 KiB download limit" in message


@pytest.mark.anyio
async def test_redirects_are_followed_up_to_the_limit(server: tuple[str, list[str]], url_policy: InputPolicy) -> None:
    base, seen = server
    image = await fetch(f"{base}/hop/3", url_policy)
    assert image.data == PNG and seen == ["/hop/3", "/hop/2", "/hop/1", "/cat.png"]


@pytest.mark.anyio
async def test_too_many_redirects_are_refused(server: tuple[str, list[str]], url_policy: InputPolicy) -> None:
    base, seen = server
    assert "redirected more than 3 times" in await fetch_refused(f"{base}/hop/4", url_policy)
    assert len(seen) == 4


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "reason"), [("/to-localhost", "loopback"), ("/to-metadata", "cloud metadata")])
async def test_a_redirect_to_a_refused_address_is_checked_again_and_refused(
    server: tuple[str, list[str]], url_policy: InputPolicy, path: str, reason: str
) -> None:
    base, seen = server
    assert reason in await fetch_refused(f"{base}{path}", url_policy)
    assert seen == [path]  # the redirect target was never fetched


@pytest.mark.anyio
async def test_a_downloaded_non_image_is_refused_whatever_its_content_type(
    server: tuple[str, list[str]], url_policy: InputPolicy
) -> None:
    base, _ = server
    assert "image 1 (fake.png) is a PDF file" in await fetch_refused(f"{base}/fake.png", url_policy)


@pytest.mark.anyio
async def test_an_http_error_status_is_reported(server: tuple[str, list[str]], url_policy: InputPolicy) -> None:
    base, _ = server
    message = await fetch_refused(f"{base}/missing.png?token=s3cret", url_policy)
    assert "answered HTTP 404" in message and "s3cret" not in message  # signed URLs stay private


@pytest.mark.anyio
async def test_a_server_that_never_answers_times_out(server: tuple[str, list[str]], url_policy: InputPolicy) -> None:
    base, _ = server
    message = await fetch_refused(f"{base}/stall", replace(url_policy, download_timeout=0.3))
    assert "took longer than 0.3 s" in message


# -- SSRF: refused before any connection -------------------------------------------------------

PUBLIC_IP = "93.184.215.14"
FAKE_DNS = {
    "images.example.com": [PUBLIC_IP],
    "intranet.example.com": ["10.1.2.3"],
    "sneaky.example.com": [PUBLIC_IP, "127.0.0.1"],  # any bad address refuses the host
    "v6.example.com": ["::ffff:192.168.0.1"],
}


async def fake_dns(host: str, port: int) -> list[str]:
    if host not in FAKE_DNS:
        raise OSError(f"no such host {host}")
    return FAKE_DNS[host]


class Recorder:
    """A MockTransport handler that records requests and answers with a PNG."""

    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return httpx2.Response(200, content=PNG)


async def mock_fetch(ref: str, policy: InputPolicy | None = None, **client_kw: object) -> Recorder:
    recorder = Recorder()
    transport = httpx2.MockTransport(recorder)
    async with httpx2.AsyncClient(transport=transport, **client_kw) as client:  # type: ignore[arg-type]
        await load(ref, policy or InputPolicy(), http=client, resolver=fake_dns)
    return recorder


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/x.png", "loopback"),
        ("http://127.0.0.1/x.png", "loopback"),
        ("https://localhost/x.png", "loopback"),
        ("http://localhost:8080/x.png", "loopback"),
        ("http://10.0.0.1/x.png", "private"),
        ("http://192.168.1.1/x.png", "private"),
        ("http://172.16.0.1/x.png", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("https://[fd00:ec2::254]/", "cloud metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
        ("http://[::1]/x.png", "loopback"),
        ("http://[fe80::1]/x.png", "link-local"),
        ("http://[::ffff:127.0.0.1]/x.png", "loopback"),
        ("https://[::ffff:10.0.0.1]/x.png", "private"),
        ("http://100.64.0.1/x.png", "shared"),
        ("http://0.0.0.0/x.png", "unspecified"),
        ("https://224.0.0.1/x.png", "multicast"),
        ("https://240.0.0.1/x.png", "private"),  # reserved 240/4: Python counts it as private
        ("https://2130706433/x.png", "loopback"),  # 127.0.0.1 as one decimal number
        ("https://0x7f.1/x.png", "loopback"),
        ("https://intranet.example.com/x.png", "resolves to 10.1.2.3, a private"),
        ("https://sneaky.example.com/x.png", "resolves to 127.0.0.1, a loopback"),
        ("https://v6.example.com/x.png", "private"),
        ("ftp://images.example.com/x.png", "ftp:// URLs are not accepted"),
        ("gopher://images.example.com/x", "gopher:// URLs are not accepted"),
        ("https://bob:hunter2@images.example.com/x.png", "user name or password"),
        ("http://images.example.com/x.png", "plain http:// is refused"),
        ("https://nowhere.example.com/x.png", "could not be resolved"),
    ],
)
async def test_unsafe_urls_are_refused_before_any_connection(url: str, reason: str) -> None:
    recorder = Recorder()
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(recorder)) as client:
        with pytest.raises(InputError) as caught:
            await load(url, InputPolicy(), http=client, resolver=fake_dns)
    assert reason in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert recorder.requests == []


@pytest.mark.anyio
async def test_a_public_host_is_fetched_from_the_address_that_was_checked() -> None:
    recorder = await mock_fetch("https://images.example.com/pics/cat.png?v=2")
    (request,) = recorder.requests
    assert request.url.host == PUBLIC_IP  # no second DNS lookup: no rebinding window
    assert request.url.path == "/pics/cat.png" and request.url.query == b"v=2"
    assert request.headers["host"] == "images.example.com"
    assert request.extensions["sni_hostname"] == "images.example.com"  # TLS checks the name


@pytest.mark.anyio
async def test_the_shared_clients_headers_and_auth_never_reach_a_download_host() -> None:
    recorder = await mock_fetch(
        "https://images.example.com/cat.png",
        headers={"Authorization": "Bearer sk-secret", "X-Api-Key": "sk-secret"},
        auth=("user", "sk-secret"),
    )
    (request,) = recorder.requests
    assert "sk-secret" not in str(request.headers)
    assert request.headers["accept-encoding"] == "identity"


@pytest.mark.anyio
async def test_an_allowed_host_is_fetched_by_name_over_plain_http() -> None:
    policy = InputPolicy(allowed_hosts=frozenset({"intranet.example.com"}))
    recorder = await mock_fetch("http://intranet.example.com/cat.png", policy)
    (request,) = recorder.requests
    assert request.url.host == "intranet.example.com"
