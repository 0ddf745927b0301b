"""The price table: per-model prices as data (``data/prices.json``), laid over by a user's file.

Prices move and aggregators mark up, so the table is data: a user's file in the same shape
(``MCP_IMAGES_PRICES``) is laid over the built-in one, field by field, and the table carries a
name and a date that every cost figure quotes. A file that breaks the format is refused with
its file, line and reason. `pricing` does the arithmetic; this module only loads and looks up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, ValidationError

from mcp_images.config_files import read_config_text
from mcp_images.errors import ConfigError
from mcp_images.pricing import tokens as tk

__all__ = ["ModelPrice", "OutputRule", "PriceTable", "TokenPrices", "load_price_table"]

OutputRule = Literal["gpt-image-2-formula", "gpt-image-1-table", "per-image-derived", "none"]


class TokenPrices(BaseModel):
    """Prices per 1M tokens; None where the source gives none."""

    model_config = ConfigDict(extra="forbid")

    text_in: NonNegativeFloat | None = None
    cached_text_in: NonNegativeFloat | None = None
    image_in: NonNegativeFloat | None = None
    cached_image_in: NonNegativeFloat | None = None
    image_out: NonNegativeFloat | None = None
    text_out: NonNegativeFloat | None = None


class ModelPrice(BaseModel):
    """One model's prices and the output-token rule that goes with them."""

    model_config = ConfigDict(extra="forbid")

    aliases: list[str] = Field(default_factory=list)
    per_1m: TokenPrices | None = None
    per_image: dict[str, dict[str, NonNegativeFloat]] | None = None  # quality -> size -> price
    output_rule: OutputRule = "gpt-image-2-formula"
    always_high_fidelity: bool = False
    input_rule_published: bool = False  # the tile rule is gpt-image-1's; others borrow it
    default_quality: str | None = None
    default_size: str | None = None
    estimate: str | None = None  # why this model's figures are estimates
    notes: str | None = None

    @property
    def per_image_billed(self) -> bool:
        return self.output_rule == tk.RULE_NONE and bool(self.per_image)

    def token_price(self, kind: str) -> float | None:
        return getattr(self.per_1m, kind, None) if self.per_1m else None


class PriceTable(BaseModel):
    """A named, dated price table."""

    model_config = ConfigDict(extra="ignore")  # tolerate "_comment"

    name: str
    date: str
    currency: str = "USD"
    source: str = ""
    models: dict[str, ModelPrice]

    def find(self, model: str, aliases: Sequence[str] = ()) -> tuple[str, ModelPrice] | None:
        """The entry for ``model`` or one of its catalog ``aliases``: by name, then by alias."""
        names = (model, *aliases)
        for name in names:
            if name in self.models:
                return name, self.models[name]
        for name in names:
            for key, entry in self.models.items():
                if name in entry.aliases:
                    return key, entry
        return None


# --- loading ------------------------------------------------------------------------------


def _builtin_raw() -> dict[str, Any]:
    return tk.builtin_price_data()


def _line_of_key(text: str, key: str, start: int = 0) -> int:
    """The 1-based line where ``"key":`` first appears at or after ``start`` (1 if not found)."""
    pattern = re.compile(re.escape(json.dumps(key)) + r"\s*:")
    m = pattern.search(text, start)
    return text.count("\n", 0, m.start()) + 1 if m else 1


def _overlay(base: dict[str, Any], user: dict[str, Any], name: str) -> dict[str, Any]:
    """Lay a user's table over the built-in one: fields replace; ``per_1m`` merges by key."""
    merged = {**base, **{k: v for k, v in user.items() if k != "models"}}
    # Built-in prices are USD: in a table of another currency they would be wrong.
    same_currency = merged.get("currency") == base.get("currency")
    models = dict(base["models"]) if same_currency else {}
    if not same_currency and "name" not in user:
        merged["name"] = name
    for name, body in (user.get("models") or {}).items():
        old = models.get(name)
        if isinstance(old, dict) and isinstance(body, dict):
            new = {**old, **body}
            if isinstance(old.get("per_1m"), dict) and isinstance(body.get("per_1m"), dict):
                new["per_1m"] = {**old["per_1m"], **body["per_1m"]}
            models[name] = new
        else:
            models[name] = body
    merged["models"] = models
    return merged


def load_price_table(user_file: Path | None = None) -> PriceTable:
    """The built-in table, with a user's file (same format) laid over it.

    The user's models override (field by field) or add entries; its name, date, currency and
    source replace the built-in's when given.

    Raises:
        ConfigError: the file cannot be read, is not a regular file under
            `config_files.MAX_CONFIG_FILE_BYTES`, or breaks the format; names file, line, reason.
    """
    base = _builtin_raw()
    if user_file is None:
        return PriceTable.model_validate(base)
    text = read_config_text(user_file, setting="MCP_IMAGES_PRICES", what="price table")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{user_file}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("models", {}), dict):
        raise ConfigError(f'{user_file}: line 1: expected an object with a "models" object inside')
    try:
        return PriceTable.model_validate(_overlay(base, raw, user_file.name))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"]]
        if loc[0] == "models" and len(loc) > 1:
            models_at = re.search(r'"models"\s*:', text)
            line = _line_of_key(text, loc[1], models_at.end() if models_at else 0)
            what = f"model {loc[1]!r}, field {'.'.join(loc[2:]) or '(entry)'}"
        else:
            line, what = _line_of_key(text, loc[0]), f"field {'.'.join(loc)}"
        raise ConfigError(f"{user_file}: line {line}: {what}: {first['msg']}") from exc
