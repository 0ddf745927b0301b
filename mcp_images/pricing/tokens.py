"""Token counts by the upstream contract's rules (shared by pricing and the sandbox).

Pure arithmetic. Which output rule a model follows is data: the ``output_rule`` of its entry
in ``data/prices.json`` (read lazily, once). The rule names:

- ``gpt-image-2-formula``: the community-derived formula (reproduces OpenAI's prices; an estimate)
- ``gpt-image-1-table``: OpenAI's published table for gpt-image-1 / 1.5 (three sizes only)
- ``per-image-derived``: tokens chosen so that tokens x image-out price = the per-image price
  (gpt-image-1-mini, whose token counts are unpublished)
- ``none``: billed per image, no tokens (dall-e)

Unknown models get the gpt-image-2 formula: a plausible figure, labelled an estimate by pricing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

PARTIAL_IMAGE_TOKENS = 100
"""Image output tokens each partial image adds to the bill, per image."""

TEXT_CHARS_PER_TOKEN = 4
TILE_PX = 512
FIT_PX = 2048
TILE_BASE_TOKENS = 65
TILE_TOKENS = 129
HIGH_FIDELITY_SQUARE = 4160
HIGH_FIDELITY_OTHER = 6240

GPT_IMAGE_2_Q: dict[str, int] = {"low": 16, "medium": 48, "high": 96}
TOKEN_QUALITIES = ("low", "medium", "high")

# OpenAI's published output-token table for gpt-image-1 and gpt-image-1.5.
GPT_IMAGE_1_TABLE: dict[str, dict[tuple[int, int], int]] = {
    "low": {(1024, 1024): 272, (1024, 1536): 408, (1536, 1024): 400},
    "medium": {(1024, 1024): 1056, (1024, 1536): 1584, (1536, 1024): 1568},
    "high": {(1024, 1024): 4160, (1024, 1536): 6240, (1536, 1024): 6208},
}

RULE_FORMULA = "gpt-image-2-formula"
RULE_TABLE = "gpt-image-1-table"
RULE_DERIVED = "per-image-derived"
RULE_NONE = "none"


def _check_quality(quality: str) -> None:
    if quality not in TOKEN_QUALITIES:
        raise ValueError(f"quality must be low, medium or high (resolve 'auto'); got {quality!r}")


def gpt_image_2_output_tokens(width: int, height: int, quality: str) -> int:
    """Output image tokens of one gpt-image-2 image (the contract's formula).

    Raises:
        ValueError: quality is not low, medium or high.
    """
    _check_quality(quality)
    q = GPT_IMAGE_2_Q[quality]
    long, short = max(width, height), min(width, height)
    s = (2 * q * short + long) // (2 * long)
    return (q * s * (2_000_000 + width * height) + 3_999_999) // 4_000_000


def table_output_tokens(width: int, height: int, quality: str) -> int | None:
    """Output image tokens from the gpt-image-1/1.5 table; None for a size off the table.

    Raises:
        ValueError: quality is not low, medium or high.
    """
    _check_quality(quality)
    return GPT_IMAGE_1_TABLE[quality].get((width, height))


def derived_output_tokens(per_image_price: float, image_out_per_1m: float) -> int:
    """Tokens that, at ``image_out_per_1m`` per million, cost ``per_image_price``."""
    return round(per_image_price * 1_000_000 / image_out_per_1m)


def input_image_tokens(width: int, height: int) -> int:
    """Tokens of one input image by gpt-image-1's tile rule (1024x1024 -> 194, 1536x1024 -> 323).

    Fit inside 2048x2048, scale so the shorter side is 512, count 512-px tiles. Scaling
    keeps the aspect ratio, so the tile count along the long side is ceil(long / short);
    the exact fraction is used (how the upstream rounds pixels is unpublished).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive; got {width}x{height}")
    long, short = max(width, height), min(width, height)
    tiles = -(-long // short)  # ceil: the short side is exactly one tile after scaling
    return TILE_BASE_TOKENS + TILE_TOKENS * tiles


def high_fidelity_tokens(width: int, height: int) -> int:
    """Extra input tokens for one image with input_fidelity=high (4160 square, 6240 otherwise)."""
    return HIGH_FIDELITY_SQUARE if width == height else HIGH_FIDELITY_OTHER


def text_tokens(text: str) -> int:
    """About characters / 4, rounded up: an approximation without a tokenizer."""
    return -(-len(text) // TEXT_CHARS_PER_TOKEN)


@cache
def builtin_price_data() -> dict[str, Any]:
    """The shipped ``prices.json``, read once (the price table and the token rules share it)."""
    text = resources.files("mcp_images.pricing.data").joinpath("prices.json").read_text("utf-8")
    return json.loads(text)


@cache
def _builtin_models() -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = builtin_price_data()["models"]
    by_name: dict[str, dict[str, Any]] = {}
    for name, entry in models.items():
        for alias in [name, *entry.get("aliases", [])]:
            by_name[alias] = entry
    return by_name


def builtin_entry(model: str) -> Mapping[str, Any] | None:
    """The built-in price-table entry for ``model`` (by name or alias), or None."""
    return _builtin_models().get(model)


def output_tokens_by_rule(
    rule: str,
    width: int,
    height: int,
    quality: str,
    *,
    per_image: Mapping[str, Mapping[str, float]] | None = None,
    image_out_per_1m: float | None = None,
) -> int | None:
    """Output image tokens of one image under ``rule``; None when the rule gives no figure.

    ``per_image`` (quality -> size -> price) and ``image_out_per_1m`` feed the derived rule.

    Raises:
        ValueError: quality is not low, medium or high (for a token rule).
    """
    if rule == RULE_FORMULA:
        return gpt_image_2_output_tokens(width, height, quality)
    if rule == RULE_TABLE:
        return table_output_tokens(width, height, quality)
    if rule == RULE_DERIVED:
        _check_quality(quality)
        price = (per_image or {}).get(quality, {}).get(f"{width}x{height}")
        if price is None or not image_out_per_1m:
            return None
        return derived_output_tokens(price, image_out_per_1m)
    return None


def output_tokens_for(model: str, width: int, height: int, quality: str) -> int | None:
    """Output image tokens of one image of ``model``, by the rule the built-in table names.

    None for per-image models and sizes a table does not cover. Unknown models: the
    gpt-image-2 formula (an estimate).

    Raises:
        ValueError: quality is not low, medium or high (for a token model).
    """
    entry = builtin_entry(model)
    if entry is None:
        return gpt_image_2_output_tokens(width, height, quality)
    return output_tokens_by_rule(
        entry.get("output_rule", RULE_FORMULA),
        width,
        height,
        quality,
        per_image=entry.get("per_image"),
        image_out_per_1m=(entry.get("per_1m") or {}).get("image_out"),
    )


def usage_body(
    model: str,
    *,
    prompt: str,
    n: int,
    width: int,
    height: int,
    quality: str,
    input_sizes: Sequence[tuple[int, int]] = (),
    input_fidelity_high: bool = False,
    partial_images: int = 0,
) -> dict[str, Any] | None:
    """The ``usage`` object a GPT image upstream would report; None for per-image models.

    ``quality`` must already be resolved (low/medium/high). Models that always use high
    input fidelity (gpt-image-2) add its tokens for every input image. A size the model's
    table does not cover falls back to the gpt-image-2 formula, so a sandbox always answers.

    Raises:
        ValueError: quality is not low, medium or high.
    """
    entry = builtin_entry(model)
    if entry is not None and entry.get("output_rule") == RULE_NONE:
        return None
    per_image = output_tokens_for(model, width, height, quality)
    if per_image is None:
        per_image = gpt_image_2_output_tokens(width, height, quality)
    high = input_fidelity_high or bool(entry and entry.get("always_high_fidelity"))
    image_in = sum(input_image_tokens(w, h) + (high_fidelity_tokens(w, h) if high else 0) for w, h in input_sizes)
    text_in = text_tokens(prompt)
    image_out = n * (per_image + PARTIAL_IMAGE_TOKENS * partial_images)
    return {
        "input_tokens": image_in + text_in,
        "input_tokens_details": {"image_tokens": image_in, "text_tokens": text_in},
        "output_tokens": image_out,
        "total_tokens": image_in + text_in + image_out,
        "output_tokens_details": {"image_tokens": image_out, "text_tokens": 0},
    }


@dataclass(frozen=True)
class UsageSplit:
    """An upstream's ``usage`` read into the four billed token kinds."""

    text_in: int
    image_in: int
    image_out: int
    text_out: int
    input_split_reported: bool  # False: the image/text split of the input was guessed
    output_split_reported: bool  # False: all output was counted as image tokens


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


def _details(usage: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    for key in keys:
        if isinstance(usage.get(key), Mapping):
            return usage[key]
    return {}


def split_usage(usage: Mapping[str, Any], *, image_in_guess: int = 0) -> UsageSplit | None:
    """Read a reported ``usage``; None when it holds no token counts at all.

    Tolerates unknown fields, 302.ai's chat-style ``prompt_tokens``/``completion_tokens`` and
    missing details: then input tokens are split with ``image_in_guess`` (the estimated image
    tokens; 0 for a generation) and output tokens all count as image tokens.
    """
    total_in = _count(usage.get("input_tokens", usage.get("prompt_tokens")))
    total_out = _count(usage.get("output_tokens", usage.get("completion_tokens")))
    if total_in is None and total_out is None:
        return None
    total_in, total_out = total_in or 0, total_out or 0
    d_in = _details(usage, "input_tokens_details", "prompt_tokens_details")
    img_in, txt_in = _count(d_in.get("image_tokens")), _count(d_in.get("text_tokens"))
    in_reported = img_in is not None or txt_in is not None
    if img_in is None:
        img_in = total_in - txt_in if txt_in is not None else min(image_in_guess, total_in)
    d_out = _details(usage, "output_tokens_details", "completion_tokens_details")
    img_out, txt_out = _count(d_out.get("image_tokens")), _count(d_out.get("text_tokens"))
    out_reported = img_out is not None or txt_out is not None
    if img_out is None:
        img_out = total_out - (txt_out or 0)
    return UsageSplit(
        text_in=txt_in if txt_in is not None else max(total_in - img_in, 0),
        image_in=max(img_in, 0),
        image_out=max(img_out, 0),
        text_out=txt_out if txt_out is not None else max(total_out - img_out, 0),
        input_split_reported=in_reported,
        output_split_reported=out_reported,
    )
