"""Image references from an agent -> checked input images, ready to upload.

A reference is one of:

1. an absolute local path (``~`` expanded), confined to the allowed folders;
2. a ``file://`` URI (percent-decoded), the same as a path;
3. ``images://<id>`` or a bare id: an image this server made (always allowed);
4. a ``data:image/...;base64,...`` URI, or raw base64 that decodes to an image;
5. an ``https://`` URL (``http://`` only for allowed hosts), fetched by `netguard`.

`input_sources` finds the bytes; this module checks what they are. The type always comes
from the content, never from the name or a declared type. PNG, JPEG and WebP pass untouched
(a local file is kept as a path and streamed at upload); GIF, BMP and TIFF are converted to
PNG with a note; HEIC/AVIF and non-images are refused. Sizes are checked later against the
model (`edit_rules.check_edit_inputs`), so nothing is shrunk here.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import anyio
import anyio.to_thread

from mcp_images.catalog.edit_rules import InputFacts
from mcp_images.errors import InputError
from mcp_images.imaging import formats as imaging
from mcp_images.inputs import netguard
from mcp_images.inputs.sources import IdResolver, Source, locate
from mcp_images.units import format_bytes

if TYPE_CHECKING:
    import httpx2

HEAD_BYTES = 32  # what imaging.sniff_format looks at
PASS_FORMATS = ("png", "jpeg", "webp")
CONVERT_FORMATS = ("gif", "bmp", "tiff")
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}
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
    max_file_bytes: int = 50 * 1024 * 1024  # the most any model takes; checked before a byte is read
    max_convert_pixels: int = 40_000_000  # a conversion decodes every pixel (4 bytes each, and copies)
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
    roots = policy.roots if policy.allow_local_paths else None  # None: local paths are off
    fetch = _fetch_rules(policy, resolver)
    try:
        source = await locate(ref.strip(), label, local_roots=roots, fetch=fetch, resolve_id=resolve_id, http=http)
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


def _fetch_rules(policy: InputPolicy, resolver: netguard.HostResolver | None) -> netguard.FetchRules:
    return netguard.FetchRules(
        allowed_hosts=policy.allowed_hosts,
        max_bytes=policy.max_download_bytes,
        timeout=policy.download_timeout,
        max_redirects=policy.max_redirects,
        resolver=resolver or netguard.system_resolver,
    )


# -- what the bytes are -----------------------------------------------------------------------


def _inspect(source: Source, label: str, policy: InputPolicy, is_mask: bool) -> InputImage:
    """Check the content; convert where allowed. Runs in a worker thread (Pillow, file I/O)."""
    shown = f"{label} ({source.name})" if source.name else label
    _check_size(source, shown, policy.max_file_bytes)
    head = _head(source, label)
    fmt = imaging.sniff_format(head)
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
        _check_pixels(_probe(source.content, shown), shown, policy.max_convert_pixels, "converted to PNG")
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
        _check_pixels(info, shown, policy.max_convert_pixels, "converted to an alpha mask")
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


def _check_size(source: Source, shown: str, cap: int) -> None:
    """Refuse an input over ``cap`` bytes before reading it (a 50 GB sparse file reads for minutes).

    Raises:
        InputError: the input is larger than ``cap``.
    """
    if source.path is None:
        size = len(source.data or b"")
    else:
        try:
            size = source.path.stat().st_size
        except OSError as exc:
            raise InputError(f"{shown}: cannot read it ({exc.strerror})") from exc
    if size > cap:
        raise InputError(
            f"{shown} is {format_bytes(size)}; input images must be under {format_bytes(cap)}: give a smaller file"
        )


def _check_pixels(info: imaging.ImageInfo, shown: str, cap: int, what: str) -> None:
    """Refuse to decode a huge image for a conversion (a small GIF can hold 12000x12000 pixels).

    Raises:
        InputError: the image has more than ``cap`` pixels.
    """
    if info.width * info.height > cap:
        raise InputError(
            f"{shown} is {info.width}x{info.height} {info.format.upper()}, too large to be {what} here "
            f"(at most {cap / 1e6:g} megapixels): convert it to a PNG or JPEG yourself, or make it smaller"
        )


def _head(source: Source, label: str) -> bytes:
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
