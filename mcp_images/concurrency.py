"""Task-group helpers: a failure inside a group comes out as itself, not as a group.

anyio wraps every error raised in a task group in an ExceptionGroup; callers (and the
agent reading the tool error) want the one error that happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio


@contextmanager
def single_errors() -> Iterator[None]:
    """Re-raise a group holding exactly one error as that error."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


class BodySlot:
    """One call's claim on a shared limit of answers being read and turned into files.

    The upstream client takes it once an answer's headers are in (never while waiting for
    the image to be made), and the caller gives it back when the images are saved. A hundred
    background jobs whose answers land together then hold a few bodies in memory at a time,
    not a hundred (measured with photo-sized answers: +201 MB over the images before).
    """

    def __init__(self, limiter: anyio.CapacityLimiter) -> None:
        self._limiter = limiter
        self._held = False

    async def acquire(self) -> None:
        if not self._held:
            await self._limiter.acquire_on_behalf_of(self)
            self._held = True

    def release(self) -> None:
        if self._held:
            self._limiter.release_on_behalf_of(self)
            self._held = False
