"""Jobs a provider runs itself (302.ai ``?async=true``): submit, record its id, poll to the end.

The provider's task id is stored on our task at once, so a restarted server polls again
instead of losing a job that was paid for. For the same reason a poll endpoint that stumbles
(a 502, a 429, a dropped connection) does not fail the job: polling goes on, and only a run of
MAX_POLL_FAILURES failed polls in a row, or the deadline, gives up on it.
"""

from __future__ import annotations

from typing import Any

import anyio

from mcp_images.catalog.parameters import form_fields
from mcp_images.errors import UpstreamError
from mcp_images.runtime import Runtime
from mcp_images.tasks.manager import describe_span
from mcp_images.work.progress import Progress
from mcp_images.work.tools import Outcome, edit_uploads, finish, load_edit_inputs, request_body
from mcp_images.work.validation import CheckedCall

PROVIDER_TASK_DEADLINE_SECONDS = 3600.0  # a provider-held job still pending after this is failed
MAX_POLL_FAILURES = 12  # failed polls in a row (each after its retries) before giving up: ~1 min at 5 s


async def submit_provider_job(
    rt: Runtime, call: CheckedCall, progress: Progress, handle: Any, client_roots: list[Any] | None = None
) -> Outcome:
    """Submit to a provider that runs jobs itself (302.ai ``?async=true``), then poll it.

    The provider's task id is recorded at once (``handle``), so a restarted server polls it again.
    """
    uploads: list[Any] = []
    named: dict[str, Any] = {}
    body = request_body(call.params, call.spec)
    if call.edit:
        uploads, named = edit_uploads(await load_edit_inputs(rt, call, client_roots))
        body = form_fields(body)
    api = await rt.api()
    await progress.phase("submitting")
    provider_id = await api.submit_async("edits" if call.edit else "generations", body, uploads, named)
    handle.set_provider_task_id(provider_id)
    await progress.note(f"the provider accepted the job as {provider_id}")
    return await poll_provider_job(rt, call, provider_id, progress)


async def poll_provider_job(rt: Runtime, call: CheckedCall, provider_id: str, progress: Progress) -> Outcome:
    """Poll a provider-held job until it answers, then save its images like a direct call.

    Raises:
        UpstreamError: the job failed, or is still pending after the deadline.
    """
    spec, params, edit = call.spec, call.params, call.edit
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
        return await finish(rt, params, spec, response, progress, warnings=list(call.warnings), edit=edit)
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
