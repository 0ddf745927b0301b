"""The MCP boundary: tools, their schemas, results, the images:// resource."""

from mcp_images.server.build import ImagesServer, create_server

__all__ = ["ImagesServer", "create_server"]
