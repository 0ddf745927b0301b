"""The listening socket of the HTTP servers: accepted connections send without Nagle's delay.

Without TCP_NODELAY on an accepted connection, a kept-alive client waited ~40 ms for every
answer after the first (uvicorn writes the head and the body separately; see
mcp_images/listening.py). These tests read the option on the server's side of real loopback
connections, served by asyncio as uvicorn serves them.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from mcp_images.listening import listening_socket


async def accepted_nodelay(host: str) -> int:
    """TCP_NODELAY of the server side of one connection to a `listening_socket` on ``host``."""
    sock = listening_socket(host, 0)
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("socket")
        seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_connect, sock=sock)
    try:
        _, writer = await asyncio.open_connection(host, sock.getsockname()[1])
        value = await asyncio.wait_for(seen, 10)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return value


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_a_connection_accepted_by_the_http_server_socket_sends_without_delay(host: str) -> None:
    if host == "::1" and not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback; the test needs one")
    assert await accepted_nodelay(host) != 0


def test_the_listening_socket_reports_the_port_the_system_chose_and_a_taken_port_is_an_oserror() -> None:
    first = listening_socket("127.0.0.1", 0)
    try:
        port = first.getsockname()[1]
        assert port > 0
        with pytest.raises(OSError):
            listening_socket("127.0.0.1", port)
    finally:
        first.close()
