"""Reading an image request the way the real upstream does: the model, defaults, the rules.

Field types and bounds come from the one declaration (`mcp_images.sandbox.fields`); the
per-model and cross-field rules are the catalog's (`check_params`, `check_edit_inputs`), so a
call the server would refuse is refused here too, with OpenAI's 400 shape and ``param``.
This module adds only what the wire adds: the OpenAI defaults, the model lookup, the uploads.

Decisions:

- Unknown model names: OpenAI (and Azure, whose deployment is the model) answer 404
  ``model_not_found`` for a name that is not exactly a catalog name or alias, as the real API
  does; the aggregators (302.ai, Yescale) serve any name with the permissive profile.
  ``create_app(permissive_models=True)`` (``mcp-images sandbox --permissive-models``) makes
  OpenAI and Azure permissive as well. Retired models (dall-e, gpt-image-1) are still served:
  the sandbox imitates an account that still has them, as aggregators do.
- The rules are judged with the wire's defaults filled in (``n`` = 1) and with the files an
  edit carries (``mask``, ``markup``) named, so "svg needs n=1" and "gif takes no mask" see them.
- ``svg`` without ``svg.model`` is refused on generations (the SDK marks it required there).
- Usage of a catalog model without a price-table entry (gpt-image-2.5/2.6) follows
  gpt-image-2's token rule; ``xhigh`` and ``max`` count as ``high`` (no published figures).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_images.catalog.checks import check_params, parse_size
from mcp_images.catalog.edit_rules import InputFacts
from mcp_images.catalog.models import Catalog, ImageParams, ModelSpec, load_catalog
from mcp_images.catalog.parameters import PARAMS
from mcp_images.errors import ValidationProblem
from mcp_images.sandbox.modes import Failure, SandboxError, bad_request, failure_for

Kind = Literal["generation", "edit"]

# Using any of these without a model selects a GPT image model, as OpenAI documents.
GPT_IMAGE_ONLY = tuple(p.name for p in PARAMS if p.per_model and p.name not in ("quality", "style"))
DEFAULT_MODEL = "dall-e-2"
DEFAULT_GPT_IMAGE_MODEL = "gpt-image-1"
DEFAULT_SIDE = 1024
SANDBOX_MAX_SIDE = 8192  # a guard for the permissive profile: the sandbox renders in memory
SANDBOX_MAX_PIXELS = 4096 * 4096
GIF_DEFAULT_FRAMES = 9  # the SDK's documented defaults
GIF_DEFAULT_FRAME_MS = 200
GIF_DELAY_STEP_MS = 10  # GIF delays are centiseconds
USAGE_QUALITY = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
NOT_SENT = ("prompt", "model", "response_format")


@dataclass(frozen=True)
class Provider:
    """What differs between the imitated upstreams."""

    name: str  # openai, 302ai, yescale, azure
    strict_fields: bool  # unknown fields -> 400 (OpenAI and Azure); aggregators ignore them
    query_params: bool = False  # response_format and async in the query string (302.ai)
    chat_usage: bool = False  # mixes prompt_tokens / completion_tokens into usage (302.ai)
    done_marker: bool = False  # streams end with "data: [DONE]"
    any_response_format: bool = False  # response_format=url for every model (aggregators)
    known_models_only: bool = False  # unknown model names -> 404 (OpenAI, Azure)


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
    markup: bytes | None = None

    @property
    def dalle(self) -> bool:
        return self.spec.family == "dall-e"

    @property
    def output_format(self) -> str:
        return self.params.effective_format()

    @property
    def usage_quality(self) -> str:
        return USAGE_QUALITY.get(self.quality, "medium")

    @property
    def event_prefix(self) -> str:
        return "image_generation" if self.kind == "generation" else "image_edit"

    @property
    def frame_count(self) -> int:
        return self.params.get("frame_count") or GIF_DEFAULT_FRAMES

    @property
    def frame_duration_ms(self) -> int:
        """The delay per GIF frame as encoded: rounded to the nearest 10 ms, at least 10."""
        ms = self.params.get("frame_duration_ms") or GIF_DEFAULT_FRAME_MS
        return max(round(ms / GIF_DELAY_STEP_MS), 1) * GIF_DELAY_STEP_MS

    @property
    def safety_identifier(self) -> str | None:
        """The effective end-user id the response echoes: safety_identifier, else user."""
        return self.params.get("safety_identifier") or self.params.get("user") or None


def _resolve_size(size: str | None) -> tuple[int, int]:
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


def _prompt(fields: dict[str, Any]) -> str:
    prompt = fields.get("prompt")
    if prompt is None:
        raise bad_request("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    if not prompt:
        raise bad_request("Invalid 'prompt': empty string.", param="prompt", code="empty_string")
    return prompt


def model_not_found(provider: Provider, model: str) -> SandboxError:
    """The 404 for a model the account cannot use, as OpenAI (or Azure) words it."""
    if provider.name == "azure":
        return SandboxError(
            Failure(
                404,
                "The API deployment for this resource does not exist. If you created the deployment "
                "within the last 5 minutes, please wait a moment and try again.",
                code="DeploymentNotFound",
            )
        )
    return SandboxError(failure_for("404", model=model, dalle=False, request_id=""))


def _model(catalog: Catalog, provider: Provider, fields: dict[str, Any], override: str | None, permissive: bool) -> str:
    model = override or fields.get("model")
    if not model:
        return DEFAULT_GPT_IMAGE_MODEL if any(k in fields for k in GPT_IMAGE_ONLY) else DEFAULT_MODEL
    if provider.known_models_only and not permissive and model not in catalog.by_name:
        raise model_not_found(provider, model)
    return model


def _check_rules(kind: Kind, spec: ModelSpec, params: ImageParams, files: frozenset[str]) -> None:
    """The catalog's rules, judged with the wire defaults and the edit's files in view."""
    values = {"n": 1, **params.values, **{name: True for name in files}}
    if kind == "generation" and "svg" in values and not values["svg"].get("model"):
        raise bad_request(
            "Missing required parameter: 'svg.model'.", param="svg.model", code="missing_required_parameter"
        )
    try:
        check_params(spec, ImageParams(prompt=params.prompt, model=params.model, values=values), edit=kind == "edit")
    except ValidationProblem as exc:
        raise bad_request(str(exc), param=exc.field) from exc
    if params.stream and (params.n or 1) > 1:
        # A completed event carries one image and no index, so a stream cannot hold n>1.
        raise bad_request("n must be 1 when stream=true: a stream carries one image.", param="n")


def build_call(
    kind: Kind,
    provider: Provider,
    fields: dict[str, Any],
    *,
    model_override: str | None = None,
    query: dict[str, str] | None = None,
    files: frozenset[str] = frozenset(),
    permissive_models: bool = False,
) -> Call:
    """Check typed ``fields`` against the model's rules and resolve every default.

    ``files``: which of ``mask`` and ``markup`` an edit carries (the rules tie them to others).

    Raises:
        SandboxError: a missing prompt, an unknown model (404 on strict providers), a broken
            rule (400 with ``param``), or stream with n>1.
    """
    query = query or {}
    prompt = _prompt(fields)
    catalog = load_catalog()
    model = _model(catalog, provider, fields, model_override, permissive_models)
    spec = catalog.get(model)
    values = {k: v for k, v in fields.items() if k not in NOT_SENT}
    if values.get("stream") is False:
        del values["stream"]
    params = ImageParams(prompt=prompt, model=model, values=values)
    _check_rules(kind, spec, params, files)
    width, height = _resolve_size(params.size)
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
