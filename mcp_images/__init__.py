"""mcp-images: an MCP server for image generation and editing."""

__version__ = "0.1.0"
