"""Token counts: one row per figure the upstream contract publishes."""

from __future__ import annotations

import pytest

from mcp_images.pricing import tokens as tk

# The contract's recorded response: two inputs with high fidelity, a 240-character prompt.
CONTRACT_USAGE = {
    "input_tokens": 10977,
    "input_tokens_details": {"image_tokens": 10917, "text_tokens": 60},
    "output_tokens": 4160,
    "total_tokens": 15137,
    "output_tokens_details": {"image_tokens": 4160, "text_tokens": 0},
}

GPT_IMAGE_1_TABLE = [
    ("low", 1024, 1024, 272),
    ("low", 1024, 1536, 408),
    ("low", 1536, 1024, 400),
    ("medium", 1024, 1024, 1056),
    ("medium", 1024, 1536, 1584),
    ("medium", 1536, 1024, 1568),
    ("high", 1024, 1024, 4160),
    ("high", 1024, 1536, 6240),
    ("high", 1536, 1024, 6208),
]


@pytest.mark.parametrize(("quality", "width", "height", "expected"), GPT_IMAGE_1_TABLE)
@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1.5", "chatgpt-image-latest"])
def test_gpt_image_1_family_output_tokens_match_openais_table(
    model: str, quality: str, width: int, height: int, expected: int
) -> None:
    assert tk.table_output_tokens(width, height, quality) == expected
    assert tk.output_tokens_for(model, width, height, quality) == expected


@pytest.mark.parametrize(
    ("width", "height", "quality", "expected"),
    [
        (1024, 1024, "low", 196),
        (1024, 1024, "medium", 1756),
        (1024, 1024, "high", 7024),
        (1536, 1024, "low", 158),
        (1536, 1024, "medium", 1372),
        (1536, 1024, "high", 5488),
        (1024, 1536, "high", 5488),  # the formula only sees long and short sides
    ],
)
@pytest.mark.parametrize("model", ["gpt-image-2", "gpt-image-2-2026-04-21"])
def test_gpt_image_2_formula_gives_the_contracts_check_values(
    model: str, width: int, height: int, quality: str, expected: int
) -> None:
    assert tk.gpt_image_2_output_tokens(width, height, quality) == expected
    assert tk.output_tokens_for(model, width, height, quality) == expected


def test_table_has_no_figure_for_a_size_off_the_table() -> None:
    assert tk.table_output_tokens(2048, 2048, "high") is None
    assert tk.output_tokens_for("gpt-image-1", 2048, 2048, "high") is None


@pytest.mark.parametrize(
    ("quality", "size", "usd"),
    [
        ("low", (1024, 1024), 0.005),
        ("low", (1024, 1536), 0.006),
        ("low", (1536, 1024), 0.006),
        ("medium", (1024, 1024), 0.011),
        ("medium", (1024, 1536), 0.015),
        ("medium", (1536, 1024), 0.015),
        ("high", (1024, 1024), 0.036),
        ("high", (1024, 1536), 0.052),
        ("high", (1536, 1024), 0.052),
    ],
)
def test_gpt_image_1_mini_tokens_times_image_out_price_give_its_per_image_price(
    quality: str, size: tuple[int, int], usd: float
) -> None:
    tokens = tk.output_tokens_for("gpt-image-1-mini", *size, quality)
    assert tokens is not None
    assert tokens * 8.00 / 1_000_000 == pytest.approx(usd)


@pytest.mark.parametrize("model", ["dall-e-3", "dall-e-2"])
def test_per_image_models_have_no_output_tokens(model: str) -> None:
    assert tk.output_tokens_for(model, 1024, 1024, "high") is None


def test_an_unknown_model_gets_the_gpt_image_2_formula() -> None:
    assert tk.output_tokens_for("gpt-image-2.5-flare", 1024, 1024, "high") == 7024


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(1024, 1024, 194), (1536, 1024, 323), (1024, 1536, 323), (512, 512, 194), (4096, 4096, 194)],
)
def test_input_image_tokens_follow_the_tile_rule(width: int, height: int, expected: int) -> None:
    assert tk.input_image_tokens(width, height) == expected


@pytest.mark.parametrize(("width", "height", "expected"), [(1024, 1024, 4160), (1536, 1024, 6240), (1024, 1536, 6240)])
def test_high_fidelity_adds_4160_for_square_and_6240_otherwise(width: int, height: int, expected: int) -> None:
    assert tk.high_fidelity_tokens(width, height) == expected


@pytest.mark.parametrize(("text", "expected"), [("", 0), ("abcd", 1), ("abcde", 2), ("x" * 240, 60)])
def test_text_tokens_are_about_four_characters_each_rounded_up(text: str, expected: int) -> None:
    assert tk.text_tokens(text) == expected


def test_usage_body_reproduces_the_contracts_example_response() -> None:
    body = tk.usage_body(
        "gpt-image-1.5",
        prompt="x" * 240,
        n=1,
        width=1024,
        height=1024,
        quality="high",
        input_sizes=[(1024, 1024), (1536, 1024)],
        input_fidelity_high=True,
    )
    assert body == CONTRACT_USAGE


def test_usage_body_for_gpt_image_2_always_adds_high_fidelity_tokens() -> None:
    body = tk.usage_body(
        "gpt-image-2",
        prompt="",
        n=1,
        width=1024,
        height=1024,
        quality="low",
        input_sizes=[(1024, 1024)],
    )
    assert body is not None
    assert body["input_tokens_details"]["image_tokens"] == 194 + 4160


def test_usage_body_counts_each_image_and_100_tokens_per_partial_image() -> None:
    body = tk.usage_body("gpt-image-1", prompt="", n=2, width=1024, height=1024, quality="low", partial_images=3)
    assert body is not None
    assert body["output_tokens"] == 2 * (272 + 3 * tk.PARTIAL_IMAGE_TOKENS)
    assert body["total_tokens"] == body["input_tokens"] + body["output_tokens"]


def test_usage_body_is_none_for_per_image_models() -> None:
    assert tk.usage_body("dall-e-3", prompt="a", n=1, width=1024, height=1024, quality="high") is None


def test_usage_body_falls_back_to_the_formula_for_a_size_off_the_table() -> None:
    body = tk.usage_body("gpt-image-1", prompt="", n=1, width=1024, height=1024, quality="high")
    off = tk.usage_body("gpt-image-1", prompt="", n=1, width=2048, height=2048, quality="high")
    assert body is not None and body["output_tokens"] == 4160
    assert off is not None
    assert off["output_tokens"] == tk.gpt_image_2_output_tokens(2048, 2048, "high")


@pytest.mark.parametrize("quality", ["auto", "hd", "standard"])
def test_usage_body_refuses_an_unresolved_quality(quality: str) -> None:
    with pytest.raises(ValueError, match="low, medium or high"):
        tk.usage_body("gpt-image-2", prompt="", n=1, width=1024, height=1024, quality=quality)


def test_split_usage_reads_the_contracts_usage_as_reported() -> None:
    split = tk.split_usage(CONTRACT_USAGE)
    assert split == tk.UsageSplit(60, 10917, 4160, 0, True, True)


def test_split_usage_tolerates_302ai_chat_style_fields_without_details() -> None:
    split = tk.split_usage({"prompt_tokens": 500, "completion_tokens": 4160, "extra": "x"})
    assert split is not None
    assert (split.text_in, split.image_in, split.image_out, split.text_out) == (500, 0, 4160, 0)
    assert not split.input_split_reported and not split.output_split_reported


def test_split_usage_uses_the_image_guess_when_input_details_are_missing() -> None:
    split = tk.split_usage({"input_tokens": 300, "output_tokens": 272}, image_in_guess=194)
    assert split is not None
    assert (split.text_in, split.image_in) == (106, 194)


def test_split_usage_without_any_counts_is_none() -> None:
    assert tk.split_usage({"foo": 1}) is None
