"""The image studio in a real browser: headless Chromium (the system's) driven by Playwright.

The test host (`tests/studio_host`) serves a page on 127.0.0.1 that embeds the studio in a
sandboxed iframe, speaks the MCP Apps postMessage protocol with it and relays its MCP requests
to a real mcp-images server backed by the sandbox upstream. Screenshots go to
``tests/artifacts/`` (gitignored).
"""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from mcp_images.config import Settings

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
WAIT_MS = 10_000  # the longest any one step may take before the test fails

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs the system Chromium (.ci/run installs it)")


@asynccontextmanager
async def studio_page(settings: Settings, *, width: int, theme: str = "light") -> AsyncIterator[tuple[Any, Any]]:
    """A Chromium page on the test host, over a server that negotiated MCP Apps; and the host."""
    from mcp import Client
    from mcp.client import advertise
    from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
    from playwright.async_api import async_playwright

    from mcp_images.server.build import create_server
    from tests.studio_host.relay import serve_host

    apps = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
    async with (
        Client(create_server(settings), extensions=[apps]) as client,
        serve_host(client) as host,
        async_playwright() as pw,
    ):
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": 1400})
            page.set_default_timeout(WAIT_MS)
            await page.goto(host.origin + "/")
            await page.evaluate("theme => setTheme(theme)", theme)
            yield page, host
        finally:
            await browser.close()


async def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"studio-{name}.png"))  # the viewport: tall enough


def decode_data_uri(uri: str) -> Image.Image:
    head, _, data = uri.partition(",")
    assert head == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(data)))


async def paint_left_half(page: Any, canvas: Any) -> dict[str, float]:
    """Drag the brush across the left half of the canvas; returns the canvas box on the page."""
    box = await canvas.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] * 0.5
    await page.mouse.move(box["x"] + box["width"] * 0.1, y)
    await page.mouse.down()
    for step in range(1, 9):
        await page.mouse.move(box["x"] + box["width"] * (0.1 + 0.04 * step), y, steps=2)
    await page.mouse.up()
    return box


@pytest.mark.anyio
async def test_a_mask_painted_in_the_studio_is_sent_as_an_alpha_png_of_the_images_size_and_the_edit_opens(
    settings: Settings, sandbox: Any
) -> None:
    from playwright.async_api import expect

    async with studio_page(settings, width=900) as (page, host):
        await page.evaluate("runTool('generate_image', {prompt: 'a red fox in snow', n: 2, size: '1024x1024'})")
        app = page.frame_locator("#app")
        await expect(app.get_by_role("button", name="Pick Image 2")).to_be_visible()
        await expect(app.locator("#facts")).to_contain_text("a red fox in snow")
        await expect(app.locator(".card .cap").first).to_contain_text("1024\u00d71024 png")  # as the card shows it
        await shot(page, "grid")

        await app.get_by_role("button", name="Pick Image 1").click()
        await app.get_by_role("button", name="Pick Image 2").click()
        await app.get_by_role("button", name="Compare picked").click()
        await expect(app.locator("#compare figure")).to_have_count(2)
        await app.get_by_role("button", name="Close compare").click()

        await app.get_by_role("button", name="Edit Image 1").click()
        canvas = app.locator("#paint")
        await expect(canvas).to_be_visible()
        await paint_left_half(page, canvas)
        await app.get_by_role("textbox", name="Instruction for the edit").fill("make the fox blue")
        await shot(page, "painted")
        await app.get_by_role("button", name="Send edit").click()
        await expect(app.locator("#confirm-text")).to_contain_text("Estimate: ")
        await app.get_by_role("button", name="Run").click()
        await expect(app.get_by_role("button", name="Result 2")).to_be_visible()
        await expect(app.get_by_role("button", name="Pick Image 1")).to_be_visible()
        await shot(page, "edited")

    [edit] = host.tool_calls("edit_image")
    assert edit["prompt"] == "make the fox blue"
    assert edit["image"].startswith("images://")
    mask = decode_data_uri(edit["mask"])
    assert mask.size == (1024, 1024)
    assert mask.mode == "RGBA"
    alpha = mask.getchannel("A")
    assert alpha.getpixel((300, 512)) == 0  # painted: transparent = the area to edit
    assert alpha.getpixel((900, 512)) == 255  # not painted: kept
    assert alpha.getpixel((300, 100)) == 255
    [estimate] = host.tool_calls("estimate_cost")
    assert estimate["mask"] == edit["mask"]  # the estimate was for the call that was then made
    upstream = sandbox.state.image_requests()[-1]
    assert upstream.path.endswith("/images/edits")
    [uploaded_mask] = [u for u in upstream.uploads if u.field == "mask"]
    assert uploaded_mask.size == len(base64.b64decode(edit["mask"].partition(",")[2]))


@pytest.mark.anyio
async def test_a_background_task_shows_its_progress_then_fills_in_and_the_studio_follows_a_dark_narrow_host(
    settings: Settings, sandbox: Any
) -> None:
    from playwright.async_api import expect

    async with studio_page(settings, width=360, theme="dark") as (page, host):
        await page.evaluate("runTool('generate_image', {prompt: 'a lighthouse', async: true})")
        app = page.frame_locator("#app")
        await expect(app.get_by_role("button", name="Pick Image 1")).to_be_visible()
        assert host.tool_calls("check_task"), "the studio collected the task through check_task"
        await shot(page, "dark-narrow")
        background = await app.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
        assert background == "rgb(24, 24, 27)"
        overflow = await app.locator("html").evaluate("e => e.scrollWidth - e.clientWidth")
        assert overflow <= 0, "nothing sticks out of a 360 px column"

        await page.evaluate("setTheme('light')")
        await expect(app.locator("body")).to_have_css("background-color", "rgb(255, 255, 255)")
        await app.get_by_role("tab", name="Recent").click()
        await expect(app.locator("#recent-grid .card")).to_have_count(1)
        assert host.tool_calls("studio_recent_images") == [{"offset": 0, "limit": 12}]


@pytest.mark.anyio
async def test_on_a_gpt_image_2_5_model_the_painting_can_go_as_markup_opaque_strokes_on_transparent(
    settings: Settings, sandbox: Any
) -> None:
    from playwright.async_api import expect

    async with studio_page(settings, width=700) as (page, host):
        args = "{prompt: 'a teapot', model: 'gpt-image-2.5-flare', size: '1024x1024'}"
        await page.evaluate(f"runTool('generate_image', {args})")
        app = page.frame_locator("#app")
        await app.get_by_role("button", name="Edit Image 1").click()
        await app.get_by_label("Markup").check()
        await paint_left_half(page, app.locator("#paint"))
        await app.get_by_role("textbox", name="Instruction for the edit").fill("add a lid here")
        await app.get_by_role("button", name="Send edit").click()
        await app.get_by_role("button", name="Run").click()
        await expect(app.get_by_role("button", name="Result 2")).to_be_visible()

    [edit] = host.tool_calls("edit_image")
    assert "mask" not in edit
    assert edit["model"] == "gpt-image-2.5-flare"
    markup = decode_data_uri(edit["markup"])
    assert markup.size == (1024, 1024)
    alpha = markup.convert("RGBA").getchannel("A")
    assert alpha.getpixel((300, 512)) == 255  # a stroke: opaque
    assert alpha.getpixel((900, 512)) == 0  # elsewhere: transparent
    assert [u.field for u in sandbox.state.image_requests()[-1].uploads].count("markup") == 1
