"""Byte counts as people read them, one way everywhere (errors, results, limits).

Binary units with their IEC names (KiB, MiB, GiB): the limits we check against are binary
(``50 * 1024 * 1024``), so a size and the limit it broke print in the same unit. A size
that is not a whole number of units is rounded *up* to one decimal, so a file one byte over
a 4 MiB limit reads "4.1 MiB", never "4.0 MiB; it must be under 4 MiB".
"""

from __future__ import annotations

import math

__all__ = ["format_bytes"]

_UNITS = ("KiB", "MiB", "GiB", "TiB")
_STEP = 1024


def format_bytes(n: int) -> str:
    """``n`` bytes as ``"512 bytes"``, ``"4 MiB"`` (exact) or ``"4.1 MiB"`` (rounded up).

    Raises:
        ValueError: ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"a byte count cannot be negative, got {n}")
    if n < _STEP:
        return "1 byte" if n == 1 else f"{n} bytes"
    size, rank = n / _STEP, 0
    while size >= _STEP and rank < len(_UNITS) - 1:
        size, rank = size / _STEP, rank + 1
    unit = _UNITS[rank]
    if size.is_integer():
        return f"{int(size):,} {unit}"
    # The epsilon keeps float noise (4.1 stored as 4.1000000001) from adding a tenth.
    tenths = math.ceil(size * 10 - 1e-9)
    return f"{tenths / 10:,.1f} {unit}"
