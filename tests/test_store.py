"""Saved images: recognisable names, atomic writes, ids that survive a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_images.storage.store import ImageStore, id_from_ref, slugify


def test_a_saved_image_has_a_readable_name_with_its_id_and_exact_bytes(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "out")
    data = b"\x89PNG\r\n\x1a\n" + b"x" * 100
    img = store.save(data, fmt="png", prompt="A red fox, in the snow!", width=8, height=8)
    assert img.path.parent == tmp_path / "out"
    assert "a-red-fox-in-the-snow" in img.path.name
    assert img.path.name.endswith(f"-{img.id}.png")
    assert img.path.read_bytes() == data
    assert img.uri == f"images://{img.id}"
    assert img.mime_type == "image/png"


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    store.save(b"abc", fmt="jpeg", prompt="p", width=1, height=1)
    assert [p.suffix for p in tmp_path.iterdir()] == [".jpg"]


def test_an_id_finds_its_file_from_a_new_store_over_the_same_folder(tmp_path: Path) -> None:
    img = ImageStore(tmp_path).save(b"abc", fmt="webp", prompt="p", width=1, height=1)
    assert ImageStore(tmp_path).find(img.id) == img.path


def test_an_unknown_or_malformed_id_finds_nothing(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    assert store.find("0123456789ab") is None
    assert store.find("../etc/passwd") is None
    assert store.find("*") is None


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("images://0123456789ab", "0123456789ab"),
        ("0123456789ab", "0123456789ab"),
        ("images://../x", None),
        ("/tmp/a.png", None),
        ("0123456789AB", None),
    ],
)
def test_image_references_yield_ids_only_when_well_formed(ref: str, expected: str | None) -> None:
    assert id_from_ref(ref) == expected


def test_a_prompt_without_letters_still_gives_a_name() -> None:
    assert slugify("!!! ???") == "image"
    assert len(slugify("word " * 50)) <= 40
