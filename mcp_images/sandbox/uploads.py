"""The files of an edit: input images (``image`` or repeated ``image[]``), ``mask``, ``markup``.

They are checked by content through the catalog's edit rules (`check_edit_inputs`): count,
type, size, the mask's and the markup's alpha and pixel size. Which models take ``markup`` and
that it excludes ``mask`` are rules `check_params` judges (see `params.build_call`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.datastructures import UploadFile

from mcp_images.catalog.edit_rules import check_edit_inputs
from mcp_images.errors import ValidationProblem
from mcp_images.sandbox.modes import bad_request
from mcp_images.sandbox.params import Call
from mcp_images.sandbox.render import describe_upload

IMAGE_FIELDS = ("image", "image[]")
OVERLAY_FIELDS = ("mask", "markup")


@dataclass
class Uploads:
    """What an edit uploaded: images in order (file name, bytes) and the overlays by field."""

    images: list[tuple[str, bytes]] = field(default_factory=list)
    overlays: dict[str, bytes] = field(default_factory=dict)

    @property
    def present(self) -> frozenset[str]:
        """Which overlay fields were sent (``mask``, ``markup``)."""
        return frozenset(self.overlays)


async def read_uploads(form_items: list[tuple[str, str | UploadFile]]) -> Uploads:
    """The input images (``image`` / ``image[]``, in order, with file names), mask and markup.

    Raises:
        SandboxError: an image, mask or markup field is text instead of a file.
    """
    out = Uploads()
    for name, value in form_items:
        if name not in (*IMAGE_FIELDS, *OVERLAY_FIELDS):
            continue
        if isinstance(value, str):
            raise bad_request(
                f"'{name}' must be a file upload, not text.",
                param=name.rstrip("[]"),
                code="invalid_type",
            )
        data = await value.read()
        if name in OVERLAY_FIELDS:
            out.overlays[name] = data
        else:
            out.images.append((value.filename or f"image {len(out.images) + 1}", data))
    return out


def check_uploads(call: Call, uploads: Uploads) -> None:
    """Checks the uploads by content through the catalog's edit rules; keeps them on ``call``.

    Raises:
        SandboxError: no image, or an image, mask or markup breaks a rule (400 naming it).
    """
    if not uploads.images:
        raise bad_request("Missing required parameter: 'image'.", param="image", code="missing_required_parameter")
    facts = [describe_upload(label, data) for label, data in uploads.images]
    overlays = {name: describe_upload(name, data) for name, data in uploads.overlays.items()}
    try:
        check_edit_inputs(call.spec, facts, overlays.get("mask"), markup=overlays.get("markup"))
    except ValidationProblem as exc:
        raise bad_request(str(exc), param=exc.field, code="invalid_image") from exc
    call.images = [data for _, data in uploads.images]
    call.image_facts = facts
    call.markup = uploads.overlays.get("markup")
