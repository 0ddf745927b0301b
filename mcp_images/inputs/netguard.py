"""Safe downloads of input images from URLs: SSRF checks, bounded size and time, manual redirects.

An agent can hand the server any URL, and the server may run inside a network the agent
cannot see (a laptop's router, a cloud VM's metadata service). So before every hop:

- only ``https://`` (``http://`` only for hosts the user allowed), no ``user:pass@``;
- the host is resolved and refused if ANY address is loopback, private, link-local,
  multicast, reserved, unspecified, shared (100.64/10), an IPv6 wrapper (mapped, compat,
  6to4, NAT64, Teredo) of one of those, or a cloud metadata address/name; numeric oddities
  that the C resolver would accept (``2130706433``, ``0x7f.1``) are read as the IPv4 address
  they denote and checked the same way. Hosts in ``MCP_IMAGES_ALLOWED_HOSTS`` skip this;
- redirects are followed by hand (at most ``max_redirects``), each hop checked again;
- ``Accept-Encoding: identity``, and a compressed answer is refused unread (no decompression
  bomb); the download stops as soon as it passes the cap; a ``Content-Length`` over the cap
  is refused before reading; one deadline covers resolution, redirects and body.

DNS rebinding: the check resolves the name, and a plain request would resolve it again, so
a hostile DNS server could answer "public" to the check and "127.0.0.1" to the connection.
We close that gap by connecting to the address we checked: the request goes to
``https://<checked-ip>/...`` with ``Host: <name>`` and the ``sni_hostname`` extension set to
the name, so TLS still sends the right SNI and verifies the certificate against the name
(httpcore passes it as ``server_hostname``). What remains: (1) hosts in the allowed list are
fetched by name, unchecked, as the user asked; (2) the shared client's pool keys connections
by address, so a kept-alive connection verified for one name on an address may carry a
request for another name that resolves (and was checked) to the same public address; no
private address can be reached that way; (3) if the server's environment routes through an
HTTP proxy, the proxy connects to the checked address, but what it can reach is its own
business.

The request is built by hand, not with the client's ``build_request``, so the shared
client's default headers, params, cookies and auth never go to a third-party host.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
import httpx2

from mcp_images.errors import InputError
from mcp_images.units import format_bytes

HostResolver = Callable[[str, int], Awaitable[list[str]]]
"""(host, port) -> the addresses the host resolves to, as strings."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data.ec2.internal"})
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})
SHARED_NET = ipaddress.ip_network("100.64.0.0/10")
PROTOCOL_NET = ipaddress.ip_network("192.0.0.0/24")  # IETF protocol assignments; Python 3.11 calls most "global"
NAT64_NET = ipaddress.ip_network("64:ff9b::/96")
ALLOW_HINT = "add the host to MCP_IMAGES_ALLOWED_HOSTS if you trust it"
USER_AGENT = "mcp-images (input image download)"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver, off the event loop (anyio runs it in a thread).

    Raises:
        OSError: the name does not resolve.
    """
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_problem(ip: IPAddress) -> str | None:
    """Why a download must not go to ``ip`` ("loopback", "private", ...), or None if public."""
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return address_problem(inner)
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in SHARED_NET, "shared (carrier-grade NAT)"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in PROTOCOL_NET, "reserved"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "site-local"),  # fec0::/10, still routed in places
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        (not ip.is_global, "non-public"),
    )
    return next((reason for bad, reason in checks if bad), None)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address wraps (mapped, compat, NAT64, 6to4, Teredo), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if int(ip) >> 32 == 0 and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in NAT64_NET:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    return ip.teredo[1] if ip.teredo is not None else None


def _literal_address(host: str) -> IPAddress | None:
    """``host`` as an IP address, including the odd IPv4 spellings getaddrinfo accepts."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    try:  # "2130706433", "0x7f.1", "017700000001": inet_aton reads them as IPv4
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _is_allowed(host: str, port: int, allowed_hosts: Iterable[str]) -> bool:
    names = {host, f"{host}:{port}", f"[{host}]", f"[{host}]:{port}"}
    return any(entry.strip().lower().rstrip(".") in names for entry in allowed_hosts)


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks, and the addresses it may be fetched from.

    ``addresses`` is empty when the host is fetched by name (allowed hosts).
    """

    url: httpx2.URL
    host: str
    addresses: tuple[str, ...]


def shown(url: httpx2.URL | str) -> str:
    """A URL for messages: no query or fragment (signed URLs carry tokens there), kept short."""
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL:
        try:  # the lenient parser, to still name the host the agent gave
            parts = urlsplit(str(url))
        except ValueError:
            return "the URL"
        if not parts.netloc:
            return "the URL"
        text = f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"
    else:
        text = f"{parsed.scheme}://{parsed.netloc.decode('ascii', 'replace')}{parsed.path}"
    return text if len(text) <= 100 else text[:97] + "..."


async def check_url(url: httpx2.URL | str, *, allowed_hosts: Iterable[str], resolver: HostResolver) -> Target:
    """Check one hop's URL before any connection is made.

    Raises:
        InputError: the scheme, the credentials, the host or an address it resolves to is refused.
    """
    try:
        parsed = httpx2.URL(url)
    except httpx2.InvalidURL as exc:
        raise InputError(f"{shown(url)} is not a valid URL ({exc})") from exc
    if parsed.scheme not in ("https", "http"):
        raise InputError(
            f"{parsed.scheme or 'this'}:// URLs are not accepted; give an https:// URL, "
            "an absolute local path, an images:// id or base64 image data"
        )
    if parsed.userinfo:
        raise InputError("URLs with a user name or password (user:pass@host) are refused")
    host = parsed.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise InputError(f"{shown(parsed)} has no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if _is_allowed(host, port, allowed_hosts):
        return Target(parsed, host, ())
    if host in METADATA_HOSTS:
        raise InputError(f"{host} is a cloud metadata service; downloads from it are refused")
    if host == "localhost" or host.endswith(".localhost"):
        raise InputError(f"{host} is this machine (loopback); downloads from it are refused")
    literal = _literal_address(host)
    addresses = [str(literal)] if literal is not None else await _resolve(host, port, resolver)
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        reason = address_problem(ip)
        if reason is not None:
            where = f"{address} is" if literal is not None else f"{host} resolves to {address},"
            raise InputError(
                f"{where} a {reason} address; downloads from it are refused to protect "
                f"the server's network ({ALLOW_HINT})"
            )
    if parsed.scheme == "http":
        raise InputError(f"plain http:// is refused for {host}: use https:// (or {ALLOW_HINT})")
    return Target(parsed, host, tuple(addresses))


async def _resolve(host: str, port: int, resolver: HostResolver) -> list[str]:
    try:
        addresses = await resolver(host, port)
    except OSError as exc:
        raise InputError(f"the host {host} could not be resolved ({exc})") from exc
    if not addresses:
        raise InputError(f"the host {host} could not be resolved")
    return addresses


@dataclass(frozen=True)
class Download:
    """A downloaded body and the URL it finally came from (after redirects)."""

    data: bytes
    url: httpx2.URL


@dataclass(frozen=True)
class FetchRules:
    """The bounds of one download (from the input policy)."""

    allowed_hosts: frozenset[str] = frozenset()
    max_bytes: int = 50 * 1024 * 1024
    timeout: float = 30.0  # seconds, for the whole download: DNS, every hop, the body
    max_redirects: int = 3
    resolver: HostResolver = system_resolver


async def download(url: str, *, client: httpx2.AsyncClient | None, rules: FetchRules) -> Download:
    """Fetch ``url`` with every hop checked, within the bounds of ``rules``.

    ``client`` is the server's shared client (only its transport and pool are used); None
    makes a private one for this download.

    Raises:
        InputError: a check refused a hop, the server answered an error, the body is too
            big, there were too many redirects, or the download failed or timed out.
    """
    try:
        with anyio.fail_after(rules.timeout):
            if client is not None:
                return await _follow(url, client, rules)
            async with httpx2.AsyncClient(follow_redirects=False) as own:
                return await _follow(url, own, rules)
    except (TimeoutError, httpx2.TimeoutException) as exc:
        raise InputError(f"downloading {shown(url)} took longer than {rules.timeout:g} s") from exc


async def _follow(url: str, client: httpx2.AsyncClient, rules: FetchRules) -> Download:
    current: httpx2.URL | str = url
    for _ in range(rules.max_redirects + 1):
        target = await check_url(current, allowed_hosts=rules.allowed_hosts, resolver=rules.resolver)
        body, location = await _fetch_once(client, target, rules.max_bytes, rules.timeout)
        if location is None:
            return Download(body, target.url)
        try:
            current = target.url.join(location)
        except httpx2.InvalidURL as exc:
            raise InputError(f"{shown(target.url)} redirected to an invalid URL") from exc
    raise InputError(f"{shown(url)} redirected more than {rules.max_redirects} times; give the final URL")


async def _fetch_once(
    client: httpx2.AsyncClient, target: Target, max_bytes: int, timeout: float
) -> tuple[bytes, str | None]:
    """One GET: (body, None), or (b"", location) for a redirect. Tries each checked address."""
    last_error: httpx2.ConnectError | None = None
    for address in target.addresses or (None,):
        request = _request(target, address, timeout)
        try:
            response = await client.send(request, stream=True, auth=None, follow_redirects=False)
        except httpx2.ConnectError as exc:
            last_error = exc  # try the next checked address (IPv6 unreachable, one host down)
            continue
        except httpx2.TimeoutException:
            raise  # download() words it with the deadline
        except httpx2.TransportError as exc:
            raise _failed(target, exc) from exc
        try:
            return await _read(response, target, max_bytes)
        except httpx2.TimeoutException:
            raise
        except httpx2.TransportError as exc:
            raise _failed(target, exc) from exc
        finally:
            await response.aclose()
    raise InputError(f"could not connect to {target.host}; check the URL") from last_error


def _failed(target: Target, exc: httpx2.TransportError) -> InputError:
    return InputError(f"downloading {shown(target.url)} failed ({type(exc).__name__})")


def _request(target: Target, address: str | None, timeout: float) -> httpx2.Request:
    headers = {
        "Accept": "image/png,image/jpeg,image/webp,image/*;q=0.8",
        "Accept-Encoding": "identity",
        "User-Agent": USER_AGENT,
    }
    url = target.url
    extensions: dict[str, object] = {"timeout": httpx2.Timeout(timeout).as_dict()}
    if address is not None:
        headers["Host"] = url.netloc.decode("ascii")
        url = url.copy_with(host=address.split("%", 1)[0])
        if url.scheme == "https":
            extensions["sni_hostname"] = target.host
    return httpx2.Request("GET", url, headers=headers, extensions=extensions)


async def _read(response: httpx2.Response, target: Target, max_bytes: int) -> tuple[bytes, str | None]:
    where = shown(target.url)
    if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
        return b"", response.headers["location"]
    if not response.is_success:
        raise InputError(f"{where} answered HTTP {response.status_code}; check the URL")
    cap = format_bytes(max_bytes)
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise InputError(f"{where} is {format_bytes(int(length))}, over the {cap} download limit")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise InputError(f"{where} was sent {encoding}-compressed; give a direct link to the image")
    body = bytearray()
    async for chunk in response.aiter_bytes():  # identity only (checked above): no decoding
        body += chunk
        if len(body) > max_bytes:  # stop now: never hold more than the cap plus one chunk
            raise InputError(f"{where} is more than the {cap} download limit")
    return bytes(body), None


