"""The one table of image formats: each format's MIME type and file extension.

Format names are ours (``png jpeg webp gif svg bmp tiff``, as `formats.sniff_format` gives
them). Saving, the images:// resource, results, uploads and the sandbox all look a format up
here, so a new format is one row. No Pillow here: the store imports this on the start-up path.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["EXTENSION_BY_FORMAT", "FORMATS", "MIME_BY_FORMAT", "UNKNOWN_MIME", "extension", "mime_type"]

UNKNOWN_MIME = "application/octet-stream"


class FormatInfo(NamedTuple):
    mime: str
    extension: str  # without the dot


FORMATS: dict[str, FormatInfo] = {
    "png": FormatInfo("image/png", "png"),
    "jpeg": FormatInfo("image/jpeg", "jpg"),
    "webp": FormatInfo("image/webp", "webp"),
    "gif": FormatInfo("image/gif", "gif"),
    "svg": FormatInfo("image/svg+xml", "svg"),
    "bmp": FormatInfo("image/bmp", "bmp"),
    "tiff": FormatInfo("image/tiff", "tiff"),
}

MIME_BY_FORMAT: dict[str, str] = {name: info.mime for name, info in FORMATS.items()}
EXTENSION_BY_FORMAT: dict[str, str] = {name: info.extension for name, info in FORMATS.items()}


def mime_type(fmt: str | None) -> str:
    """The MIME type of ``fmt``; ``application/octet-stream`` for an unknown or missing one."""
    info = FORMATS.get(fmt or "")
    return info.mime if info else UNKNOWN_MIME


def extension(fmt: str) -> str:
    """The file extension (no dot) for ``fmt``; an unknown format is its own extension."""
    info = FORMATS.get(fmt)
    return info.extension if info else fmt
