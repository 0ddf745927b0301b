"""The tools' work, apart from the protocol: validate, call the upstream, save, describe.

Each function takes the runtime, the parsed arguments and a `Progress`, and returns an
`Outcome` that `results.py` renders for MCP. Saving and previews of what came back are
`saving`'s. Heavy modules (Pillow, httpx2) are imported inside the functions so that importing
this module costs nothing at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from mcp_images.catalog.edit_rules import check_edit_inputs, image_count_problem
from mcp_images.catalog.models import ImageParams, ModelSpec, check_params
from mcp_images.concurrency import single_errors
from mcp_images.errors import UpstreamError, ValidationProblem
from mcp_images.runtime import Runtime
from mcp_images.server.args import CommonArgs, EditArgs, ImageArgs
from mcp_images.storage.store import StoredImage
from mcp_images.work.progress import Progress

if TYPE_CHECKING:
    from mcp_images.concurrency import BodySlot
    from mcp_images.inputs.references import InputImage
    from mcp_images.pricing.costs import CostBreakdown
    from mcp_images.upstream.answers import ImagesResponse
    from mcp_images.work.saving import PartialSaver, SavedImage

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What a finished generate/edit produced, before it is rendered for a client."""

    model: str
    params: ImageParams
    images: list[SavedImage]
    response: dict[str, Any]
    request_id: str | None
    usage: dict[str, Any] | None
    cost: CostBreakdown | None
    revised_prompts: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    partials: list[StoredImage] = field(default_factory=list)
    edit: bool = False
    elapsed: float = 0.0


def to_params(args: CommonArgs, model: str, output_dir: Path | None = None) -> ImageParams:
    """The call's parameters; with ``output_dir``, also where to save (checked to stay inside).

    Raises:
        InputError: output_path or filename would leave the output folder or is unusable.
    """
    from mcp_images.storage.store import safe_stem, safe_subdir

    fidelity = getattr(args, "input_fidelity", None)
    output_path = getattr(args, "output_path", None)
    filename = getattr(args, "filename", None)
    params = ImageParams(
        prompt=args.prompt,
        model=model,
        n=args.n,
        size=args.size,
        quality=args.quality,
        background=args.background,
        output_format=args.output_format,
        output_compression=args.output_compression,
        moderation=args.moderation,
        style=args.style,
        user=args.user,
        input_fidelity=fidelity,
        stream=bool(args.stream),
        partial_images=args.partial_images,
    )
    if output_dir is not None:
        params.subdir = safe_subdir(output_dir, output_path) if output_path else None
        params.filename = safe_stem(filename) if filename else None
    return params


def request_body(params: ImageParams, spec: ModelSpec) -> dict[str, Any]:
    """The upstream parameters: the model and prompt, and only what the caller gave."""
    body: dict[str, Any] = {"model": params.model, "prompt": params.prompt}
    for name in (
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "moderation",
        "style",
        "user",
        "input_fidelity",
    ):
        value = getattr(params, name)
        if value is not None:
            body[name] = value
    if params.stream:
        body["stream"] = True
        if params.partial_images is not None:
            body["partial_images"] = params.partial_images
    # dall-e answers with short-lived URLs unless asked for base64.
    if "b64_json" in spec.response_formats:
        body["response_format"] = "b64_json"
    return body


def validate(rt: Runtime, args: CommonArgs, *, edit: bool) -> tuple[ModelSpec, ImageParams, list[str]]:
    """Resolve the model and apply every catalog rule before anything is sent.

    Raises:
        ValidationProblem: a rule is broken; the message says what to change.
    """
    model = args.model or rt.settings.default_model
    spec = rt.catalog.get(model)
    params = to_params(args, model, rt.store.output_dir)
    warnings = check_params(spec, params, edit=edit)
    rt.store.check_writable()  # before anything is paid for: a made image must have somewhere to go
    provider = rt.provider
    if edit and params.moderation is not None and not provider.moderation_on_edits:
        raise ValidationProblem(
            f"the {provider.name} edits endpoint does not take moderation; leave it out (it applies to generate_image)",
            field="moderation",
        )
    if provider.models is not None and not provider.permissive and model not in provider.models:
        warnings.append(f"{provider.name} does not list {model!r} among its models; the upstream has the last word")
    return spec, params, warnings


async def generate_image(rt: Runtime, args: ImageArgs, progress: Progress) -> Outcome:
    spec, params, warnings = validate(rt, args, edit=False)
    api = await rt.api()
    body = request_body(params, spec)

    async def send(saver: PartialSaver, slot: BodySlot) -> ImagesResponse:
        return await api.generate(body, on_partial=saver, body_slot=slot)

    return await call_and_finish(rt, params, spec, progress, send, phase="generating", warnings=warnings, edit=False)


async def call_and_finish(
    rt: Runtime,
    params: ImageParams,
    spec: ModelSpec,
    progress: Progress,
    send: Callable[[PartialSaver, BodySlot], Awaitable[ImagesResponse]],
    *,
    phase: str,
    warnings: list[str],
    edit: bool,
    input_sizes: list[tuple[int, int]] | None = None,
) -> Outcome:
    """Send one call (``send``) with partials saved as they stream and heartbeats while it
    waits, then save its images; the answer slot is held from its body until the files exist."""
    from mcp_images.work.saving import PartialSaver

    saver = PartialSaver(rt, params, progress)
    slot = rt.body_slot()
    try:
        await progress.phase(phase)
        async with progress.beating():
            response = await send(saver, slot)
        outcome = await finish(
            rt, params, spec, response, progress, warnings=warnings, edit=edit, input_sizes=input_sizes
        )
    finally:
        slot.release()
    outcome.partials = saver.saved
    return outcome


async def load_edit_inputs(
    rt: Runtime, args: EditArgs, spec: ModelSpec, client_roots: list[Any] | None = None
) -> tuple[list[InputImage], InputImage | None]:
    """Read and check every input image and the mask against the model's edit rules.

    Raises:
        InputError: a reference cannot be used (what to change is in the message).
        ValidationProblem: an input breaks the model's edit rules.
    """
    from mcp_images.inputs.references import load_image_ref, load_image_refs

    refs = args.image_list()
    if (count := image_count_problem(spec, len(refs))) is not None:
        raise ValidationProblem(count, field="image")  # before reading any of them
    policy = rt.input_policy(client_roots)
    http = await rt.http()
    images = await load_image_refs(refs, policy=policy, resolve_id=rt.store.find, http=http)
    mask = None
    if args.mask is not None:
        mask = await load_image_ref(
            args.mask, label="the mask", policy=policy, resolve_id=rt.store.find, http=http, is_mask=True
        )
    check_edit_inputs(spec, [i.facts() for i in images], mask.facts() if mask else None)
    return images, mask


async def edit_image(rt: Runtime, args: EditArgs, progress: Progress, client_roots: list[Any] | None = None) -> Outcome:
    spec, params, warnings = validate(rt, args, edit=True)
    images, mask = await load_edit_inputs(rt, args, spec, client_roots)
    warnings += [i.note for i in images if i.note] + ([mask.note] if mask and mask.note else [])
    api = await rt.api()
    fields = request_body(params, spec)
    uploads = [upload_file(img) for img in images]
    mask_upload = upload_file(mask) if mask else None

    async def send(saver: PartialSaver, slot: BodySlot) -> ImagesResponse:
        return await api.edit(fields, uploads, mask_upload, on_partial=saver, body_slot=slot)

    sizes = [(i.width, i.height) for i in images]
    return await call_and_finish(
        rt, params, spec, progress, send, phase="uploading", warnings=warnings, edit=True, input_sizes=sizes
    )


def upload_file(img: InputImage) -> Any:
    from mcp_images.upstream.requests import UploadFile

    if img.path is not None:
        return UploadFile(filename=img.filename, mime_type=img.mime_type, path=img.path)
    return UploadFile(filename=img.filename, mime_type=img.mime_type, data=img.data)


async def finish(
    rt: Runtime,
    params: ImageParams,
    spec: ModelSpec,
    response: ImagesResponse,
    progress: Progress,
    *,
    warnings: list[str],
    edit: bool,
    input_sizes: list[tuple[int, int]] | None = None,
) -> Outcome:
    """Download URL results, save every image, make previews (in parallel threads), price it."""
    from mcp_images.work.saving import decode_b64, preview_budget, save_and_preview

    if not response.data:
        raise UpstreamError("the upstream answered without any image", request_id=response.request_id)
    api = await rt.api()
    budget = preview_budget(rt, len(response.data))
    saved: list[SavedImage | None] = [None] * len(response.data)
    created: list[Path] = []  # every file this call wrote, appended from the worker threads
    failures: list[str] = []
    if any(d.url and not d.b64_json for d in response.data):
        await progress.phase("downloading")
    await progress.phase("saving")

    async def one(index: int) -> None:
        datum = response.data[index]
        try:
            if datum.b64_json:
                text, datum.b64_json = datum.b64_json, None  # the text goes as soon as it is decoded
                data = await anyio.to_thread.run_sync(decode_b64, text, "an image", limiter=rt.image_threads)
                del text
            elif datum.url:
                data = await api.download(datum.url)
            else:
                raise UpstreamError("the upstream sent an image entry with neither b64_json nor url")
            saved[index] = await anyio.to_thread.run_sync(
                lambda: save_and_preview(rt, data, params, budget, created), limiter=rt.image_threads
            )
        except UpstreamError as exc:
            if len(response.data) == 1:
                raise
            failures.append(f"image {index + 1} of {len(response.data)} was not usable: {exc}")

    try:
        with single_errors():
            async with anyio.create_task_group() as tg:
                for i in range(len(response.data)):
                    tg.start_soon(one, i)
        if not any(saved):
            raise UpstreamError("; ".join(failures) or "the upstream sent no usable image")
    except BaseException:
        # Cancelled or failed: no image of this call stays behind without a result naming it.
        for path in created:
            path.unlink(missing_ok=True)
        raise
    warnings = [*warnings, *failures]

    images = [s for s in saved if s is not None]
    usage = response.usage
    cost = _cost(rt, params, spec, usage, len(images), input_sizes or [], edit)
    revised = [d.revised_prompt for d in response.data if d.revised_prompt]
    return Outcome(
        model=params.model,
        params=params,
        images=images,
        response=response.model_dump(exclude={"data"}, exclude_none=True),
        request_id=response.request_id,
        usage=usage,
        cost=cost,
        revised_prompts=revised,
        warnings=warnings,
        edit=edit,
        elapsed=progress.elapsed,
    )


def _cost(
    rt: Runtime,
    params: ImageParams,
    spec: ModelSpec,
    usage: dict[str, Any] | None,
    n: int,
    input_sizes: list[tuple[int, int]],
    edit: bool,
) -> CostBreakdown | None:
    from mcp_images.pricing.costs import actual_cost

    try:
        return actual_cost(
            rt.prices,
            model=spec.name if spec.known else params.model,
            usage=usage,
            n=n,
            size=params.size,
            quality=params.quality,
            prompt=params.prompt,
            input_sizes=input_sizes,
            input_fidelity=params.input_fidelity,
            partial_images=params.partial_images or 0,
            edit=edit,
            aliases=spec.all_names,
        )
    except (ValueError, KeyError):
        logger.exception("cost could not be computed")
        return None


__all__ = ["Outcome", "ValidationProblem", "edit_image", "finish", "generate_image", "validate"]
