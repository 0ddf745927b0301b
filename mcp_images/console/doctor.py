"""``mcp-images doctor``: is this setup able to make images? Each check says OK or what to fix.

Settings, the key (present and well-formed, never shown), the provider and base URL, the
upstream (one request that buys nothing: `doctor_upstream`), the output and data folders
(writable, or creatable: nothing is created here), the task database, and the catalog, price
and provider tables. It exits 1 when any check fails, 0 otherwise (warnings included).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mcp_images.console.doctor_upstream import Check, check_upstream
from mcp_images.errors import ConfigError

if TYPE_CHECKING:
    import httpx2

    from mcp_images.config import Settings
    from mcp_images.console.display import Reporter

SHORT_KEY_CHARS = 8  # shorter keys are not cut out of messages (secrets.Scrubber)
MARKS = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "skip": "SKIP"}
STYLES = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def key_check(settings: Settings, flags_given: bool) -> Check:
    """The key is there and looks like one; its value is never part of the answer."""
    from mcp_images.config import setting_variables

    if settings.api_key is None:
        return Check("api key", "fail", "no key: set MCP_IMAGES_API_KEY (or OPENAI_API_KEY) to your service's key")
    key = settings.api_key.get_secret_value()
    source = next((v for v in setting_variables("api_key") if os.environ.get(v)), ".env" if not flags_given else "")
    where = f"set in {source}" if source else "set"
    if len(key) < SHORT_KEY_CHARS:
        return Check("api key", "warn", f"{where}, but only {len(key)} characters long: is it the whole key?")
    if " " in key or key[0] in "\"'" or key[-1] in "\"'":
        return Check("api key", "warn", f"{where}, but it holds a space or quotes: copy the key again, without them")
    if settings.provider == "openai" and not key.startswith("sk-"):
        return Check("api key", "warn", f"{where}, but OpenAI keys start with 'sk-': is it another service's key?")
    return Check("api key", "ok", f"{where} ({len(key)} characters, not shown)")


def folder_check(name: str, path: Path, variable: str, made: str = "at the first save") -> Check:
    """``path`` is a writable folder, or the nearest folder above it that exists is."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        return Check(name, "fail", f"{probe} is a file, so {path} cannot be a folder: remove it, or set {variable}")
    if not os.access(probe, os.W_OK | os.X_OK):
        return Check(name, "fail", f"{probe} is not writable: change its permissions, or set {variable}")
    if probe == path:
        return Check(name, "ok", f"{path} is writable")
    return Check(name, "ok", f"{path} does not exist yet; it is made {made} ({probe} is writable)")


def task_store_check(data_dir: Path) -> Check:
    from mcp_images.tasks.store import SCHEMA_VERSION, TaskStore

    path = data_dir / "tasks.sqlite3"
    if not path.exists():
        return Check("task database", "ok", f"none yet at {path}; it is made with the first task")
    try:
        TaskStore(path).close()
    except ConfigError as exc:
        return Check("task database", "fail", str(exc))
    return Check("task database", "ok", f"{path} opens (schema {SCHEMA_VERSION})")


def tables_check(settings: Settings) -> Check:
    from mcp_images.catalog.models import load_catalog
    from mcp_images.catalog.providers import load_providers
    from mcp_images.pricing.table import load_price_table

    try:
        catalog = load_catalog(settings.catalog)
        prices = load_price_table(settings.prices)
        providers = load_providers(settings.providers)
    except ConfigError as exc:
        return Check("tables", "fail", str(exc))
    return Check(
        "tables",
        "ok",
        f"catalog {len(catalog.names())} models, prices {prices.name!r} {prices.date} "
        f"({len(prices.models)} models), {len(providers)} providers",
    )


async def collect(
    ns: argparse.Namespace, flags: Mapping[str, str], *, transport: httpx2.AsyncBaseTransport | None = None
) -> list[Check]:
    """Every check, in order; the later ones only when the settings parse."""
    from mcp_images.catalog.providers import get_provider
    from mcp_images.config import load_settings
    from mcp_images.console.calls import SETTING_FLAGS

    given = {name: getattr(ns, name, None) for name in SETTING_FLAGS}
    try:
        settings = load_settings(flags=flags, **given)
    except ConfigError as exc:
        return [Check("settings", "fail", str(exc))]
    checks = [Check("settings", "ok", "parsed (flags, environment, .env)"), key_check(settings, False)]
    try:
        provider = get_provider(settings.provider, settings.providers)
    except ConfigError as exc:
        return [*checks, Check("provider", "fail", str(exc))]
    base = settings.base_url or provider.base_url
    if base is None:
        checks.append(Check("provider", "fail", f"{provider.name} has no default base URL: set MCP_IMAGES_BASE_URL"))
    else:
        checks.append(Check("provider", "ok", f"{provider.name} at {base}"))
    if base is None or settings.api_key is None:
        checks.append(Check("upstream", "skip", "not asked: needs a key and a base URL"))
    else:
        checks.append(await check_upstream(provider, base, settings.api_key.get_secret_value(), transport=transport))
    checks.append(folder_check("output folder", settings.resolved_output_dir, "MCP_IMAGES_OUTPUT_DIR"))
    checks.append(folder_check("data folder", settings.resolved_data_dir, "MCP_IMAGES_DATA_DIR", "with the first task"))
    checks.append(task_store_check(settings.resolved_data_dir))
    checks.append(tables_check(settings))
    return checks


def show(checks: list[Check], reporter: Reporter) -> None:
    if reporter.mode == "json":
        ok = not any(c.status == "fail" for c in checks)
        reporter.out.write(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}, indent=2) + "\n")
        return
    width = max(len(c.name) for c in checks)
    if reporter.mode == "plain":
        reporter.out.write("".join(f"{MARKS[c.status]:<4}  {c.name:<{width}}  {c.detail}\n" for c in checks))
        return
    from rich.markup import escape

    for c in checks:
        mark = f"[{STYLES[c.status]}]{MARKS[c.status]:<4}[/{STYLES[c.status]}]"
        reporter.console.print(f"{mark}  {c.name:<{width}}  {escape(c.detail)}")


def run_doctor(
    ns: argparse.Namespace,
    flags: Mapping[str, str],
    reporter: Reporter,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> int:
    """Run the checks, show them; 1 if any failed."""
    import anyio

    async def go() -> list[Check]:
        return await collect(ns, flags, transport=transport)

    checks = anyio.run(go)
    show(checks, reporter)
    return 1 if any(c.status == "fail" for c in checks) else 0
