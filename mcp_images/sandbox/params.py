"""Reading an image request the way the real upstream does: types, defaults, the model's rules.

The per-model rules are the catalog's (`check_params`, `check_edit_inputs`); this module adds
only what the wire adds: field types, the OpenAI defaults, and which fields exist at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.datastructures import UploadFile

from mcp_images.catalog.edit_rules import InputFacts, check_edit_inputs
from mcp_images.catalog.models import (
    ImageParams,
    ModelSpec,
    check_params,
    load_catalog,
    parse_size,
)
from mcp_images.errors import ValidationProblem
from mcp_images.sandbox.modes import bad_request
from mcp_images.sandbox.render import describe_upload

Kind = Literal["generation", "edit"]

INT_FIELDS = frozenset({"n", "output_compression", "partial_images"})
BOOL_FIELDS = frozenset({"stream"})
STR_FIELDS = frozenset(
    {"prompt", "model", "size", "quality", "background", "output_format", "moderation",
     "style", "user", "input_fidelity", "response_format"}
)  # fmt: skip
KNOWN_FIELDS = INT_FIELDS | BOOL_FIELDS | STR_FIELDS
# Using any of these without a model selects a GPT image model, as OpenAI documents.
GPT_IMAGE_ONLY = (
    "background",
    "output_format",
    "output_compression",
    "moderation",
    "stream",
    "partial_images",
    "input_fidelity",
)
DEFAULT_MODEL = "dall-e-2"
DEFAULT_GPT_IMAGE_MODEL = "gpt-image-1"
DEFAULT_SIDE = 1024
SANDBOX_MAX_SIDE = 8192  # a guard for the permissive profile: the sandbox renders in memory
SANDBOX_MAX_PIXELS = 4096 * 4096
IMAGE_FIELDS = ("image", "image[]")
USAGE_QUALITIES = ("low", "medium", "high")


@dataclass(frozen=True)
class Provider:
    """What differs between the imitated upstreams."""

    name: str  # openai, 302ai, yescale, azure
    strict_fields: bool  # unknown fields -> 400 (OpenAI and Azure); aggregators ignore them
    query_params: bool = False  # response_format and async in the query string (302.ai)
    chat_usage: bool = False  # mixes prompt_tokens / completion_tokens into usage (302.ai)
    done_marker: bool = False  # streams end with "data: [DONE]"
    any_response_format: bool = False  # response_format=url for every model (aggregators)


@dataclass
class Call:
    """One checked image request, with every default resolved."""

    kind: Kind
    provider: Provider
    spec: ModelSpec
    params: ImageParams
    width: int
    height: int
    quality: str  # as the response reports it (auto resolved)
    background: str  # opaque or transparent
    response_format: str  # b64_json or url
    async_mode: bool = False
    images: list[bytes] = field(default_factory=list)
    image_facts: list[InputFacts] = field(default_factory=list)

    @property
    def dalle(self) -> bool:
        return self.spec.family == "dall-e"

    @property
    def output_format(self) -> str:
        return self.params.effective_format()

    @property
    def usage_quality(self) -> str:
        return self.quality if self.quality in USAGE_QUALITIES else "medium"

    @property
    def event_prefix(self) -> str:
        return "image_generation" if self.kind == "generation" else "image_edit"


def _coerce(name: str, value: Any, *, form: bool) -> Any:
    """A field's value with the type the API expects, from JSON or from form text.

    Raises:
        SandboxError: the value has the wrong type (400 invalid_type).
    """

    def wrong(expected: str) -> Exception:
        got = type(value).__name__
        return bad_request(
            f"Invalid type for '{name}': expected {expected}, but got {got} instead.",
            param=name,
            code="invalid_type",
        )

    if name in INT_FIELDS:
        if form and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise wrong("an integer") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if name in BOOL_FIELDS:
        if form and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise wrong("a boolean")
        return value
    if not isinstance(value, str):
        raise wrong("a string")
    return value


def read_fields(raw: dict[str, Any], provider: Provider, *, form: bool) -> dict[str, Any]:
    """Known fields, typed; unknown ones refused (strict providers) or dropped.

    Raises:
        SandboxError: an unknown field (strict providers) or a wrongly typed value.
    """
    out: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in KNOWN_FIELDS:
            if provider.strict_fields:
                raise bad_request(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
            continue
        if value is None:
            continue
        out[name] = _coerce(name, value, form=form)
    return out


def _bounds(f: dict[str, Any]) -> None:
    """The generic numeric bounds the catalog leaves to the wire (lower ends, 0-100)."""
    if "n" in f and f["n"] < 1:
        raise bad_request("Invalid 'n': integer below minimum value. Expected a value >= 1.", param="n")
    if "output_compression" in f and not 0 <= f["output_compression"] <= 100:
        raise bad_request(
            "Invalid 'output_compression': expected a value between 0 and 100.",
            param="output_compression",
        )
    if "partial_images" in f and f["partial_images"] < 0:
        raise bad_request("Invalid 'partial_images': expected a value between 0 and 3.", param="partial_images")


def _resolve_size(spec: ModelSpec, size: str | None) -> tuple[int, int]:
    if size is None or size == "auto":
        return DEFAULT_SIDE, DEFAULT_SIDE
    dims = parse_size(size)
    if dims is None:  # the catalog has refused it already for known models
        raise bad_request(f"Invalid 'size': {size!r}.", param="size")
    if max(dims) > SANDBOX_MAX_SIDE or dims[0] * dims[1] > SANDBOX_MAX_PIXELS:
        raise bad_request(
            f"size {size} is larger than the sandbox renders ({SANDBOX_MAX_SIDE} px a side, "
            f"{SANDBOX_MAX_PIXELS:,} pixels)",
            param="size",
        )
    return dims


def _resolve_quality(spec: ModelSpec, quality: str | None) -> str:
    if spec.family == "dall-e":
        return quality or "standard"
    return "medium" if quality in (None, "auto") else quality


def build_call(
    kind: Kind,
    provider: Provider,
    fields: dict[str, Any],
    *,
    model_override: str | None = None,
    query: dict[str, str] | None = None,
) -> Call:
    """Check typed ``fields`` against the model's rules and resolve every default.

    Raises:
        SandboxError: a missing prompt, a broken rule (400 with ``param``), or stream with n>1.
    """
    query = query or {}
    prompt = fields.get("prompt")
    if prompt is None:
        raise bad_request(
            "Missing required parameter: 'prompt'.",
            param="prompt",
            code="missing_required_parameter",
        )
    if not prompt:
        raise bad_request("Invalid 'prompt': empty string.", param="prompt", code="empty_string")
    _bounds(fields)
    model = model_override or fields.get("model")
    if not model:
        model = DEFAULT_GPT_IMAGE_MODEL if any(k in fields for k in GPT_IMAGE_ONLY) else DEFAULT_MODEL
    spec = load_catalog().get(model)
    params = ImageParams(
        prompt=prompt,
        model=model,
        n=fields.get("n"),
        size=fields.get("size"),
        quality=fields.get("quality"),
        background=fields.get("background"),
        output_format=fields.get("output_format"),
        output_compression=fields.get("output_compression"),
        moderation=fields.get("moderation"),
        style=fields.get("style"),
        user=fields.get("user"),
        input_fidelity=fields.get("input_fidelity"),
        stream=bool(fields.get("stream", False)),
        partial_images=fields.get("partial_images"),
    )
    try:
        check_params(spec, params, edit=kind == "edit")
    except ValidationProblem as exc:
        raise bad_request(str(exc), param=exc.field) from exc
    if params.stream and (params.n or 1) > 1:
        # A completed event carries one image and no index, so a stream cannot hold n>1.
        raise bad_request("n must be 1 when stream=true: a stream carries one image.", param="n")
    width, height = _resolve_size(spec, params.size)
    return Call(
        kind=kind,
        provider=provider,
        spec=spec,
        params=params,
        width=width,
        height=height,
        quality=_resolve_quality(spec, params.quality),
        background="transparent" if params.background == "transparent" else "opaque",
        response_format=_response_format(spec, provider, fields, query),
        async_mode=provider.query_params and query.get("async", "").lower() == "true",
    )


def _response_format(spec: ModelSpec, provider: Provider, fields: dict[str, Any], query: dict[str, str]) -> str:
    """b64_json or url: dall-e defaults to url (as OpenAI); OpenAI refuses it for GPT image."""
    given = fields.get("response_format")
    if provider.query_params and "response_format" in query:
        given = query["response_format"]
    if given is not None and given not in ("url", "b64_json"):
        raise bad_request(f"Invalid 'response_format': {given!r}; use url or b64_json.", param="response_format")
    if given is not None and spec.known and not spec.response_formats and not provider.any_response_format:
        raise bad_request(
            "Unknown parameter: 'response_format'.",
            param="response_format",
            code="unknown_parameter",
        )
    if given is None:
        return "url" if spec.family == "dall-e" else "b64_json"
    return given


async def read_uploads(
    form_items: list[tuple[str, str | UploadFile]],
) -> tuple[list[tuple[str, bytes]], bytes | None]:
    """The input images (``image`` / ``image[]``, in order, with file names) and the mask.

    Raises:
        SandboxError: an image or mask field is text instead of a file.
    """
    images: list[tuple[str, bytes]] = []
    mask: bytes | None = None
    for name, value in form_items:
        if name not in (*IMAGE_FIELDS, "mask"):
            continue
        if isinstance(value, str):
            raise bad_request(
                f"'{name}' must be a file upload, not text.",
                param=name.rstrip("[]"),
                code="invalid_type",
            )
        data = await value.read()
        if name == "mask":
            mask = data
        else:
            images.append((value.filename or f"image {len(images) + 1}", data))
    return images, mask


def check_uploads(call: Call, images: list[tuple[str, bytes]], mask: bytes | None) -> None:
    """Checks the uploads by content through the catalog's edit rules; keeps them on ``call``.

    Raises:
        SandboxError: no image, or an image/mask breaks a rule (400, param image or mask).
    """
    if not images:
        raise bad_request("Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    facts = [describe_upload(label, data) for label, data in images]
    mask_facts = describe_upload("mask", mask) if mask is not None else None
    try:
        check_edit_inputs(call.spec, facts, mask_facts)
    except ValidationProblem as exc:
        raise bad_request(str(exc), param=exc.field, code="invalid_image") from exc
    call.images = [data for _, data in images]
    call.image_facts = facts
