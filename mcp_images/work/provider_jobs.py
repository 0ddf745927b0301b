"""Jobs a provider runs itself (302.ai ``?async=true``): submit, record its id, poll to the end.

The provider's task id is stored on our task at once, so a restarted server polls again
instead of losing a job that was paid for. For the same reason a poll endpoint that stumbles
(a 502, a 429, a dropped connection) does not fail the job: polling goes on, and only a run of
MAX_POLL_FAILURES failed polls in a row, or the deadline, gives up on it.
"""

from __future__ import annotations

from typing import Any

import anyio

from mcp_images.errors import UpstreamError
from mcp_images.runtime import Runtime
from mcp_images.server.args import EditArgs, ImageArgs
from mcp_images.tasks.manager import describe_span
from mcp_images.work.progress import Progress
from mcp_images.work.tools import Outcome, finish, load_edit_inputs, request_body, upload_file, validate

PROVIDER_TASK_DEADLINE_SECONDS = 3600.0  # a provider-held job still pending after this is failed
MAX_POLL_FAILURES = 12  # failed polls in a row (each after its retries) before giving up: ~1 min at 5 s


async def submit_provider_job(
    rt: Runtime, args: ImageArgs, progress: Progress, handle: Any, client_roots: list[Any] | None = None
) -> Outcome:
    """Submit to a provider that runs jobs itself (302.ai ``?async=true``), then poll it.

    The provider's task id is recorded at once (``handle``), so a restarted server polls it again.
    """
    edit = isinstance(args, EditArgs)
    spec, params, warnings = validate(rt, args, edit=edit)
    uploads: list[Any] = []
    mask_upload = None
    if isinstance(args, EditArgs):
        images, mask = await load_edit_inputs(rt, args, spec, client_roots)
        uploads = [upload_file(i) for i in images]
        mask_upload = upload_file(mask) if mask else None
    api = await rt.api()
    await progress.phase("submitting")
    provider_id = await api.submit_async(
        "edits" if edit else "generations", request_body(params, spec), uploads, mask_upload
    )
    handle.set_provider_task_id(provider_id)
    await progress.note(f"the provider accepted the job as {provider_id}")
    return await poll_provider_job(rt, args, provider_id, progress, warnings=warnings)


async def poll_provider_job(
    rt: Runtime, args: ImageArgs, provider_id: str, progress: Progress, *, warnings: list[str] | None = None
) -> Outcome:
    """Poll a provider-held job until it answers, then save its images like a direct call.

    Raises:
        UpstreamError: the job failed, or is still pending after the deadline.
    """
    edit = isinstance(args, EditArgs)
    spec, params, checks = validate(rt, args, edit=edit)
    api = await rt.api()
    spec_async = rt.provider.async_mode
    interval = spec_async.poll_interval_seconds if spec_async else 5.0
    await progress.phase("generating")
    response = None
    failures = _PollFailures(provider_id, progress)
    slot = rt.body_slot()
    try:
        async with progress.beating():
            with anyio.move_on_after(PROVIDER_TASK_DEADLINE_SECONDS):
                while True:
                    failures.failed_now = False
                    response = await api.poll_async(provider_id, body_slot=slot, on_unavailable=failures)
                    if response is not None:
                        break
                    if not failures.failed_now:  # a pending answer ends a run of failures
                        failures.in_a_row = 0
                    await anyio.sleep(interval)
        if response is None:
            raise UpstreamError(
                f"the provider's job {provider_id} was still pending after "
                f"{describe_span(PROVIDER_TASK_DEADLINE_SECONDS)}; giving up on it"
            )
        return await finish(rt, params, spec, response, progress, warnings=warnings or checks, edit=edit)
    finally:
        slot.release()


class _PollFailures:
    """Counts polls that got no usable answer; gives up after MAX_POLL_FAILURES in a row."""

    def __init__(self, provider_id: str, progress: Progress) -> None:
        self.provider_id = provider_id
        self.progress = progress
        self.in_a_row = 0
        self.failed_now = False

    async def __call__(self, error: UpstreamError) -> None:
        """Raises: the error itself, naming the job, once too many polls failed in a row."""
        self.in_a_row += 1
        self.failed_now = True
        if self.in_a_row >= MAX_POLL_FAILURES:
            raise type(error)(
                f"polling the provider's job {self.provider_id} failed {self.in_a_row} times in a row, "
                f"last: {error.message} (the job may still finish at the provider)",
                status_code=error.status_code,
                code=error.code,
                request_id=error.request_id,
            ) from error
        if self.in_a_row == 1:
            await self.progress.note(f"polling the provider failed ({error}); trying again")
