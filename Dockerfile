# mcp-images over streamable HTTP for a team: small, non-root, health-checked, OpenTelemetry
# included (off until OTEL_EXPORTER_OTLP_ENDPOINT is set).
#   docker build -t mcp-images .
#   docker run -p 8000:8000 -e MCP_IMAGES_API_KEY=sk-... -e MCP_IMAGES_HTTP_TOKENS=alice:<token> mcp-images
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.8 /uv /usr/local/bin/uv
WORKDIR /app
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
COPY pyproject.toml uv.lock README.md LICENSE ./
RUN uv sync --frozen --no-dev --extra otel --no-install-project
COPY mcp_images ./mcp_images
RUN uv sync --frozen --no-dev --extra otel

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 mcp
COPY --from=build /app /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MCP_IMAGES_OUTPUT_DIR=/data/images \
    MCP_IMAGES_DATA_DIR=/data/state \
    MCP_IMAGES_LOG_FORMAT=json
RUN mkdir -p /data && chown mcp:mcp /data
USER mcp
WORKDIR /home/mcp
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
STOPSIGNAL SIGTERM
# Binding 0.0.0.0 needs MCP_IMAGES_HTTP_TOKENS(_FILE) or MCP_IMAGES_OAUTH_ISSUER: the server refuses otherwise.
CMD ["mcp-images", "--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
