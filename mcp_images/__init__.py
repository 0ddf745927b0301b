"""mcp-images: an MCP server for image generation and editing."""
