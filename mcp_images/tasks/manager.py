"""Background image jobs that outlive a client's tool-call timeout and a server restart.

A job takes one to two minutes; many clients give up on a tool call after 60 s. So a job
runs as a task: the agent gets an id at once and polls ``check_task``. Records live in
SQLite (`task_store.TaskStore`, ``<data_dir>/tasks.sqlite3``) so that any server over the
same data folder sees every finished result. Several servers may share the folder (each
stdio client starts its own), so every manager registers an *owner* row with a heartbeat:
only jobs whose owner is gone are reported as cut off, or resumed when the provider holds them.

The database may refuse a write now and then (another program holding it locked, a full
disk). A job never dies of that: progress writes are skipped, and an outcome or a provider's
job id that could not be written is kept in memory, answered from there, and written by the
next housekeeping round. Owners and those kept writes are `task_upkeep`'s.

The records sit behind a seam (`tasks.seam.TaskStoreSeam`): SQLite by default (every call in
a worker thread, `tasks.embedded`: sqlite3 may wait seconds for another program's lock), or
PostgreSQL for many replicas (`tasks.postgres`), where an owner's heartbeat is its lease and a
waiter wakes on NOTIFY. Writes made while a job is being cancelled are shielded, so that a
cancelled job is still recorded.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from mcp_images.errors import McpImagesError, TaskError
from mcp_images.identity import LOCAL
from mcp_images.tasks.embedded import POLL_SECONDS as POLL_SECONDS  # re-exported: tests shorten it
from mcp_images.tasks.embedded import EmbeddedTaskStore
from mcp_images.tasks.seam import TaskStoreSeam
from mcp_images.tasks.store import TaskRecord, TaskStore
from mcp_images.tasks.upkeep import DeferredWrites, Owners
from mcp_images.work.progress import Progress, Send

logger = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 7 * 86400
PROGRESS_WRITE_SECONDS = 1.0  # progress touches the record at most this often (the first at once)
PROGRESS_RETRY_SECONDS = 10.0  # after a refused progress write (each waits out the lock retries)
HOUSEKEEPING_SECONDS = 10.0  # owner heartbeat, orphan sweep, expiry
OWNER_STALE_SECONDS = 120.0  # an owner silent this long is gone (generous: a busy loop is not death)
# On this machine a live pid outweighs a silent heartbeat for this long: a laptop that slept
# wakes with every heartbeat stale, and its servers' requests may still come back. Bounded,
# because a crashed server's pid may be reused by another process.
OWNER_PID_TRUST_SECONDS = 86400.0
CANCEL_GRACE_SECONDS = 10.0  # how long cancel() waits for the job to stop
RESTART_REASON = "the server stopped while this job ran (restart); its result was not received — run it again"
SHUTDOWN_REASON = "the server stopped while this job ran; run it again"


class TaskHandle:
    """What a job may tell the manager besides progress."""

    def __init__(self, task_id: str, manager: TaskManager) -> None:
        self.task_id = task_id
        self._manager = manager

    def set_provider_task_id(self, pid: str) -> None:
        """Persist the provider's job id at once (in the background), so that a restart can
        resume polling.

        The id counts as recorded from now on; if the database refuses the write, it is written
        by the next housekeeping round.
        """
        self._manager._write_soon(self.task_id, provider_task_id=pid)


Job = Callable[[Progress, TaskHandle], Awaitable[dict[str, Any]]]
ErrorToDict = Callable[[BaseException], dict[str, Any]]


@dataclass(eq=False)
class _Live:
    """A job running in this process."""

    task_id: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    listeners: list[Send] = field(default_factory=list)
    progress: Progress | None = None
    cancel_requested: bool = False
    last_written: tuple[str, list[str]] | None = None
    last_write_at: float = 0.0
    no_writes_until: float = 0.0  # after a refused progress write
    record: TaskRecord | None = None  # the finished record as its outcome's write returned it


class TaskManager:
    """Runs jobs in the background, records them, and answers waits and cancels."""

    def __init__(
        self,
        store: TaskStore | TaskStoreSeam,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        error_to_dict: ErrorToDict,
    ) -> None:
        """``store``: a seam implementation, or a SQLite `TaskStore` (run off the loop for you)."""
        self._store: TaskStoreSeam = EmbeddedTaskStore(store) if isinstance(store, TaskStore) else store
        self._ttl = ttl_seconds
        self._error_to_dict = error_to_dict
        # Read here, not at import, so that a test (or a replica) may shorten the lease.
        self._owners = Owners(self._store, stale_after=OWNER_STALE_SECONDS, pid_trust=OWNER_PID_TRUST_SECONDS)
        self.owner = self._owners.me
        self._live: dict[str, _Live] = {}
        self._tg: TaskGroup | None = None
        self._closing = False
        self._make_poller: Callable[[TaskRecord], Job | None] | None = None
        self._writes = DeferredWrites(self._store)  # kept until a housekeeping round gets them in

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TaskManager]:
        """Own the background jobs; on exit, cancel them (provider-held ones stay resumable)."""
        try:
            await self._owners.heartbeat()
            await self._housekeep()
        except TaskError:  # a busy database at start-up: the housekeeping loop tries again
            logger.exception("task housekeeping failed at start-up; trying again later")
        try:
            async with anyio.create_task_group() as tg:
                self._tg, self._closing = tg, False
                tg.start_soon(self._housekeeping)
                try:
                    yield self
                finally:
                    self._closing = True
                    tg.cancel_scope.cancel()
        finally:
            self._tg = None
            with anyio.CancelScope(shield=True):  # the server may be stopping: record it anyway
                await self._record_stop()

    async def _record_stop(self) -> None:
        for live in list(self._live.values()):  # jobs cancelled before they ever ran
            await self._record_interrupted(live)
        self._live.clear()
        try:
            await self._writes.flush()
            await self._owners.leave()
        except TaskError:
            logger.exception("could not record everything before stopping")

    def resume_provider_tasks(self, make_poller: Callable[[TaskRecord], Job | None]) -> int:
        """Start polling again, in the background, the jobs a provider holds whose server is
        gone; returns 0 at once (the round logs how many it resumed; `resume` waits for it).

        Kept for callers that cannot wait: looking for those jobs reads the database, which
        another program may hold locked for seconds.
        """
        self._task_group().start_soon(self._resume_in_background, make_poller)
        return 0

    async def _resume_in_background(self, make_poller: Callable[[TaskRecord], Job | None]) -> None:
        resumed = await self.resume(make_poller)
        if resumed:
            logger.info("resumed polling %d provider-held task(s)", resumed)

    async def resume(self, make_poller: Callable[[TaskRecord], Job | None]) -> int:
        """Poll again the jobs a provider holds whose server is gone; return how many.

        ``make_poller`` returns None when a job cannot be resumed; it is then failed.
        The factory is kept, so jobs left by a server that stops later are picked up too.
        """
        self._make_poller = make_poller
        if self._closing:  # a round that began as the manager stopped: the next server resumes them
            return 0
        tg = self._task_group()
        try:
            return await self._resume(tg, make_poller)
        except TaskError:  # the next housekeeping round sweeps again
            logger.exception("could not look for provider-held jobs to resume; trying again later")
            return 0

    async def _resume(self, tg: TaskGroup, make_poller: Callable[[TaskRecord], Job | None]) -> int:
        resumed = 0
        for record in await self._owners.orphans():
            if not record.provider_task_id:
                continue
            if not await self._store.claim(record.id, record.owner, self.owner):
                continue  # another server took it first
            job = make_poller(record)
            if job is None:
                reason = (
                    f"the server restarted and cannot resume polling task "
                    f"{record.provider_task_id} of {record.provider}; run it again"
                )
                await self._store.finish(record.id, "failed", error=self._error_to_dict(TaskError(reason)))
                continue
            live = self._live[record.id] = _Live(record.id)
            tg.start_soon(self._run, live, job)
            resumed += 1
        return resumed

    async def start(
        self,
        tool: str,
        args: dict[str, Any],
        job: Job,
        *,
        provider: str | None = None,
        send: Send | None = None,
        identity: str = LOCAL,
    ) -> TaskRecord:
        """Record a task and run ``job`` in the background; return at once. The job starts now,
        so the record is written as running (one write, not queued and then running).

        ``send`` gets the job's progress until the job ends; pass None when the caller
        returns before that (its progress token dies with its request). ``identity`` is who
        started it (`identity.identity_of`): `get` and `wait` show it to them alone.
        """
        tg = self._task_group()
        record = await self._store.create(
            tool, args, owner=self.owner, provider=provider, identity=identity, status="running"
        )
        live = self._live[record.id] = _Live(record.id, listeners=[send] if send else [])
        tg.start_soon(self._run, live, job)
        return record

    async def get(self, task_id: str, *, identity: str | None = None) -> TaskRecord:
        """The task's current record; with ``identity``, only if that identity started it.

        Raises:
            TaskError: unknown id, another identity's task (the very same error: whether an
                id exists is not told to someone else), the record expired, or the database
                cannot be read.
        """
        record = await self._store.get(task_id)
        cutoff = time.time() - self._ttl  # expired but not yet swept counts as expired
        foreign = record is not None and identity is not None and record.identity != identity
        if record is None or foreign or (record.finished_at is not None and record.finished_at < cutoff):
            raise TaskError(f"no task with id {task_id} (unknown, or expired after {describe_span(self._ttl)})")
        outcome = self._writes.outcome(task_id)
        if not record.finished and outcome is not None:  # its outcome is not written yet
            record = record.model_copy(update=outcome)
        return record

    async def ping(self, timeout: float) -> None:
        """For ``/readyz``: raises TaskError unless the task store answers within ``timeout`` s."""
        await self._store.ping(timeout)

    async def wait(
        self, task_id: str, timeout: float, *, send: Send | None = None, identity: str | None = None
    ) -> TaskRecord:
        """Return when the task finishes, or after ``timeout`` seconds with its state.

        ``send``, if given, gets the job's progress while waiting (jobs of this process).
        ``identity``: as for `get`.

        Raises:
            TaskError: unknown or expired id, or another identity's task.
        """
        record = await self.get(task_id, identity=identity)
        live = self._live.get(task_id)
        if record.finished:
            return record
        with anyio.move_on_after(max(timeout, 0.0)):
            if live is not None:
                live.listeners.extend([send] if send else [])
                try:
                    await live.done.wait()
                finally:
                    _detach(live, send)
            else:  # another process runs it: wake when its record changes (the store says how)
                async with self._store.watch(task_id) as watch:
                    while not (await self.get(task_id)).finished:
                        await watch.wait(math.inf)
        return await self.get(task_id)

    async def run_attached(
        self,
        tool: str,
        args: dict[str, Any],
        job: Job,
        *,
        send: Send | None,
        handoff_after: float | None,
        identity: str = LOCAL,
        handoff: anyio.Event | None = None,
    ) -> TaskRecord:
        """Run a job as a task and wait for it; hand it off after ``handoff_after`` seconds,
        or as soon as ``handoff`` is set (the server is shutting down).

        Returns the finished record, or the running one when the hand-off came first
        (the job goes on in the background). If the caller is cancelled, the job is
        cancelled too (aborting its upstream request) and recorded so.
        """
        record = await self.start(tool, args, job, send=send, identity=identity)
        live = self._live[record.id]
        # Nobody knows this task's id before it is handed off, so its first phase need not be
        # written at once: it waits for the second's heartbeat, or goes in with the outcome
        # (a new note is still written at once). One write fewer for a call that ends sooner.
        live.last_written, live.last_write_at = ("", []), time.monotonic()
        try:
            with anyio.move_on_after(math.inf if handoff_after is None else handoff_after):
                await _first_of(live.done, handoff)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self.cancel(record.id)
            raise
        finally:
            _detach(live, send)
        if live.record is not None and live.record.finished:  # as the outcome's write just read it back
            return live.record
        return await self.get(record.id)

    async def cancel(self, task_id: str) -> TaskRecord:
        """Cancel a task and return its record (a finished task is left as it is).

        A job of another server is marked cancelled; that server stops it at its next
        progress message.

        Raises:
            TaskError: unknown or expired id.
        """
        record = await self.get(task_id)
        if record.finished:
            return record
        live = self._live.get(task_id)
        if live is None:
            error = self._error_to_dict(TaskError("cancelled on request"))
            return await self._store.finish(task_id, "cancelled", error=error)
        live.cancel_requested = True
        live.scope.cancel()
        with anyio.move_on_after(CANCEL_GRACE_SECONDS):  # a job that ignores it stays "running"
            await live.done.wait()
        return await self.get(task_id)

    # -- running one job ---------------------------------------------------------------

    async def _run(self, live: _Live, job: Job) -> None:
        try:
            with live.scope:
                fields = await self._execute(live, job) | self._unwritten_progress(live)
                with anyio.CancelScope(shield=True):  # the outcome is in: a late cancel must not lose it
                    live.record = await self._writes.finish(live.task_id, **fields)
        finally:
            self._live.pop(live.task_id, None)
            live.done.set()

    async def _execute(self, live: _Live, job: Job) -> dict[str, Any]:
        async def forward(count: float, total: float | None, message: str) -> None:
            await self._on_progress(live, count, total, message)

        live.progress = Progress(forward)
        try:
            result = await job(live.progress, TaskHandle(live.task_id, self))
            json.dumps(result)  # fail here, as the job's failure, if it cannot be stored
            return {"status": "succeeded", "result": result}
        except McpImagesError as exc:
            return {"status": "failed", "error": self._error_to_dict(exc)}
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._record_interrupted(live)
            raise
        except Exception:  # top of a background job: a bug still ends the task, never loses it
            logger.exception("task %s: the job failed unexpectedly", live.task_id)
            error = McpImagesError("internal error in mcp-images; see the server log")
            return {"status": "failed", "error": self._error_to_dict(error)}

    async def _record_interrupted(self, live: _Live) -> None:
        """Record why a job stopped without an outcome: cancelled, or the server stopped."""
        if live.cancel_requested:
            error = self._error_to_dict(TaskError("cancelled on request"))
            await self._writes.finish(live.task_id, "cancelled", error=error)
            return
        try:
            record = await self._store.get(live.task_id)
        except TaskError:
            logger.exception("task %s: cannot tell whether a provider holds it; left to the next server", live.task_id)
            return
        provider_held = self._writes.queued(live.task_id, "provider_task_id")
        if record is not None and not record.provider_task_id and not provider_held:
            await self._writes.finish(live.task_id, "failed", error=self._error_to_dict(TaskError(SHUTDOWN_REASON)))
        # provider-held: stays running; the next server polls it again

    async def _on_progress(self, live: _Live, count: float, total: float | None, msg: str) -> None:
        await self._record_progress(live)
        for send in list(live.listeners):
            try:
                await send(count, total, msg)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                _detach(live, send)  # that client went away; the job goes on

    async def _record_progress(self, live: _Live) -> None:
        """Store phase and notes: the first phase and every new note at once, then a phase
        change or a heartbeat at most once a second (a phase entered sooner waits for the next
        write, or goes in with the outcome: a call that ends within the second writes its
        record three times in all, made (running), its first phase and finished, besides its notes;
        a call a client waits on writes it twice, see `run_attached`)."""
        if live.progress is None:
            return
        state = (live.progress.phase_name, list(live.progress.events))
        now = time.monotonic()
        if now < live.no_writes_until:
            return
        last = live.last_written
        if last is not None and state[1] == last[1] and now - live.last_write_at < PROGRESS_WRITE_SECONDS:
            return
        try:
            record = await self._store.update(live.task_id, phase=state[0], progress=state[1])
        except TaskError:  # progress is a courtesy: a busy database must not stop the job
            logger.warning("task %s: progress not recorded", live.task_id, exc_info=True)
            live.no_writes_until = now + PROGRESS_RETRY_SECONDS
            return
        live.last_written, live.last_write_at = state, now
        if record.finished:  # another server cancelled it (or gave it up): stop, keep its verdict
            live.cancel_requested = True
            live.scope.cancel()

    @staticmethod
    def _unwritten_progress(live: _Live) -> dict[str, Any]:
        """Phase and notes the record does not hold yet, to go in with the outcome."""
        if live.progress is None:
            return {}
        state = (live.progress.phase_name, list(live.progress.events))
        return {} if state == live.last_written else {"phase": state[0], "progress": state[1]}

    # -- owners, orphans, expiry -------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await anyio.sleep(HOUSEKEEPING_SECONDS)
            try:
                await self._owners.heartbeat()
                await self._writes.flush()
                await self._housekeep()
                if self._make_poller is not None:
                    await self.resume(self._make_poller)
            except McpImagesError:  # a busy database now and then is no reason to stop
                logger.exception("task housekeeping failed; trying again later")

    async def _housekeep(self) -> None:
        """Drop expired records; fail local jobs whose server is gone.

        Each is claimed first, so that among many replicas exactly one gives the verdict.
        """
        await self._store.expire(self._ttl)
        for record in await self._owners.orphans():
            if record.provider_task_id or not await self._store.claim(record.id, record.owner, self.owner):
                continue
            error = self._error_to_dict(TaskError(RESTART_REASON))
            await self._writes.finish(record.id, "failed", error=error)  # claimed: kept if refused now

    def _write_soon(self, task_id: str, **fields: Any) -> None:
        """Queue fields for a record and write them in the background (for sync callers)."""
        self._writes.keep(task_id, **fields)
        if self._tg is not None and not self._closing:
            self._tg.start_soon(self._writes.write_kept, task_id)
        # else: stopping; `_record_stop` flushes what is kept

    def _task_group(self) -> TaskGroup:
        if self._tg is None or self._closing:
            raise RuntimeError("the task manager is not running: use `async with manager.running()`")
        return self._tg


async def _first_of(done: anyio.Event, other: anyio.Event | None) -> None:
    """Return when ``done`` is set, or ``other`` (if given) first."""
    if other is None:
        await done.wait()
        return
    async with anyio.create_task_group() as tg:

        async def wait_other() -> None:
            await other.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(wait_other)
        await done.wait()
        tg.cancel_scope.cancel()


def _detach(live: _Live, send: Send | None) -> None:
    """Stop forwarding the job's progress to ``send`` (its request is over)."""
    if send is not None and send in live.listeners:
        live.listeners.remove(send)


def describe_span(seconds: float) -> str:
    """``7 days``, ``1 hour``, ``90 seconds``."""
    units = (("day", 86400), ("hour", 3600), ("minute", 60))
    unit, size = next(((u, n) for u, n in units if seconds >= n), ("second", 1))
    count = round(seconds / size, 2)
    return f"{count:g} {unit}{'' if count == 1 else 's'}"
