"""The scaled image store: an S3-compatible bucket, with this replica's folder as a cache.

Client: boto3 (the reference S3 client; it reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY itself), imported only when MCP_IMAGES_STORAGE_URL is ``s3://``.

- An original is PUT exactly as the upstream sent it under ``<prefix><id>/<file name>``: one
  PUT is atomic in S3, so no reader ever sees part of an object, and the id finds it by prefix.
- It is written to the local folder first (atomically, as the embedded store does): a paid
  image survives a store that is down. Such an image is uploaded by a later save; until then
  only this replica serves it, and its record's ``note`` says so.
- ``find`` answers from the local folder, else fetches the object into it: the id works on
  every replica, the first read on each costs one LIST and one GET.
- ``check_writable`` (before anything is spent) asks the bucket, at most every
  `CHECK_TTL_SECONDS`: a store that is down refuses the call instead of losing its image.

Errors name the store by its URL, never a key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp_images.errors import ConfigError
from mcp_images.storage.store import ID_RE, ImageStore, StoredImage, _is_saved_file  # pyright: ignore[reportPrivateUsage]

__all__ = ["S3ImageStore"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 30.0  # a 20 MB original on a slow link
ATTEMPTS = 3  # botocore's own retries, transient errors only
CHECK_TTL_SECONDS = 5.0  # a good answer from the bucket is trusted this long


class S3ImageStore(ImageStore):
    """Images in ``s3://bucket/prefix`` (see the module docstring); a `seam.ImageStoreSeam`.

    An `ImageStore` over the local folder (its cache), so it goes wherever that one goes.
    """

    def __init__(self, bucket: str, prefix: str, output_dir: Path, kept_dirs: Sequence[Path] = ()) -> None:
        super().__init__(output_dir, kept_dirs)
        self.bucket, self.prefix = bucket, f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.where = f"s3://{bucket}/{self.prefix}"
        self._client_lock = threading.Lock()
        self._client: Any = None
        self._checked_at = -CHECK_TTL_SECONDS
        self._pending: dict[str, Path] = {}  # key -> local file, refused by the store so far

    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                import boto3.session
                from botocore.config import Config

                config = Config(
                    connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS,
                    retries={"max_attempts": ATTEMPTS, "mode": "standard"}, s3={"addressing_style": "path"},
                )  # fmt: skip
                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                self._client = boto3.session.Session().client("s3", region_name=region, config=config)
            return self._client

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
        """Keep the image locally, then PUT it; a refused PUT leaves it local with a note.

        Raises:
            OSError: not even a local folder could take it.
        """
        stored = super().save(
            data, fmt=fmt, prompt=prompt, width=width, height=height, tag=tag, subdir=subdir, stem=stem
        )
        self._upload_pending()
        key = f"{self.prefix}{stored.id}/{stored.path.name}"
        try:
            self._put(key, data, stored.mime_type)
        except ConfigError as exc:
            self._pending[key] = stored.path
            note = f"{exc}; the image is kept on this replica ({stored.path}) and uploaded by a later save"
            logger.warning("%s", note)
            return dataclasses.replace(stored, note="; ".join(filter(None, [stored.note, note])))
        return stored

    def find(self, image_id: str) -> Path | None:
        """The local copy of the image, fetched from the store first if this replica lacks it.

        Raises:
            ConfigError: the store cannot be reached (so whether the image exists is unknown).
        """
        if not ID_RE.fullmatch(image_id):
            return None
        found = super().find(image_id)
        if found is not None:
            return found
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            listed = self.client().list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}{image_id}/", MaxKeys=2)
            keys = [item["Key"] for item in listed.get("Contents", [])]
            if not keys:
                return None
            data = self.client().get_object(Bucket=self.bucket, Key=keys[0])["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise ConfigError(self._unusable(exc)) from exc
        return self._cache(image_id, keys[0].rsplit("/", 1)[-1], data)

    def check_writable(self) -> None:
        """Raises: ConfigError: the local folder or the bucket cannot take an image now."""
        super().check_writable()
        if time.monotonic() - self._checked_at < CHECK_TTL_SECONDS:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise ConfigError(self._unusable(exc)) from exc
        self._checked_at = time.monotonic()

    def _put(self, key: str, data: bytes, mime: str) -> None:
        """Raises: ConfigError: the store refused the object."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=mime)
        except (BotoCoreError, ClientError) as exc:
            self._checked_at = -CHECK_TTL_SECONDS  # ask the bucket again before the next call spends
            raise ConfigError(self._unusable(exc)) from exc

    def _upload_pending(self) -> None:
        for key, path in list(self._pending.items()):
            try:
                self._put(key, path.read_bytes(), "application/octet-stream")
            except (ConfigError, OSError):
                return  # still down: the next save tries again
            self._pending.pop(key, None)

    def _cache(self, image_id: str, name: str, data: bytes) -> Path | None:
        """Write a fetched object into the local folder (atomically) and return its file."""
        if not name.startswith(".") and "/" not in name and name.rpartition(".")[0].endswith(f"-{image_id}"):
            with contextlib.suppress(FileExistsError):  # another request fetched it meanwhile
                self._write(self.output_dir, None, name, data)
        path = self.output_dir / name
        return path if _is_saved_file(path, image_id, self.output_dir.resolve()) else None

    def _unusable(self, exc: BaseException) -> str:
        reason = str(exc) or type(exc).__name__
        for secret in (os.environ.get("AWS_SECRET_ACCESS_KEY"), os.environ.get("AWS_SESSION_TOKEN")):
            if secret:
                reason = reason.replace(secret, "***")
        return (
            f"the image store {self.where} cannot be used right now ({reason}): is it running and "
            "reachable? check MCP_IMAGES_STORAGE_URL, AWS_ENDPOINT_URL and the keys; nothing is lost, try again"
        )
