"""Who is calling: the one seam that ownership (tasks), limits and budgets read.

Over stdio there is one person, ``LOCAL``. Over HTTP the authentication layer (static tokens
or OAuth) names the caller; it is read from the request through `identity_of`. The name is
never a secret: a token's configured name, or a JWT's subject — never the token itself.
"""

from __future__ import annotations

from typing import Any

LOCAL = "local"


def identity_of(ctx: Any) -> str:
    """The caller's identity name for a tool call's context (``LOCAL`` without authentication).

    Reads the SDK's authenticated user for this request when there is one (HTTP with auth);
    anything unexpected falls back to ``LOCAL`` rather than failing a call.
    """
    try:
        from mcp.server.auth.middleware.auth_context import get_access_token
    except ImportError:  # pragma: no cover - the SDK always ships it
        return LOCAL
    token = get_access_token()
    if token is None:
        return LOCAL
    name = getattr(token, "client_id", None) or getattr(token, "subject", None)
    return str(name) if name else LOCAL
