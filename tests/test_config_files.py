"""Files the settings point at are read with a bound: regular files only, at most 4 MiB."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_images.catalog.providers import load_providers
from mcp_images.config_files import MAX_CONFIG_FILE_BYTES, read_config_text
from mcp_images.errors import ConfigError
from mcp_images.pricing.table import load_price_table

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
needs_dev_zero = pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")

LOADERS: dict[str, tuple[str, Callable[[Path], Any]]] = {
    "providers": ("MCP_IMAGES_PROVIDERS", load_providers),
    "prices": ("MCP_IMAGES_PRICES", load_price_table),
}


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no room on disk."""
    with path.open("wb") as f:
        f.truncate(size)
    return path


def refusal(setting: str, path: Path, **kw: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        read_config_text(path, setting=setting, **kw)
    return str(caught.value)


def test_a_small_utf8_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text('{"models": {"ü": 1}}', encoding="utf-8")
    assert read_config_text(path, setting="MCP_IMAGES_CATALOG") == '{"models": {"ü": 1}}'


def test_a_file_of_exactly_the_limit_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_bytes(b" " * 100)
    assert len(read_config_text(path, setting="MCP_IMAGES_PRICES", limit=100)) == 100
    path.write_bytes(b" " * 101)
    message = refusal("MCP_IMAGES_PRICES", path, limit=100)
    assert "MCP_IMAGES_PRICES" in message and "at most" in message


@needs_dev_zero
def test_dev_zero_is_refused_at_once_naming_the_setting() -> None:
    message = refusal("MCP_IMAGES_CATALOG", Path("/dev/zero"), what="catalog file")
    assert message.startswith("MCP_IMAGES_CATALOG: catalog file /dev/zero")
    assert "not a regular file" in message


@needs_fifo
def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "providers.json"
    os.mkfifo(fifo)
    message = refusal("MCP_IMAGES_PROVIDERS", fifo)
    assert "MCP_IMAGES_PROVIDERS" in message and "not a regular file" in message


def test_a_folder_a_missing_file_and_a_non_utf8_file_each_say_what_is_wrong(tmp_path: Path) -> None:
    assert "is a folder" in refusal("MCP_IMAGES_CATALOG", tmp_path)
    assert "no such file" in refusal("MCP_IMAGES_CATALOG", tmp_path / "nope.json")
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"name": "café"}'.encode("latin-1"))
    assert "not UTF-8" in refusal("MCP_IMAGES_CATALOG", latin1)


def test_a_huge_sparse_file_is_refused_by_its_size_with_the_size_in_the_message(tmp_path: Path) -> None:
    message = refusal("MCP_IMAGES_CATALOG", sparse(tmp_path / "huge.json", 5 * 1024**3))
    assert "5 GiB" in message and "at most 4 MiB" in message


@pytest.mark.parametrize("kind", LOADERS)
def test_the_providers_and_price_loaders_refuse_a_file_over_the_limit_naming_their_variable(
    tmp_path: Path, kind: str
) -> None:
    setting, load = LOADERS[kind]
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps({"providers": {}, "models": {}}) + " " * MAX_CONFIG_FILE_BYTES)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{setting}: ") and "at most 4 MiB" in str(caught.value)


@needs_dev_zero
@pytest.mark.parametrize("kind", LOADERS)
def test_the_providers_and_price_loaders_refuse_dev_zero(kind: str) -> None:
    setting, load = LOADERS[kind]
    with pytest.raises(ConfigError, match=f"^{setting}: .*not a regular file"):
        load(Path("/dev/zero"))
