"""The catalog's rules, one row per documented fact (shared/upstream-contract.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_images.catalog.checks import check_params
from mcp_images.catalog.edit_rules import InputFacts, check_edit_inputs
from mcp_images.catalog.models import ImageParams, load_catalog
from mcp_images.errors import ConfigError, ValidationProblem

CATALOG = load_catalog()


def params(model: str, **kw: object) -> ImageParams:
    return ImageParams(prompt=str(kw.pop("prompt", "a red fox")), model=model, values=dict(kw))


VALID = [
    ("gpt-image-2", {"size": "1024x1024", "quality": "high"}),
    ("gpt-image-2", {"size": "auto"}),
    ("gpt-image-2", {"size": "3840x2160"}),
    ("gpt-image-2", {"size": "2160x3840"}),
    ("gpt-image-2", {"size": "1024x640"}),  # exactly the minimum pixel count
    ("gpt-image-2", {"size": "1536x512"}),  # exactly 3:1
    ("gpt-image-2", {"size": "2880x2880"}),  # exactly the maximum pixel count
    ("gpt-image-2-2026-04-21", {"size": "2048x1152"}),
    ("gpt-image-2", {"n": 10, "output_format": "webp", "output_compression": 50}),
    ("gpt-image-2", {"moderation": "low"}),
    ("gpt-image-1.5", {"background": "transparent", "output_format": "png"}),
    ("gpt-image-1.5", {"background": "transparent", "output_format": "webp"}),
    ("chatgpt-image-latest", {"size": "1536x1024", "quality": "low"}),
    ("gpt-image-1", {"size": "1024x1536", "quality": "medium"}),
    ("gpt-image-1-mini", {"quality": "low", "output_format": "jpeg", "output_compression": 0}),
    ("dall-e-3", {"size": "1792x1024", "quality": "hd", "style": "natural"}),
    ("dall-e-3", {"n": 1, "prompt": "x" * 4000}),
    ("dall-e-2", {"size": "256x256", "n": 10}),
    ("dall-e-2", {"prompt": "x" * 1000}),
    ("gpt-image-2", {"prompt": "x" * 32000}),
    ("gpt-image-2", {"stream": True, "partial_images": 3}),
    ("flux-1.1-pro", {"size": "1234x777", "quality": "ultra"}),  # unknown: generic checks only
    # November 2026 (OpenAI's SDK 3.57)
    ("gpt-image-2.5-sunburst", {"quality": "xhigh", "size": "2048x1152"}),
    ("gpt-image-2.5-flare", {"quality": "max", "background": "transparent", "output_format": "webp"}),
    ("gpt-image-2.5-flare-2026-09-08", {"complexity": "high"}),
    ("gpt-image-2.5-sunburst", {"output_format": "gif", "frame_count": 16, "frame_duration_ms": 120}),
    ("gpt-image-2.5-sunburst", {"output_format": "svg", "n": 1, "svg": {"model": "x"}}),
    ("gpt-image-2", {"output_format": "svg"}),
    ("gpt-image-2.6-flare", {"size": "1536x1024", "quality": "high", "complexity": "low"}),
    ("gpt-image-2", {"safety_identifier": "user-7f3a"}),
]


@pytest.mark.parametrize(("model", "kw"), VALID)
def test_a_request_that_follows_the_models_rules_passes(model: str, kw: dict[str, object]) -> None:
    check_params(CATALOG.get(model), params(model, **kw))


INVALID = [
    ("gpt-image-2", {"size": "1000x1000"}, "size", "multiples of 16"),
    ("gpt-image-2", {"size": "4096x1024"}, "size", "at most 3840"),
    ("gpt-image-2", {"size": "3840x1264"}, "size", "3:1"),
    ("gpt-image-2", {"size": "800x800"}, "size", "at least 655,360"),
    ("gpt-image-2", {"size": "3840x2176"}, "size", "at most 8,294,400"),
    ("gpt-image-2", {"background": "transparent"}, "background", "does not support background=transparent"),
    ("gpt-image-1.5", {"size": "2048x2048"}, "size", "1024x1024"),
    ("gpt-image-1", {"background": "transparent", "output_format": "jpeg"}, "background", "png or webp"),
    ("gpt-image-1", {"output_compression": 80}, "output_compression", "jpeg or webp"),
    ("gpt-image-1", {"output_format": "png", "output_compression": 80}, "output_compression", "jpeg or webp"),
    ("gpt-image-1", {"quality": "hd"}, "quality", "low, medium, high, auto"),
    ("gpt-image-1", {"style": "vivid"}, "style", "does not take style"),
    ("gpt-image-2", {"n": 11}, "n", "at most n=10"),
    ("gpt-image-2", {"prompt": "x" * 32001}, "prompt", "at most 32,000"),
    ("dall-e-3", {"n": 2}, "n", "n=1"),
    ("dall-e-3", {"size": "1024x1536"}, "size", "1792x1024"),
    ("dall-e-3", {"quality": "high"}, "quality", "standard, hd"),
    ("dall-e-3", {"background": "opaque"}, "background", "does not take background"),
    ("dall-e-3", {"output_format": "png"}, "output_format", "does not take output_format"),
    ("dall-e-3", {"prompt": "x" * 4001}, "prompt", "at most 4,000"),
    ("dall-e-3", {"stream": True}, "stream", "cannot stream"),
    ("dall-e-3", {"moderation": "low"}, "moderation", "does not take moderation"),
    ("dall-e-2", {"size": "1024x1792"}, "size", "256x256"),
    ("dall-e-2", {"size": "auto"}, "size", "no size=auto"),
    ("dall-e-2", {"prompt": "x" * 1001}, "prompt", "at most 1,000"),
    ("dall-e-2", {"style": "vivid"}, "style", "does not take style"),
    ("gpt-image-2", {"partial_images": 2}, "partial_images", "stream=true"),
    ("gpt-image-2.5-flare", {"size": "1234x777"}, "size", "multiples of 16"),
    ("gpt-image-2", {"quality": "xhigh"}, "quality", "low, medium, high, auto"),
    ("gpt-image-2.6-sunburst", {"quality": "max"}, "quality", "low, medium, high, auto"),
    ("gpt-image-1.5", {"complexity": "low"}, "complexity", "does not take complexity"),
    ("gpt-image-1.5", {"output_format": "gif"}, "output_format", "png, jpeg, webp"),
    ("gpt-image-2", {"frame_count": 4}, "frame_count", "output_format=gif"),
    ("gpt-image-2", {"output_format": "gif", "stream": True}, "stream", "cannot stream"),
    (
        "gpt-image-2",
        {"output_format": "gif", "output_compression": 50},
        "output_compression",
        "jpeg or webp; you have gif",
    ),
    ("gpt-image-2", {"output_format": "svg", "n": 2}, "n", "set n=1"),
    ("gpt-image-2", {"output_format": "svg", "stream": True}, "stream", "cannot stream"),
    ("gpt-image-2", {"svg": {"model": "x"}}, "svg", "output_format=svg"),
    ("gpt-image-2.6-flare", {"background": "transparent"}, "background", "follows gpt-image-2"),
]


@pytest.mark.parametrize(("model", "kw", "field", "fix"), INVALID)
def test_a_broken_rule_is_refused_with_the_fix(model: str, kw: dict[str, object], field: str, fix: str) -> None:
    with pytest.raises(ValidationProblem) as info:
        check_params(CATALOG.get(model), params(model, **kw))
    assert info.value.field == field
    assert fix in str(info.value)


def test_every_broken_rule_is_listed_in_one_refusal() -> None:
    with pytest.raises(ValidationProblem) as info:
        check_params(CATALOG.get("dall-e-3"), params("dall-e-3", n=3, size="256x256", quality="low"))
    assert str(info.value).startswith("3 problems")


EDIT_RULES = [
    ("dall-e-3", {}, "model", "cannot edit"),
    ("gpt-image-2", {"input_fidelity": "high"}, "input_fidelity", "always uses high"),
    ("gpt-image-1-mini", {"input_fidelity": "high"}, "input_fidelity", "only input_fidelity=low"),
    ("gpt-image-2.5-sunburst", {"input_fidelity": "low"}, "input_fidelity", "always uses high"),
    ("gpt-image-2", {"markup": "m.png"}, "markup", "does not take markup"),
    ("gpt-image-2.5-flare", {"markup": "m.png", "mask": "k.png"}, "markup", "cannot be combined with mask"),
    ("gpt-image-2.5-flare", {"output_format": "gif", "mask": "k.png"}, "mask", "gif cannot be combined"),
]


@pytest.mark.parametrize(("model", "kw", "field", "fix"), EDIT_RULES)
def test_edit_rules_are_refused_with_the_fix(model: str, kw: dict[str, object], field: str, fix: str) -> None:
    with pytest.raises(ValidationProblem) as info:
        check_params(CATALOG.get(model), params(model, **kw), edit=True)
    assert info.value.field == field
    assert fix in str(info.value)


@pytest.mark.parametrize("model", ["gpt-image-1", "gpt-image-1.5", "chatgpt-image-latest"])
def test_input_fidelity_is_accepted_where_supported(model: str) -> None:
    check_params(CATALOG.get(model), params(model, input_fidelity="high"), edit=True)


def test_gpt_image_1_mini_takes_low_input_fidelity_and_gpt_image_2_5_takes_markup() -> None:
    check_params(CATALOG.get("gpt-image-1-mini"), params("gpt-image-1-mini", input_fidelity="low"), edit=True)
    check_params(CATALOG.get("gpt-image-2.5-sunburst"), params("gpt-image-2.5-sunburst", markup="m.png"), edit=True)


MODEL_NAMES = [
    ("GPT-Image-1.5", "gpt-image-1.5"),
    ("gpt_image_2", "gpt-image-2"),
    ("GPT Image 2.5 Flare", "gpt-image-2.5-flare"),
    ("gpt-image-2.5-sunburst-2026-09-08", "gpt-image-2.5-sunburst-2026-09-08"),
    ("ChatGPT-Image-Latest", "chatgpt-image-latest"),
]


@pytest.mark.parametrize(("asked", "canonical"), MODEL_NAMES)
def test_case_and_separator_variants_find_their_catalog_model(asked: str, canonical: str) -> None:
    assert CATALOG.canonical(asked) == canonical
    assert CATALOG.get(asked).known


@pytest.mark.parametrize(("asked", "near"), [("gpt-image-1.6", "gpt-image-1.5"), ("gpt-image2", "gpt-image-2")])
def test_a_name_close_to_a_catalog_model_runs_permissive_with_a_did_you_mean(asked: str, near: str) -> None:
    spec = CATALOG.get(asked)
    assert not spec.known
    assert f"Did you mean {near!r}?" in (spec.notes or "")


def test_a_name_far_from_every_catalog_model_gets_no_suggestion() -> None:
    assert "Did you mean" not in (CATALOG.get("flux-1.1-pro").notes or "")


def test_rows_the_sdk_is_silent_on_are_marked_inferred() -> None:
    assert "complexity" in CATALOG.get("gpt-image-2.5-sunburst").inferred
    assert CATALOG.get("gpt-image-2.6-flare").inferred
    assert not CATALOG.get("dall-e-3").inferred


def test_retired_models_name_their_successors_in_the_catalog() -> None:
    life = CATALOG.get("gpt-image-1").lifecycle
    assert life is not None and life.retired_on_openai == "2026-10-23"
    assert "gpt-image-2.5-sunburst" in life.successors


def test_a_size_above_2560x1440_passes_with_an_experimental_warning() -> None:
    warnings = check_params(CATALOG.get("gpt-image-2"), params("gpt-image-2", size="3840x2160"))
    assert any("experimental" in w for w in warnings)


def test_an_unknown_model_passes_and_says_only_generic_checks_ran() -> None:
    warnings = check_params(CATALOG.get("flux-1.1-pro"), params("flux-1.1-pro", size="1024x1024"))
    assert any("not in the model catalog" in w for w in warnings)


def png(label: str = "image 1", w: int = 1024, h: int = 1024, *, size: int = 1000, alpha: bool = False) -> InputFacts:
    return InputFacts(label=label, format="png", width=w, height=h, bytes=size, has_alpha=alpha)


EDIT_INPUTS_BAD = [
    ("gpt-image-2", [png(f"image {i}") for i in range(17)], None, "image", "at most 16"),
    ("gpt-image-2", [png(size=50 * 1024 * 1024 + 1)], None, "image", "under 50 MiB"),
    ("gpt-image-2", [InputFacts("image 1", "gif", 10, 10, 10, False)], None, "image", "png, jpeg, webp"),
    ("gpt-image-2", [InputFacts("image 1", None, 0, 0, 10, False)], None, "image", "not an image"),
    ("dall-e-2", [png(), png("image 2")], None, "image", "at most 1 input image"),
    ("dall-e-2", [png(w=1024, h=512)], None, "image", "square PNG"),
    ("dall-e-2", [png(size=4 * 1024 * 1024 + 1)], None, "image", "under 4 MiB"),
    ("dall-e-2", [InputFacts("image 1", "jpeg", 512, 512, 10, False)], None, "image", "png"),
    ("gpt-image-2", [png()], png("mask", alpha=False), "mask", "no alpha channel"),
    ("gpt-image-2", [png()], InputFacts("mask", "jpeg", 1024, 1024, 10, False), "mask", "PNG with an alpha"),
    ("gpt-image-2", [png()], png("mask", 512, 512, alpha=True), "mask", "must match exactly"),
    ("gpt-image-2", [png()], png("mask", alpha=True, size=4 * 1024 * 1024 + 1), "mask", "under 4 MiB"),
    ("gpt-image-2", [], None, "image", "at least one"),
]


@pytest.mark.parametrize(("model", "images", "mask", "field", "fix"), EDIT_INPUTS_BAD)
def test_edit_inputs_that_break_a_rule_are_refused(
    model: str, images: list[InputFacts], mask: InputFacts | None, field: str, fix: str
) -> None:
    with pytest.raises(ValidationProblem) as info:
        check_edit_inputs(CATALOG.get(model), images, mask)
    assert info.value.field == field
    assert fix in str(info.value)


def test_sixteen_inputs_and_a_matching_alpha_mask_pass() -> None:
    images = [png(f"image {i}") for i in range(16)]
    check_edit_inputs(CATALOG.get("gpt-image-2"), images, png("mask", alpha=True))


def test_a_users_catalog_file_adds_a_model_with_full_rules(tmp_path: Path) -> None:
    f = tmp_path / "catalog.json"
    f.write_text(json.dumps({"models": {"gpt-image-2.5-sunburst": {"sizes": ["1024x1024"], "n_max": 2}}}))
    spec = load_catalog(f).get("gpt-image-2.5-sunburst")
    assert spec.known
    with pytest.raises(ValidationProblem, match="n=2"):
        check_params(spec, params("gpt-image-2.5-sunburst", n=3))


def test_a_broken_catalog_file_is_refused_with_its_line(tmp_path: Path) -> None:
    f = tmp_path / "catalog.json"
    f.write_text('{"models": {\n  "x": {"n_max": 2,}\n}}')
    with pytest.raises(ConfigError, match="line 2"):
        load_catalog(f)


def test_a_catalog_entry_with_an_unknown_field_is_refused_by_name(tmp_path: Path) -> None:
    f = tmp_path / "catalog.json"
    f.write_text(json.dumps({"models": {"x": {"n_maximum": 2}}}))
    with pytest.raises(ConfigError, match="n_maximum"):
        load_catalog(f)
