"""``mcp-images spending``: what the image calls cost, read from the data folder's ledger.

The same view as the ``spending://today`` resource (today, this month, by model, today's
calls), for a person at a terminal; ``--json`` prints it as one JSON document. It reads the
ledger of every identity unless ``--identity`` names one, and never creates the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

PERIOD_HELP = "today (default), month, a UTC day (2026-11-22) or a month (2026-11)"


def register(sub: Any) -> None:
    """Add ``spending`` to the ``mcp-images`` subcommands."""
    parser = sub.add_parser(
        "spending",
        help="what the image calls cost: today, this month, by model",
        description="Read the spending ledger (<data dir>/spending.sqlite3): one row per upstream call.",
    )
    parser.add_argument("period", nargs="?", default="today", help=PERIOD_HELP)
    parser.add_argument("--identity", help="only this identity's calls (HTTP servers with authentication)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    # SUPPRESS: a value given before the command (mcp-images --data-dir X spending) is kept.
    parser.add_argument("--data-dir", default=argparse.SUPPRESS, help="the data folder (MCP_IMAGES_DATA_DIR)")
    parser.add_argument("--output-dir", default=argparse.SUPPRESS, help="the output folder (MCP_IMAGES_OUTPUT_DIR)")


def run(ns: argparse.Namespace) -> int:
    """Print the view; 0, or 2 when the settings or the period are refused."""
    import anyio

    from mcp_images.config import load_settings
    from mcp_images.errors import ConfigError

    try:
        settings = load_settings(data_dir=getattr(ns, "data_dir", None), output_dir=getattr(ns, "output_dir", None))
        view = anyio.run(_read, settings, ns.identity, ns.period)
    except (ConfigError, ValueError) as exc:
        sys.stderr.write(f"mcp-images: {exc}\n")
        return 2
    sys.stdout.write(json.dumps(view, indent=1) + "\n" if ns.json else render(view))
    return 0


async def _read(settings: Any, identity: str | None, period: str) -> dict[str, Any]:
    from mcp_images.pricing.guard import Limits, read_view
    from mcp_images.pricing.ledger import open_ledger, sqlite_ledger_path, where_ledger_is
    from mcp_images.pricing.table import load_price_table

    where = where_ledger_is(settings)
    path = sqlite_ledger_path(settings)
    if path is not None and not path.exists():
        return {"ledger": where, "empty": True}
    ledger = await open_ledger(settings)
    try:
        currency = load_price_table(settings.prices).currency
        view = await read_view(ledger, Limits.of(settings), identity, period, currency=currency)
    finally:
        await ledger.close()
    return {"ledger": where, **view}


def render(view: dict[str, Any]) -> str:
    """The view as lines a person reads."""
    from mcp_images.pricing.costs import format_money

    if view.get("empty"):
        return f"no calls recorded yet ({view['ledger']})\n"

    def money(x: float) -> str:
        return format_money(x, view["currency"])

    def totals(t: dict[str, Any]) -> str:
        line = f"{money(t['spent'])} spent in {t['calls']} call{'s' if t['calls'] != 1 else ''}"
        held = t["held"] + t["estimated"]
        return line + (f" (+{money(held)} held: calls running or of unknown cost)" if held else "")

    lines = [f"spending of {view['scope']} ({view['ledger']})"]
    if "day" in view:
        lines.append(f"day {view['day']['day']} (UTC): {totals(view['day'])}")
    if "budget" in view:
        b = view["budget"]
        lines.append(
            f"  budget {money(b['daily_budget'])}: {money(b['remaining_today'])} left, resets in {b['resets_in']}"
        )
    lines.append(f"month {view['month']['month']}: {totals(view['month'])}")
    if view["by_model"]:
        lines.append("by model (this month):")
        width = max(len(m) for m in view["by_model"])
        lines += [f"  {m:<{width}}  {totals(t)}" for m, t in view["by_model"].items()]
    if view.get("calls"):
        lines.append("calls (newest first):")
        lines += [_call_line(row, money) for row in view["calls"]]
    return "\n".join(lines) + "\n"


def _call_line(row: dict[str, Any], money: Any) -> str:
    when = datetime.fromtimestamp(row["created_at"], UTC).strftime("%H:%M:%S")
    shape = " ".join(str(x) for x in (f"n={row['n']}", row["size"], row["quality"]) if x)
    estimate = "unpriced" if row["estimate_usd"] is None else f"est {money(row['estimate_usd'])}"
    cost = "cost unknown" if row["actual_usd"] is None else f"cost {money(row['actual_usd'])}"
    billed = "" if row["billed"] in ("yes", "pending") else f" (billed: {row['billed']})"
    parts = [when, row["identity"], row["tool"], row["model"], shape, estimate, cost, row["status"] + billed]
    return "  " + "  ".join(parts) + (f"  {row['task_id']}" if row["task_id"] else "")
