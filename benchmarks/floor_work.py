"""The floor's image work, written once: `photo.measure_floor` times it stage by stage and
`minimal_image_server.py` does it as a bare server's whole tool."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

# Imported at load, not inside floor_steps: imported lazily (first in the bare server's worker
# thread), the bare server measured 5-10 ms more per call in A/B runs; not explained, kept out.
import pybase64
import pydantic_core
from PIL import Image

STAGES = ("JSON parse", "base64 decode", "write+fsync", "PNG decode", "resize", "JPEG encode")


def floor_steps(answer: bytes, path: Path, preview_size: tuple[int, int]) -> Iterator[bytes | None]:
    """Do the work of one answer, yielding after each of `STAGES`; the last yield is the JPEG."""
    text = pydantic_core.from_json(answer)["data"][0]["b64_json"]
    yield None
    data = pybase64.b64decode(text, validate=True)
    del text  # 2.9 MB freed now, as a server would: the next big buffers reuse its memory
    yield None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    yield None
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        yield None
        small = im.resize(preview_size, Image.Resampling.BOX, reducing_gap=2.0)
    yield None
    out = io.BytesIO()
    small.convert("RGB").save(out, "JPEG", quality=80)
    yield out.getvalue()


def floor_jpeg(answer: bytes, path: Path, preview_size: tuple[int, int]) -> bytes:
    """The whole floor's work at once: the preview JPEG."""
    *_, jpeg = floor_steps(answer, path, preview_size)
    assert jpeg is not None
    return jpeg
