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

from mcp_images.catalog.edit_rules import check_edit_inputs
from mcp_images.catalog.models import ImageParams, ModelSpec
from mcp_images.catalog.parameters import form_fields, wire_body
from mcp_images.concurrency import reduce_errors, single_errors
from mcp_images.errors import ConfigError, McpImagesError, NotFoundError, UpstreamError
from mcp_images.runtime import Runtime
from mcp_images.storage.store import StoredImage
from mcp_images.work.progress import Progress
from mcp_images.work.validation import CheckedCall

if TYPE_CHECKING:
    from mcp_images.concurrency import BodySlot
    from mcp_images.inputs.references import InputImage
    from mcp_images.pricing.costs import CostBreakdown
    from mcp_images.upstream.answers import ImagesResponse
    from mcp_images.upstream.requests import UploadFile
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


def request_body(params: ImageParams, spec: ModelSpec) -> dict[str, Any]:
    """The upstream parameters: the model and prompt, and only the declared ones the caller gave."""
    body: dict[str, Any] = {"model": params.model, "prompt": params.prompt, **wire_body(params.values)}
    # dall-e answers with short-lived URLs unless asked for base64.
    if "b64_json" in spec.response_formats:
        body["response_format"] = "b64_json"
    return body


async def generate_image(rt: Runtime, call: CheckedCall, progress: Progress) -> Outcome:
    spec, params, warnings = call.spec, call.params, list(call.warnings)
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
            try:
                response = await send(saver, slot)
            except NotFoundError as exc:
                raise _with_suggestion(rt, spec, exc) from exc
        outcome = await finish(
            rt, params, spec, response, progress, warnings=warnings, edit=edit, input_sizes=input_sizes
        )
    finally:
        slot.release()
    outcome.partials = saver.saved
    return outcome


@dataclass
class EditInputs:
    """An edit's input images, mask and markup, read and checked against the model's rules."""

    images: list[InputImage]
    mask: InputImage | None = None
    markup: InputImage | None = None

    def notes(self) -> list[str]:
        found = [*self.images, *([self.mask] if self.mask else []), *([self.markup] if self.markup else [])]
        return [i.note for i in found if i.note]


async def load_edit_inputs(rt: Runtime, call: CheckedCall, client_roots: list[Any] | None = None) -> EditInputs:
    """Read and check every input image, the mask and the markup against the model's edit rules.

    Raises:
        InputError: a reference cannot be used (what to change is in the message).
        ValidationProblem: an input breaks the model's edit rules.
    """
    from mcp_images.inputs.references import load_image_ref, load_image_refs

    policy = rt.input_policy(client_roots)
    http = await rt.http()
    images = await load_image_refs(call.image_refs, policy=policy, resolve_id=rt.store.find, http=http)
    found = EditInputs(images)
    for name in ("mask", "markup"):
        ref = call.params.get(name)
        if ref is not None:
            label = "the mask" if name == "mask" else "the markup"
            img = await load_image_ref(ref, label=label, policy=policy, resolve_id=rt.store.find, http=http, is_mask=True)
            setattr(found, name, img)
    check_edit_inputs(
        call.spec,
        [i.facts() for i in images],
        found.mask.facts() if found.mask else None,
        markup=found.markup.facts() if found.markup else None,
    )
    return found


def edit_uploads(inputs: EditInputs) -> tuple[list[UploadFile], dict[str, UploadFile]]:
    """The multipart files of an edit: the images, then the mask and markup by field name."""
    named = {name: upload_file(img) for name, img in (("mask", inputs.mask), ("markup", inputs.markup)) if img}
    return [upload_file(img) for img in inputs.images], named


async def edit_image(
    rt: Runtime, call: CheckedCall, progress: Progress, client_roots: list[Any] | None = None
) -> Outcome:
    spec, params, warnings = call.spec, call.params, list(call.warnings)
    inputs = await load_edit_inputs(rt, call, client_roots)
    images = inputs.images
    warnings += inputs.notes()
    api = await rt.api()
    fields = form_fields(request_body(params, spec))
    uploads, named = edit_uploads(inputs)

    async def send(saver: PartialSaver, slot: BodySlot) -> ImagesResponse:
        return await api.edit(fields, uploads, named, on_partial=saver, body_slot=slot)

    sizes = [(i.width, i.height) for i in images]
    return await call_and_finish(
        rt, params, spec, progress, send, phase="uploading", warnings=warnings, edit=True, input_sizes=sizes
    )


def upload_file(img: InputImage) -> UploadFile:
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
    if not response.data:
        raise UpstreamError("the upstream answered without any image", request_id=response.request_id)
    if any(d.url and not d.b64_json for d in response.data):
        await progress.phase("downloading")
    await progress.phase("saving")
    try:
        images, failures = await _save_all(rt, params, response)
    except McpImagesError as exc:
        # The answer was in, so it was billed: the ledger records what it cost.
        exc.cost = _cost(rt, params, spec, response.usage, len(response.data), input_sizes or [], edit)
        raise
    asked = params.n or 1
    if len(response.data) < asked:
        warnings = [*warnings, f"the upstream sent {len(response.data)} of the {asked} images asked for"]
    warnings = [*warnings, *(str(f) for f in failures), *(s.stored.note for s in images if s.stored.note)]
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


async def _save_all(
    rt: Runtime, params: ImageParams, response: ImagesResponse
) -> tuple[list[SavedImage], list[McpImagesError]]:
    """Every image of ``response`` saved with its preview, in parallel; (saved, why the others were not).

    One image that cannot be used or saved among several is a failure listed, not the
    call's end. Whatever happens, an image already saved stays (it was paid for) and the
    error or the log names it.

    Raises:
        UpstreamError, ConfigError: no image could be used or saved (the reasons reduced to one error).
    """
    from mcp_images.work.saving import decode_b64, preview_budget, save_and_preview

    api = await rt.api()
    count = len(response.data)
    budget = preview_budget(rt, count)
    saved: list[SavedImage | None] = [None] * count
    created: list[Path] = []  # every file this call wrote, appended from the worker threads
    failures: list[McpImagesError] = []

    async def one(index: int) -> None:
        datum = response.data[index]
        try:
            if datum.b64_json:
                # One trip to a worker thread for the decode, the save and the preview (a trip
                # costs ~0.4 ms of CPU on a small VM: two thread wake-ups; a decode ~0.3 ms).
                # The text is held by `text` alone, and goes as soon as it is decoded.
                text, datum.b64_json = [datum.b64_json], None

                def decode_and_save() -> SavedImage:
                    return save_and_preview(rt, decode_b64(text.pop(), "an image"), params, budget, created)

                saved[index] = await anyio.to_thread.run_sync(decode_and_save, limiter=rt.image_threads)
                return
            if not datum.url:
                raise UpstreamError("the upstream sent an image entry with neither b64_json nor url")
            data = await api.download(datum.url)
            saved[index] = await anyio.to_thread.run_sync(
                lambda: save_and_preview(rt, data, params, budget, created), limiter=rt.image_threads
            )
        except (UpstreamError, ConfigError) as exc:
            if count == 1:
                raise
            failures.append(exc.reworded(f"image {index + 1} of {count} was not usable: {exc.plain}"))

    try:
        with single_errors():
            async with anyio.create_task_group() as tg:
                for i in range(count):
                    tg.start_soon(one, i)
        if not any(saved):
            raise reduce_errors(failures) if failures else UpstreamError("the upstream sent no usable image")
    except McpImagesError as exc:
        raise _naming_kept(exc, created) from exc
    except BaseException:
        # Cancelled: the images already paid for stay where they are, and the log says where.
        if created:
            logger.warning("call stopped after saving %d image(s), kept: %s", len(created), ", ".join(map(str, created)))
        raise
    return [s for s in saved if s is not None], failures


def _with_suggestion(rt: Runtime, spec: ModelSpec, exc: NotFoundError) -> NotFoundError:
    """An upstream's "no such model" for a name outside the catalog, with the catalog name it is
    most likely meant to be (the permissive profile let it through: the upstream has the last word)."""
    near = None if spec.known else rt.catalog.closest(spec.name)
    return exc.reworded(f"{exc.plain}; did you mean {near!r}?") if near else exc


def _naming_kept(exc: McpImagesError, created: list[Path]) -> McpImagesError:
    """``exc`` saying which files of the call were saved before it failed (they are kept)."""
    if not created:
        return exc
    note = f"; {len(created)} file(s) of this call were saved and kept: {', '.join(map(str, created))}"
    return exc.reworded(f"{exc.plain}{note}")


def _cost(
    rt: Runtime,
    params: ImageParams,
    spec: ModelSpec,
    usage: dict[str, Any] | None,
    n: int,
    input_sizes: list[tuple[int, int]],
    edit: bool,
) -> CostBreakdown | None:
    from mcp_images.pricing.costs import PricedCall, actual_cost

    try:
        return actual_cost(rt.prices, PricedCall.of(spec, params, n=n, input_sizes=input_sizes, edit=edit), usage)
    except (ValueError, KeyError):
        logger.exception("cost could not be computed")
        return None


__all__ = ["EditInputs", "Outcome", "edit_image", "finish", "generate_image", "load_edit_inputs"]
