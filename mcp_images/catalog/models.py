"""The model catalog: what each image model accepts, as data, and the parameter checks built on it.

The rules live in ``data/catalog.json`` (from the upstream contract). A user's own file
(``MCP_IMAGES_CATALOG``) in the same shape overrides or adds models, so a new model is a data
change. A model name found nowhere gets the permissive profile: only the generic checks, and
the result says so. The checks of an edit's input files are `edit_rules`'.

Nothing here imports ``mcp``; the tool layer turns `ValidationProblem` into tool errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_images.errors import ConfigError, ValidationProblem

Quality = Literal["low", "medium", "high", "auto", "standard", "hd"]
Background = Literal["transparent", "opaque", "auto"]
OutputFormat = Literal["png", "jpeg", "webp"]
Moderation = Literal["low", "auto"]
Style = Literal["vivid", "natural"]
InputFidelity = Literal["low", "high"]

SIZE_PATTERN = re.compile(r"^([1-9][0-9]{1,4})x([1-9][0-9]{1,4})$")
GENERIC_PROMPT_MAX = 32_000
GENERIC_N_MAX = 10
GENERIC_EDIT_MAX_IMAGES = 16
GENERIC_EDIT_MAX_BYTES = 50 * 1024 * 1024
MASK_MAX_BYTES = 4 * 1024 * 1024


class SizeRule(BaseModel):
    """gpt-image-2's rule for free sizes: ``WIDTHxHEIGHT`` within these bounds."""

    model_config = ConfigDict(extra="forbid")

    multiple: int = 16
    max_side: int = 3840
    max_ratio: float = 3.0
    min_pixels: int = 655_360
    max_pixels: int = 8_294_400
    experimental_above_pixels: int | None = None


class ModelSpec(BaseModel):
    """One model's rules. Empty lists mean "this model does not take the parameter"."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    aliases: list[str] = Field(default_factory=list)
    family: str = "other"
    known: bool = True
    sizes: list[str] = Field(default_factory=list)
    size_rule: SizeRule | None = None
    qualities: list[str] = Field(default_factory=list)
    backgrounds: list[str] = Field(default_factory=list)
    formats: list[str] = Field(default_factory=list)
    compression: bool = False
    moderation: bool = False
    n_max: int = 1
    prompt_max: int = GENERIC_PROMPT_MAX
    stream: bool = False
    partial_images_max: int = 3
    edits: bool = False
    edit_max_images: int = 0
    edit_formats: list[str] = Field(default_factory=list)
    edit_max_bytes: int = GENERIC_EDIT_MAX_BYTES
    edit_square_only: bool = False
    mask_max_bytes: int = MASK_MAX_BYTES
    input_fidelity: bool = False
    input_fidelity_note: str | None = None
    styles: list[str] = Field(default_factory=list)
    response_formats: list[str] = Field(default_factory=list)
    notes: str | None = None

    @property
    def all_names(self) -> list[str]:
        return [self.name, *self.aliases]


def permissive_spec(name: str) -> ModelSpec:
    """The profile for a model the catalog does not know: generic checks only."""
    return ModelSpec(
        name=name,
        family="unknown",
        known=False,
        n_max=GENERIC_N_MAX,
        prompt_max=GENERIC_PROMPT_MAX,
        stream=True,
        edits=True,
        edit_max_images=GENERIC_EDIT_MAX_IMAGES,
        edit_formats=["png", "jpeg", "webp"],
        compression=True,
        moderation=True,
        input_fidelity=True,
        notes=(
            f"{name!r} is not in the model catalog: only generic checks were applied and the "
            "upstream has the last word. Add it to a catalog file (MCP_IMAGES_CATALOG) for full rules."
        ),
    )


@dataclass(frozen=True)
class Catalog:
    """All known models, by every name they answer to."""

    models: dict[str, ModelSpec]
    by_name: dict[str, ModelSpec] = field(default_factory=dict)

    @classmethod
    def from_models(cls, models: dict[str, ModelSpec]) -> Catalog:
        by_name: dict[str, ModelSpec] = {}
        for spec in models.values():
            for alias in spec.all_names:
                by_name[alias] = spec
        return cls(models=models, by_name=by_name)

    def get(self, model: str) -> ModelSpec:
        """The spec for ``model``: the catalog's, or the permissive profile."""
        return self.by_name.get(model) or permissive_spec(model)

    def names(self) -> list[str]:
        return [n for spec in self.models.values() for n in spec.all_names]


def _parse_models(raw: Any, source: str) -> dict[str, ModelSpec]:
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise ConfigError(f'{source}: expected an object with a "models" object inside')
    models: dict[str, ModelSpec] = {}
    for name, body in raw["models"].items():
        try:
            models[name] = ModelSpec.model_validate({**body, "name": name})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{source}: model {name!r}, field {where}: {first['msg']}") from exc
    return models


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc


@cache
def builtin_models() -> dict[str, ModelSpec]:
    text = resources.files("mcp_images.catalog.data").joinpath("catalog.json").read_text("utf-8")
    return _parse_models(json.loads(text), "built-in catalog")


def load_catalog(user_file: Path | None = None) -> Catalog:
    """The built-in catalog, with a user's file laid over it (whole models replaced or added).

    Raises:
        ConfigError: the user's file cannot be read or breaks the format (line and reason).
    """
    models = dict(builtin_models())
    if user_file is not None:
        models.update(_parse_models(_read_json(user_file), str(user_file)))
    return Catalog.from_models(models)


# --- checks -------------------------------------------------------------------------------


def parse_size(size: str) -> tuple[int, int] | None:
    """``"1536x1024"`` -> ``(1536, 1024)``; ``None`` for ``auto`` or anything else."""
    m = SIZE_PATTERN.match(size)
    return (int(m.group(1)), int(m.group(2))) if m else None


def size_rule_problem(rule: SizeRule, width: int, height: int) -> str | None:
    """Why ``width x height`` breaks a free-size rule, or None when it fits."""
    long, short = max(width, height), min(width, height)
    pixels = width * height
    if width % rule.multiple or height % rule.multiple:
        w = round(width / rule.multiple) * rule.multiple
        h = round(height / rule.multiple) * rule.multiple
        return f"both sides must be multiples of {rule.multiple} (nearest: {w}x{h})"
    if long > rule.max_side:
        return f"the longest side may be at most {rule.max_side} px"
    if long / short > rule.max_ratio:
        return f"the aspect ratio may be at most {rule.max_ratio:g}:1"
    if pixels < rule.min_pixels:
        return f"the image must have at least {rule.min_pixels:,} pixels (e.g. 1024x640); it has {pixels:,}"
    if pixels > rule.max_pixels:
        return f"the image may have at most {rule.max_pixels:,} pixels (e.g. 3840x2160); it has {pixels:,}"
    return None


def one_of(values: list[str]) -> str:
    """A list of allowed values as a message shows it."""
    return ", ".join(values)


@dataclass
class ImageParams:
    """The parameters of one generate or edit call, as the agent gave them (None = not given)."""

    prompt: str
    model: str
    n: int | None = None
    size: str | None = None
    quality: str | None = None
    background: str | None = None
    output_format: str | None = None
    output_compression: int | None = None
    moderation: str | None = None
    style: str | None = None
    user: str | None = None
    input_fidelity: str | None = None
    stream: bool = False
    partial_images: int | None = None
    # Where to save (already checked to stay inside the output folder); not sent upstream.
    subdir: Path | None = None
    filename: str | None = None

    def effective_format(self) -> str:
        return self.output_format or "png"


def check_params(spec: ModelSpec, p: ImageParams, *, edit: bool = False) -> list[str]:
    """Every rule of ``spec`` that ``p`` breaks, each as a sentence that says what to change.

    Returns warnings (not errors) such as "experimental size"; raises on the first call
    with all problems joined, so the agent can fix everything in one go.

    Raises:
        ValidationProblem: one or more rules are broken.
    """
    problems: list[tuple[str, str]] = []
    warnings: list[str] = []
    name = spec.name

    def bad(fld: str, msg: str) -> None:
        problems.append((fld, msg))

    if edit and not spec.edits:
        bad("model", f"{name} cannot edit images (generation only); use gpt-image-2 or gpt-image-1.5 for edits")
    if len(p.prompt) > spec.prompt_max:
        bad("prompt", f"prompt is {len(p.prompt):,} characters; {name} accepts at most {spec.prompt_max:,}")
    if p.n is not None and p.n > spec.n_max:
        bad(
            "n",
            f"{name} makes at most n={spec.n_max} image{'s' if spec.n_max > 1 else ''} per call; you asked for {p.n}",
        )

    dims = parse_size(p.size) if p.size else None
    if p.size is not None:
        if p.size in spec.sizes or (p.size == "auto" and not spec.known):
            pass
        elif p.size == "auto":
            bad("size", f"{name} has no size=auto; pick one of {one_of(spec.sizes)}")
            pass
        elif spec.size_rule is not None and dims is not None:
            why = size_rule_problem(spec.size_rule, *dims)
            if why:
                bad("size", f"size {p.size} does not fit {name}: {why}")
        elif not spec.known:
            if dims is None:
                bad("size", f"size must be 'auto' or WIDTHxHEIGHT such as 1024x1024; you sent {p.size!r}")
        else:
            allowed = one_of(spec.sizes)
            extra = " or any WIDTHxHEIGHT (multiples of 16)" if spec.size_rule else ""
            bad("size", f"{name} takes size {allowed}{extra}; you sent {p.size!r}")
        limit = spec.size_rule.experimental_above_pixels if spec.size_rule else None
        if limit and dims and dims[0] * dims[1] > limit:
            warnings.append(f"size {p.size} is above 2560x1440: OpenAI calls such outputs experimental")

    def enum_check(fld: str, value: str | None, allowed: list[str]) -> None:
        if value is None or not spec.known:
            return
        if not allowed:
            bad(fld, f"{name} does not take {fld}; leave it out")
        elif value not in allowed:
            bad(fld, f"{name} takes {fld} {one_of(allowed)}; you sent {value!r}")

    enum_check("quality", p.quality, spec.qualities)
    enum_check("background", p.background, spec.backgrounds)
    enum_check("output_format", p.output_format, spec.formats)
    enum_check("style", p.style, spec.styles)
    if p.background == "transparent" and spec.known and "transparent" not in spec.backgrounds and spec.backgrounds:
        # Replace the generic message with the useful one.
        problems[:] = [x for x in problems if x[0] != "background"]
        bad(
            "background",
            f"{name} does not support background=transparent; use gpt-image-1.5 (png or webp) or background=opaque",
        )
    if p.background == "transparent" and p.effective_format() == "jpeg":
        bad("background", "background=transparent needs output_format png or webp; you sent jpeg")
    if p.moderation is not None and spec.known and not spec.moderation:
        bad("moderation", f"{name} does not take moderation; leave it out")
    if p.output_compression is not None:
        if spec.known and not spec.compression:
            bad("output_compression", f"{name} does not take output_compression; leave it out")
        elif p.effective_format() == "png":
            bad("output_compression", "output_compression works only with output_format jpeg or webp; you have png")
    if p.input_fidelity is not None:
        if not edit:
            bad("input_fidelity", "input_fidelity applies to edit_image only; leave it out")
        elif not spec.input_fidelity:
            bad("input_fidelity", spec.input_fidelity_note or f"{name} does not take input_fidelity; leave it out")
    if p.stream and spec.known and not spec.stream:
        bad("stream", f"{name} cannot stream; set stream=false")
    if p.partial_images is not None and p.partial_images > 0:
        if not p.stream:
            bad("partial_images", "partial_images needs stream=true")
        elif p.partial_images > spec.partial_images_max:
            bad("partial_images", f"partial_images may be 0-{spec.partial_images_max}")

    if problems:
        raise ValidationProblem(join_problems(problems), field=problems[0][0])
    if not spec.known and spec.notes:
        warnings.append(spec.notes)
    return warnings


def join_problems(problems: list[tuple[str, str]]) -> str:
    """One message for every problem found, numbered when there are several."""
    if len(problems) == 1:
        return problems[0][1]
    return f"{len(problems)} problems: " + "; ".join(f"({i}) {m}" for i, (_, m) in enumerate(problems, 1))
