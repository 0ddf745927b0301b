"""Task-group helpers: a failure inside a group comes out as the clear error it holds.

anyio wraps every error raised in a task group in an ExceptionGroup; callers (and the
agent reading the tool error) want the error that happened, not "internal error" for a
group of two "disk full" errors from two images of the same call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio

from mcp_images.errors import McpImagesError


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def reduce_errors(errors: list[McpImagesError]) -> McpImagesError:
    """One error for several: the first when they all say the same, else the first's type
    carrying every distinct message."""
    messages = list(dict.fromkeys(e.plain for e in errors))
    if len(messages) == 1:
        return errors[0]
    text = f"{len(messages)} errors: " + "; ".join(f"({i}) {m}" for i, m in enumerate(messages, 1))
    return errors[0].reworded(text)


@contextmanager
def single_errors() -> Iterator[None]:
    """Re-raise a group as the one error it holds, or as our errors reduced to one.

    A group holding anything else (a bug, a cancellation mixed in) is raised as it is.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        ours = [e for e in leaves if isinstance(e, McpImagesError)]
        if len(ours) == len(leaves):
            raise reduce_errors(ours) from group
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
