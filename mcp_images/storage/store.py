"""Saved images: atomic files in the output folder, each with an ``images://<id>`` URI.

A file's name carries its id (``20261122-153012-a-red-fox-3f9a0c1b2d4e.png``), so the id
finds the file after a restart with no index to keep in step. Bytes are written exactly as
the upstream sent them (OpenAI embeds C2PA provenance that a re-encode would strip).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

ID_RE = re.compile(r"[0-9a-f]{12}")  # always fullmatch: "$" would let a trailing newline through
URI_PREFIX = "images://"
MIME_BY_FORMAT = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "gif": "image/gif"}
EXT_BY_FORMAT = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif"}
SLUG_MAX_CHARS = 40


@dataclass(frozen=True)
class StoredImage:
    """One saved image, as results and the resource template describe it."""

    id: str
    path: Path
    format: str
    width: int
    height: int
    bytes: int

    @property
    def uri(self) -> str:
        return f"{URI_PREFIX}{self.id}"

    @property
    def mime_type(self) -> str:
        return MIME_BY_FORMAT.get(self.format, "application/octet-stream")

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "uri": self.uri,
            "path": str(self.path),
            "mime_type": self.mime_type,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
        }


def slugify(text: str, max_chars: int = SLUG_MAX_CHARS) -> str:
    """A file-name-safe slug of the prompt's first words (ASCII, lower case, hyphens)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > max_chars:
            break
        slug = candidate
    return slug or "image"


SAFE_NAME_RE = re.compile(r"[^A-Za-z0-9._-]+")
NAME_MAX_CHARS = 80
NAME_MAX_BYTES = 255  # one folder name, on every common filesystem
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def safe_stem(filename: str) -> str:
    """A file name the agent asked for, made safe: no folders, no dot files, no extension.

    Raises:
        InputError: nothing usable is left of the name.
    """
    from mcp_images.errors import InputError

    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = SAFE_NAME_RE.sub("-", unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode())
    stem = stem.strip(".-_")[:NAME_MAX_CHARS]
    if not stem:
        raise InputError(
            f"filename {filename!r} has no usable characters; use letters, digits, '-', '_'", field="filename"
        )
    return stem


def safe_subdir(output_dir: Path, output_path: str) -> Path:
    """A folder inside the output folder, from a relative path (or an absolute one inside it).

    Raises:
        InputError: the path leaves the output folder (``..``, another absolute path, a symlink out).
    """
    from mcp_images.errors import InputError

    def refuse(why: str) -> InputError:
        return InputError(f"output_path {output_path!r} {why}", field="output_path")

    if CONTROL_RE.search(output_path):
        raise refuse("contains control characters; give a plain folder path such as 'project/icons'")
    root = output_dir.resolve()
    try:
        raw = Path(output_path).expanduser()
    except RuntimeError as exc:  # "~someone" with no such user
        raise refuse("names an unknown home folder; give a folder inside the output folder") from exc
    target = (raw if raw.is_absolute() else root / raw).resolve()
    if target != root and not target.is_relative_to(root):
        raise InputError(
            f"output_path {output_path!r} is outside the output folder {root}; give a folder inside it "
            "(relative, such as 'project/icons'), or change MCP_IMAGES_OUTPUT_DIR",
            field="output_path",
        )
    relative = target.relative_to(root)
    # Checked now, before anything is spent: the folder is made only when the image is saved.
    if any(len(part.encode()) > NAME_MAX_BYTES for part in relative.parts):
        raise refuse(f"has a folder name longer than {NAME_MAX_BYTES} bytes; use shorter names")
    problem = folder_problem(target)
    if problem is not None:
        raise refuse(f"{problem}; give another folder")
    return relative


def folder_problem(target: Path) -> str | None:
    """Why images cannot be saved in ``target`` (made on first save if missing), or None."""
    existing = target
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return "is a file, not a folder" if existing == target else f"goes through {existing}, which is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot be written: {existing} is not writable"
    return None


def new_id() -> str:
    return secrets.token_hex(6)


def id_from_ref(ref: str) -> str | None:
    """``images://<id>`` or a bare id -> the id; anything else -> None."""
    candidate = ref.removeprefix(URI_PREFIX)
    return candidate if ID_RE.fullmatch(candidate) else None


class ImageStore:
    """The output folder. Writes are atomic and never replace an existing file."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir

    def save(
        self,
        data: bytes,
        *,
        fmt: str,
        prompt: str,
        width: int,
        height: int,
        tag: str = "",
        subdir: Path | None = None,
        stem: str | None = None,
    ) -> StoredImage:
        """Write ``data`` under a fresh recognisable name and return its record.

        ``subdir`` (relative, already checked by the caller) and ``stem`` (already
        sanitised) let a caller choose where in the output folder and what name.

        Raises:
            OSError: the folder cannot be created or written (disk full, permissions).
        """
        folder = self.output_dir / subdir if subdir else self.output_dir
        folder.mkdir(parents=True, exist_ok=True)
        image_id = new_id()
        ext = EXT_BY_FORMAT.get(fmt, fmt)
        if stem is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            stem = f"{stamp}-{slugify(prompt)}{'-' + tag if tag else ''}"
        final = folder / f"{stem}-{image_id}.{ext}"
        _write_new_file(final, data)
        return StoredImage(id=image_id, path=final, format=fmt, width=width, height=height, bytes=len(data))

    def check_writable(self) -> None:
        """Check, before anything is spent, that images can be saved in the output folder.

        Raises:
            ConfigError: the output folder is a file, lies under one, or is not writable.
        """
        from mcp_images.errors import ConfigError

        problem = folder_problem(self.output_dir)
        if problem is not None:
            raise ConfigError(
                f"the output folder {self.output_dir} {problem}; set MCP_IMAGES_OUTPUT_DIR to a folder this server can write"
            )

    def find(self, image_id: str) -> Path | None:
        """The file saved under ``image_id``, or None (deleted, or never made here).

        Only a regular file named ``<stem>-<id>.<ext>`` inside the output folder counts: a
        symlink (which could point anywhere, or at a device) or ``x-<id>.b-<other id>.png``
        (a name an agent chose) does not.
        """
        if not ID_RE.fullmatch(image_id) or not self.output_dir.is_dir():
            return None
        root = self.output_dir.resolve()
        for path in self.output_dir.rglob(f"*-{image_id}.*"):
            if _is_saved_file(path, image_id, root):
                return path
        return None


def _is_saved_file(path: Path, image_id: str, root: Path) -> bool:
    stem, _, ext = path.name.rpartition(".")
    if path.name.startswith(".") or not stem.endswith(f"-{image_id}") or not ext:
        return False
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and path.resolve().is_relative_to(root)


def _write_new_file(final: Path, data: bytes) -> None:
    """Write to a hidden temp file, then hard-link it into place.

    The link is atomic and fails if the name exists, so a reader never sees half a file
    and nothing is overwritten; on any failure the temp file is removed.
    """
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, final)
        except OSError:
            # Filesystems without hard links: exclusive create keeps "never overwrite".
            with open(final, "xb") as out, open(tmp, "rb") as src:
                out.write(src.read())
    finally:
        tmp.unlink(missing_ok=True)
