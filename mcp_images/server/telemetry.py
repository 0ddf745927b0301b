"""OpenTelemetry: off unless an OTLP exporter is configured, and then traces and metrics over OTLP/HTTP.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set and the
``opentelemetry-sdk`` and ``opentelemetry-exporter-otlp-proto-http`` packages are installed
(``pip install 'mcp-images[otel]'``); off otherwise, with nothing imported, so start-up pays
nothing. The standard ``OTEL_*`` variables (service name, headers, sampling) apply.

What is recorded:

- the SDK's own MCP server spans (``tools/call generate_image``, ...), which it emits through
  the OpenTelemetry API as soon as a tracer provider is installed;
- one client span per upstream HTTP request (`upstream_span`, from the pooled client's
  transport): ``POST`` with ``http.request.method``, ``server.address``, ``url.path`` (never the
  query or headers: no key), ``http.response.status_code``, ``gen_ai.provider.name``;
- metrics: ``mcp.server.operation.duration`` (s, by ``mcp.method.name``, ``gen_ai.tool.name``,
  ``error.type``), ``gen_ai.client.operation.duration`` (s, upstream requests),
  ``mcp_images.calls`` (by tool and status) and ``mcp_images.cost`` (USD, by tool).
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def telemetry_from_env(provider_name: str | None = None) -> Telemetry | None:
    """A `Telemetry` when an exporter is configured and the packages are there, else None."""
    if not any(os.environ.get(v) for v in ENDPOINT_VARIABLES):
        return None
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter  # pyright: ignore[reportMissingImports]
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # pyright: ignore[reportMissingImports]
        from opentelemetry.sdk.metrics import MeterProvider  # pyright: ignore[reportMissingImports]
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader  # pyright: ignore[reportMissingImports]
        from opentelemetry.sdk.resources import Resource  # pyright: ignore[reportMissingImports]
        from opentelemetry.sdk.trace import TracerProvider  # pyright: ignore[reportMissingImports]
        from opentelemetry.sdk.trace.export import BatchSpanProcessor  # pyright: ignore[reportMissingImports]
    except ImportError:
        logger.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry's SDK is not installed: "
            "pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http (telemetry stays off)"
        )
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "mcp-images")})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(tracer_provider)
    meter_provider = MeterProvider(
        resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())]
    )
    metrics.set_meter_provider(meter_provider)
    logger.info(
        "OpenTelemetry on: traces and metrics to %s",
        next(os.environ[v] for v in ENDPOINT_VARIABLES if os.environ.get(v)),
    )
    return Telemetry(trace.get_tracer("mcp_images"), metrics.get_meter("mcp_images"), provider_name)


class _UpstreamSpan:
    def __init__(self, telemetry: Telemetry, span: Any, attributes: dict[str, Any]) -> None:
        self._t, self._span, self._attributes = telemetry, span, attributes
        import time

        self._started = time.perf_counter()

    def _end(self, attributes: dict[str, Any]) -> None:
        import time

        self._span.set_attributes(attributes)
        self._span.end()
        self._t.upstream_duration.record(time.perf_counter() - self._started, {**self._attributes, **attributes})

    def finish(self, status: int) -> None:
        from opentelemetry.trace import StatusCode

        extra: dict[str, Any] = {"http.response.status_code": status}
        if status >= 400:
            extra["error.type"] = str(status)
            self._span.set_status(StatusCode.ERROR)
        self._end(extra)

    def fail(self, exc: BaseException) -> None:
        from opentelemetry.trace import StatusCode

        self._span.set_status(StatusCode.ERROR)
        self._end({"error.type": type(exc).__qualname__})


class Telemetry:
    """The instruments; made by `telemetry_from_env` only."""

    def __init__(self, tracer: Any, meter: Any, provider_name: str | None) -> None:
        self.tracer = tracer
        self.provider_name = provider_name
        self.call_duration = meter.create_histogram("mcp.server.operation.duration", unit="s")
        self.upstream_duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
        self.calls = meter.create_counter("mcp_images.calls", unit="{call}")
        self.cost = meter.create_counter("mcp_images.cost", unit="USD")

    def upstream_span(self, request: Any) -> _UpstreamSpan:
        from opentelemetry.trace import SpanKind

        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "server.address": request.url.host,
            "url.path": request.url.path,
        }
        if self.provider_name:
            attributes["gen_ai.provider.name"] = self.provider_name
        span = self.tracer.start_span(request.method, kind=SpanKind.CLIENT, attributes=attributes)
        return _UpstreamSpan(self, span, attributes)

    def record_call(self, *, tool: str, status: str, seconds: float, cost_usd: float | None) -> None:
        attributes = {"mcp.method.name": "tools/call", "gen_ai.tool.name": tool}
        error = {"error.type": status} if status in ("error", "busy") else {}
        self.call_duration.record(seconds, {**attributes, **error})
        self.calls.add(1, {"gen_ai.tool.name": tool, "status": status})
        if cost_usd:
            self.cost.add(cost_usd, {"gen_ai.tool.name": tool})
