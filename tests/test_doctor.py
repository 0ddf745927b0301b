"""``mcp-images doctor``: each check says OK or what to fix; a failure exits 1; the key is never shown."""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path
from typing import Any

import anyio.to_thread
import httpx2
import pytest

from mcp_images.cli import build_parser, flag_names
from mcp_images.console.display import Reporter
from mcp_images.console.doctor import run_doctor
from tests.conftest import TEST_KEY


@pytest.fixture
def doctor_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith(("MCP_IMAGES_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MCP_IMAGES_API_KEY", TEST_KEY)
    monkeypatch.setenv("MCP_IMAGES_PROVIDER", "compatible")
    monkeypatch.setenv("MCP_IMAGES_OUTPUT_DIR", str(tmp_path / "pictures" / "out"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def doctor(*args: str, transport: httpx2.AsyncBaseTransport | None = None) -> tuple[int, dict[str, Any], str]:
    """Run the doctor with ``--json``: (exit code, {check name: check}, everything printed)."""
    parser = build_parser()
    ns = parser.parse_args(["doctor", "--json", *args])
    out = io.StringIO()
    code = run_doctor(ns, flag_names(parser), Reporter("json", out=out, err=out), transport=transport)
    report = json.loads(out.getvalue())
    assert report["ok"] == (code == 0)
    return code, {c["name"]: c for c in report["checks"]}, out.getvalue()


def answering(status: int, body: Any = None) -> httpx2.MockTransport:
    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.method == "GET" and request.url.path.endswith("/models")
        assert request.headers["authorization"] == f"Bearer {TEST_KEY}"
        return httpx2.Response(status, json=body if body is not None else {"error": {"message": "no"}})

    return httpx2.MockTransport(handler)


@pytest.mark.anyio
async def test_a_setup_against_the_sandbox_passes_and_creates_no_folder(doctor_env: Path, sandbox: Any) -> None:
    code, checks, printed = await anyio.to_thread.run_sync(lambda: doctor("--base-url", sandbox.base_url))
    assert code == 0
    assert checks["upstream"]["status"] == "ok"  # the sandbox lists its models and takes the key
    assert checks["output folder"]["status"] == "ok" and "does not exist yet" in checks["output folder"]["detail"]
    assert checks["task database"]["status"] == "ok"
    assert TEST_KEY not in printed
    assert not (doctor_env / "pictures").exists()


def test_a_key_the_upstream_refuses_fails_with_what_to_fix(doctor_env: Path) -> None:
    code, checks, printed = doctor("--base-url", "https://images.example.com/v1", transport=answering(401))
    assert code == 1
    assert checks["upstream"]["status"] == "fail" and checks["upstream"]["detail"].startswith("key refused")
    assert TEST_KEY not in printed


def test_an_upstream_that_lists_models_with_the_key_is_ok(doctor_env: Path) -> None:
    body = {"object": "list", "data": [{"id": "gpt-image-2"}, {"id": "dall-e-3"}]}
    code, checks, _ = doctor("--base-url", "https://images.example.com/v1", transport=answering(200, body))
    assert code == 0
    assert checks["upstream"] == {
        "name": "upstream",
        "status": "ok",
        "detail": "https://images.example.com/v1/models answered 200 with the key (2 models listed)",
    }


def test_an_unreachable_upstream_fails(doctor_env: Path) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, checks, _ = doctor("--base-url", f"http://127.0.0.1:{port}/v1")
    assert code == 1
    assert checks["upstream"]["status"] == "fail" and "cannot reach" in checks["upstream"]["detail"]


def test_no_key_fails_and_skips_the_upstream(doctor_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCP_IMAGES_API_KEY")
    code, checks, _ = doctor("--base-url", "https://images.example.com/v1")
    assert code == 1
    assert checks["api key"]["status"] == "fail" and "MCP_IMAGES_API_KEY" in checks["api key"]["detail"]
    assert checks["upstream"]["status"] == "skip"


def test_an_output_folder_below_a_file_fails(doctor_env: Path) -> None:
    (doctor_env / "blocker").write_text("not a folder")
    args = ("--base-url", "https://images.example.com/v1", "--output-dir", str(doctor_env / "blocker" / "out"))
    code, checks, _ = doctor(*args, transport=answering(200, {"data": []}))
    assert code == 1
    assert checks["output folder"]["status"] == "fail" and "is a file" in checks["output folder"]["detail"]


def test_a_bad_setting_fails_first_and_names_its_variable(doctor_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_IMAGES_TIMEOUT", "soon")
    code, checks, _ = doctor()
    assert code == 1
    assert list(checks) == ["settings"]
    assert "MCP_IMAGES_TIMEOUT" in checks["settings"]["detail"]
