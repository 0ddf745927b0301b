"""The model catalog: what each image model accepts, as data, and how a name finds its model.

The rules live in ``data/catalog.json`` (from the upstream contract and OpenAI's SDK 3.57).
A user's own file (``MCP_IMAGES_CATALOG``) in the same shape overrides or adds models, so a
new model is a data change. A row's ``accepts`` says, per declared parameter
(`catalog.parameters`), which values the model takes; ``inferred`` lists the rows the SDK is
silent on; ``lifecycle`` says where the model has been retired and what replaced it.

A name is resolved exactly, then by case and separator (``GPT-Image-1.5``, ``gpt_image_2``);
any other name gets the permissive profile (a model released tomorrow must not be blocked),
with a "did you mean" when it is close to a catalog name. The checks are `checks`'.

Nothing here imports ``mcp``.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mcp_images.errors import ConfigError

GENERIC_PROMPT_MAX = 32_000
GENERIC_N_MAX = 10
GENERIC_EDIT_MAX_IMAGES = 16
GENERIC_EDIT_MAX_BYTES = 50 * 1024 * 1024
MASK_MAX_BYTES = 4 * 1024 * 1024
CLOSE_NAME_CUTOFF = 0.85  # difflib ratio: gpt-image2 ~ gpt-image-2, flux-pro is nowhere near


class SizeRule(BaseModel):
    """Free sizes: ``WIDTHxHEIGHT`` within these bounds (gpt-image-2 and newer)."""

    model_config = ConfigDict(extra="forbid")

    multiple: int = 16
    max_side: int = 3840
    max_ratio: float = 3.0
    min_pixels: int = 655_360
    max_pixels: int = 8_294_400
    experimental_above_pixels: int | None = None


class Lifecycle(BaseModel):
    """Where a model is gone or going, and what replaces it."""

    model_config = ConfigDict(extra="forbid")

    retired_on_openai: str | None = None  # date OpenAI's own API shut it down
    shutdown_announced: str | None = None  # date OpenAI announced it will shut it down
    successors: list[str] = Field(default_factory=list)


class ModelSpec(BaseModel):
    """One model's rules. A parameter missing from ``accepts`` is not taken by the model."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    aliases: list[str] = Field(default_factory=list)
    family: str = "other"
    known: bool = True
    source: str = "contract"  # where the row's facts come from
    inferred: list[str] = Field(default_factory=list)  # accepts keys the source is silent on
    sizes: list[str] = Field(default_factory=list)
    size_rule: SizeRule | None = None
    n_max: int = 1
    prompt_max: int = GENERIC_PROMPT_MAX
    accepts: dict[str, list[Any] | bool | dict[str, float]] = Field(default_factory=dict)
    refusals: dict[str, str] = Field(default_factory=dict)  # a better message than "does not take"
    edits: bool = False
    edit_max_images: int = 0
    edit_formats: list[str] = Field(default_factory=list)
    edit_max_bytes: int = GENERIC_EDIT_MAX_BYTES
    edit_square_only: bool = False
    mask_max_bytes: int = MASK_MAX_BYTES
    response_formats: list[str] = Field(default_factory=list)
    lifecycle: Lifecycle | None = None
    notes: str | None = None

    @property
    def all_names(self) -> list[str]:
        return [self.name, *self.aliases]


def permissive_spec(name: str, near: str | None = None) -> ModelSpec:
    """The profile for a model the catalog does not know: generic checks only."""
    hint = f" Did you mean {near!r}?" if near else ""
    return ModelSpec(
        name=name,
        family="unknown",
        known=False,
        n_max=GENERIC_N_MAX,
        prompt_max=GENERIC_PROMPT_MAX,
        edits=True,
        edit_max_images=GENERIC_EDIT_MAX_IMAGES,
        edit_formats=["png", "jpeg", "webp"],
        notes=(
            f"{name!r} is not in the model catalog: only generic checks were applied and the "
            f"upstream has the last word.{hint} Add it to a catalog file (MCP_IMAGES_CATALOG) for full rules."
        ),
    )


def _flat(name: str) -> str:
    """A name with case and separators made uniform: ``GPT_Image 1.5`` -> ``gpt-image-1.5``."""
    return name.strip().lower().replace("_", "-").replace(" ", "-")


@dataclass(frozen=True)
class Catalog:
    """All known models, by every name they answer to."""

    models: dict[str, ModelSpec]
    by_name: dict[str, ModelSpec] = field(default_factory=dict)
    by_flat: dict[str, ModelSpec] = field(default_factory=dict)

    @classmethod
    def from_models(cls, models: dict[str, ModelSpec]) -> Catalog:
        by_name: dict[str, ModelSpec] = {}
        by_flat: dict[str, ModelSpec] = {}
        for spec in models.values():
            for alias in spec.all_names:
                by_name[alias] = spec
                by_flat.setdefault(_flat(alias), spec)
        return cls(models=models, by_name=by_name, by_flat=by_flat)

    def canonical(self, model: str) -> str:
        """The catalog's own spelling of ``model`` (an alias stays itself), or ``model``."""
        if model in self.by_name:
            return model
        spec = self.by_flat.get(_flat(model))
        if spec is None:
            return model
        return next(a for a in spec.all_names if _flat(a) == _flat(model))

    def closest(self, model: str) -> str | None:
        """The catalog name ``model`` most likely means, when it is not one."""
        found = difflib.get_close_matches(_flat(model), list(self.by_flat), n=1, cutoff=CLOSE_NAME_CUTOFF)
        return self.canonical(found[0]) if found else None

    def get(self, model: str) -> ModelSpec:
        """The spec for ``model`` (exact or case/separator variant), or the permissive profile."""
        spec = self.by_name.get(model) or self.by_flat.get(_flat(model))
        return spec or permissive_spec(model, self.closest(model))

    def names(self) -> list[str]:
        return [n for spec in self.models.values() for n in spec.all_names]


def _parse_models(raw: Any, source: str) -> dict[str, ModelSpec]:
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        raise ConfigError(f'{source}: expected an object with a "models" object inside')
    models: dict[str, ModelSpec] = {}
    for name, body in raw["models"].items():
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: model {name!r} must be an object")
        try:
            models[name] = ModelSpec.model_validate({**body, "name": name})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"{source}: model {name!r}, field {where}: {first['msg']}") from exc
    return models


def _read_json(path: Path) -> Any:
    from mcp_images.config_files import read_config_text

    text = read_config_text(path, setting="MCP_IMAGES_CATALOG", what="catalog file")
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


@dataclass
class ImageParams:
    """One generate or edit call's checked arguments: the prompt, the model, and every other
    declared parameter the caller gave (``values``, by declared name; None = not given)."""

    prompt: str
    model: str
    values: dict[str, Any] = field(default_factory=dict)
    # Where to save (already checked to stay inside the output folder); not sent upstream.
    subdir: Path | None = None
    filename: str | None = None

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    @property
    def n(self) -> int | None:
        return self.values.get("n")

    @property
    def size(self) -> str | None:
        return self.values.get("size")

    @property
    def quality(self) -> str | None:
        return self.values.get("quality")

    @property
    def background(self) -> str | None:
        return self.values.get("background")

    @property
    def stream(self) -> bool:
        return bool(self.values.get("stream"))

    @property
    def partial_images(self) -> int | None:
        return self.values.get("partial_images")

    @property
    def input_fidelity(self) -> str | None:
        return self.values.get("input_fidelity")

    def effective_format(self) -> str:
        return self.values.get("output_format") or "png"
