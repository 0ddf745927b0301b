"""format_bytes: the one way byte counts are printed."""

from __future__ import annotations

import pytest

from mcp_images.units import format_bytes


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (4 * 1024 * 1024, "4 MiB"),
        (50 * 1024 * 1024, "50 MiB"),
        (3 * 1024**3, "3 GiB"),
        (2048 * 1024**4, "2,048 TiB"),
    ],
)
def test_format_bytes_prints_whole_units_without_decimals(n: int, expected: str) -> None:
    assert format_bytes(n) == expected


def test_format_bytes_never_rounds_a_size_over_a_limit_down_to_the_limit() -> None:
    limit = 4 * 1024 * 1024
    assert format_bytes(limit + 1) == "4.1 MiB"
    assert format_bytes(limit - 1) == "4.0 MiB"  # under the limit, still shown as a decimal


def test_format_bytes_rounds_up_to_one_decimal() -> None:
    assert format_bytes(1025) == "1.1 KiB"
    assert format_bytes(int(2.25 * 1024 * 1024)) == "2.3 MiB"


def test_format_bytes_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_bytes(-1)
