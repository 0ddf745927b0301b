"""URL safety: which addresses are refused, and how a checked download connects."""

from __future__ import annotations

import ipaddress

import httpx2
import pytest

from mcp_images.errors import InputError
from mcp_images.inputs.netguard import FetchRules, address_problem, check_url, download

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.20.30.40", "private"),
        ("172.31.255.255", "private"),
        ("192.168.0.1", "private"),
        ("169.254.1.1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.64.0.1", "shared (carrier-grade NAT)"),
        ("100.127.255.254", "shared (carrier-grade NAT)"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("192.0.2.1", "private"),  # documentation range
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated)
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
        ("2002:c0a8:101::1", "private"),  # 6to4 of 192.168.1.1
        ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
        ("93.184.215.14", None),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_addresses_are_classified_as_public_or_refused_with_a_reason(address: str, reason: str | None) -> None:
    assert address_problem(ipaddress.ip_address(address)) == reason


async def resolve_public(host: str, port: int) -> list[str]:
    return {"dual.example.com": ["2606:2800:220:1::1", "93.184.215.14"]}.get(host, ["8.8.8.8"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("entry", "url"),
    [
        ("LocalHost", "http://localhost/x.png"),
        ("localhost:8080", "http://localhost:8080/x.png"),
        ("10.0.0.5", "http://10.0.0.5:9000/x.png"),
        ("[::1]:8443", "https://[::1]:8443/x.png"),
        ("nas.local.", "http://nas.local/x.png"),
    ],
)
async def test_allowed_hosts_match_by_name_or_name_and_port(entry: str, url: str) -> None:
    target = await check_url(url, allowed_hosts={entry}, resolver=resolve_public)
    assert target.addresses == ()  # fetched by name, as the user asked


@pytest.mark.anyio
async def test_an_allowed_host_entry_with_another_port_does_not_match() -> None:
    with pytest.raises(InputError, match="loopback"):
        await check_url("http://localhost:9999/x", allowed_hosts={"localhost:8080"}, resolver=resolve_public)


@pytest.mark.anyio
async def test_ipv6_is_pinned_in_brackets_and_the_next_address_is_tried_on_connect_error() -> None:
    tried: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        tried.append(str(request.url))
        if request.url.host.startswith("2606"):
            raise httpx2.ConnectError("network unreachable", request=request)
        return httpx2.Response(200, content=PNG)

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
        got = await download(
            "https://dual.example.com/a.png",
            client=client,
            rules=FetchRules(resolver=resolve_public),
        )
    assert got.data == PNG
    assert tried == ["https://[2606:2800:220:1::1]/a.png", "https://93.184.215.14/a.png"]
    assert str(got.url) == "https://dual.example.com/a.png"


@pytest.mark.anyio
async def test_a_compressed_answer_is_refused_rather_than_decompressed() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        gzipped = httpx2.ByteStream(b"\x1f\x8b\x08\x00" + b"\x00" * 16)  # a stream, as on the wire
        return httpx2.Response(200, stream=gzipped, headers={"Content-Encoding": "gzip"})

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(handler)) as client:
        with pytest.raises(InputError, match="gzip-compressed"):
            await download(
                "https://a.example.com/x.png",
                client=client,
                rules=FetchRules(resolver=resolve_public),
            )
