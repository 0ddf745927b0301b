"""Cost estimates and actual costs, from a price table (`price_table`) and token counts.

Every figure says which table and date it came from. Token counts come from
`mcp_images.pricing.tokens`; this module only multiplies and labels what is exact (reported usage at
a published price) and what is estimated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from mcp_images.catalog.checks import parse_size
from mcp_images.catalog.models import ImageParams, ModelSpec
from mcp_images.pricing import tokens as tk
from mcp_images.pricing.table import ModelPrice, PriceTable

STANDARD_SIZES: tuple[tuple[int, int], ...] = ((1024, 1024), (1536, 1024), (1024, 1536))
RULE_LABELS: dict[str, str] = {
    tk.RULE_FORMULA: "gpt-image-2 formula",
    tk.RULE_TABLE: "gpt-image-1 token table",
    tk.RULE_DERIVED: "tokens derived from per-image prices",
    tk.RULE_NONE: "per-image list price",
}
_Kind = Literal["text_in", "image_in", "input_fidelity", "image_out", "partial_images", "text_out", "per_image"]
_Source = Literal["estimate", "usage"]
_PriceOf = Callable[[str], float | None]


# --- results ------------------------------------------------------------------------------


class CostLine(BaseModel):
    """One billed item: tokens at a price, or images at a per-image price."""

    kind: _Kind
    tokens: int | None = None
    tokens_max: int | None = None
    price_per_1m: float | None = None
    usd: float | None = None
    usd_max: float | None = None
    exact: bool = False
    basis: str = ""  # why exact or estimated


def no_price_note(model: str) -> str:
    """What an estimate or a result says of a model the price table has no figures for."""
    return (
        f"no published price for {model}: no figure is invented; give its per-token prices in a "
        "price file (MCP_IMAGES_PRICES) to have it priced"
    )


def format_money(x: float, currency: str = "USD") -> str:
    """Readable amount: ``$0.211``, ``$1.25``, ``$0.00042``; other currencies as a suffix."""
    if x == 0:
        text = "0"
    elif abs(x) >= 1:
        text = f"{x:,.2f}"
    elif abs(x) >= 0.001:
        text = f"{x:.3f}"
    else:
        text = f"{x:.2g}" if abs(x) >= 1e-4 else f"{x:.2e}"
    return f"${text}" if currency == "USD" else f"{text} {currency}"


def format_usd(x: float) -> str:
    """``format_money`` in US dollars."""
    return format_money(x, "USD")


class CostBreakdown(BaseModel):
    """What a call costs (or would cost), line by line, and how sure that figure is."""

    model: str
    currency: str
    total_usd: float | None
    total_usd_max: float | None = None  # set when the figure is a range (auto quality/size)
    per_image_usd: float | None = None
    per_image_usd_max: float | None = None
    lines: list[CostLine]
    price_table: str
    price_date: str
    exact: bool
    source: _Source
    basis: str = ""  # short label, e.g. "estimate: gpt-image-2 formula"
    range_note: str | None = None
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """One readable line, e.g. ``$0.211 (estimate: gpt-image-2 formula; table ... 2026-08)``."""
        table = f"table '{self.price_table}' {self.price_date}"
        if self.total_usd is None:
            counts = [
                f"{ln.kind} {ln.tokens}" + (f"-{ln.tokens_max}" if ln.tokens_max else "")
                for ln in self.lines
                if ln.tokens is not None
            ]
            why = self.notes[0] if self.notes else no_price_note(self.model)
            return f"{why} (tokens: {', '.join(counts) or 'unknown'})"
        amount = format_money(self.total_usd, self.currency)
        parts = [self.basis, table]
        if self.total_usd_max is not None:
            amount += "-" + format_money(self.total_usd_max, self.currency)
            parts.insert(0, self.range_note or "range")
        return f"{amount} ({'; '.join(p for p in parts if p)})"


def _line(kind: _Kind, tokens: int, price: float | None, exact: bool, basis: str) -> CostLine:
    usd = 0.0 if tokens == 0 else (tokens * price / 1e6 if price is not None else None)
    line = CostLine(kind=kind, tokens=tokens, price_per_1m=price, usd=usd, basis=basis)
    line.exact = exact and usd is not None
    return line


def _finish(table: PriceTable, call: PricedCall, lines: list[CostLine], notes: list[str], **kw: Any) -> CostBreakdown:
    """Add the lines up: no total when any line lacks a price; a maximum when any is a range."""
    usds = [ln.usd for ln in lines]
    total = None if None in usds else sum(u or 0.0 for u in usds)
    ranged = total is not None and any(ln.usd_max is not None for ln in lines)
    top = sum((ln.usd_max or ln.usd or 0.0) for ln in lines) if ranged else None
    count = max(call.n, 1)
    return CostBreakdown(
        model=call.model,
        currency=table.currency,
        total_usd=total,
        total_usd_max=top,
        per_image_usd=None if total is None else total / count,
        per_image_usd_max=None if top is None else top / count,
        lines=lines,
        price_table=table.name,
        price_date=table.date,
        exact=total is not None and all(ln.exact for ln in lines),
        notes=notes,
        **kw,
    )


# --- estimates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PricedCall:
    """The facts of one generate/edit call that bear on its cost."""

    model: str
    n: int = 1
    size: str | None = None
    quality: str | None = None
    prompt: str = ""
    input_sizes: Sequence[tuple[int, int]] = ()
    input_fidelity: str | None = None
    partial_images: int = 0
    edit: bool = False
    aliases: Sequence[str] = ()

    @classmethod
    def of(
        cls,
        spec: ModelSpec,
        params: ImageParams,
        *,
        n: int,
        input_sizes: Sequence[tuple[int, int]] = (),
        edit: bool = False,
    ) -> PricedCall:
        """A checked call's cost facts, priced under the catalog's name for the model."""
        return cls(
            model=spec.name if spec.known else params.model,
            n=n,
            size=params.size,
            quality=params.quality,
            prompt=params.prompt,
            input_sizes=tuple(input_sizes),
            input_fidelity=params.input_fidelity,
            partial_images=(params.partial_images or 0) if params.stream else 0,
            edit=edit,
            aliases=tuple(spec.all_names),
        )


def _no_price(_kind: str) -> float | None:
    return None


def _lookup(table: PriceTable, call: PricedCall, notes: list[str]) -> ModelPrice | None:
    found = table.find(call.model, call.aliases)
    if found is None:
        notes.append(no_price_note(call.model))
        return None
    if found[0] != call.model:
        notes.append(f"priced as {found[0]}")
    return found[1]


def _per_image_cost(
    table: PriceTable, call: PricedCall, entry: ModelPrice, notes: list[str], source: _Source
) -> CostBreakdown:
    """Per-image billing (dall-e): list price x n; a range when quality/size is left open."""
    prices = entry.per_image or {}
    q = call.quality if call.quality not in (None, "auto") else entry.default_quality
    s = call.size if call.size not in (None, "auto") else entry.default_size
    for what, given, used in (("quality", call.quality, q), ("size", call.size, s)):
        if used is not None and used != given:
            notes.append(f"{what} not given: {call.model}'s default {used}")
    found = [p.get(sz) for qq, p in prices.items() if q in (None, qq) for sz in ([s] if s else p)]
    known = [p for p in found if p is not None]
    kw: dict[str, Any] = {"source": source, "basis": "per-image list price"}
    if not found or len(known) != len(found):
        notes.insert(0, f"no per-image price for {call.model} at quality {q}, size {s}")
        line = CostLine(kind="per_image", basis="no list price for this quality and size")
        return _finish(table, call, [line], notes, **kw)
    lo, hi = min(known), max(known)
    line = CostLine(
        kind="per_image",
        usd=lo * call.n,
        usd_max=hi * call.n if hi != lo else None,
        exact=hi == lo,
        basis=f"per-image list price x {call.n}",
    )
    rng = "quality/size open: cheapest to dearest" if hi != lo else None
    return _finish(table, call, [line], notes, range_note=rng, **kw)


def _open_choices(call: PricedCall, notes: list[str]) -> tuple[list[tuple[int, int]], list[str], str | None]:
    """The sizes and qualities an estimate must span, and what to say about a range."""
    said: list[str] = []
    dims = parse_size(call.size) if call.size else None
    sizes = [dims] if dims else list(STANDARD_SIZES)
    if dims is None:
        said.append(f"size={call.size or 'auto'}: smallest to largest")
        if call.size not in (None, "auto"):
            notes.append(f"size {call.size!r} is not WIDTHxHEIGHT: spanning the standard sizes")
    quality = call.quality or "auto"
    qualities: list[str] = [quality] if quality in tk.TOKEN_QUALITIES else [*tk.TOKEN_QUALITIES]
    if len(qualities) > 1:
        said.append(f"quality={quality}: low to high")
        if quality != "auto":
            notes.append(f"quality {quality!r} has no token rule: spanning low to high")
    if said:
        notes.append("the model picks (" + "; ".join(said) + "): the cost is a range")
    return sizes, qualities, "; ".join(said) or None


def _input_lines(call: PricedCall, entry: ModelPrice | None, price: _PriceOf, notes: list[str]) -> list[CostLine]:
    """Prompt and input-image token lines (tile rule, plus the high-fidelity surcharge)."""
    lines: list[CostLine] = []
    if call.prompt:
        basis = "about 4 characters per token (no tokenizer): an approximation"
        lines.append(_line("text_in", tk.text_tokens(call.prompt), price("text_in"), False, basis))
    published = bool(entry and entry.input_rule_published)
    if call.input_sizes:
        tiles = sum(tk.input_image_tokens(w, h) for w, h in call.input_sizes)
        basis = "gpt-image-1's tile rule" + ("" if published else " (borrowed: an estimate)")
        lines.append(_line("image_in", tiles, price("image_in"), published, basis))
        if call.input_fidelity == "high" or (entry and entry.always_high_fidelity):
            extra = sum(tk.high_fidelity_tokens(w, h) for w, h in call.input_sizes)
            basis = "input_fidelity=high: 4160 per square image, 6240 otherwise"
            lines.append(_line("input_fidelity", extra, price("image_in"), published, basis))
    elif call.edit:
        notes.append("input image sizes unknown: input image tokens not counted")
    return lines


def _estimate(table: PriceTable, call: PricedCall) -> CostBreakdown:
    notes: list[str] = []
    entry = _lookup(table, call, notes)
    if entry is not None and entry.per_image_billed:
        return _per_image_cost(table, call, entry, notes, "estimate")
    rule = entry.output_rule if entry else tk.RULE_FORMULA
    price: _PriceOf = entry.token_price if entry else _no_price
    if entry is None:
        notes.append("output tokens by the gpt-image-2 formula: model not in the price table")
    elif entry.estimate:
        notes.append(f"estimate: {entry.estimate}")
    lines = _input_lines(call, entry, price, notes)
    sizes, qualities, range_note = _open_choices(call, notes)
    per_image_prices = entry.per_image if entry else None
    counts = [
        tk.output_tokens_by_rule(rule, w, h, q, per_image=per_image_prices, image_out_per_1m=price("image_out"))
        for w, h in sizes
        for q in qualities
    ]
    known = [t for t in counts if t is not None]
    label = RULE_LABELS.get(rule, rule)
    if rule == tk.RULE_NONE or len(known) != len(counts):
        notes.insert(0, f"no output-token figure for {call.model} at size {call.size}")
        lines.append(CostLine(kind="image_out", basis=f"{label}: no figure for this size"))
    else:
        lo, hi = min(known) * call.n, max(known) * call.n
        line = _line("image_out", lo, price("image_out"), rule == tk.RULE_TABLE and lo == hi, label)
        if hi != lo:
            line.tokens_max, line.exact = hi, False
            line.usd_max = None if line.price_per_1m is None else hi * line.price_per_1m / 1e6
        lines.append(line)
    if call.partial_images:
        tokens = tk.PARTIAL_IMAGE_TOKENS * call.partial_images * call.n
        basis = f"{tk.PARTIAL_IMAGE_TOKENS} image tokens per partial image, per image"
        lines.append(_line("partial_images", tokens, price("image_out"), True, basis))
    return _finish(
        table,
        call,
        lines,
        notes,
        source="estimate",
        basis=f"estimate: {label}",
        range_note=range_note,
    )


def estimate_cost(table: PriceTable, call: PricedCall) -> CostBreakdown:
    """What a call would cost before it is made; a range when quality or size is auto.

    The call's ``aliases`` are the catalog's other names for its model, so an alias finds its
    price. A model without a price gets ``total_usd=None`` and its token lines.
    """
    return _estimate(table, call)


# --- actual cost from the upstream's usage ------------------------------------------------


def actual_cost(table: PriceTable, call: PricedCall, usage: Mapping[str, Any] | None) -> CostBreakdown:
    """What a call cost, from the upstream's reported ``usage`` (an estimate without it).

    Token lines from reported counts at a published per-token price are exact. Tolerates
    unknown fields, 302.ai's ``prompt_tokens``/``completion_tokens`` and missing details
    (the split is then estimated and labelled). Per-image models: list price x n, exact.
    """
    model, n, input_sizes = call.model, call.n, call.input_sizes
    notes: list[str] = []
    entry = _lookup(table, call, notes)
    if entry is not None and entry.per_image_billed:
        notes.append(f"{model} is billed per image: list price x {n}")
        return _per_image_cost(table, call, entry, notes, "usage")
    high = call.input_fidelity == "high" or bool(entry and entry.always_high_fidelity)
    guess = sum(tk.input_image_tokens(w, h) + (tk.high_fidelity_tokens(w, h) if high else 0) for w, h in input_sizes)
    split = tk.split_usage(usage, image_in_guess=guess) if usage is not None else None
    if split is None:
        est = _estimate(table, call)
        why = "the upstream sent no usage" if usage is None else "the upstream's usage had no counts"
        est.notes.insert(0, f"{why}: this is an estimate")
        est.exact = False  # what the upstream billed is unknown
        return est
    price: _PriceOf = entry.token_price if entry else _no_price
    # A generation has no input images, so an unsplit input count is all text.
    in_exact = split.input_split_reported or not (input_sizes or call.edit)
    out_exact = split.output_split_reported or price("text_out") is None
    if not in_exact:
        notes.append("usage did not split input tokens: image/text split estimated")
    if not out_exact:
        notes.append("usage did not split output tokens: all counted as image tokens")
    said = "reported by the upstream"
    lines = [
        _line("text_in", split.text_in, price("text_in"), in_exact, said),
        _line("image_in", split.image_in, price("image_in"), in_exact, said),
        _line("image_out", split.image_out, price("image_out"), out_exact, said),
    ]
    if split.text_out:
        lines.append(_line("text_out", split.text_out, price("text_out"), True, said))
    label = "from reported usage" + ("" if in_exact and out_exact else ", partly estimated")
    return _finish(table, call, lines, notes, source="usage", basis=label)
