"""Task-group helpers: a failure inside a group comes out as itself, not as a group.

anyio wraps every error raised in a task group in an ExceptionGroup; callers (and the
agent reading the tool error) want the one error that happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def single_errors() -> Iterator[None]:
    """Re-raise a group holding exactly one error as that error."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
