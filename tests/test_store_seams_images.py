"""One behavioural suite for the image store seam: the output folder, and an S3-API bucket.

The S3 side runs against moto's server (``moto[server]``, a dev dependency) started here as a
subprocess on loopback, once per session: a real HTTP S3 API, nothing patched.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mcp_images.errors import ConfigError
from mcp_images.storage.store import ImageStore

S3_SECRET = "moto-secret-key-never-shown-0123"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # bytes are kept as they are: no need to decode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-API server (moto) on loopback for the whole session."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while True:  # readiness: the port accepts a connection
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto's S3 server did not start")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket; the AWS_* variables point boto3 at the loopback server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    import boto3

    name = f"images-{secrets.token_hex(4)}"
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=name)
    return name


StoreFactory = Callable[[str], ImageStore]  # a replica's store, given its own folder's name


@pytest.fixture(params=["embedded", "scaled"])
def replica_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    if request.param == "embedded":
        return lambda _name: ImageStore(tmp_path / "shared")
    from mcp_images.storage.s3 import S3ImageStore

    bucket = request.getfixturevalue("s3_bucket")
    return lambda name: S3ImageStore(bucket, "team/images", tmp_path / name)


def test_a_saved_image_is_found_by_its_id_with_its_bytes_untouched(replica_store: StoreFactory) -> None:
    store = replica_store("a")
    stored = store.save(PNG, fmt="png", prompt="a red fox", width=64, height=64)
    found = store.find(stored.id)
    assert found is not None and found.read_bytes() == PNG and stored.note is None
    assert store.find("000000000000") is None and store.find("../etc") is None


def test_an_image_saved_on_one_replica_is_found_on_another(replica_store: StoreFactory) -> None:
    stored = replica_store("a").save(PNG, fmt="png", prompt="a heron", width=64, height=64)
    other = replica_store("b")
    found = other.find(stored.id)
    assert found is not None and found.read_bytes() == PNG
    assert found.name == stored.path.name  # the same recognisable name on every replica


def test_an_s3_store_that_is_down_refuses_new_calls_keeps_a_made_image_and_uploads_it_later(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp_images.storage.s3 import S3ImageStore

    store = S3ImageStore(s3_bucket, "p", tmp_path / "a")
    good = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    with pytest.raises(ConfigError) as refused:
        store.check_writable()
    assert f"s3://{s3_bucket}/p/" in str(refused.value) and S3_SECRET not in str(refused.value)
    stored = store.save(PNG, fmt="png", prompt="made while the store was down", width=8, height=8)
    assert stored.note is not None and "kept on this replica" in stored.note and S3_SECRET not in stored.note
    assert store.find(stored.id) is not None  # this replica still serves it
    monkeypatch.setenv("AWS_ENDPOINT_URL", good)
    back = S3ImageStore(s3_bucket, "p", tmp_path / "a")
    back._pending = store._pending  # pyright: ignore[reportPrivateUsage]  # the same replica, a fresh client
    back.save(PNG, fmt="png", prompt="the next one", width=8, height=8)
    found = S3ImageStore(s3_bucket, "p", tmp_path / "b").find(stored.id)
    assert found is not None and found.read_bytes() == PNG
