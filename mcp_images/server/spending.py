"""The spending guard at the MCP boundary: admit a call, ask the person, read the ledger.

`admit` runs after the one validation path and before any task or request: it prices the call
(`work.estimates`), refuses what breaks the per-call limit or today's budget, asks the person
about a call above the confirmation threshold, and reserves its estimate in the ledger
(`pricing.ledger`, atomically). `Admission.run` runs the job and settles its row (with its task
id, one write). With no spending setting nothing is reserved: the row is written once, settled,
when the call ends.

Asking the person is MCP elicitation (a form: the estimate, the arguments behind it, yes/no):
on 2025-11-25 and earlier a request sent to the client in the middle of the call; on
2026-07-28 an ``InputRequiredResult`` the client answers by calling again with the answer (the
SDK seals ``request_state``, so the question's digest there cannot be forged). A client
without elicitation gets a refusal naming the figure and ``confirm_cost``. ``confirm_cost``
never stands in for a person a client can ask, and never lifts a limit.

The ledger is read through the resource template ``spending://{period}`` (``today``,
``month``, a day ``2026-11-22`` or a month ``2026-11``): a template, so that plain clients'
``resources/list`` stays as it was.
"""

from __future__ import annotations

import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from pydantic import BaseModel, Field

from mcp_images.catalog.parameters import Given
from mcp_images.identity import identity_of
from mcp_images.pricing import guard
from mcp_images.pricing.guard import Ask, Limits, SpendingRefused
from mcp_images.pricing.ledger import Ledger, LedgerError, NewCall, Settlement
from mcp_images.runtime import Runtime
from mcp_images.server import results
from mcp_images.work.validation import CheckedCall

if TYPE_CHECKING:
    from mcp.server import MCPServer

    from mcp_images.work.progress import Progress
    from mcp_images.work.tools import Outcome

logger = logging.getLogger(__name__)

SPENDING_TEMPLATE = "spending://{period}"
ELICIT_KEY = "mcp-images/confirm-cost"
INPUT_REQUIRED_FROM = "2026-07-28"  # protocol versions from this one elicit through InputRequiredResult
PROMPT_SHOWN_CHARS = 200


class CostApproval(BaseModel):
    """The form the person answers."""

    approve: bool = Field(default=True, title="Make this call", description="Spend up to the estimate shown above")


class _Spending:
    """One server's ledger, opened on first use."""

    def __init__(self) -> None:
        self.ledger: Ledger | None = None
        self.lock = anyio.Lock()


_STATE: weakref.WeakKeyDictionary[Runtime, _Spending] = weakref.WeakKeyDictionary()


async def ledger_of(rt: Runtime) -> Ledger:
    """The server's ledger, opened in a worker thread the first time.

    Raises:
        LedgerError: it cannot be opened.
    """
    from mcp_images.pricing.ledger import open_ledger

    state = _STATE.setdefault(rt, _Spending())
    async with state.lock:
        if state.ledger is None:
            state.ledger = await open_ledger(rt.settings)
        return state.ledger


async def close_spending(rt: Runtime) -> None:
    """Close the ledger (the server is stopping)."""
    state = _STATE.pop(rt, None)
    if state is not None and state.ledger is not None:
        with anyio.CancelScope(shield=True):
            await state.ledger.close()


def scope_of(rt: Runtime, ctx: Context[Any, Any] | None) -> str | None:
    """Whose budget: each identity over HTTP, the whole server (None) over stdio."""
    return identity_of(ctx) if rt.transport_kind == "http" else None


def refusal(exc: SpendingRefused) -> CallToolResult:
    """The tool error of a refusal, with its figures under ``error.spending``."""
    detail: dict[str, Any] = {"type": "SpendingRefused", "message": str(exc), "spending": exc.figures}
    if exc.field:
        detail["field"] = exc.field
    return results.error_result_from_dict(detail)


# --- admitting a call ----------------------------------------------------------------------


class Admission:
    """A call let through: its reservation (``row``), settled by `run` with what it really cost;
    or, with nothing reserved, the row to write once it ended (``pending``)."""

    def __init__(
        self, rt: Runtime, ask: Ask, limits: Limits, scope: str | None, row: int | None, pending: NewCall | None = None
    ) -> None:
        self.rt, self.ask, self.limits, self.scope, self.row = rt, ask, limits, scope, row
        self.pending = pending
        self.task_id: str | None = None
        self.started = False

    async def run(
        self, work: Callable[[], Awaitable[Outcome]], progress: Progress, handle: Any, *, held: bool
    ) -> Outcome:
        """Run ``work`` and settle the row: its cost, or whether a failure was billed."""
        self.started = True
        self.task_id = getattr(handle, "task_id", None)
        try:
            outcome = await work()
        except BaseException as exc:
            cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
            settled = guard.settle_failure(
                self.ask, None if cancelled else exc, phase=progress.phase_name, provider_held=held
            )
            with anyio.CancelScope(shield=True):
                await self._settle(settled)
            raise
        await self._settle(guard.settle_success(self.ask, outcome.cost, outcome.request_id))
        return outcome

    async def release(self) -> None:
        """Free the reservation of a call that never started (its task could not be made)."""
        if not self.started:
            with anyio.CancelScope(shield=True):
                await self._settle(Settlement("cancelled", "no", 0.0, 0.0, note="never sent: no task was made"))

    async def budget_after(self) -> dict[str, Any] | None:
        """Today's budget as it stands after this call (None without a budget)."""
        return await budget_view(self.rt, self.limits, self.scope)

    async def _settle(self, settlement: Settlement) -> None:
        # An upstream may echo the key in an error or a request id: the row keeps neither.
        kept = replace(settlement, note=self.rt.scrub(settlement.note), request_id=self.rt.scrub(settlement.request_id))
        if self.pending is not None:
            try:
                await (await ledger_of(self.rt)).record(self.pending, kept, task_id=self.task_id)
            except LedgerError:
                logger.exception("spending ledger unavailable, call not recorded")
            return
        if self.row is None:
            return
        try:
            await (await ledger_of(self.rt)).settle(self.row, kept, task_id=self.task_id)
        except LedgerError:  # the call itself is done; the row keeps its estimate, which still counts
            logger.exception("spending ledger: row %s not updated", self.row)


async def _ask_of(rt: Runtime, call: CheckedCall, roots: list[Any] | None, *, full: bool) -> Ask:
    """The call's price: from the one estimate path (inputs read) when a figure decides."""
    n = call.params.n or 1
    if full:
        from mcp_images.work.estimates import estimate

        breakdown = (await estimate(rt, call, roots)).breakdown
    else:  # only for the ledger's column: an edit's inputs are not read twice for it
        from mcp_images.pricing.costs import PricedCall, estimate_cost

        breakdown = estimate_cost(rt.prices, PricedCall.of(call.spec, call.params, n=n, edit=call.edit))
    return Ask.of(call.tool, breakdown, n=n, size=call.params.size, quality=call.params.quality)


async def admit(
    rt: Runtime, call: CheckedCall, given: Given, ctx: Context[Any, Any], roots: list[Any] | None
) -> Admission | CallToolResult | InputRequiredResult:
    """Let a checked call go (its reservation made), or say why not, or ask the person first.

    Raises:
        ValidationProblem, InputError: the estimate's reading of the inputs refused them.
    """
    limits = Limits.of(rt.settings)
    guarded = limits.bounds_spending or limits.confirm_above is not None
    ask = await _ask_of(rt, call, roots, full=guarded)
    scope = scope_of(rt, ctx)
    now = time.time()
    try:
        committed = await _committed(rt, scope, now) if limits.bounds_spending else 0.0
        guard.check_limits(limits, ask, committed=committed, now=now)
        if (over := guard.over_confirmed(given.get("confirm_cost"), ask)) is not None:
            raise over  # the caller's own ceiling
        if guard.needs_confirmation(limits, ask):
            asked = await _confirm(rt, ctx, ask, given, limits, scope)
            if asked is not None:
                return asked
        if not guarded:  # nothing to hold against: the row is written once, when the call ends
            return Admission(rt, ask, limits, scope, None, pending=_new_call(ask, identity_of(ctx), now))
        row = await _reserve(rt, ask, limits, scope, identity_of(ctx), now, required=guarded)
    except SpendingRefused as exc:
        logger.info("%s refused by the spending guard: %s", call.tool, exc.reason)
        return refusal(exc)
    return Admission(rt, ask, limits, scope, row)


async def _committed(rt: Runtime, scope: str | None, now: float) -> float:
    try:
        ledger = await ledger_of(rt)
        return (await ledger.totals(period=guard.day_of(now), scope=scope))[""].committed
    except LedgerError as exc:
        raise _unreadable(exc) from exc


def _unreadable(exc: LedgerError) -> SpendingRefused:
    return SpendingRefused(
        f"{exc}; while a spending limit is set, no call is made without it. {guard.NOT_SENT}",
        reason="daily_budget", figures={},
    )  # fmt: skip


async def _reserve(
    rt: Runtime, ask: Ask, limits: Limits, scope: str | None, identity: str, now: float, *, required: bool
) -> int | None:
    """The call's ledger row, reserved under the budget; None when the ledger is out of reach
    and no limit needs it (the call goes on, the log says so)."""

    def admit_now(committed: float) -> None:
        guard.check_limits(limits, ask, committed=committed, now=now)

    try:
        return await (await ledger_of(rt)).reserve(_new_call(ask, identity, now), scope=scope, admit=admit_now)
    except LedgerError as exc:
        if required:
            raise _unreadable(exc) from exc
        logger.warning("spending ledger unavailable, call not recorded: %s", exc)
        return None


def _new_call(ask: Ask, identity: str, now: float) -> NewCall:
    return NewCall(
        identity=identity, tool=ask.tool, model=ask.model, n=ask.n, size=ask.size, quality=ask.quality,
        estimate_usd=ask.estimate, currency=ask.currency, day=guard.day_of(now), month=guard.month_of(now),
        created_at=now,
    )  # fmt: skip


# --- asking the person ---------------------------------------------------------------------


async def _form_message(rt: Runtime, ask: Ask, given: Given, limits: Limits, scope: str | None) -> str:
    cost = f"up to {ask.money(ask.estimate)}" if ask.estimate is not None else "an unknown amount (no published price)"
    prompt = str(given.get("prompt") or "")
    shown = prompt if len(prompt) <= PROMPT_SHOWN_CHARS else prompt[:PROMPT_SHOWN_CHARS] + "…"
    lines = [
        f"mcp-images: {ask.tool} would cost {cost}.",
        ", ".join(ask.driving(given.values)),
        f'prompt: "{shown}"',
        f"estimate: {ask.summary}",
        f"Calls above {ask.money(limits.confirm_above or 0.0)} need your confirmation (MCP_IMAGES_CONFIRM_ABOVE).",
    ]
    budget = await budget_view(rt, limits, scope)
    if budget is not None:
        lines.append(results.budget_line(budget))
    return "\n".join(lines)


def _can_elicit(ctx: Context[Any, Any]) -> bool:
    caps = ctx.client_capabilities
    form = caps.elicitation if caps is not None else None
    return form is not None and (form.form is not None or form.url is None)  # a bare {} means form


async def _confirm(
    rt: Runtime, ctx: Context[Any, Any], ask: Ask, given: Given, limits: Limits, scope: str | None
) -> InputRequiredResult | None:
    """None when the call may go; an InputRequiredResult to ask (2026-07-28).

    Raises:
        SpendingRefused: declined, cancelled, or no way to ask and no ``confirm_cost`` covering it.
    """
    confirm_cost = given.get("confirm_cost")
    if not _can_elicit(ctx):
        if guard.confirmed_by(confirm_cost, ask):
            return None
        raise guard.over_confirmed(confirm_cost, ask) or guard.confirmation_refusal(limits, ask, answer=None)
    if (ctx.protocol_version or "") >= INPUT_REQUIRED_FROM:
        digest = ask.digest(given.values)
        answer = (ctx.input_responses or {}).get(ELICIT_KEY)
        state = _state(ctx.request_state)
        if answer is None or state.get("q") != digest:
            message = await _form_message(rt, ask, given, limits, scope)
            request = ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=_form_schema()))
            return InputRequiredResult(input_requests={ELICIT_KEY: request}, request_state=json.dumps({"q": digest}))
        action = _action(answer.action, answer.content) if isinstance(answer, ElicitResult) else "cancel"
    else:
        action = await _elicit_now(ctx, await _form_message(rt, ask, given, limits, scope))
    if action != "accept":
        raise guard.confirmation_refusal(limits, ask, answer=action)
    return None


def _form_schema() -> dict[str, Any]:
    from mcp.server.elicitation import render_elicitation_schema

    return render_elicitation_schema(CostApproval)


def _state(raw: str | None) -> dict[str, Any]:
    try:
        found = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _action(action: str, content: dict[str, Any] | None) -> str:
    """accept only with ``approve`` true (a form sent back with it unticked is a no)."""
    if action != "accept":
        return action
    return "accept" if (content or {}).get("approve", True) is True else "decline"


async def _elicit_now(ctx: Context[Any, Any], message: str) -> str:
    """Ask over the session (2025-11-25 and earlier); a failed question is a cancel."""
    from mcp.shared.exceptions import MCPError

    try:
        answer = await ctx.elicit(message, CostApproval)
    except (MCPError, ValueError):
        logger.info("the client could not show the confirmation form")
        return "cancel"
    if answer.action == "accept":
        return "accept" if answer.data.approve else "decline"
    return answer.action


# --- the budget and the ledger, read -------------------------------------------------------


async def budget_view(rt: Runtime, limits: Limits, scope: str | None) -> dict[str, Any] | None:
    """Today's budget: spent, held, left (None without a budget, or when the ledger is out of reach)."""
    if limits.daily_budget is None:
        return None
    now = time.time()
    try:
        totals = (await (await ledger_of(rt)).totals(period=guard.day_of(now), scope=scope))[""]
    except LedgerError:
        logger.exception("spending ledger unreadable")
        return None
    return guard.budget_fields(limits.daily_budget, totals, rt.prices.currency, now)


async def estimate_budget(
    rt: Runtime, ctx: Context[Any, Any], breakdown: Any, n: int, call: CheckedCall
) -> dict[str, Any] | None:
    """For estimate_cost: today's budget and whether this call would go."""
    limits = Limits.of(rt.settings)
    budget = await budget_view(rt, limits, scope_of(rt, ctx))
    if budget is None and not limits.bounds_spending and limits.confirm_above is None:
        return None
    ask = Ask.of(call.tool, breakdown, n=n, size=call.params.size, quality=call.params.quality)
    return {
        **(budget or {}),
        "verdict": guard.verdict(limits, ask, committed=(budget or {}).get("committed_today", 0.0)),
    }


def register_spending(server: MCPServer[Any], rt: Runtime) -> None:
    """The ``spending://{period}`` resource template."""

    @server.resource(
        SPENDING_TEMPLATE,
        name="spending",
        title="Spending",
        mime_type="application/json",
        description="What the image calls cost: spending://today (today, this month, by model), "
        "spending://month, or a UTC day (2026-11-22) or month (2026-11).",
    )
    async def spending_resource(period: str, ctx: Context[Any, Any]) -> str:
        from mcp.server.mcpserver.exceptions import ResourceNotFoundError

        try:
            ledger, limits = await ledger_of(rt), Limits.of(rt.settings)
            view = await guard.read_view(ledger, limits, scope_of(rt, ctx), period, currency=rt.prices.currency)
        except ValueError as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        except LedgerError as exc:
            raise ResourceNotFoundError(f"the spending ledger cannot be read: {exc}") from exc
        return json.dumps(view, indent=1)
