"""Which image store a server uses (MCP_IMAGES_STORAGE_URL), and the stores' secrets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from mcp_images.config import Settings
from mcp_images.storage.store import ImageStore

__all__ = ["open_image_store", "store_secrets"]


def open_image_store(settings: Settings, kept_dirs: Sequence[Path]) -> ImageStore:
    """The output folder (default), another folder, or an S3 bucket cached in the output folder.

    Each is an `ImageStore` (the S3 one over its cache folder) and a `seam.ImageStoreSeam`.

    Cheap: the S3 client is made on first use, so start-up never imports boto3.
    """
    url = settings.storage_url
    if url is None:
        return ImageStore(settings.resolved_output_dir, kept_dirs=kept_dirs)
    if not url.startswith("s3://"):
        return ImageStore(Path(os.path.expandvars(url)).expanduser().resolve(), kept_dirs=kept_dirs)
    from mcp_images.storage.s3 import S3ImageStore

    parts = urlsplit(url)
    return S3ImageStore(parts.netloc, parts.path, settings.resolved_output_dir, kept_dirs)


def store_secrets(settings: Settings) -> list[str | None]:
    """What the scrubber must cut: the database's password, the S3 secret key and session token."""
    password = urlsplit(settings.database_url.get_secret_value()).password if settings.database_url else None
    return [password, os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN")]
