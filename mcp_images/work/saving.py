"""The upstream's image bytes -> saved files (images:// resources) and previews.

Every check here is on what the upstream sent, so a failure is an `UpstreamError` (or a
`ConfigError` when the output folder cannot take the file). Runs in worker threads, except
`PartialSaver`, which hands its work to one. Pillow is imported inside the functions that use it.

The file saved is always the upstream's bytes, never a re-encode (provenance metadata would
not survive one): an animated GIF stays animated, an SVG stays the document it was. Only the
preview is a still raster (a GIF's first frame, an SVG rendered by resvg).
"""

from __future__ import annotations

import binascii
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from mcp_images.catalog.models import ImageParams
from mcp_images.config import DEFAULT_PREVIEW_MAX
from mcp_images.errors import ConfigError, InputError, UpstreamError
from mcp_images.runtime import Runtime
from mcp_images.storage.store import StoredImage
from mcp_images.work.progress import Progress

if TYPE_CHECKING:
    from mcp_images.imaging.formats import ImageInfo
    from mcp_images.imaging.previews import Preview
    from mcp_images.upstream.sse import PartialImage

SAVED_FORMATS = frozenset({"png", "jpeg", "webp", "gif", "svg"})
# Sent whole as image content when inline=full and they fit; a client may refuse image/gif or
# image/svg+xml content, and a model sees one still frame anyway: those get a preview.
INLINE_FORMATS = frozenset({"png", "jpeg", "webp"})
SAVE_THREADS = 4  # saves at once beside the previews: a save mostly waits on the disk
# Its threads start with the first save (asyncio has imported concurrent.futures already).
_SAVER = ThreadPoolExecutor(max_workers=SAVE_THREADS, thread_name_prefix="mcp-images-save")


@dataclass
class SavedImage:
    stored: StoredImage
    preview: Preview | None = None
    inline_full: bool = False


class PartialSaver:
    """Saves each streamed partial image as an images:// resource and reports it."""

    def __init__(self, rt: Runtime, params: ImageParams, progress: Progress) -> None:
        self.rt, self.params, self.progress = rt, params, progress
        self.saved: list[StoredImage] = []

    async def __call__(self, partial: PartialImage) -> None:
        data = decode_b64(partial.b64_json, "a partial image")
        tag = f"partial{partial.index}"
        stored = await anyio.to_thread.run_sync(
            lambda: save_bytes(self.rt, data, self.params, tag=tag), limiter=self.rt.image_threads
        )
        self.saved.append(stored)
        await self.progress.note(f"partial image {partial.index + 1} saved: {stored.uri}")


def decode_b64(text: str, what: str) -> bytes:
    """The bytes of a base64 ``text`` (whitespace and line breaks allowed).

    pybase64's SIMD decoder checks and decodes a 3.3 MB string (a 1024x1024 photo) in ~0.25 ms,
    against ~5.9 ms for ``binascii.a2b_base64``; it reads the str where it is (no copy to bytes).
    Text it refuses as not strictly base64 (MIME line breaks, stray characters) gets the
    lenient decoder, which skips what is not base64, as before.

    Raises:
        UpstreamError: ``text`` is not base64.
    """
    import pybase64

    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return binascii.a2b_base64(text)
    except (binascii.Error, ValueError) as exc:
        raise UpstreamError(f"the upstream sent {what} that is not valid base64") from exc


def save_bytes(
    rt: Runtime,
    data: bytes,
    params: ImageParams,
    *,
    tag: str = "",
    verify: bool = True,
    info: ImageInfo | None = None,
) -> StoredImage:
    """Save ``data``; ``info``, when the caller has decoded the image already, spares a second probe.

    Raises: UpstreamError (not a usable image), ConfigError (the output folder refused it).
    """
    if info is None:
        try:
            info = inspect_result(data, verify=verify)
        except InputError as exc:  # the upstream's bytes, not the caller's input
            raise UpstreamError(f"the upstream sent an image that cannot be used: {exc}") from exc
    if info.format not in SAVED_FORMATS:
        raise UpstreamError(f"the upstream sent a {info.format} file, not an image format this server saves")
    stem = f"{params.filename}-{tag}" if params.filename and tag else params.filename
    try:
        return rt.store.save(
            data,
            fmt=info.format,
            prompt=params.prompt,
            width=info.width,
            height=info.height,
            tag=tag,
            subdir=params.subdir,
            stem=stem,
        )
    except OSError as exc:
        kept = ", ".join(str(d) for d in rt.store.kept_dirs) or "nowhere else"
        raise ConfigError(
            f"the image was made but could not be saved in {rt.store.output_dir}, nor kept in {kept}: "
            f"{exc.strerror or exc}; free some space or set MCP_IMAGES_OUTPUT_DIR to a writable folder"
        ) from exc


def inspect_result(data: bytes, *, verify: bool) -> ImageInfo:
    """Format and size of an upstream result: a raster from its header, an SVG from its root.

    An animated GIF is always walked to its last frame, since a preview decodes only the first.

    Raises:
        InputError: the bytes are not a complete image (the caller words it as the upstream's fault).
    """
    from mcp_images.imaging.formats import SNIFF_BYTES, probe_any, sniff_format

    return probe_any(data, verify=verify or sniff_format(data[:SNIFF_BYTES]) == "gif")


def preview_budget(rt: Runtime, count: int) -> int:
    return max(10_000, min(DEFAULT_PREVIEW_MAX, rt.settings.result_budget // max(count, 1)))


def save_and_preview(rt: Runtime, data: bytes, params: ImageParams, budget: int, created: list[Path]) -> SavedImage:
    """Save the image and make its preview; every file written is appended to ``created``.

    A PNG, JPEG or WebP is saved (write, fsync: mostly waiting on the disk) in a thread of its
    own while this one decodes it for the preview, from the facts its header gives; the
    decode proves the bytes whole. Bytes that turn out not to decode stay saved (they were
    paid for) and listed in ``created``, which the caller's error names. A GIF or an SVG is
    previewed first and then saved: a GIF is walked to its last frame, an SVG's size comes
    from its document.

    Raises:
        UpstreamError: the bytes are not a usable image.
        ConfigError: the output folder refused the file.
    """
    from mcp_images.imaging.formats import SNIFF_BYTES, probe, sniff_format
    from mcp_images.imaging.previews import base64_len

    mode = rt.settings.inline
    inlinable = sniff_format(data[:SNIFF_BYTES]) in INLINE_FORMATS
    inline_full = mode == "full" and inlinable and base64_len(len(data)) <= budget
    if mode == "none" or inline_full:
        return SavedImage(_saved_now(rt, data, params, created, verify=True), inline_full=inline_full)
    if not inlinable:
        preview = _preview(data, budget)
        # A GIF is still walked to its last frame (the preview decoded only the first).
        info = preview.source if preview.source and preview.source.format != "gif" else None
        return SavedImage(_saved_now(rt, data, params, created, verify=False, info=info), preview=preview)
    try:
        header = probe(data, verify=False)
    except InputError as exc:
        raise UpstreamError(f"the upstream sent an image that cannot be used: {exc}") from exc
    saving = _SAVER.submit(save_bytes, rt, data, params, info=header)
    try:
        preview = _preview(data, budget)
    except BaseException:
        _saved_later(saving, created)  # kept: the caller's error names every file of the call
        raise
    return SavedImage(_saved_later(saving, created), preview=preview)


def _preview(data: bytes, budget: int) -> Preview:
    from mcp_images.imaging.previews import make_preview

    try:
        return make_preview(data, max_b64_chars=budget)
    except InputError as exc:
        raise UpstreamError(f"the upstream sent an image that cannot be decoded: {exc}") from exc


def _saved_now(
    rt: Runtime, data: bytes, params: ImageParams, created: list[Path], *, verify: bool, info: ImageInfo | None = None
) -> StoredImage:
    stored = save_bytes(rt, data, params, verify=verify, info=info)
    created.append(stored.path)
    return stored


def _saved_later(saving: Future[StoredImage], created: list[Path]) -> StoredImage:
    stored = saving.result()  # raises what the save raised
    created.append(stored.path)
    return stored

