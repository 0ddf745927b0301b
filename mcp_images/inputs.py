"""Image references from an agent -> checked input images, ready to upload.

A reference is one of:

1. an absolute local path (``~`` expanded), confined to the allowed folders;
2. a ``file://`` URI (percent-decoded), the same as a path;
3. ``images://<id>`` or a bare id: an image this server made (always allowed);
4. a ``data:image/...;base64,...`` URI, or raw base64 that decodes to an image;
5. an ``https://`` URL (``http://`` only for allowed hosts), fetched by `netguard`.

The type always comes from the content, never from the name or a declared type. PNG, JPEG
and WebP pass untouched (a local file is kept as a path and streamed at upload); GIF, BMP
and TIFF are converted to PNG with a note; HEIC/AVIF and non-images are refused. Sizes are
checked later against the model (`catalog.check_edit_inputs`), so nothing is shrunk here.

Residual risk, local paths: the real path is checked, then opened again at upload; a local
user who can rewrite a folder inside an allowed root between the two could swap the file.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from mcp_images import imaging, netguard
from mcp_images.catalog import InputFacts
from mcp_images.errors import InputError

if TYPE_CHECKING:
    import httpx2

IdResolver = Callable[[str], Path | None]
ID_PATTERN = re.compile(r"[0-9a-f]{12}")
HEAD_BYTES = 32  # what imaging.sniff_format looks at
PASS_FORMATS = ("png", "jpeg", "webp")
CONVERT_FORMATS = ("gif", "bmp", "tiff")
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
BASE64_MIN_CHARS = 64  # shorter strings are names or ids, not image data
BASE64_RE = re.compile(r"[A-Za-z0-9+/_\-\s]+={0,2}\s*")
SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]+):")  # 2+ chars: "C:" stays a drive
SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")
MASK_FIX = (
    "save it as RGBA PNG where the area to edit is fully transparent, "
    "or set MCP_IMAGES_CONVERT_MASK=true to convert white areas"
)
NOT_IMAGE_MAGIC = (  # what a non-image most likely is, for a message the agent can act on
    (b"%PDF", "a PDF file"),
    (b"PK\x03\x04", "a ZIP archive (or an Office document)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"<svg", "an SVG file (vector images are not accepted)"),
    (b"<?xml", "an XML or SVG file"),
    (b"<!doctype html", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"{", "a JSON document"),
)


@dataclass(frozen=True)
class InputPolicy:
    """What references the server accepts (built by the runtime from settings and roots)."""

    roots: tuple[Path, ...] = ()
    allow_local_paths: bool = True
    allowed_hosts: frozenset[str] = frozenset()
    max_download_bytes: int = 50 * 1024 * 1024
    download_timeout: float = 30.0  # seconds, whole download
    max_redirects: int = 3
    convert_formats: bool = True
    convert_bw_mask: bool = False


@dataclass
class InputImage:
    """One checked input: a local file (``path``) or bytes in memory (``data``)."""

    label: str
    filename: str
    format: str
    mime_type: str
    width: int
    height: int
    bytes: int
    has_alpha: bool
    path: Path | None = None
    data: bytes | None = None
    note: str | None = None

    def facts(self) -> InputFacts:
        return InputFacts(
            label=self.label,
            format=self.format,
            width=self.width,
            height=self.height,
            bytes=self.bytes,
            has_alpha=self.has_alpha,
        )

    def open(self) -> BinaryIO:
        """A fresh binary stream of the image, for a streamed upload."""
        if self.data is not None:
            return io.BytesIO(self.data)
        if self.path is None:
            raise InputError(f"{self.label} has neither a file nor data")
        return self.path.open("rb")


@dataclass(frozen=True)
class _Source:
    """Where the bytes are before checking: a confined local file or bytes in memory."""

    name: str  # for messages and the upload filename: a basename, or "" when there is none
    path: Path | None = None
    data: bytes | None = None

    @property
    def content(self) -> Path | bytes:
        if self.data is not None:
            return self.data
        if self.path is None:  # unreachable: every _Source is made with one of the two
            raise InputError("the input has neither a file nor data")
        return self.path


async def load_image_ref(
    ref: str,
    *,
    label: str,
    policy: InputPolicy,
    resolve_id: IdResolver,
    http: httpx2.AsyncClient | None = None,
    is_mask: bool = False,
    resolver: netguard.HostResolver | None = None,
) -> InputImage:
    """Turn one reference into a checked input image.

    ``resolver`` replaces DNS for URL checks (tests); by default the system's.

    Raises:
        InputError: the reference cannot be used; the message says what to change.
    """
    field = "mask" if is_mask else "image"
    try:
        source = await _locate(ref.strip(), label, policy, resolve_id, http, resolver)
        return await anyio.to_thread.run_sync(_inspect, source, label, policy, is_mask)
    except InputError as exc:
        exc.field = exc.field or field
        raise


async def load_image_refs(
    refs: Sequence[str],
    *,
    policy: InputPolicy,
    resolve_id: IdResolver,
    http: httpx2.AsyncClient | None = None,
    resolver: netguard.HostResolver | None = None,
) -> list[InputImage]:
    """Load several references concurrently as "image 1", "image 2", ..., keeping their order.

    Raises:
        InputError: one or more references cannot be used (every problem is listed).
    """
    results: list[InputImage | InputError | None] = [None] * len(refs)

    async def one(index: int, ref: str) -> None:
        try:
            results[index] = await load_image_ref(
                ref, label=f"image {index + 1}", policy=policy, resolve_id=resolve_id,
                http=http, resolver=resolver,
            )  # fmt: skip
        except InputError as exc:
            results[index] = exc

    async with anyio.create_task_group() as group:
        for index, ref in enumerate(refs):
            group.start_soon(one, index, ref)
    errors = [r for r in results if isinstance(r, InputError)]
    if len(errors) == 1:
        raise errors[0]
    if errors:
        joined = "; ".join(f"({i}) {e}" for i, e in enumerate(errors, 1))
        raise InputError(f"{len(errors)} problems: {joined}", field="image")
    return [r for r in results if isinstance(r, InputImage)]


# -- where the bytes are ----------------------------------------------------------------------


async def _locate(
    ref: str,
    label: str,
    policy: InputPolicy,
    resolve_id: IdResolver,
    http: httpx2.AsyncClient | None,
    resolver: netguard.HostResolver | None,
) -> _Source:
    if not ref:
        raise InputError(f"{label} is empty: give a path, an images:// id, a URL or base64 data")
    lowered = ref[:16].lower()
    if lowered.startswith("data:"):
        return _Source("", data=_decode_data_uri(ref, label))
    if lowered.startswith("images://"):
        return _from_id(ref[len("images://") :].strip("/"), label, resolve_id)
    if lowered.startswith("file:"):
        return await _from_path(_file_uri_path(ref, label), label, policy)
    if SCHEME_RE.match(ref):
        rules = netguard.FetchRules(
            allowed_hosts=policy.allowed_hosts,
            max_bytes=policy.max_download_bytes,
            timeout=policy.download_timeout,
            max_redirects=policy.max_redirects,
            resolver=resolver or netguard.system_resolver,
        )
        try:
            got = await netguard.download(ref, client=http, rules=rules)
        except InputError as exc:
            raise InputError(f"{label}: {exc}") from exc
        return _Source(unquote(got.url.path.rsplit("/", 1)[-1]), data=got.data)
    if ID_PATTERN.fullmatch(ref):
        return _from_id(ref, label, resolve_id)
    data = _raw_base64(ref, label)
    if data is not None:
        return _Source("", data=data)
    return await _from_path(ref, label, policy)


def _from_id(image_id: str, label: str, resolve_id: IdResolver) -> _Source:
    image_id = image_id.split(".", 1)[0]  # images://<id>.png names the same image
    if not ID_PATTERN.fullmatch(image_id):
        raise InputError(f"{label}: {image_id!r} is not an image id (ids look like 3f9a0c1b2d4e)")
    path = resolve_id(image_id)
    if path is None:
        raise InputError(
            f"{label}: no image with id {image_id} was made by this server "
            "(ids come from generate_image/edit_image results)"
        )
    # The store's own files are always allowed: no confinement, even when paths are off.
    return _Source(path.name, path=path)


def _file_uri_path(ref: str, label: str) -> str:
    parts = urlsplit(ref)
    if parts.netloc not in ("", "localhost"):
        raise InputError(f"{label}: file:// URIs must name a file on this machine, not {parts.netloc}")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise InputError(f"{label}: the file:// URI must hold an absolute path (file:///...)")
    return path


async def _from_path(raw: str, label: str, policy: InputPolicy) -> _Source:
    if not policy.allow_local_paths:
        raise InputError(
            f"{label}: local paths are off over HTTP; set MCP_IMAGES_INPUT_DIRS to allow folders "
            "(or pass the image as an https:// URL, base64 data or an images:// id)"
        )
    expanded = Path(raw).expanduser()
    if not expanded.is_absolute():
        raise InputError(f"{label}: {raw!r} is a relative path; give an absolute path")
    real = Path(os.path.realpath(expanded))  # follows symlinks and collapses ".."
    roots = [Path(os.path.realpath(root)) for root in policy.roots]
    if not any(real.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "none"
        raise InputError(
            f"{label}: {raw} is outside the folders this server may read ({allowed}); add its "
            "folder to MCP_IMAGES_INPUT_DIRS, or let the client share it as an MCP root"
        )
    await anyio.to_thread.run_sync(_check_file, real, raw, label)
    return _Source(expanded.name, path=real)


def _check_file(real: Path, raw: str, label: str) -> None:
    try:
        info = real.stat()
    except FileNotFoundError as exc:
        raise InputError(f"{label}: there is no file at {raw}") from exc
    except OSError as exc:
        raise InputError(f"{label}: cannot read {raw} ({exc.strerror})") from exc
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{label}: {raw} is a folder; give the path of an image file")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
        raise InputError(f"{label}: {raw} is not a regular file")
    if not os.access(real, os.R_OK):
        raise InputError(f"{label}: cannot read {raw} (permission denied)")


def _decode_data_uri(ref: str, label: str) -> bytes:
    header, sep, payload = ref.partition(",")
    if not sep:
        raise InputError(f"{label}: the data URI has no ',' before its data")
    if not header.lower().endswith(";base64"):
        raise InputError(f"{label}: the data URI must be base64 (data:image/png;base64,...)")
    return _b64decode(payload, label)


def _raw_base64(ref: str, label: str) -> bytes | None:
    """Raw base64 image data, or None when ``ref`` does not look like base64 at all.

    A raw JPEG starts "/9j/", like a path: it counts as data only if it decodes to an image.
    """
    if len(ref) < BASE64_MIN_CHARS or not BASE64_RE.fullmatch(ref):
        return None
    if ref.startswith(("/", "~")):
        try:
            head = _b64decode(ref[:44], label)
        except InputError:
            return None
        if imaging.sniff_format(head) is None:
            return None
    return _b64decode(ref, label)


def _b64decode(text: str, label: str) -> bytes:
    compact = "".join(text.split())
    compact += "=" * (-len(compact) % 4)
    try:
        if "-" in compact or "_" in compact:
            return base64.urlsafe_b64decode(compact.encode("ascii"))
        return base64.b64decode(compact.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{label}: the base64 data is not valid ({exc})") from exc


# -- what the bytes are -----------------------------------------------------------------------


def _inspect(source: _Source, label: str, policy: InputPolicy, is_mask: bool) -> InputImage:
    """Check the content; convert where allowed. Runs in a worker thread (Pillow, file I/O)."""
    head = _head(source, label)
    fmt = imaging.sniff_format(head)
    shown = f"{label} ({source.name})" if source.name else label
    if fmt is None:
        raise InputError(
            f"{shown} is {_describe(head)}, not an image (checked by content, not by name); give a PNG, JPEG or WebP"
        )
    if fmt in ("heic", "avif"):
        raise InputError(f"{shown}: {fmt.upper()} is not supported: convert to PNG or JPEG first")
    note = None
    data = source.data
    if fmt in CONVERT_FORMATS:
        if not policy.convert_formats:
            raise InputError(f"{shown} is {fmt.upper()}; give a PNG, JPEG or WebP")
        data = imaging.to_png(source.content)
        note = f"{label} was {fmt.upper()}; converted to PNG"
    elif fmt not in PASS_FORMATS:
        raise InputError(f"{shown} is {fmt.upper()}; give a PNG, JPEG or WebP")
    info = _probe(source.content if data is None else data, shown)
    if is_mask and not (info.format == "png" and info.has_alpha):
        if info.has_alpha:
            raise InputError(
                f"{shown} is {info.format.upper()}; a mask must be a PNG with an alpha channel: "
                "save it as RGBA PNG where the area to edit is fully transparent"
            )
        if not policy.convert_bw_mask:
            raise InputError(f"{shown} has no alpha channel: {MASK_FIX}")
        data = imaging.bw_mask_to_alpha(source.content if data is None else data)
        info = _probe(data, shown)
        note = f"{label} had no alpha channel; converted it: white areas became the area to edit"
    path = source.path if data is None else None
    return InputImage(
        label=label,
        filename=_filename(source.name, label, info.format),
        format=info.format,
        mime_type=imaging.FORMAT_MIME[info.format],
        width=info.width,
        height=info.height,
        bytes=info.bytes,  # of the file, or of the converted data
        has_alpha=info.has_alpha,
        path=path,
        data=data,
        note=note,
    )


def _head(source: _Source, label: str) -> bytes:
    if source.path is None:
        if not source.data:
            raise InputError(f"{label} is empty (0 bytes)")
        return source.data[:HEAD_BYTES]
    try:
        with source.path.open("rb") as f:  # the head only: the file is streamed at upload
            head = f.read(HEAD_BYTES)
    except OSError as exc:
        raise InputError(f"{label}: cannot read {source.name} ({exc.strerror})") from exc
    if not head:
        raise InputError(f"{label} ({source.name}) is empty (0 bytes)")
    return head


def _probe(source: Path | bytes, shown: str) -> imaging.ImageInfo:
    try:
        return imaging.probe(source)
    except InputError as exc:
        raise InputError(f"{shown}: {exc}") from exc


def _describe(head: bytes) -> str:
    lowered = head.lstrip().lower()
    for magic, kind in NOT_IMAGE_MAGIC:
        if lowered.startswith(magic.lower()):
            return kind
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file"
    return "an unrecognised file"


def _filename(name: str, label: str, fmt: str) -> str:
    """A safe upload name whose extension matches the real format."""
    stem = SAFE_NAME_RE.sub("-", name.rsplit(".", 1)[0] if "." in name else name)
    stem = stem.strip(".-_")[:64] or SAFE_NAME_RE.sub("-", label).strip("-") or "image"
    return f"{stem}.{EXTENSIONS.get(fmt, fmt)}"
