"""The one validation path: generate_image, edit_image and estimate_cost all come through here.

`check_call` turns a call's parsed arguments (`catalog.arguments.parse_arguments`) into a
`CheckedCall`: the model resolved (exact, case/separator variant, or permissive with a
"did you mean"), the operator's model list and the model's lifecycle applied, every
catalog and cross-parameter rule checked, and the provider's own rules (OpenAI's edits
endpoint takes no ``moderation``). An estimate is therefore refused exactly when the call
would be. What only a real call needs (the output folder) is checked with ``saving=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp_images.catalog.checks import check_params
from mcp_images.catalog.edit_rules import image_count_problem
from mcp_images.catalog.models import ImageParams, ModelSpec
from mcp_images.catalog.parameters import BY_NAME, Given
from mcp_images.errors import ValidationProblem
from mcp_images.runtime import Runtime

# Arguments that steer this server, not the upstream's parameters of the image.
_OWN = frozenset({"prompt", "model", "output_path", "filename", "async", "image"})
_EDIT_MARKERS = ("image", "mask", "markup", "input_fidelity")


@dataclass
class CheckedCall:
    """A call that passed every check, ready to price or to send."""

    tool: str
    edit: bool
    spec: ModelSpec
    params: ImageParams
    warnings: list[str] = field(default_factory=list)
    image_refs: list[str] = field(default_factory=list)
    background: bool = False  # async=true

    @property
    def mask(self) -> str | None:
        return self.params.get("mask")

    @property
    def markup(self) -> str | None:
        return self.params.get("markup")


def _image_values(given: Given) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, value in given.values.items():
        if name in _OWN:
            continue
        if BY_NAME[name].kind == "boolean" and value is False:
            continue  # false is every boolean's default: not sent, and no model refuses it
        values[name] = value
    return values


def _allowed(rt: Runtime, model: str) -> None:
    allowed = [m.strip() for m in rt.settings.allowed_models.split(",") if m.strip()]
    if allowed and model not in allowed:
        raise ValidationProblem(
            f"model {model!r} is not allowed on this server; use one of {', '.join(allowed)}",
            field="model",
        )


def on_openai_itself(rt: Runtime) -> bool:
    """Whether calls go to OpenAI's own API (the openai provider at its default base URL)."""
    provider = rt.provider
    base = rt.settings.base_url
    return provider.name == "openai" and (base is None or base.rstrip("/") == (provider.base_url or "").rstrip("/"))


def _lifecycle(rt: Runtime, spec: ModelSpec, warnings: list[str]) -> None:
    life = spec.lifecycle
    if life is None:
        return
    after = f"; use {' or '.join(life.successors)}" if life.successors else ""
    if life.retired_on_openai:
        if on_openai_itself(rt):
            raise ValidationProblem(
                f"{spec.name} was shut down on OpenAI's API on {life.retired_on_openai}{after}", field="model"
            )
        warnings.append(f"OpenAI retired {spec.name} on {life.retired_on_openai}; this upstream may still serve it")
    elif life.shutdown_announced:
        warnings.append(f"OpenAI announced the shutdown of {spec.name} for {life.shutdown_announced}{after}")


def _resolve_model(rt: Runtime, given: Given, warnings: list[str]) -> tuple[str, ModelSpec]:
    asked = given.get("model") or rt.settings.default_model
    model = rt.catalog.canonical(asked)
    if model != asked:
        warnings.append(f"model {asked!r} was read as {model!r}")
    _allowed(rt, model)
    spec = rt.catalog.get(model)
    if spec.known:
        _lifecycle(rt, spec, warnings)
    return model, spec


def check_call(rt: Runtime, given: Given, *, saving: bool) -> CheckedCall:
    """Resolve the model and apply every rule before anything is sent or priced.

    Raises:
        ValidationProblem: a rule is broken; the message says what to change.
        InputError: output_path or filename would leave the output folder (``saving``).
        ConfigError: the output folder cannot take a file (``saving``).
    """
    warnings: list[str] = []
    model, spec = _resolve_model(rt, given, warnings)
    refs = given.get("image") or []
    refs = [refs] if isinstance(refs, str) else list(refs)
    edit = given.tool == "edit_image" or (
        given.tool == "estimate_cost" and any(given.get(k) is not None for k in _EDIT_MARKERS)
    )
    params = ImageParams(prompt=given.get("prompt") or "", model=model, values=_image_values(given))
    warnings += check_params(spec, ImageParams(params.prompt or "x", model, params.values), edit=edit)
    provider = rt.provider
    if edit and params.get("moderation") is not None and not provider.moderation_on_edits:
        raise ValidationProblem(
            f"the {provider.name} edits endpoint does not take moderation; leave it out (it applies to generate_image)",
            field="moderation",
        )
    if edit and refs and (count := image_count_problem(spec, len(refs))) is not None:
        raise ValidationProblem(count, field="image")  # before reading any of them
    if provider.models is not None and not provider.permissive and model not in provider.models:
        warnings.append(f"{provider.name} does not list {model!r} among its models; the upstream has the last word")
    if saving:
        from mcp_images.storage.store import safe_stem, safe_subdir

        output_dir = rt.store.output_dir
        params.subdir = safe_subdir(output_dir, given.get("output_path")) if given.get("output_path") else None
        params.filename = safe_stem(given.get("filename")) if given.get("filename") else None
        rt.store.check_writable()  # before anything is paid for: a made image must have somewhere to go
    return CheckedCall(
        tool=given.tool,
        edit=edit,
        spec=spec,
        params=params,
        warnings=warnings,
        image_refs=refs,
        background=bool(given.get("async")),
    )
