"""Tool arguments: each declared once, as a pydantic field, from which the JSON schema comes.

Names follow the upstream's parameter tables exactly (``async`` travels as the alias of
``async_``). The per-model rules are not in these types (a model's sizes differ, unknown
models must pass): the catalog checks them after the schema has let the call through.

The schema agents see is compacted (``compact_schema``): every turn of an agent pays for
``tools/list`` in context, so titles and ``null`` branches are dropped.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mcp_images.catalog.models import Background, InputFidelity, Moderation, OutputFormat, Quality, Style

MAX_EDIT_IMAGES = 16
# The bound belongs to the list arm only: on the union it would also cap a path's length.
ImageRefs = str | Annotated[list[str], Field(min_length=1, max_length=MAX_EDIT_IMAGES)]
IMAGE_REF_HELP = (
    "absolute file path, file:// URI, images://<id> (or bare id) of an image this server made, "
    "https:// URL, or data: URI / base64"
)


class CommonArgs(BaseModel):
    """Arguments shared by generate_image, edit_image and estimate_cost."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    prompt: str = Field(
        min_length=1,
        max_length=32_000,
        description="What to draw. Limits: GPT image 32000 chars, dall-e-3 4000, dall-e-2 1000.",
    )
    model: str | None = Field(
        default=None,
        description="Image model (default from MCP_IMAGES_DEFAULT_MODEL). Known: {models}. "
        "Other names pass with generic checks only.",
    )
    n: int | None = Field(default=None, ge=1, le=10, description="Images to make: 1-10; dall-e-3 only 1.")
    size: str | None = Field(
        default=None,
        pattern=r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$",
        description="WIDTHxHEIGHT or auto. GPT image: auto, 1024x1024, 1536x1024, 1024x1536; "
        "gpt-image-2 also any size with sides multiple of 16, longest side <=3840, ratio <=3:1, "
        "655360-8294400 px; dall-e-3: 1024x1024, 1792x1024, 1024x1792; dall-e-2: 256x256, 512x512, 1024x1024.",
    )
    quality: Quality | None = Field(
        default=None, description="GPT image: low, medium, high, auto; dall-e-3: standard, hd."
    )
    background: Background | None = Field(
        default=None, description="GPT image only. transparent needs png or webp (not gpt-image-2)."
    )
    output_format: OutputFormat | None = Field(default=None, description="GPT image only; default png.")
    output_compression: int | None = Field(
        default=None, ge=0, le=100, description="0-100, jpeg or webp only (default 100)."
    )
    moderation: Moderation | None = Field(default=None, description="GPT image only: low or auto.")
    style: Style | None = Field(default=None, description="dall-e-3 only.")
    user: str | None = Field(default=None, max_length=256, description="End-user id for abuse monitoring.")
    stream: bool | None = Field(
        default=None, description="GPT image: stream partial images as they render (saved and announced as progress)."
    )
    partial_images: int | None = Field(default=None, ge=0, le=3, description="0-3 partial images; needs stream=true.")


class ImageArgs(CommonArgs):
    """generate_image's arguments."""

    output_path: str | None = Field(
        default=None, max_length=512, description="Subfolder of the output folder to save in (never outside it)."
    )
    filename: str | None = Field(
        default=None,
        max_length=128,
        description="Base file name; sanitised, saved as <name>-<id>.<ext>, never overwrites.",
    )

    async_: bool = Field(
        default=False,
        alias="async",
        description="Return a task_id at once and run in the background; collect with check_task. "
        "Use for high quality or large sizes (1-2 min) so the call cannot time out.",
    )


class EditArgs(ImageArgs):
    """generate_image's arguments plus the inputs of an edit."""

    image: ImageRefs = Field(
        description=f"Image(s) to edit, 1-{MAX_EDIT_IMAGES}, each an {IMAGE_REF_HELP}. "
        "GPT image: png/jpeg/webp under 50 MB; dall-e-2: one square PNG under 4 MB.",
    )
    mask: str | None = Field(
        default=None,
        description="PNG with alpha, same pixel size as the first image; transparent pixels mark "
        "where to edit. Same reference forms as image.",
    )
    input_fidelity: InputFidelity | None = Field(
        default=None, description="gpt-image-1 and gpt-image-1.5 only; gpt-image-2 is always high."
    )

    def image_list(self) -> list[str]:
        return [self.image] if isinstance(self.image, str) else list(self.image)


class EstimateArgs(CommonArgs):
    """estimate_cost's arguments: the call you are about to make (prompt and images optional)."""

    prompt: str = Field(default="", max_length=32_000, description="The prompt (its length adds text tokens).")
    image: ImageRefs | None = Field(
        default=None,
        description="For an edit: the input images as references (only their dimensions are read) or WIDTHxHEIGHT.",
    )
    mask: str | None = Field(default=None, description="For an edit: the mask (checked as the edit would).")
    input_fidelity: InputFidelity | None = Field(default=None, description="For an edit: low or high.")

    def image_list(self) -> list[str]:
        if self.image is None:
            return []
        return [self.image] if isinstance(self.image, str) else list(self.image)


class CheckTaskArgs(BaseModel):
    """check_task's arguments."""

    model_config = ConfigDict(extra="forbid")

    task_id: str = Field(min_length=1, max_length=64, description="The task_id an async call returned.")
    wait_seconds: float = Field(
        default=0, ge=0, le=50, description="Wait up to this long (max 50) for the task to finish before answering."
    )


def with_models(description: str | None, models: list[str]) -> str | None:
    return description.replace("{models}", ", ".join(models)) if description else description


def tool_signature(model: type[BaseModel], models: list[str], *leading: inspect.Parameter) -> inspect.Signature:
    """A keyword-only signature that mirrors ``model``'s fields (aliases as names).

    The SDK reads a tool's parameters from its signature; building it from the model keeps
    each argument declared once, and lets ``async`` (a keyword) be a parameter name.
    """
    params = list(leading)
    for name, info in model.model_fields.items():
        copy = info._copy()
        copy.description = with_models(info.description, models)
        default = inspect.Parameter.empty if info.is_required() else info.default
        copy.default = default if default is not inspect.Parameter.empty else copy.default
        params.append(
            inspect.Parameter(
                name,  # the alias (e.g. "async") stays on the FieldInfo: the SDK passes it as the key
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[info.annotation, copy],
            )
        )
    return inspect.Signature(params)


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop ``title`` keys and turn ``anyOf [X, null]`` into ``X``, recursively.

    Optional arguments stay optional (they are not in ``required``); a client sending
    ``null`` is still accepted, because validation runs on the pydantic model, not on this.
    """
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key == "title" and isinstance(value, str):
                continue
            if key == "default" and value is None:
                continue
            out[key] = (
                compact_schema(value) if key != "properties" else {k: compact_schema(v) for k, v in value.items()}
            )
        any_of = out.get("anyOf")
        if isinstance(any_of, list):
            non_null = [s for s in any_of if s != {"type": "null"}]
            if len(non_null) == 1 and len(non_null) < len(any_of):
                del out["anyOf"]
                out = {**non_null[0], **out}
        return out
    if isinstance(schema, list):
        return [compact_schema(s) for s in schema]  # type: ignore[return-value]
    return schema
