"""Prices: one row per figure the upstream contract publishes, plus the table-file rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_images.errors import ConfigError
from mcp_images.pricing.costs import CostBreakdown, PricedCall, actual_cost, estimate_cost, format_usd
from mcp_images.pricing.table import PriceTable, load_price_table

CONTRACT_USAGE = {
    "input_tokens": 10977,
    "input_tokens_details": {"image_tokens": 10917, "text_tokens": 60},
    "output_tokens": 4160,
    "total_tokens": 15137,
    "output_tokens_details": {"image_tokens": 4160, "text_tokens": 0},
}


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return load_price_table()


def line(cost: CostBreakdown, kind: str) -> tuple[int | None, float | None]:
    found = [ln for ln in cost.lines if ln.kind == kind]
    assert len(found) == 1, f"expected one {kind} line in {cost.lines}"
    return found[0].tokens, found[0].usd


@pytest.mark.parametrize(
    ("quality", "size", "usd"),
    [
        ("low", "1024x1024", 0.006),
        ("low", "1024x1536", 0.005),
        ("low", "1536x1024", 0.005),
        ("medium", "1024x1024", 0.053),
        ("medium", "1024x1536", 0.041),
        ("medium", "1536x1024", 0.041),
        ("high", "1024x1024", 0.211),
        ("high", "1024x1536", 0.165),
        ("high", "1536x1024", 0.165),
    ],
)
def test_gpt_image_2_estimates_match_openais_per_image_prices(
    table: PriceTable, quality: str, size: str, usd: float
) -> None:
    cost = estimate_cost(table, PricedCall(model="gpt-image-2", size=size, quality=quality))
    assert cost.total_usd is not None and round(cost.total_usd, 3) == usd
    assert not cost.exact and cost.source == "estimate"
    assert "gpt-image-2 formula" in cost.summary()


@pytest.mark.parametrize(
    ("quality", "size", "usd"),
    [
        ("low", "1024x1024", 0.005),
        ("low", "1024x1536", 0.006),
        ("low", "1536x1024", 0.006),
        ("medium", "1024x1024", 0.011),
        ("medium", "1024x1536", 0.015),
        ("medium", "1536x1024", 0.015),
        ("high", "1024x1024", 0.036),
        ("high", "1024x1536", 0.052),
        ("high", "1536x1024", 0.052),
    ],
)
def test_gpt_image_1_mini_estimates_match_its_per_image_prices(
    table: PriceTable, quality: str, size: str, usd: float
) -> None:
    cost = estimate_cost(table, PricedCall(model="gpt-image-1-mini", size=size, quality=quality))
    assert cost.total_usd == pytest.approx(usd)
    tokens, _ = line(cost, "image_out")
    assert tokens is not None and tokens > 0  # tokens are still reported, labelled estimates
    assert any("unpublished" in note for note in cost.notes)


@pytest.mark.parametrize(
    ("model", "quality", "size", "usd"),
    [
        ("dall-e-3", "standard", "1024x1024", 0.04),
        ("dall-e-3", "standard", "1792x1024", 0.08),
        ("dall-e-3", "standard", "1024x1792", 0.08),
        ("dall-e-3", "hd", "1024x1024", 0.08),
        ("dall-e-3", "hd", "1792x1024", 0.12),
        ("dall-e-3", "hd", "1024x1792", 0.12),
        ("dall-e-2", "standard", "256x256", 0.016),
        ("dall-e-2", "standard", "512x512", 0.018),
        ("dall-e-2", "standard", "1024x1024", 0.020),
    ],
)
def test_dall_e_costs_are_the_per_image_list_price_times_n(
    table: PriceTable, model: str, quality: str, size: str, usd: float
) -> None:
    cost = estimate_cost(table, PricedCall(model=model, size=size, quality=quality, n=3))
    assert cost.total_usd == pytest.approx(3 * usd)
    assert cost.per_image_usd == pytest.approx(usd)
    assert cost.exact
    billed = actual_cost(table, PricedCall(model=model, n=3, size=size, quality=quality), None)
    assert billed.total_usd == pytest.approx(3 * usd) and billed.exact


@pytest.mark.parametrize(("model", "usd"), [("dall-e-3", 0.04), ("dall-e-2", 0.020)])
def test_dall_e_without_quality_or_size_uses_the_documented_defaults(table: PriceTable, model: str, usd: float) -> None:
    cost = estimate_cost(table, PricedCall(model=model))
    assert cost.total_usd == pytest.approx(usd) and cost.total_usd_max is None
    assert any("default" in note for note in cost.notes)


@pytest.mark.parametrize(
    ("model", "size", "quality", "tokens", "price"),
    [
        ("gpt-image-1", "1024x1024", "high", 4160, 40.00),
        ("gpt-image-1", "1536x1024", "low", 400, 40.00),
        ("gpt-image-1.5", "1024x1536", "medium", 1584, 32.00),
        ("chatgpt-image-latest", "1024x1024", "low", 272, 32.00),
    ],
)
def test_gpt_image_1_family_prices_its_table_tokens_at_the_image_out_rate(
    table: PriceTable, model: str, size: str, quality: str, tokens: int, price: float
) -> None:
    cost = estimate_cost(table, PricedCall(model=model, size=size, quality=quality))
    assert line(cost, "image_out") == (tokens, pytest.approx(tokens * price / 1e6))
    assert cost.exact  # published table x published price, no prompt to approximate


@pytest.mark.parametrize(("size", "tokens", "price"), [("1024x1024", 194, 10.00), ("1536x1024", 323, 10.00)])
def test_edit_input_images_are_counted_by_the_tile_rule(
    table: PriceTable, size: str, tokens: int, price: float
) -> None:
    w, h = (int(x) for x in size.split("x"))
    cost = estimate_cost(
        table, PricedCall(model="gpt-image-1", size="1024x1024", quality="low", input_sizes=[(w, h)], edit=True)
    )
    assert line(cost, "image_in") == (tokens, pytest.approx(tokens * price / 1e6))
    assert not any(ln.kind == "input_fidelity" for ln in cost.lines)


@pytest.mark.parametrize(
    ("model", "fidelity", "sizes", "extra"),
    [
        ("gpt-image-1", "high", [(1024, 1024)], 4160),
        ("gpt-image-1.5", "high", [(1536, 1024)], 6240),
        ("gpt-image-1.5", "high", [(1024, 1024), (1024, 1536)], 4160 + 6240),
        ("gpt-image-2", None, [(1024, 1024)], 4160),  # always high fidelity
    ],
)
def test_high_input_fidelity_adds_its_surcharge_per_input(
    table: PriceTable, model: str, fidelity: str | None, sizes: list[tuple[int, int]], extra: int
) -> None:
    cost = estimate_cost(
        table,
        PricedCall(model=model, size="1024x1024", quality="low", input_sizes=sizes, input_fidelity=fidelity, edit=True),
    )
    tokens, usd = line(cost, "input_fidelity")
    assert tokens == extra and usd is not None and usd > 0


def test_partial_images_add_100_output_tokens_each_per_image(table: PriceTable) -> None:
    cost = estimate_cost(
        table, PricedCall(model="gpt-image-1.5", n=2, size="1024x1024", quality="low", partial_images=3)
    )
    assert line(cost, "partial_images") == (600, pytest.approx(600 * 32.00 / 1e6))
    assert cost.total_usd == pytest.approx((2 * 272 + 600) * 32.00 / 1e6)


@pytest.mark.parametrize(("size", "quality"), [(None, None), ("auto", "auto"), ("1024x1024", "auto")])
def test_auto_quality_or_size_gives_a_range_and_says_so(
    table: PriceTable, size: str | None, quality: str | None
) -> None:
    cost = estimate_cost(table, PricedCall(model="gpt-image-2", size=size, quality=quality))
    assert cost.total_usd is not None and cost.total_usd_max is not None
    assert round(cost.total_usd, 3) < round(cost.total_usd_max, 3) == 0.211
    assert any("range" in note for note in cost.notes)
    assert "-$0.211" in cost.summary() and "quality=auto: low to high" in cost.summary()


def test_a_range_keeps_its_bounds_per_image(table: PriceTable) -> None:
    cost = estimate_cost(table, PricedCall(model="gpt-image-1", n=2, size="1024x1024"))
    assert cost.per_image_usd == pytest.approx(272 * 40 / 1e6)
    assert cost.per_image_usd_max == pytest.approx(4160 * 40 / 1e6)


def test_gpt_image_2_prices_arbitrary_sizes_by_the_formula(table: PriceTable) -> None:
    cost = estimate_cost(table, PricedCall(model="gpt-image-2", size="2048x1152", quality="medium"))
    tokens, usd = line(cost, "image_out")
    assert tokens and usd == pytest.approx(tokens * 30 / 1e6)


def test_the_prompt_is_priced_as_approximate_text_tokens(table: PriceTable) -> None:
    cost = estimate_cost(table, PricedCall(model="gpt-image-1", size="1024x1024", quality="low", prompt="x" * 40))
    assert line(cost, "text_in") == (10, pytest.approx(10 * 5 / 1e6))
    assert not cost.exact


@pytest.mark.parametrize(("model", "usd"), [("gpt-image-1.5", 0.220756), ("gpt-image-2", 0.212436)])
def test_actual_cost_from_the_contracts_recorded_usage_is_exact(table: PriceTable, model: str, usd: float) -> None:
    cost = actual_cost(table, PricedCall(model=model, n=1, size="1024x1024", quality="high"), CONTRACT_USAGE)
    assert cost.total_usd == pytest.approx(usd)
    assert cost.exact and cost.source == "usage"
    assert line(cost, "image_in")[0] == 10917 and line(cost, "text_in")[0] == 60


def test_actual_cost_reads_302ai_chat_style_usage(table: PriceTable) -> None:
    usage = {"prompt_tokens": 60, "completion_tokens": 4160, "total_tokens": 4220, "x": None}
    cost = actual_cost(table, PricedCall(model="gpt-image-1", n=1, size=None, quality=None), usage)
    assert cost.total_usd == pytest.approx((60 * 5 + 4160 * 40) / 1e6)


def test_actual_cost_prices_reported_text_output_for_gpt_image_1_5(table: PriceTable) -> None:
    usage = {**CONTRACT_USAGE, "output_tokens_details": {"image_tokens": 4160, "text_tokens": 100}}
    cost = actual_cost(table, PricedCall(model="gpt-image-1.5", n=1, size=None, quality=None), usage)
    assert line(cost, "text_out") == (100, pytest.approx(100 * 10 / 1e6))


def test_actual_cost_without_usage_is_a_labelled_estimate(table: PriceTable) -> None:
    cost = actual_cost(table, PricedCall(model="gpt-image-1", n=1, size="1024x1024", quality="high"), None)
    assert cost.source == "estimate" and not cost.exact
    assert "no usage" in cost.notes[0]
    assert cost.total_usd == pytest.approx(4160 * 40 / 1e6)


def test_an_unsplit_edit_usage_is_marked_partly_estimated(table: PriceTable) -> None:
    cost = actual_cost(
        table,
        PricedCall(model="gpt-image-1", n=1, size="1024x1024", quality="low", input_sizes=[(1024, 1024)], edit=True),
        {"input_tokens": 250, "output_tokens": 272},
    )
    assert line(cost, "image_in")[0] == 194 and line(cost, "text_in")[0] == 56
    assert not cost.exact and "partly estimated" in cost.summary()


def test_a_model_without_a_price_still_shows_its_token_estimate(table: PriceTable) -> None:
    cost = estimate_cost(table, PricedCall(model="gpt-image-2.5-flare", size="1024x1024", quality="high"))
    assert cost.total_usd is None and cost.per_image_usd is None
    assert any(n.startswith("no published price for gpt-image-2.5-flare") for n in cost.notes)
    assert any("MCP_IMAGES_PRICES" in n for n in cost.notes)
    assert line(cost, "image_out") == (7024, None)
    assert cost.summary().startswith("no published price for gpt-image-2.5-flare:")
    assert cost.summary().endswith("(tokens: image_out 7024)")
    billed = actual_cost(table, PricedCall(model="gpt-image-2.5-flare", n=1, size=None, quality=None), CONTRACT_USAGE)
    assert billed.total_usd is None and line(billed, "image_out")[0] == 4160


def test_a_catalog_alias_finds_its_models_price(table: PriceTable) -> None:
    cost = estimate_cost(table, PricedCall(model="my-gpt2", aliases=["gpt-image-2"], size="1024x1024", quality="high"))
    assert cost.total_usd is not None and round(cost.total_usd, 3) == 0.211
    dated = estimate_cost(table, PricedCall(model="gpt-image-2-2026-04-21", size="1024x1024", quality="high"))
    assert dated.total_usd == cost.total_usd


def test_every_estimate_names_its_table_and_date(table: PriceTable) -> None:
    cost = estimate_cost(table, PricedCall(model="gpt-image-1", size="1024x1024", quality="low"))
    assert (cost.price_table, cost.price_date, cost.currency) == (
        "OpenAI list prices",
        "2026-08",
        "USD",
    )
    assert "'OpenAI list prices' 2026-08" in cost.summary()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.json"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_override_file_changes_a_price_and_adds_a_model(tmp_path: Path) -> None:
    override = {
        "name": "302.ai",
        "date": "2026-09",
        "models": {
            "gpt-image-2": {"per_1m": {"image_out": 60.0}},
            "seedream-4": {"per_image": {"standard": {"1024x1024": 0.03}}, "output_rule": "none"},
        },
    }
    table = load_price_table(write(tmp_path, json.dumps(override)))
    assert (table.name, table.date) == ("302.ai", "2026-09")
    doubled = estimate_cost(table, PricedCall(model="gpt-image-2", size="1024x1024", quality="high"))
    assert doubled.total_usd == pytest.approx(7024 * 60 / 1e6)
    assert table.models["gpt-image-2"].token_price("text_in") == 5.00  # untouched fields stay
    assert table.models["gpt-image-2"].aliases == ["gpt-image-2-2026-04-21"]
    added = estimate_cost(table, PricedCall(model="seedream-4", size="1024x1024", quality="standard", n=2))
    assert added.total_usd == pytest.approx(0.06)
    assert "gpt-image-1" in table.models


def test_an_override_in_another_currency_drops_the_usd_built_ins(tmp_path: Path) -> None:
    entry = {"per_1m": {"image_out": 40}, "output_rule": "gpt-image-1-table"}
    override = {"currency": "PTC", "models": {"gpt-image-1": entry}}
    table = load_price_table(write(tmp_path, json.dumps(override)))
    assert list(table.models) == ["gpt-image-1"] and table.name == "prices.json"
    cost = estimate_cost(table, PricedCall(model="gpt-image-1", size="1024x1024", quality="high"))
    assert cost.summary().startswith("0.166 PTC (")
    assert estimate_cost(table, PricedCall(model="gpt-image-2")).total_usd is None


def test_a_json_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "models": {\n    "x": {"per_1m": {"image_out": 1,}}\n  }\n}\n')
    with pytest.raises(ConfigError, match=r"prices\.json: line 3"):
        load_price_table(path)


def test_a_bad_model_entry_names_the_line_where_it_starts(tmp_path: Path) -> None:
    text = (
        "{\n"
        '  "name": "mine",\n'
        '  "models": {\n'
        '    "good": {"per_1m": {"image_out": 1}},\n'
        '    "bad": {\n'
        '      "per_1m": {"image_out": "lots"}\n'
        "    }\n"
        "  }\n"
        "}\n"
    )
    with pytest.raises(ConfigError, match=r"prices\.json: line 5: model 'bad', field per_1m\.image_out"):
        load_price_table(write(tmp_path, text))


def test_a_bad_top_level_field_names_its_line(tmp_path: Path) -> None:
    text = '{\n  "models": {},\n  "date": 2026\n}\n'
    with pytest.raises(ConfigError, match=r"line 3: field date"):
        load_price_table(write(tmp_path, text))


def test_an_unknown_output_rule_is_refused(tmp_path: Path) -> None:
    text = '{"models": {\n"m": {"output_rule": "guess"}}}'
    with pytest.raises(ConfigError, match=r"line 2: model 'm', field output_rule"):
        load_price_table(write(tmp_path, text))


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read price table"):
        load_price_table(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("usd", "text"),
    [(0.211, "$0.211"), (0.00588, "$0.006"), (0.0, "$0"), (1.5, "$1.50"), (0.00042, "$0.00042")],
)
def test_format_usd_is_readable(usd: float, text: str) -> None:
    assert format_usd(usd) == text
