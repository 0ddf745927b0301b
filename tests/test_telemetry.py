"""OpenTelemetry (issue 11): a client span per upstream request, call metrics, and nothing when off.

The server's whole HTTP app against the loopback sandbox (`tests.test_http_auth.team_server`),
with `Telemetry.for_test` in place of `telemetry_from_env`: spans go to the SDK's in-memory
exporter and metrics to its in-memory reader; nothing leaves the machine. The MCP SDK's own
spans need the global tracer provider, which this module sets once, to a processor that
forwards to the running test's exporter (and drops spans between tests).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from mcp_images.server import telemetry as telemetry_module
from mcp_images.server.telemetry import Telemetry
from mcp_images.server.upstream_limit import LimitedTransport
from tests.conftest import TEST_KEY
from tests.test_http_auth import ALICE, TOKENS, client_for, team_server

PROMPT = "a red fox in fresh snow, secret-prompt-words"


class _Forward(SpanProcessor):
    """The global provider's processor: finished spans to the current test's exporter, if any."""

    target: InMemorySpanExporter | None = None

    def on_end(self, span: ReadableSpan) -> None:
        if self.target is not None:
            self.target.export([span])


_FORWARD = _Forward()


def _global_provider() -> None:
    """The MCP SDK's spans reach a test's exporter only through the global provider (set once)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_FORWARD)
        trace.set_tracer_provider(provider)


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    """Telemetry on, in memory: `build_http_app` gets `Telemetry.for_test` from `telemetry_from_env`."""
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    _global_provider()
    _FORWARD.target = spans

    def from_env(provider_name: str | None = None) -> Telemetry:
        return Telemetry.for_test(spans, reader, provider_name)

    monkeypatch.setattr(telemetry_module, "telemetry_from_env", from_env)
    try:
        yield spans, reader
    finally:
        _FORWARD.target = None


def _metrics(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    """Metric name -> its data points, from one collection."""
    data = reader.get_metrics_data()
    found: dict[str, list[Any]] = {}
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found.setdefault(metric.name, []).extend(metric.data.data_points)
    return found


def _all_attribute_text(spans: Any, points: dict[str, list[Any]]) -> str:
    texts = [json.dumps(dict(s.attributes or {}), default=str) + s.name for s in spans]
    texts += [json.dumps(dict(p.attributes), default=str) for ps in points.values() for p in ps]
    return "\n".join(texts)


async def _one_call(tmp_path: Path, sandbox: Any, prompt: str) -> Any:
    async with (
        team_server(tmp_path, sandbox.base_url, http_tokens=TOKENS) as served,
        client_for(served.url, ALICE) as client,
    ):
        return await client.call_tool("generate_image", {"prompt": prompt, "quality": "low"})


@pytest.mark.anyio
async def test_a_generate_call_over_http_has_a_client_span_for_its_upstream_request_under_the_sdks_tool_span(
    tmp_path: Path, sandbox: Any, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    spans, reader = otel
    made = await _one_call(tmp_path, sandbox, PROMPT)
    assert not made.is_error
    finished = spans.get_finished_spans()
    client = [s for s in finished if s.kind == SpanKind.CLIENT and s.name.startswith("generate_content")]
    assert len(client) == 1
    span = client[0]
    model = made.structured_content["model"]  # type: ignore[index]
    assert span.name == f"generate_content {model}"
    attributes = dict(span.attributes or {})
    port = int(sandbox.base_url.split(":")[2].split("/")[0])
    assert attributes["gen_ai.operation.name"] == "generate_content"
    assert attributes["gen_ai.request.model"] == model
    assert attributes["gen_ai.provider.name"] == "compatible"
    assert attributes["gen_ai.output.type"] == "image"
    assert attributes["server.address"] == "127.0.0.1" and attributes["server.port"] == port
    assert attributes["http.request.method"] == "POST"
    assert attributes["http.response.status_code"] == 200
    assert str(attributes["url.path"]).endswith("/images/generations")
    assert "error.type" not in attributes and span.status.status_code != StatusCode.ERROR
    tool = next(s for s in finished if s.name == "tools/call generate_image")
    assert tool.kind == SpanKind.SERVER
    assert span.parent is not None and tool.context is not None
    assert span.parent.span_id == tool.context.span_id
    usage = made.structured_content["usage"]  # type: ignore[index]
    tool_attributes = dict(tool.attributes or {})
    assert tool_attributes["gen_ai.request.model"] == model
    assert tool_attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"]
    assert tool_attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    text = _all_attribute_text(finished, _metrics(reader))
    for secret in (TEST_KEY, ALICE, PROMPT, "secret-prompt-words", "Bearer"):
        assert secret not in text


@pytest.mark.anyio
async def test_the_metrics_show_one_call_its_latency_its_cost_and_its_tokens(
    tmp_path: Path, sandbox: Any, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    _, reader = otel
    made = await _one_call(tmp_path, sandbox, "a fox")
    cost = made.structured_content["cost"]["total_usd"]  # type: ignore[index]
    model = made.structured_content["model"]  # type: ignore[index]
    usage = made.structured_content["usage"]  # type: ignore[index]
    points = _metrics(reader)
    (calls,) = points["mcp_images.calls"]
    assert calls.value == 1
    assert dict(calls.attributes) == {"gen_ai.tool.name": "generate_image", "mcp_images.call.status": "ok"}
    (latency,) = points["mcp.server.operation.duration"]
    assert latency.count == 1 and latency.sum > 0
    assert latency.attributes["gen_ai.tool.name"] == "generate_image"
    assert latency.attributes["mcp.method.name"] == "tools/call"
    assert "error.type" not in latency.attributes
    (spent,) = points["mcp_images.cost"]
    assert spent.value == pytest.approx(cost) and cost > 0
    assert spent.attributes["gen_ai.request.model"] == model
    (upstream,) = points["gen_ai.client.operation.duration"]
    assert upstream.count == 1 and upstream.attributes["gen_ai.request.model"] == model
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {"input": usage["input_tokens"], "output": usage["output_tokens"]}
    assert "mcp_images.errors" not in points


@pytest.mark.anyio
async def test_a_failing_upstream_records_its_error_type_on_the_span_and_in_the_metrics(
    tmp_path: Path, sandbox: Any, otel: tuple[InMemorySpanExporter, InMemoryMetricReader]
) -> None:
    spans, reader = otel
    failed = await _one_call(tmp_path, sandbox, "a fox [sandbox:500]")
    assert failed.is_error
    code = failed.structured_content["error"]["type"]  # type: ignore[index]
    client = [s for s in spans.get_finished_spans() if s.name.startswith("generate_content")]
    assert client  # one per attempt (the retries too)
    for span in client:
        assert span.attributes is not None
        assert span.attributes["http.response.status_code"] == 500
        assert span.attributes["error.type"] == "500"
        assert span.status.status_code == StatusCode.ERROR
    points = _metrics(reader)
    (calls,) = points["mcp_images.calls"]
    assert calls.value == 1 and calls.attributes["mcp_images.call.status"] == "error"
    (errors,) = points["mcp_images.errors"]
    assert errors.value == 1 and dict(errors.attributes) == {"gen_ai.tool.name": "generate_image", "error.type": code}
    (latency,) = points["mcp.server.operation.duration"]
    assert latency.attributes["error.type"] == code
    upstream = points["gen_ai.client.operation.duration"]
    assert sum(p.count for p in upstream) == len(client)
    assert all(p.attributes["error.type"] == "500" for p in upstream)
    assert "mcp_images.cost" not in points and "gen_ai.client.token.usage" not in points
    text = _all_attribute_text(spans.get_finished_spans(), points)
    assert TEST_KEY not in text and ALICE not in text


CHILD = """
import json, sys
import mcp.server.lowlevel  # the MCP SDK, with the OpenTelemetry API it imports itself
from mcp_images.config import Settings
from mcp_images.server.build import create_server
from mcp_images.server.http_app import build_http_app

def otel():
    return {m for m in sys.modules if m.split(".")[0] == "opentelemetry"}

before = otel()
server = create_server(Settings(api_key="sk-test", data_dir=sys.argv[1], output_dir=sys.argv[2]), transport="http")
build_http_app(server, host="127.0.0.1")
after = otel()
print(json.dumps({"off": server.runtime.telemetry is None, "sdk_brings": sorted(before), "added": sorted(after - before)}))
"""


def test_with_no_exporter_configured_telemetry_is_off_and_imports_no_opentelemetry_module_of_its_own(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MCP_IMAGES_"))}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "data"), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["off"] is True
    # The MCP SDK imports the small OpenTelemetry API (trace, context, propagate) whatever we do;
    # with telemetry off, creating and building the server adds no OpenTelemetry module to that.
    assert seen["added"] == []
    assert not [m for m in seen["sdk_brings"] if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))]


class _Refused(httpx2.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)


@pytest.mark.anyio
async def test_an_upstream_request_that_gets_no_answer_ends_its_span_with_the_errors_class_and_frees_its_slot() -> None:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    slots = anyio.CapacityLimiter(1)
    transport = LimitedTransport(_Refused(), slots, telemetry=Telemetry.for_test(spans, reader, "openai"))
    async with httpx2.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx2.ConnectError):
            await http.post("https://api.example.test/v1/images/edits", json={"model": "gpt-image-2", "prompt": "x"})
    (span,) = spans.get_finished_spans()
    assert span.name == "generate_content gpt-image-2"
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ConnectError"
    assert span.attributes["gen_ai.provider.name"] == "openai"
    assert span.attributes["server.address"] == "api.example.test" and span.attributes["server.port"] == 443
    assert "http.response.status_code" not in span.attributes
    assert span.status.status_code == StatusCode.ERROR
    assert slots.borrowed_tokens == 0
    (upstream,) = _metrics(reader)["gen_ai.client.operation.duration"]
    assert upstream.attributes["error.type"] == "ConnectError"
