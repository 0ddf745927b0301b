"""The image store seam: what the tools need from wherever saved images live.

Two implementations, one behavioural suite (tests/test_store_seams_images.py) run against both:

- embedded: the output folder (`storage.store.ImageStore`): atomic files named by their id.
- scaled: an S3-compatible bucket (`storage.s3.S3ImageStore`) with this replica's folder as a
  cache: every replica finds every image by its ``images://`` id.

``find`` returns a local file because every reader (resources, downloads, edit inputs) reads
files; the scaled store fetches a missing one into its folder first. Methods are synchronous
and may block (disk, network): call them from a worker thread where the loop matters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from mcp_images.storage.store import StoredImage

__all__ = ["ImageStoreSeam"]


class ImageStoreSeam(Protocol):
    output_dir: Path  # this machine's folder: the images themselves, or the scaled store's cache
    kept_dirs: list[Path]  # where an image goes when the folder cannot take it

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
        """Keep ``data`` untouched under a fresh id; no reader ever sees it half-written.

        Raises:
            OSError: it could be kept nowhere (the record's ``note`` tells of a fallback).
        """
        ...

    def find(self, image_id: str) -> Path | None:
        """A local file holding the image saved under ``image_id``, or None."""
        ...

    def check_writable(self) -> None:
        """Before anything is spent: raises ConfigError if a made image would have nowhere to go."""
        ...
