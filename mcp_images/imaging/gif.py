"""A GIF's block structure, walked without decoding: is every frame there?

A preview decodes only a GIF's first frame, so a download cut short in a later frame would
pass it and be saved broken. Walking the blocks (header, colour tables, extensions, image
descriptors, LZW sub-blocks, trailer) costs a few reads and seeks per frame, no pixels.
"""

from __future__ import annotations

from typing import IO

__all__ = ["GifError", "count_gif_frames"]

_HEADER_BYTES = 13  # "GIF89a" + logical screen descriptor
_DESCRIPTOR_BYTES = 9  # an image descriptor after its 0x2C
_EXTENSION, _IMAGE, _TRAILER = 0x21, 0x2C, 0x3B


class GifError(ValueError):
    """The GIF is truncated or its blocks are not in GIF order."""


def count_gif_frames(fp: IO[bytes]) -> int:
    """The number of frames in the GIF read from ``fp`` (at its start).

    A GIF that ends cleanly after a whole frame but without its trailer byte is accepted, as
    browsers accept it; an end inside a block is not.

    Raises:
        GifError: the data ends inside a block, or a block is neither extension, image nor trailer.
    """
    header = fp.read(_HEADER_BYTES)
    if len(header) < _HEADER_BYTES or header[:6] not in (b"GIF87a", b"GIF89a"):
        raise GifError("the GIF header is cut short")
    _skip(fp, _colour_table_bytes(header[10]))
    frames = 0
    while True:
        introducer = fp.read(1)
        if not introducer:
            if frames:
                return frames
            raise GifError("the GIF ends before its first frame")
        kind = introducer[0]
        if kind == _TRAILER:
            if not frames:
                raise GifError("the GIF has no frames")
            return frames
        if kind == _EXTENSION:
            _skip(fp, 1)  # the extension's label
            _skip_sub_blocks(fp)
        elif kind == _IMAGE:
            descriptor = _read(fp, _DESCRIPTOR_BYTES)
            _skip(fp, _colour_table_bytes(descriptor[8]) + 1)  # + the LZW minimum code size
            _skip_sub_blocks(fp)
            frames += 1
        else:
            raise GifError(f"the GIF has an unknown block 0x{kind:02x} after frame {frames}")


def _colour_table_bytes(packed: int) -> int:
    return 3 * 2 ** ((packed & 0x07) + 1) if packed & 0x80 else 0


def _skip_sub_blocks(fp: IO[bytes]) -> None:
    """Sub-blocks: a length byte, that many bytes, ..., a zero length."""
    while length := _read(fp, 1)[0]:
        _skip(fp, length)


def _skip(fp: IO[bytes], n: int) -> None:
    if n:
        _read(fp, n)


def _read(fp: IO[bytes], n: int) -> bytes:
    chunk = fp.read(n)
    if len(chunk) < n:
        raise GifError("the GIF is truncated")
    return chunk
