"""OpenTelemetry: off unless an OTLP exporter is configured, and then traces and metrics over OTLP/HTTP.

On when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``)
is set, ``OTEL_SDK_DISABLED`` is not ``true``, and the ``opentelemetry-sdk`` and
``opentelemetry-exporter-otlp-proto-http`` packages are installed (``pip install
'mcp-images[otel]'``); off otherwise, with nothing of the SDK imported, so start-up pays nothing
(the MCP SDK itself imports the small OpenTelemetry API, whose calls do nothing until a provider
is installed). The standard ``OTEL_*`` variables (service name, resource, headers, sampling) apply.

What is recorded, after the GenAI and MCP semantic conventions:

- the MCP SDK's own server spans (``tools/call generate_image``, ...), which it emits through the
  OpenTelemetry API once `telemetry_from_env` installs the tracer provider; a finished call adds
  ``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens`` and
  ``mcp_images.cost_usd`` to its span;
- one CLIENT span per upstream HTTP request (`Telemetry.upstream_span`, from the pooled client's
  transport, `server.upstream_limit`), a child of the call's span. An image request
  (``.../images/generations`` or ``.../images/edits``) is ``generate_content {model}`` with
  ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.output.type``; any other (a poll, a result download) is just its method. Both carry
  ``http.request.method``, ``server.address``, ``server.port``, ``http.response.status_code``
  and ``error.type`` on failure; image requests also ``url.path``. Never the query, headers,
  body, prompt, key or image bytes;
- metrics: ``gen_ai.client.operation.duration`` (s, per upstream image request),
  ``gen_ai.client.token.usage`` (``{token}``, by ``gen_ai.token.type`` and model),
  ``mcp.server.operation.duration`` (s, per tool call, by ``gen_ai.tool.name`` and
  ``error.type``), ``mcp_images.calls`` (by tool and ``mcp_images.call.status``),
  ``mcp_images.errors`` (by tool and ``error.type``) and ``mcp_images.cost`` (USD, by tool and
  model). The per-call ones are recorded where the access log writes its line (`access_log`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

logger = logging.getLogger(__name__)

ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
SCOPE = "mcp_images"
GENERATE = "generate_content"  # gen_ai.operation.name: multimodal content generation
IMAGE_PATHS = ("/images/generations", "/images/edits")
# gen_ai.provider.name's well-known values; any other provider is named as configured.
PROVIDER_NAMES = {"openai": "openai", "azure": "azure.ai.openai"}
# The bucket boundaries the GenAI conventions ask for.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
MODEL_SNIFF_BYTES = 1 << 20  # a JSON body larger than this is not parsed for its model name


def _configured(name: str) -> bool:
    return bool(os.environ.get(name))


def telemetry_from_env(provider_name: str | None = None) -> Telemetry | None:
    """A `Telemetry` when an exporter is configured and the packages are there, else None.

    Installs the global tracer and meter providers, so the MCP SDK's own spans are exported too.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not any(_configured(v) for v in ENDPOINT_VARIABLES):
        return None
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry's SDK is not installed: "
            "pip install 'mcp-images[otel]' (telemetry stays off)"
        )
        return None
    from mcp_images import __version__

    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "mcp-images", "service.version": __version__}
    )
    general = _configured("OTEL_EXPORTER_OTLP_ENDPOINT")
    tracer_provider = TracerProvider(resource=resource)
    if general or _configured("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    readers = []
    if general or _configured("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"):
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    where = next(os.environ[v] for v in ENDPOINT_VARIABLES if _configured(v))
    logger.info("OpenTelemetry on: traces and metrics over OTLP/HTTP to %s", where)
    return Telemetry(tracer_provider.get_tracer(SCOPE), meter_provider.get_meter(SCOPE), provider_name)


def _provider_attribute(provider_name: str | None) -> dict[str, Any]:
    if not provider_name:
        return {}
    return {"gen_ai.provider.name": PROVIDER_NAMES.get(provider_name, provider_name)}


def _server(url: Any) -> dict[str, Any]:
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    return {"server.address": url.host, **({"server.port": port} if port else {})}


def _request_model(request: Any) -> str | None:
    """The ``model`` field of an image request's form or JSON body (nothing else of it is kept)."""
    fields = getattr(request.stream, "fields", None)  # a multipart form (an edit)
    if isinstance(fields, list):
        for field in fields:
            value = getattr(field, "value", None)
            if getattr(field, "name", None) == "model" and isinstance(value, str | bytes):
                return value.decode() if isinstance(value, bytes) else value
    elif "json" in request.headers.get("content-type", ""):
        try:
            content = request.content
        except Exception:  # a streamed body: not read here
            content = b""
        if 0 < len(content) <= MODEL_SNIFF_BYTES:
            try:
                body = json.loads(content)
            except ValueError:
                body = None
            model = body.get("model") if isinstance(body, dict) else None
            if isinstance(model, str):
                return model
    parts = request.url.path.split("/")  # Azure names the deployment in the path
    if "deployments" in parts[:-1]:
        return parts[parts.index("deployments") + 1] or None
    return None


class UpstreamSpan:
    """One upstream request's span and duration; `finish` or `fail` ends it, once."""

    def __init__(self, telemetry: Telemetry, span: Any, metric_attributes: dict[str, Any] | None) -> None:
        self._t, self._span, self._metric_attributes = telemetry, span, metric_attributes
        self._started = time.perf_counter()
        self._ended = False

    def _end(self, attributes: dict[str, Any], *, error: str | None) -> None:
        if self._ended:
            return
        self._ended = True
        if error is not None:
            attributes["error.type"] = error
            self._span.set_status(self._t.status_error)
        self._span.set_attributes(attributes)
        self._span.end()
        if self._metric_attributes is not None:  # an image request: a GenAI operation
            extra = {"error.type": error} if error is not None else {}
            self._t.upstream_duration.record(time.perf_counter() - self._started, {**self._metric_attributes, **extra})

    def finish(self, status: int, exc: BaseException | None = None) -> None:
        """The answer came with ``status``; ``exc`` if reading its body then failed."""
        error = str(status) if status >= 400 else (type(exc).__qualname__ if exc is not None else None)
        self._end({"http.response.status_code": status}, error=error)

    def fail(self, exc: BaseException) -> None:
        """No answer: the request raised ``exc`` (a timeout, a refused connection, a cancel)."""
        self._end({}, error=type(exc).__qualname__)


class _NoSpan:
    """What `Telemetry.upstream_span` gives when its span could not be started."""

    def finish(self, status: int, exc: BaseException | None = None) -> None:
        pass

    def fail(self, exc: BaseException) -> None:
        pass


def _structured(result: Any) -> dict[str, Any]:
    structured = result.get("structuredContent") if isinstance(result, dict) else None
    if not isinstance(result, dict):
        structured = getattr(result, "structured_content", None)
    return structured if isinstance(structured, dict) else {}


class Telemetry:
    """The instruments; made by `telemetry_from_env` (or `for_test`)."""

    def __init__(self, tracer: Any, meter: Any, provider_name: str | None) -> None:
        from opentelemetry.trace import SpanKind, StatusCode

        self.tracer = tracer
        self.provider_name = provider_name
        self.provider = _provider_attribute(provider_name)
        self.client_kind = SpanKind.CLIENT
        self.status_error = StatusCode.ERROR
        self.upstream_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration (an upstream image request).",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.call_duration = meter.create_histogram(
            "mcp.server.operation.duration",
            unit="s",
            description="MCP request duration as observed on the server.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.calls = meter.create_counter("mcp_images.calls", unit="{call}", description="Tool calls, by status.")
        self.errors = meter.create_counter("mcp_images.errors", unit="{error}", description="Failed tool calls.")
        self.cost = meter.create_counter("mcp_images.cost", unit="USD", description="Estimated cost of tool calls.")

    @classmethod
    def for_test(cls, span_exporter: Any, metric_reader: Any, provider_name: str | None = None) -> Telemetry:
        """Instruments that write to ``span_exporter`` (at once) and ``metric_reader``; nothing global."""
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        meter_provider = MeterProvider(metric_readers=[metric_reader])
        return cls(tracer_provider.get_tracer(SCOPE), meter_provider.get_meter(SCOPE), provider_name)

    def upstream_span(self, request: Any) -> UpstreamSpan | _NoSpan:
        """A CLIENT span for ``request``, started now (see the module docstring for its attributes).

        Telemetry never breaks a request: a failure here is logged and the request goes on unseen.
        """
        try:
            return self._upstream_span(request)
        except Exception:
            logger.exception("telemetry: could not start the span of an upstream request")
            return _NoSpan()

    def _upstream_span(self, request: Any) -> UpstreamSpan:
        method = request.method
        attributes: dict[str, Any] = {"http.request.method": method, **_server(request.url)}
        path = request.url.path
        if method == "POST" and path.endswith(IMAGE_PATHS):
            model = _request_model(request)
            operation = {"gen_ai.operation.name": GENERATE, **self.provider}
            if model:
                operation["gen_ai.request.model"] = model
            metric_attributes: dict[str, Any] | None = {**operation, **_server(request.url)}
            attributes |= {**operation, "gen_ai.output.type": "image", "url.path": path}
            name = f"{GENERATE} {model}" if model else GENERATE
        else:
            metric_attributes, name = None, method
        span = self.tracer.start_span(name, kind=self.client_kind, attributes=attributes)
        return UpstreamSpan(self, span, metric_attributes)

    def record_call(
        self, *, tool: str, status: str, seconds: float, cost_usd: float | None, result: Any = None
    ) -> None:
        """One finished tool call, as the access log saw it (``result`` is read for its model,
        usage and error code only). A failure here is logged, never raised into the call."""
        try:
            self._record_call(tool, status, seconds, cost_usd, result)
        except Exception:
            logger.exception("telemetry: could not record a tool call")

    def _record_call(self, tool: str, status: str, seconds: float, cost_usd: float | None, result: Any) -> None:
        from opentelemetry import trace

        structured = _structured(result)
        error: str | None = None
        if status in ("error", "busy"):
            # The error's class (``UpstreamServerError``, ``Busy``, ...): few values, never its message.
            detail = structured.get("error")
            kind = detail.get("type") if isinstance(detail, dict) else None
            error = kind if isinstance(kind, str) and kind else ("tool_error" if result is not None else "_OTHER")
        tool_attributes = {"gen_ai.tool.name": tool}
        operation = {"mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool", **tool_attributes}
        self.call_duration.record(seconds, {**operation, **({"error.type": error} if error else {})})
        self.calls.add(1, {**tool_attributes, "mcp_images.call.status": status})
        if error:
            self.errors.add(1, {**tool_attributes, "error.type": error})
        model = structured.get("model")
        by_model = {**self.provider, **({"gen_ai.request.model": model} if isinstance(model, str) else {})}
        span_attributes: dict[str, Any] = {k: v for k, v in by_model.items() if k == "gen_ai.request.model"}
        if cost_usd:
            self.cost.add(cost_usd, {**tool_attributes, **by_model})
            span_attributes["mcp_images.cost_usd"] = cost_usd
        usage = structured.get("usage")
        if isinstance(usage, dict) and not error:
            for kind in ("input", "output"):
                tokens = usage.get(f"{kind}_tokens")
                if isinstance(tokens, int) and not isinstance(tokens, bool):
                    self.token_usage.record(
                        tokens, {"gen_ai.operation.name": GENERATE, **by_model, "gen_ai.token.type": kind}
                    )
                    span_attributes[f"gen_ai.usage.{kind}_tokens"] = tokens
        span = trace.get_current_span()  # the MCP SDK's ``tools/call`` span, when it records
        if span_attributes and span.is_recording():
            span.set_attributes(span_attributes)
