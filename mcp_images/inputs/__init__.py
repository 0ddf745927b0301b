"""Image references (path, images:// id, data URI, URL) -> checked bytes; the SSRF guard."""
