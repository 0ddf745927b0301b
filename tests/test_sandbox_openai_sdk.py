"""OpenAI's own Python SDK (3.57), strict response validation on, reads the sandbox's answers.

An independent client: if the sandbox's bodies, events or errors drift from the API's shape,
the SDK's generated types refuse them here. The sandbox is the strict (404 for unknown
models) OpenAI imitation on a real loopback port.
"""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
    ImagesResponse,
)
from PIL import Image

from mcp_images.pricing.tokens import gpt_image_2_output_tokens
from mcp_images.sandbox import SandboxServer

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
async def sdk(strict_sandbox: SandboxServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(
        base_url=strict_sandbox.base_url, api_key="sk-test", max_retries=0, timeout=20, _strict_response_validation=True
    )
    async with client:
        yield client


def png(size: tuple[int, int], mode: str = "RGB", colour: Any = "red") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, "PNG")
    return out.getvalue()


def picture(result: ImagesResponse, index: int = 0) -> Image.Image:
    assert result.data is not None
    b64 = result.data[index].b64_json
    assert b64 is not None
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def frame_count(img: Image.Image) -> int:
    return getattr(img, "n_frames", 1)


def first_bytes(result: ImagesResponse) -> bytes:
    assert result.data is not None and result.data[0].b64_json is not None
    return base64.b64decode(result.data[0].b64_json)


PHOTO = ("photo.png", png((1024, 1024)), "image/png")
OTHER = ("other.png", png((512, 512), colour="blue"), "image/png")
CLEAR = ("overlay.png", png((1024, 1024), "RGBA", (0, 0, 0, 0)), "image/png")


# --- generations -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["gpt-image-2", "gpt-image-2.5-sunburst", "gpt-image-2.5-flare-2026-09-08"])
@pytest.mark.anyio
async def test_a_generation_parses_into_images_response_with_usage(sdk: openai.AsyncOpenAI, model: str) -> None:
    quality = "high" if model == "gpt-image-2" else "xhigh"
    result = await sdk.images.generate(model=model, prompt="a red fox", quality=quality, size="1024x1024")
    assert isinstance(result, ImagesResponse)
    assert (result.quality, result.output_format, result.size) == (quality, "png", "1024x1024")
    assert picture(result).size == (1024, 1024)
    assert result.usage is not None and result.usage.output_tokens_details is not None
    # Models without a price entry count like gpt-image-2; xhigh counts as high.
    assert result.usage.output_tokens == gpt_image_2_output_tokens(1024, 1024, "high")


@pytest.mark.anyio
async def test_the_newest_models_generate_with_complexity(sdk: openai.AsyncOpenAI) -> None:
    for model in ("gpt-image-2.6-sunburst", "gpt-image-2.6-flare"):
        result = await sdk.images.generate(model=model, prompt="a kite", complexity="high", quality="low")
        assert result.usage is not None and result.usage.total_tokens > 0


@pytest.mark.anyio
async def test_a_gif_is_an_animated_gif_with_the_asked_frames_and_delay(sdk: openai.AsyncOpenAI) -> None:
    result = await sdk.images.generate(
        model="gpt-image-2", prompt="a bouncing ball", output_format="gif", size="1024x640",
        frame_count=4, frame_duration_ms=123, quality="low",
    )  # fmt: skip
    img = picture(result)
    assert result.output_format == "gif"
    assert (img.format, img.size, frame_count(img)) == ("GIF", (1024, 640), 4)
    assert img.info["duration"] == 120  # rounded to 10 ms
    frames = []
    for i in range(frame_count(img)):
        img.seek(i)
        frames.append(img.convert("RGB").tobytes())
    assert len(set(frames)) == 4  # every frame differs: it moves


@pytest.mark.anyio
async def test_a_gif_without_frame_settings_has_nine_frames_of_200_ms(sdk: openai.AsyncOpenAI) -> None:
    result = await sdk.images.generate(
        model="gpt-image-2.5-flare", prompt="rain", output_format="gif", size="1024x640", quality="low"
    )
    img = picture(result)
    assert (frame_count(img), img.info["duration"]) == (9, 200)


@pytest.mark.anyio
async def test_an_svg_is_an_escaped_svg_document_with_its_own_usage(sdk: openai.AsyncOpenAI) -> None:
    prompt = 'a logo for "Fish & Chips" <tasty>'
    result = await sdk.images.generate(
        model="gpt-image-2.5-sunburst", prompt=prompt, output_format="svg", size="1536x1024",
        svg={"model": "gpt-5.5", "reasoning": {"effort": "low"}},
    )  # fmt: skip
    root = ET.fromstring(first_bytes(result))
    assert root.tag == f"{SVG_NS}svg"
    assert (root.get("width"), root.get("height"), root.get("viewBox")) == ("1536", "1024", "0 0 1536 1024")
    assert root.find(f"{SVG_NS}rect") is not None
    assert prompt in "".join(root.itertext())
    assert result.output_format == "svg"
    assert result.svg_usage is not None and result.svg_usage.model == "gpt-5.5"
    usage = result.svg_usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert 0 < usage.reasoning_tokens < usage.output_tokens


@pytest.mark.anyio
async def test_the_response_echoes_the_effective_safety_identifier(sdk: openai.AsyncOpenAI) -> None:
    both = await sdk.images.generate(model="gpt-image-2", prompt="x", safety_identifier="hash-1", user="old-id")
    only_user = await sdk.images.generate(model="gpt-image-2", prompt="x", user="old-id")
    empty = await sdk.images.generate(model="gpt-image-2", prompt="x", safety_identifier="", user="old-id")
    neither = await sdk.images.generate(model="gpt-image-2", prompt="x")
    assert (both.safety_identifier, only_user.safety_identifier) == ("hash-1", "old-id")
    assert (empty.safety_identifier, neither.safety_identifier) == ("old-id", None)


# --- edits -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "fields"),
    [
        ({"image": PHOTO}, ["image"]),
        ({"image": [PHOTO, OTHER]}, ["image[]", "image[]"]),
        ({"image": PHOTO, "mask": CLEAR}, ["image", "mask"]),
        ({"image": PHOTO, "markup": CLEAR}, ["image", "markup"]),
    ],
)
@pytest.mark.anyio
async def test_an_edit_with_images_a_mask_or_markup_parses(
    sdk: openai.AsyncOpenAI, strict_sandbox: SandboxServer, files: dict[str, Any], fields: list[str]
) -> None:
    result = await sdk.images.edit(model="gpt-image-2.5-sunburst", prompt="add a hat", size="1536x1024", **files)
    assert picture(result).size == (1536, 1024)
    assert result.usage is not None and result.usage.input_tokens_details.image_tokens > 0
    assert [u.field for u in strict_sandbox.state.image_requests()[-1].uploads] == fields


@pytest.mark.anyio
async def test_an_svg_edit_sends_svg_as_bracket_fields_and_they_are_understood(
    sdk: openai.AsyncOpenAI, strict_sandbox: SandboxServer
) -> None:
    result = await sdk.images.edit(
        model="gpt-image-2", image=PHOTO, prompt="trace it", output_format="svg",
        svg={"model": "svg-author-1", "reasoning": {"effort": "max"}},
    )  # fmt: skip
    fields = strict_sandbox.state.image_requests()[-1].fields
    assert (fields["svg[model]"], fields["svg[reasoning][effort]"]) == ("svg-author-1", "max")
    assert result.svg_usage is not None and result.svg_usage.model == "svg-author-1"
    assert ET.fromstring(first_bytes(result)).tag == f"{SVG_NS}svg"


# --- streams -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_generation_stream_yields_typed_partial_then_completed_events(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.images.generate(
        model="gpt-image-2.5-sunburst", prompt="x", stream=True, partial_images=2, quality="max", user="u-7"
    )
    seen = [event async for event in stream]
    assert [type(e) for e in seen] == [ImageGenPartialImageEvent, ImageGenPartialImageEvent, ImageGenCompletedEvent]
    partials = [e for e in seen if isinstance(e, ImageGenPartialImageEvent)]
    assert [p.partial_image_index for p in partials] == [0, 1]
    done = seen[-1]
    assert isinstance(done, ImageGenCompletedEvent)
    assert (done.quality, done.safety_identifier) == ("max", "u-7")
    assert done.usage.output_tokens > 0


@pytest.mark.anyio
async def test_an_edit_stream_yields_typed_edit_events(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.images.edit(model="gpt-image-2", image=PHOTO, prompt="x", stream=True, partial_images=1)
    seen = [event async for event in stream]
    assert [type(e) for e in seen] == [ImageEditPartialImageEvent, ImageEditCompletedEvent]


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "param", "code"),
    [
        ({"model": "gpt-image-2", "quality": "xhigh"}, "quality", "invalid_value"),
        ({"model": "gpt-image-2", "output_format": "gif", "stream": True}, "stream", "invalid_value"),
        ({"model": "gpt-image-2", "output_format": "gif", "frame_count": 17}, "frame_count", "integer_above_max_value"),
        ({"model": "gpt-image-2", "frame_count": 4}, "frame_count", "invalid_value"),
        ({"model": "gpt-image-2", "output_format": "svg", "n": 2}, "n", "invalid_value"),
        ({"model": "gpt-image-2", "output_format": "svg", "svg": {"reasoning": {"effort": "low"}}}, "svg.model",
         "missing_required_parameter"),
        ({"model": "gpt-image-2", "output_format": "svg", "svg": {"model": "m", "reasoning": {"effort": "huge"}}},
         "svg.reasoning.effort", "invalid_value"),
        ({"model": "gpt-image-2", "svg": {"model": "m"}}, "svg", "invalid_value"),
        ({"model": "gpt-image-2", "complexity": "extreme"}, "complexity", "invalid_value"),
        ({"model": "gpt-image-1.5", "complexity": "low"}, "complexity", "invalid_value"),
    ],
)  # fmt: skip
@pytest.mark.anyio
async def test_a_refused_generation_raises_bad_request_naming_the_param(
    sdk: openai.AsyncOpenAI, call: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.generate(prompt="x", **call)
    assert (caught.value.status_code, caught.value.param, caught.value.code) == (400, param, code)


@pytest.mark.parametrize(
    ("model", "files", "param"),
    [
        ("gpt-image-2.5-sunburst", {"mask": CLEAR, "markup": CLEAR}, "markup"),
        ("gpt-image-2", {"markup": CLEAR}, "markup"),
        ("gpt-image-2.5-sunburst", {"markup": ("m.png", png((512, 512), "RGBA"), "image/png")}, "markup"),
        ("gpt-image-2.5-sunburst", {"markup": ("m.png", png((1024, 1024)), "image/png")}, "markup"),
    ],
)
@pytest.mark.anyio
async def test_a_refused_edit_raises_bad_request_naming_the_file(
    sdk: openai.AsyncOpenAI, model: str, files: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.edit(model=model, image=PHOTO, prompt="x", **files)
    assert caught.value.param == param


@pytest.mark.anyio
async def test_a_gif_edit_with_a_mask_is_refused(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.edit(model="gpt-image-2", image=PHOTO, mask=CLEAR, prompt="x", output_format="gif")
    assert caught.value.param == "mask"


@pytest.mark.anyio
async def test_an_unknown_model_raises_not_found_but_an_aggregator_serves_it(
    sdk: openai.AsyncOpenAI, strict_sandbox: SandboxServer
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.images.generate(model="gpt-image-3", prompt="x")
    assert (caught.value.status_code, caught.value.code, caught.value.param) == (404, "model_not_found", None)
    assert caught.value.body == {
        "message": "The model `gpt-image-3` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }
    aggregator = sdk.with_options(base_url=f"{strict_sandbox.origin}/yescale/v1")
    served = await aggregator.images.generate(model="gpt-image-3", prompt="x", size="1024x1024")
    assert picture(served).size == (1024, 1024)


@pytest.mark.anyio
async def test_a_refused_key_raises_authentication_error(strict_sandbox: SandboxServer) -> None:
    async with openai.AsyncOpenAI(
        base_url=strict_sandbox.base_url, api_key="sk-sandbox-bad", max_retries=0, _strict_response_validation=True
    ) as client:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.images.generate(model="gpt-image-2", prompt="x")
    assert caught.value.code == "invalid_api_key"
