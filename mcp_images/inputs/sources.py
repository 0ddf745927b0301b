"""Where an input image's bytes are: a reference -> a confined local file or bytes in memory.

`locate` tells the reference forms apart (listed in `inputs`): it looks an images:// id up
in the store, decodes data URIs and raw base64, confines local paths (and file:// URIs) to
the allowed folders, and hands URLs to `netguard`. What the bytes are is `inputs`' business.

Residual risk, local paths: the real path is checked, then opened again at upload; a local
user who can rewrite a folder inside an allowed root between the two could swap the file.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from mcp_images.errors import InputError
from mcp_images.imaging import formats as imaging
from mcp_images.inputs import netguard

if TYPE_CHECKING:
    import httpx2

__all__ = ["ID_PATTERN", "IdResolver", "Source", "locate"]

IdResolver = Callable[[str], Path | None]
ID_PATTERN = re.compile(r"[0-9a-f]{12}")
BASE64_MIN_CHARS = 64  # shorter strings are names or ids, not image data
BASE64_RE = re.compile(r"[A-Za-z0-9+/_\-\s]+={0,2}\s*")
SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]+):")  # 2+ chars: "C:" stays a drive
SHOWN_MAX_CHARS = 200  # a reference quoted back in a message is cut here


@dataclass(frozen=True)
class Source:
    """Where the bytes are before checking: a confined local file or bytes in memory."""

    name: str  # for messages and the upload filename: a basename, or "" when there is none
    path: Path | None = None
    data: bytes | None = None

    @property
    def content(self) -> Path | bytes:
        if self.data is not None:
            return self.data
        if self.path is None:  # unreachable: every Source is made with one of the two
            raise InputError("the input has neither a file nor data")
        return self.path


async def locate(
    ref: str,
    label: str,
    *,
    local_roots: Sequence[Path] | None,
    fetch: netguard.FetchRules,
    resolve_id: IdResolver,
    http: httpx2.AsyncClient | None,
) -> Source:
    """Find the bytes that ``ref`` (already stripped) stands for; ``label`` names it in messages.

    Local paths must lie in ``local_roots``; None turns them off (as over HTTP). The store's
    own images are always allowed. ``fetch`` bounds a URL's download; ``http`` is the shared
    client for it (None: a private one).

    Raises:
        InputError: the reference is empty, malformed, unknown, outside the allowed folders
            or cannot be fetched; the message says what to change.
    """
    if not ref:
        raise InputError(f"{label} is empty: give a path, an images:// id, a URL or base64 data")
    if "\x00" in ref:  # no file name, URL or base64 holds one; the OS would refuse it later
        raise InputError(f"{label} contains a NUL character (\\x00); remove it")
    lowered = ref[:16].lower()
    if lowered.startswith("data:"):
        return Source("", data=_decode_data_uri(ref, label))
    if lowered.startswith("images://"):
        return _from_id(ref[len("images://") :].strip("/"), label, resolve_id)
    if lowered.startswith("file:"):
        return await _from_path(_file_uri_path(ref, label), label, local_roots)
    if SCHEME_RE.match(ref):
        try:
            got = await netguard.download(ref, client=http, rules=fetch)
        except InputError as exc:
            raise InputError(f"{label}: {exc}") from exc
        return Source(unquote(got.url.path.rsplit("/", 1)[-1]), data=got.data)
    if ID_PATTERN.fullmatch(ref):
        return _from_id(ref, label, resolve_id)
    data = _raw_base64(ref, label)
    if data is not None:
        return Source("", data=data)
    return await _from_path(ref, label, local_roots)


def _from_id(image_id: str, label: str, resolve_id: IdResolver) -> Source:
    image_id = image_id.split(".", 1)[0]  # images://<id>.png names the same image
    if not ID_PATTERN.fullmatch(image_id):
        raise InputError(f"{label}: {_shown(image_id)!r} is not an image id (ids look like 3f9a0c1b2d4e)")
    path = resolve_id(image_id)
    if path is None:
        raise InputError(
            f"{label}: no image with id {image_id} was made by this server "
            "(ids come from generate_image/edit_image results)"
        )
    # The store's own files are always allowed: no confinement, even when paths are off.
    return Source(path.name, path=path)


def _file_uri_path(ref: str, label: str) -> str:
    parts = urlsplit(ref)
    if parts.netloc not in ("", "localhost"):
        raise InputError(f"{label}: file:// URIs must name a file on this machine, not {parts.netloc}")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise InputError(f"{label}: the file:// URI must hold an absolute path (file:///...)")
    return path


async def _from_path(raw: str, label: str, local_roots: Sequence[Path] | None) -> Source:
    if local_roots is None:
        raise InputError(
            f"{label}: local paths are off over HTTP; set MCP_IMAGES_INPUT_DIRS to allow folders "
            "(or pass the image as an https:// URL, base64 data or an images:// id)"
        )
    if "\x00" in raw:  # a file:// URI's %00
        raise InputError(f"{label} contains a NUL character (\\x00); remove it")
    try:
        expanded = Path(raw).expanduser()
    except RuntimeError as exc:  # "~someone" with no such user
        raise InputError(f"{label}: {_shown(raw)!r} names an unknown home folder; give an absolute path") from exc
    if not expanded.is_absolute():
        raise InputError(f"{label}: {_shown(raw)!r} is a relative path; give an absolute path")
    raw = _shown(raw)
    real = Path(os.path.realpath(expanded))  # follows symlinks and collapses ".."
    # A root that is not a clean absolute path (a client's "file://" with no path) grants nothing.
    roots = [Path(os.path.realpath(r)) for r in local_roots if Path(r).is_absolute() and "\x00" not in str(r)]
    if not any(real.is_relative_to(root) for root in roots):
        allowed = ", ".join(str(r) for r in roots) or "none"
        raise InputError(
            f"{label}: {raw} is outside the folders this server may read ({allowed}); add its "
            "folder to MCP_IMAGES_INPUT_DIRS, or let the client share it as an MCP root"
        )
    await anyio.to_thread.run_sync(_check_file, real, raw, label)
    return Source(expanded.name, path=real)


def _shown(text: str) -> str:
    """A reference as messages quote it: cut short, so a huge string is not echoed back whole."""
    return text if len(text) <= SHOWN_MAX_CHARS else text[: SHOWN_MAX_CHARS - 3] + "..."


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
