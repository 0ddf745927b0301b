"""The TCP listening socket every HTTP server here serves from (mcp-images, the sandbox).

asyncio turns Nagle's algorithm off (``TCP_NODELAY``) on each accepted connection only when the
listening socket was made with ``proto=IPPROTO_TCP``; ``socket.create_server`` and a bare
``socket.socket(family, SOCK_STREAM)`` leave it 0. Without it, uvicorn's separate writes of a
response's head and body meet the client's delayed ACK: every answer after the first on a
kept-alive connection waited ~40 ms (measured with curl against ``/healthz``: 0.9 ms to the
head, 43 ms to the end of a 2-byte body). The option is also set on the listener itself, which
Linux copies to the connections it accepts.
"""

from __future__ import annotations

import socket


def listening_socket(host: str, port: int, *, backlog: int = 128) -> socket.socket:
    """A bound, listening, non-blocking TCP socket on ``host`` (IPv4 or bracketless IPv6) and ``port``.

    ``port=0`` lets the system choose (read it back with ``getsockname()[1]``). An IPv6 socket
    takes IPv6 only, as ``socket.create_server`` does.

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
