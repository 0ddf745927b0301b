"""The doctor's one network check: is the upstream there, and does it take the key?

One cheap authenticated request that buys nothing: ``GET {base}/models`` (Azure:
``{base}/openai/models?api-version=...``) with the key in the provider's own header style
(`upstream.requests.RequestBuilder.headers`). 200 is OK; 401 and 403 mean the key was
refused; a 404 means the service does not list models there, so the key could not be
checked without buying an image (a warning, not a failure). No retries: a person is waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import httpx2

    from mcp_images.catalog.providers import Provider

Status = Literal["ok", "warn", "fail", "skip"]
DOCTOR_TIMEOUT_SECONDS = 10.0  # the whole request; a healthy API answers /models in well under a second
KEY_REFUSED = (401, 403)
NOT_LISTED = (404, 405)


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def models_url(provider: Provider, base: str) -> tuple[str, dict[str, str]]:
    base = base.rstrip("/")
    if provider.url_style == "azure":
        return f"{base}/openai/models", ({"api-version": provider.api_version} if provider.api_version else {})
    return f"{base}/models", {}


def _listed(response: httpx2.Response) -> str:
    try:
        data: Any = response.json()
    except ValueError:
        return ""
    models = data.get("data") if isinstance(data, dict) else None
    return f" ({len(models)} models listed)" if isinstance(models, list) else ""


async def check_upstream(
    provider: Provider, base: str, key: str, *, transport: httpx2.AsyncBaseTransport | None = None
) -> Check:
    """Ask the upstream for its model list with the key; never raises."""
    import httpx2

    from mcp_images.secrets import make_scrubber
    from mcp_images.upstream.requests import RequestBuilder

    scrub = make_scrubber([key])
    url, params = models_url(provider, base)
    timeout = httpx2.Timeout(DOCTOR_TIMEOUT_SECONDS)
    async with httpx2.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False) as http:
        headers = RequestBuilder(http, provider, base, key, timeout).headers(stream=False)
        try:
            response = await http.get(url, params=params, headers=headers)
        except httpx2.TimeoutException:
            return Check("upstream", "fail", f"{url} did not answer within {DOCTOR_TIMEOUT_SECONDS:g} s")
        except httpx2.TransportError as exc:
            reason = scrub(str(exc)) or type(exc).__name__
            return Check("upstream", "fail", f"cannot reach {url}: {reason}; check MCP_IMAGES_BASE_URL and the network")
    return _judge(url, response, provider)


def _judge(url: str, response: httpx2.Response, provider: Provider) -> Check:
    code = response.status_code
    if code == 200:
        return Check("upstream", "ok", f"{url} answered 200 with the key{_listed(response)}")
    if code in KEY_REFUSED:
        return Check(
            "upstream",
            "fail",
            f"key refused: {url} answered HTTP {code}; check that MCP_IMAGES_API_KEY is a valid key "
            f"for provider {provider.name!r} (and that the account may use the API)",
        )
    if code in NOT_LISTED:
        return Check(
            "upstream",
            "warn",
            f"reachable, but {url} is not served (HTTP {code}): the key could not be checked "
            "without buying an image; the first call will tell",
        )
    return Check("upstream", "warn", f"{url} answered HTTP {code}; the service may be having trouble")
