"""Every image parameter, declared once: its type and bounds, which tools take it, which
models decide on it, how it goes on the wire, and the rules that tie it to others.

Everything else reads this table: the input schemas clients see (`server.schemas`), the
argument parsing (`catalog.arguments`), the per-model checks (`catalog.checks`), the request
body (`wire_body`) and, through the checked values, the estimate and the cost. Adding a
parameter the API grows tomorrow is one `Param` here plus its catalog rows
(``accepts`` in ``data/catalog.json``) — nothing else lists parameter names.

Nothing here imports ``mcp``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["string", "integer", "number", "boolean", "object", "image_ref", "image_refs"]
ToolName = Literal["generate_image", "edit_image", "estimate_cost", "check_task"]

GENERATE: frozenset[str] = frozenset({"generate_image"})
EDIT: frozenset[str] = frozenset({"edit_image"})
IMAGE_TOOLS: frozenset[str] = frozenset({"generate_image", "edit_image"})
CALL_TOOLS: frozenset[str] = frozenset({"generate_image", "edit_image", "estimate_cost"})
EDIT_AND_ESTIMATE: frozenset[str] = frozenset({"edit_image", "estimate_cost"})

MAX_EDIT_IMAGES = 16
SIZE_PATTERN = r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$"
IMAGE_REF_HELP = (
    "absolute file path, file:// URI, images://<id> (or bare id) of an image this server made, "
    "https:// URL, or data: URI / base64"
)


@dataclass(frozen=True)
class Param:
    """One argument. ``wire`` None: the server's own (never sent upstream).

    ``per_model``: the model's catalog row (``accepts[name]``) says whether it is taken and
    which values: a list of values, ``true`` (any valid value), ``{"max": k}``, or absent
    (not taken). ``default`` is the upstream's documented default, used by the rules below
    to judge a call that leaves the parameter out; it is never sent.
    """

    name: str
    kind: Kind
    description: str
    tools: frozenset[str]
    values: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    required_in: frozenset[str] = frozenset()
    default: Any = None
    per_model: bool = False
    wire: Literal["body"] | None = "body"
    fields: tuple[Param, ...] = ()  # an object's members
    pattern_hint: str | None = None  # what a value breaking ``pattern`` should look like
    not_taken: str = "{model} does not take {name}; leave it out"  # a model's refusal, by default

    def taken_by(self, tool: str) -> bool:
        return tool in self.tools


def _svg_fields() -> tuple[Param, ...]:
    effort = Param(
        "effort",
        "string",
        "Reasoning effort of the SVG author model.",
        CALL_TOOLS,
        values=("none", "minimal", "low", "medium", "high", "xhigh", "max"),
    )
    reasoning = Param("reasoning", "object", "Reasoning options of the SVG author model.", CALL_TOOLS, fields=(effort,))
    model = Param(
        "model",
        "string",
        "The SVG author model (required when svg is given, as the SDK's types say).",
        CALL_TOOLS,
        min_length=1,
        max_length=128,
        required_in=CALL_TOOLS,
    )
    return (model, reasoning)


PARAMS: tuple[Param, ...] = (
    Param(
        "prompt",
        "string",
        "What to draw. Limits: GPT image 32000 chars, dall-e-3 4000, dall-e-2 1000.",
        CALL_TOOLS,
        min_length=1,
        max_length=32_000,
        required_in=IMAGE_TOOLS,
    ),
    Param(
        "model",
        "string",
        "Image model (default from MCP_IMAGES_DEFAULT_MODEL). Known: {models}. Other names pass with generic checks only.",
        CALL_TOOLS,
        min_length=1,
        max_length=128,
    ),
    Param(
        "n", "integer", "Images to make: 1-10; dall-e-3 and svg only 1.", CALL_TOOLS, minimum=1, maximum=10, default=1
    ),
    Param(
        "size",
        "string",
        "WIDTHxHEIGHT or auto. GPT image: auto, 1024x1024, 1536x1024, 1024x1536; gpt-image-2 and 2.5/2.6 also any "
        "size with sides multiple of 16, longest side <=3840, ratio <=3:1, 655360-8294400 px; dall-e-3: 1024x1024, "
        "1792x1024, 1024x1792; dall-e-2: 256x256, 512x512, 1024x1024.",
        CALL_TOOLS,
        pattern=SIZE_PATTERN,
        pattern_hint="'auto' or WIDTHxHEIGHT with a lowercase x, such as 1024x1024",
    ),
    Param(
        "quality",
        "string",
        "GPT image: low, medium, high, auto; gpt-image-2.5 also xhigh, max; dall-e-3: standard, hd.",
        CALL_TOOLS,
        values=("low", "medium", "high", "auto", "xhigh", "max", "standard", "hd"),
        per_model=True,
    ),
    Param(
        "background",
        "string",
        "GPT image only. transparent needs png or webp (gpt-image-1.x, 2.5).",
        CALL_TOOLS,
        values=("transparent", "opaque", "auto"),
        per_model=True,
    ),
    Param(
        "output_format",
        "string",
        "GPT image only; default png. gif (animated; frame_count, frame_duration_ms) and svg (n=1) on gpt-image-2 and newer.",
        CALL_TOOLS,
        values=("png", "jpeg", "webp", "gif", "svg"),
        default="png",
        per_model=True,
    ),
    Param(
        "output_compression",
        "integer",
        "0-100, jpeg or webp only (default 100).",
        CALL_TOOLS,
        minimum=0,
        maximum=100,
        per_model=True,
    ),
    Param("moderation", "string", "GPT image only: low or auto.", CALL_TOOLS, values=("low", "auto"), per_model=True),
    Param(
        "complexity",
        "string",
        "Computation spent planning the image, independent of quality (gpt-image-2 and newer).",
        CALL_TOOLS,
        values=("low", "medium", "high"),
        per_model=True,
    ),
    Param("style", "string", "dall-e-3 only.", CALL_TOOLS, values=("vivid", "natural"), per_model=True),
    Param(
        "frame_count",
        "integer",
        "GIF frames, 2-16 (default 9); output_format=gif only.",
        CALL_TOOLS,
        minimum=2,
        maximum=16,
    ),
    Param(
        "frame_duration_ms",
        "integer",
        "Milliseconds per GIF frame (default 200, rounded to 10 ms); output_format=gif only.",
        CALL_TOOLS,
        minimum=10,
        maximum=655_350,
    ),
    Param(
        "svg",
        "object",
        "output_format=svg only: the SVG author model, e.g. {model, reasoning: {effort}}; omit if your account has no choice.",
        CALL_TOOLS,
        fields=_svg_fields(),
    ),
    Param(
        "safety_identifier",
        "string",
        "Stable hashed end-user id for abuse monitoring (replaces user).",
        CALL_TOOLS,
        min_length=1,
        max_length=256,
    ),
    Param(
        "user",
        "string",
        "Deprecated end-user id; used only when safety_identifier is not given.",
        CALL_TOOLS,
        max_length=256,
    ),
    Param(
        "stream",
        "boolean",
        "GPT image: stream partial images as they render (saved and announced as progress).",
        CALL_TOOLS,
        per_model=True,
        not_taken="{model} cannot stream; set stream=false",
    ),
    Param(
        "partial_images",
        "integer",
        "0-3 partial images; needs stream=true.",
        CALL_TOOLS,
        minimum=0,
        maximum=3,
        per_model=True,
    ),
    Param(
        "image",
        "image_refs",
        f"Image(s) to edit, 1-{MAX_EDIT_IMAGES}, each an {IMAGE_REF_HELP}. GPT image: png/jpeg/webp under 50 MB; "
        "dall-e-2: one square PNG under 4 MB. estimate_cost also takes WIDTHxHEIGHT.",
        EDIT_AND_ESTIMATE,
        required_in=EDIT,
        wire=None,  # sent as files, not a field
    ),
    Param(
        "mask",
        "image_ref",
        "PNG with alpha, same pixel size as the first image; transparent pixels mark where to edit. "
        "Same reference forms as image.",
        EDIT_AND_ESTIMATE,
        wire=None,
    ),
    Param(
        "markup",
        "image_ref",
        "gpt-image-2.5: a transparent PNG drawn over the first image to guide the edit, same pixel size; not with mask.",
        EDIT_AND_ESTIMATE,
        per_model=True,
        wire=None,
    ),
    Param(
        "input_fidelity",
        "string",
        "Edits: low or high on gpt-image-1.5 (gpt-image-1-mini: low); gpt-image-2 and newer are always high.",
        EDIT_AND_ESTIMATE,
        values=("low", "high"),
        per_model=True,
    ),
    Param(
        "output_path",
        "string",
        "Subfolder of the output folder to save in (never outside it).",
        IMAGE_TOOLS,
        min_length=1,
        max_length=512,
        wire=None,
    ),
    Param(
        "filename",
        "string",
        "Base file name; sanitised, saved as <name>-<id>.<ext>, never overwrites.",
        IMAGE_TOOLS,
        min_length=1,
        max_length=128,
        wire=None,
    ),
    Param(
        "async",
        "boolean",
        "Return a task_id at once and run in the background; collect with check_task. "
        "Use for high quality or large sizes (1-2 min) so the call cannot time out.",
        IMAGE_TOOLS,
        default=False,
        wire=None,
    ),
    Param(
        "confirm_cost",
        "number",
        "Only when a refusal asks for it: the most this call may cost, as agreed with the person "
        "(the server's limits still apply).",
        IMAGE_TOOLS,
        minimum=0,
        wire=None,
    ),
    Param(
        "task_id",
        "string",
        "The task_id an async call returned.",
        frozenset({"check_task"}),
        min_length=1,
        max_length=64,
        required_in=frozenset({"check_task"}),
        wire=None,
    ),
    Param(
        "wait_seconds",
        "number",
        "Wait up to this long (max 50) for the task to finish before answering.",
        frozenset({"check_task"}),
        minimum=0,
        maximum=50,
        default=0,
        wire=None,
    ),
)

BY_NAME: Mapping[str, Param] = {p.name: p for p in PARAMS}


def params_of(tool: str) -> tuple[Param, ...]:
    """The parameters ``tool`` takes, in declaration order."""
    return tuple(p for p in PARAMS if p.taken_by(tool))


# --- the wire -----------------------------------------------------------------------------


def wire_body(values: Mapping[str, Any]) -> dict[str, Any]:
    """The upstream fields of checked ``values``: only declared wire parameters that were given."""
    return {name: value for name, value in values.items() if name in BY_NAME and BY_NAME[name].wire == "body"}


def form_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON body flattened for multipart: ``{"svg": {"model": m}}`` -> ``{"svg[model]": m}``."""
    out: dict[str, Any] = {}

    def put(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                put(f"{prefix}[{key}]", inner)
        else:
            out[prefix] = value

    for name, value in body.items():
        put(name, value)
    return out


@dataclass
class Given:
    """A tool call's checked arguments (only those the caller gave), by declared name."""

    tool: str
    values: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)
