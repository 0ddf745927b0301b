"""The rules an edit's input images and mask must follow, checked before anything is sent.

The facts come from the files themselves (`inputs`, or the sandbox reading an upload); the
limits are the model's (`catalog.ModelSpec`). Every broken rule is listed in one message.
"""

from __future__ import annotations

from dataclasses import dataclass

from mcp_images.catalog.arguments import problem_from
from mcp_images.catalog.checks import one_of
from mcp_images.catalog.models import GENERIC_EDIT_MAX_IMAGES, ModelSpec
from mcp_images.units import format_bytes


@dataclass(frozen=True)
class InputFacts:
    """What the edit checks need to know of one input image (filled in by imaging/inputs)."""

    label: str  # how to name it in a message: "image 2" or the file name
    format: str | None  # by content: png, jpeg, webp, gif, ...; None if not an image
    width: int
    height: int
    bytes: int
    has_alpha: bool


def image_count_problem(spec: ModelSpec, count: int) -> str | None:
    """Why ``count`` input images are too few or too many for ``spec``, or None.

    Checked on its own before any input is read, and again with the other rules.
    """
    limit = spec.edit_max_images or GENERIC_EDIT_MAX_IMAGES
    if count == 0:
        return "edit_image needs at least one input image"
    if count > limit:
        return f"{spec.name} takes at most {limit} input image{'s' if limit > 1 else ''}; you gave {count}"
    return None


def _overlay_problems(what: str, facts: InputFacts, images: list[InputFacts], limit: int) -> list[tuple[str, str]]:
    """A mask's or markup's rules: a PNG with alpha, under the limit, the first image's pixel size."""
    label = "the mask" if what == "mask" else "the markup"
    out: list[tuple[str, str]] = []
    if facts.format != "png":
        out.append((what, f"{label} is {facts.format or 'not an image'}; it must be a PNG with an alpha channel"))
    elif not facts.has_alpha:
        clear = "the area to edit fully transparent (alpha 0)" if what == "mask" else "everything but the drawing transparent"
        out.append((what, f"{label} has no alpha channel: save it as RGBA PNG with {clear}"))
    if facts.bytes > limit:
        out.append((what, f"{label} is {format_bytes(facts.bytes)}; it must be under {format_bytes(limit)}"))
    if images and (facts.width, facts.height) != (images[0].width, images[0].height):
        first = images[0]
        out.append(
            (
                what,
                f"{label} is {facts.width}x{facts.height} but the first image is {first.width}x{first.height}; "
                "they must match exactly",
            )
        )
    return out


def check_edit_inputs(
    spec: ModelSpec, images: list[InputFacts], mask: InputFacts | None, *, markup: InputFacts | None = None
) -> None:
    """The edit-input rules: count, type by content, size, squareness, mask and markup shape.

    Raises:
        ValidationProblem: one or more inputs break a rule (all are listed).
    """
    problems: list[tuple[str, str]] = []
    name = spec.name
    if (count := image_count_problem(spec, len(images))) is not None:
        problems.append(("image", count))
    formats = spec.edit_formats or ["png", "jpeg", "webp"]
    for img in images:
        if img.format not in formats:
            kind = img.format or "not an image"
            problems.append(("image", f"{img.label} is {kind}; {name} takes {one_of(formats)} (checked by content)"))
        if img.bytes > spec.edit_max_bytes:
            problems.append(
                (
                    "image",
                    f"{img.label} is {format_bytes(img.bytes)}; {name} takes images under {format_bytes(spec.edit_max_bytes)}",
                )
            )
        if spec.edit_square_only and img.width != img.height:
            problems.append(
                ("image", f"{img.label} is {img.width}x{img.height}; {name} needs a square PNG (crop it square first)")
            )
    if mask is not None:
        problems += _overlay_problems("mask", mask, images, spec.mask_max_bytes)
    if markup is not None:
        problems += _overlay_problems("markup", markup, images, spec.mask_max_bytes)
    if problems:
        raise problem_from(problems)
