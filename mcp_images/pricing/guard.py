"""The spending guard's arithmetic: limits, what a call would cost, and whether it may go.

Three settings bound what the agent may spend, in the price table's currency:
``MCP_IMAGES_MAX_COST_PER_CALL`` (one call's estimate, the upper end of a range),
``MCP_IMAGES_DAILY_BUDGET`` (per UTC day: the whole server over stdio, each identity over
HTTP) and ``MCP_IMAGES_CONFIRM_ABOVE`` (a call estimated above it needs a person's yes).

A day's *committed* money is what the ledger (`pricing.ledger`) holds for it: the actual
cost of every finished call that was billed, the estimate of every call still running
(its reservation), and the estimate of every call whose billing is unknown (cut off while
the upstream worked on it: it may have been billed, so it counts). `check_limits` is run
twice: before asking anyone (cheap, so a person is never asked about a call that cannot go)
and inside the ledger's reservation transaction, where no other call can slip in between.

A model without a published price cannot be weighed: under a per-call limit or a budget it
is refused until a price file gives it a price; under the confirmation threshold alone it
needs the person's yes. Nothing here imports ``mcp``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from mcp_images.errors import McpImagesError, RequestError, UpstreamError
from mcp_images.pricing.costs import CostBreakdown, format_money
from mcp_images.pricing.ledger import Ledger, Settlement, Totals

Reason = Literal["unknown_price", "per_call_limit", "daily_budget", "needs_confirmation", "declined", "cancelled"]
EPSILON = 1e-9  # money compares with this much slack: 0.1 + 0.2 must fit a budget of 0.3
PER_CALL_KINDS = frozenset({"text_in", "image_in", "input_fidelity"})  # cost lines that do not grow with n
NOT_SENT = "Nothing was sent upstream."
# Phases of a call (work.progress) before any request left, and after the upstream answered.
BEFORE_SENDING = frozenset({"starting"})
ANSWERED = frozenset({"downloading", "saving"})


@dataclass(frozen=True)
class Limits:
    """The three settings (None: not set)."""

    max_per_call: float | None = None
    daily_budget: float | None = None
    confirm_above: float | None = None

    @classmethod
    def of(cls, settings: Any) -> Limits:
        return cls(settings.max_cost_per_call, settings.daily_budget, settings.confirm_above)

    @property
    def bounds_spending(self) -> bool:
        """Whether a figure is needed to admit a call at all (a limit or a budget)."""
        return self.max_per_call is not None or self.daily_budget is not None


@dataclass(frozen=True)
class Ask:
    """What one generate/edit call would cost, as the guard weighs it."""

    tool: str
    model: str
    n: int
    size: str | None
    quality: str | None
    estimate: float | None  # the upper end of the estimate; None: no published price
    fixed: float  # the part that does not grow with n (the prompt, input images)
    currency: str
    summary: str  # the estimate as one line ("$0.211 (estimate: ...)")

    @classmethod
    def of(cls, tool: str, breakdown: CostBreakdown, *, n: int, size: str | None, quality: str | None) -> Ask:
        fixed = sum((ln.usd_max or ln.usd or 0.0) for ln in breakdown.lines if ln.kind in PER_CALL_KINDS)
        return cls(
            tool=tool, model=breakdown.model, n=n, size=size, quality=quality, estimate=upper(breakdown),
            fixed=fixed, currency=breakdown.currency, summary=breakdown.summary(),
        )  # fmt: skip

    def money(self, x: float) -> str:
        return format_money(x, self.currency)

    def described(self) -> str:
        """``gpt-image-2, n=4, 1536x1024, high``."""
        return ", ".join(str(x) for x in (self.model, f"n={self.n}", self.size, self.quality) if x)

    def driving(self, values: dict[str, Any]) -> list[str]:
        """The arguments that make the price, as a person reads them (``values``: the call's)."""
        images = values.get("image")
        count = (1 if isinstance(images, str) else len(images)) if images else 0
        facts = [
            f"model {self.model}",
            f"n={self.n}",
            f"size {self.size or 'auto'}",
            f"quality {self.quality or 'auto'}",
        ]
        facts += [f"{count} input image(s)"] if count else []
        facts += [f"input_fidelity {values['input_fidelity']}"] if values.get("input_fidelity") else []
        partials = values.get("partial_images") if values.get("stream") else None
        return facts + ([f"{partials} partial image(s)"] if partials else [])

    def digest(self, values: dict[str, Any]) -> str:
        """What a person's answer is bound to: this call's arguments and estimate."""
        kept = {k: v for k, v in values.items() if k != "confirm_cost"}
        text = json.dumps([self.tool, kept, self.estimate], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def fitting_n(self, room: float) -> int:
        """The largest n (below the asked one) whose estimate fits ``room``; 0 when none does."""
        if self.estimate is None or self.n <= 1:
            return 0
        per_image = (self.estimate - self.fixed) / self.n
        if per_image <= 0:
            return self.n - 1
        return max(0, min(self.n - 1, math.floor((room - self.fixed + EPSILON) / per_image)))


def upper(breakdown: CostBreakdown | None) -> float | None:
    """The upper end of a figure (a range's maximum), or None when it has no price."""
    if breakdown is None or breakdown.total_usd is None:
        return None
    return breakdown.total_usd_max if breakdown.total_usd_max is not None else breakdown.total_usd


class SpendingRefused(RequestError):
    """A call the spending guard did not let go; `figures` carries the numbers behind it."""

    def __init__(self, message: str, *, reason: Reason, figures: dict[str, Any], field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.figures = {"reason": reason, **figures}
        self.field = field


# --- the calendar -------------------------------------------------------------------------


def day_of(t: float) -> str:
    """The UTC day of a time: ``2026-11-22``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def month_of(t: float) -> str:
    """The UTC month of a time: ``2026-11``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m")


def resets_in(t: float) -> str:
    """How long until the next UTC midnight: ``5 h 12 min``."""
    now = datetime.fromtimestamp(t, UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    minutes = math.ceil((midnight - now).total_seconds() / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


# --- the checks ---------------------------------------------------------------------------


def _fit_note(ask: Ask, room: float) -> str:
    fits = ask.fitting_n(room)
    if fits:
        return f"n={fits} fits; n={ask.n} does not"
    if ask.n > 1:
        return "not even n=1 fits; try a lower quality or a smaller size"
    return "try a lower quality or a smaller size"


def check_limits(limits: Limits, ask: Ask, *, committed: float, now: float | None = None) -> None:
    """Refuse a call that breaks the per-call limit or would overrun the day's budget.

    ``committed`` is what today already holds (spent, plus calls running or of unknown outcome).

    Raises:
        SpendingRefused: with the figures: the estimate, the limit, spent today, what fits.
    """
    now = time.time() if now is None else now
    if ask.estimate is None:
        if limits.bounds_spending:
            raise SpendingRefused(
                f"no published price for {ask.model}, so this call cannot be weighed against the spending "
                "limits (MCP_IMAGES_MAX_COST_PER_CALL, MCP_IMAGES_DAILY_BUDGET) and is refused; give the model "
                f"its prices in a price file (MCP_IMAGES_PRICES), or use a priced model. {NOT_SENT}",
                reason="unknown_price", figures={"estimate": None, "currency": ask.currency}, field="model",
            )  # fmt: skip
        return
    figures: dict[str, Any] = {"estimate": round(ask.estimate, 6), "currency": ask.currency}
    if limits.max_per_call is not None and ask.estimate > limits.max_per_call + EPSILON:
        limit = limits.max_per_call
        raise SpendingRefused(
            f"this call would cost up to {ask.money(ask.estimate)} ({ask.described()}), over the per-call limit "
            f"of {ask.money(limit)} (MCP_IMAGES_MAX_COST_PER_CALL); {_fit_note(ask, limit)}. {NOT_SENT}",
            reason="per_call_limit", figures={**figures, "limit": limit, "fits_n": ask.fitting_n(limit)}, field="n",
        )  # fmt: skip
    budget = limits.daily_budget
    if budget is not None and committed + ask.estimate > budget + EPSILON:
        room = max(0.0, budget - committed)
        raise SpendingRefused(
            f"today's budget is {ask.money(budget)} (MCP_IMAGES_DAILY_BUDGET, UTC day {day_of(now)}): "
            f"{ask.money(committed)} is spent or held by calls still running, {ask.money(room)} is left, and "
            f"this call would cost up to {ask.money(ask.estimate)} ({ask.described()}); {_fit_note(ask, room)}. "
            f"The budget resets at 00:00 UTC (in {resets_in(now)}). {NOT_SENT}",
            reason="daily_budget",
            figures={**figures, "limit": budget, "committed_today": round(committed, 6), "remaining": round(room, 6),
                     "fits_n": ask.fitting_n(room), "day": day_of(now)},
            field="n",
        )  # fmt: skip


def needs_confirmation(limits: Limits, ask: Ask) -> bool:
    """Whether the call is above the confirmation threshold (an unpriced call always is)."""
    if limits.confirm_above is None:
        return False
    return ask.estimate is None or ask.estimate > limits.confirm_above + EPSILON


def confirm_figure(ask: Ask) -> float | None:
    """The ``confirm_cost`` that covers the estimate: rounded up to the cent."""
    return None if ask.estimate is None else math.ceil(ask.estimate * 100 - EPSILON) / 100


def confirmed_by(confirm_cost: float | None, ask: Ask) -> bool:
    """Whether ``confirm_cost`` covers the estimate (it is a ceiling, never a limit raised)."""
    return confirm_cost is not None and ask.estimate is not None and confirm_cost + EPSILON >= ask.estimate


def over_confirmed(confirm_cost: float | None, ask: Ask) -> SpendingRefused | None:
    """A refusal when the estimate is above a ``confirm_cost`` the caller gave (else None)."""
    if confirm_cost is None or ask.estimate is None or confirmed_by(confirm_cost, ask):
        return None
    return SpendingRefused(
        f"this call would cost up to {ask.money(ask.estimate)} ({ask.described()}), more than confirm_cost="
        f"{confirm_cost:g}; send confirm_cost={confirm_figure(ask):g} if that was agreed, or ask for less. {NOT_SENT}",
        reason="needs_confirmation", field="confirm_cost",
        figures={"estimate": round(ask.estimate, 6), "currency": ask.currency, "confirm_cost": confirm_figure(ask)},
    )  # fmt: skip


def confirmation_refusal(limits: Limits, ask: Ask, *, answer: str | None) -> SpendingRefused:
    """Why a call above the threshold did not go: the person said no (``answer``), or could
    not be asked (None: the client has no elicitation, so ``confirm_cost`` stands in)."""
    threshold = limits.confirm_above or 0.0
    cost = "no published price" if ask.estimate is None else f"up to {ask.money(ask.estimate)}"
    figures = {"estimate": ask.estimate, "currency": ask.currency, "limit": threshold}
    if answer in ("decline", "cancel"):
        said = "declined" if answer == "decline" else "cancelled the confirmation"
        return SpendingRefused(
            f"the person {said}: this call ({ask.described()}, {cost}) was not made. {NOT_SENT}",
            reason="declined" if answer == "decline" else "cancelled", figures=figures,
        )  # fmt: skip
    if ask.estimate is None:
        how = "this client cannot ask the person, and an unpriced call cannot be confirmed by confirm_cost"
        return SpendingRefused(
            f"this call ({ask.described()}) has {cost}, and calls above {ask.money(threshold)} need a person's "
            f"confirmation (MCP_IMAGES_CONFIRM_ABOVE): {how}; give the model a price (MCP_IMAGES_PRICES). {NOT_SENT}",
            reason="needs_confirmation", figures=figures, field="model",
        )  # fmt: skip
    figure = confirm_figure(ask)
    return SpendingRefused(
        f"this call would cost {cost} ({ask.described()}), above {ask.money(threshold)}, the amount above which "
        "a person confirms each call (MCP_IMAGES_CONFIRM_ABOVE), and this client cannot ask them; ask the "
        f"person, then call again with the same arguments and confirm_cost={figure:g}. {NOT_SENT}",
        reason="needs_confirmation", figures={**figures, "confirm_cost": figure}, field="confirm_cost",
    )  # fmt: skip


# --- what a finished call spent ------------------------------------------------------------


def settle_success(ask: Ask, cost: CostBreakdown | None, request_id: str | None = None) -> Settlement:
    """A call that returned images: billed, at its cost from usage (the estimate if unpriced)."""
    actual = cost.total_usd if cost is not None else None
    charged = upper(cost)
    return Settlement(
        status="succeeded", billed="yes", actual_usd=actual,
        charged_usd=charged if charged is not None else (ask.estimate or 0.0), request_id=request_id,
    )  # fmt: skip


def settle_failure(ask: Ask, exc: BaseException | None, *, phase: str, provider_held: bool) -> Settlement:
    """A call that failed (``exc``) or was cancelled (None) in ``phase``: was it billed?

    - nothing was sent yet: not billed;
    - the upstream answered with an HTTP error (a 524 excepted: a gateway cut a job that may
      have gone on): not billed, unless a provider already holds the job;
    - the upstream's answer was in (downloading, saving): billed; the cost from usage when the
      error carries it (``exc.cost``), else the estimate;
    - anything else (a timeout, a dropped stream, a cancel while the upstream worked): unknown,
      and the estimate counts against the budget, since it may have been billed.
    """
    status: Literal["failed", "cancelled"] = "cancelled" if exc is None else "failed"
    note = "" if exc is None else (str(exc.plain) if isinstance(exc, McpImagesError) else type(exc).__name__)
    request_id = getattr(exc, "request_id", None)
    estimate = ask.estimate or 0.0
    if phase in BEFORE_SENDING:
        return Settlement(status=status, billed="no", actual_usd=0.0, charged_usd=0.0, note=note)
    if phase in ANSWERED:
        cost = getattr(exc, "cost", None)
        cost = cost if isinstance(cost, CostBreakdown) else None
        charged = upper(cost)
        return Settlement(
            status=status, billed="yes", actual_usd=cost.total_usd if cost else None,
            charged_usd=charged if charged is not None else estimate, note=note, request_id=request_id,
        )  # fmt: skip
    refused = isinstance(exc, UpstreamError) and exc.status_code is not None and exc.status_code != 524
    if refused and not (provider_held and phase != "submitting"):
        return Settlement(status=status, billed="no", actual_usd=0.0, charged_usd=0.0, note=note, request_id=request_id)
    return Settlement(status=status, billed="unknown", actual_usd=None, charged_usd=estimate, note=note,
                      request_id=request_id)  # fmt: skip


# --- what is left, and the spending view ----------------------------------------------------


def budget_fields(budget: float, today: Totals, currency: str, now: float) -> dict[str, Any]:
    """Today's budget as results and estimates show it."""
    return {
        "currency": currency, "day": day_of(now), "daily_budget": budget, "spent_today": round(today.spent, 6),
        "held_today": round(today.held + today.estimated, 6), "committed_today": round(today.committed, 6),
        "remaining_today": round(max(0.0, budget - today.committed), 6), "resets_in": resets_in(now),
    }  # fmt: skip


def verdict(limits: Limits, ask: Ask, *, committed: float) -> str:
    """What the guard would say of this call now: ``fits``, ``needs confirmation ...``, or the refusal."""
    try:
        check_limits(limits, ask, committed=committed)
    except SpendingRefused as exc:
        return f"would be refused: {exc}"
    if needs_confirmation(limits, ask):
        return f"needs a person's confirmation (above {ask.money(limits.confirm_above or 0.0)})"
    return "fits"


_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")
ROWS_SHOWN = 50


async def read_view(ledger: Ledger, limits: Limits, scope: str | None, period: str, *, currency: str) -> dict[str, Any]:
    """The spending view of ``period``: ``today`` (today, this month, by model, today's calls),
    ``month``, a UTC day ``2026-11-22`` or month ``2026-11``.

    Raises:
        ValueError: ``period`` is none of those.
    """
    now = time.time()
    day = day_of(now) if period == "today" else period
    month = month_of(now) if period in ("today", "month") else period[:7]
    if not (_DAY.match(day) or (period == "month") or _MONTH.match(period)):
        raise ValueError(f"no spending period {period!r}: use today, month, a day (2026-11-22) or a month (2026-11)")
    view: dict[str, Any] = {"scope": scope or "the whole server", "currency": currency, "limits": {
        "max_cost_per_call": limits.max_per_call, "daily_budget": limits.daily_budget,
        "confirm_above": limits.confirm_above}}  # fmt: skip
    if _DAY.match(day) and period != "month":
        totals = (await ledger.totals(period=day, scope=scope))[""]
        view["day"] = {"day": day, **totals.as_dict()}
        if limits.daily_budget is not None and day == day_of(now):
            view["budget"] = budget_fields(limits.daily_budget, totals, currency, now)
        view["calls"] = [row.model_dump() for row in await ledger.rows(period=day, scope=scope, limit=ROWS_SHOWN)]
    view["month"] = {"month": month, **(await ledger.totals(period=month, scope=scope))[""].as_dict()}
    by_model = await ledger.totals(period=month, scope=scope, by_model=True)
    view["by_model"] = {model: t.as_dict() for model, t in by_model.items()}
    return view
