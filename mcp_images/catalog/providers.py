"""What differs between the services that speak the OpenAI images API, as data.

The profiles live in ``data/providers.json``. A user's file (``MCP_IMAGES_PROVIDERS``) in the
same shape adds providers or changes built-in ones: an entry whose name is already known is
laid over the built-in profile field by field, so ``{"providers": {"azure": {"api_version":
"2025-04-01-preview"}}}`` changes only the API version. Adding a provider is a data change.

Nothing here does I/O beyond reading those files; `upstream.ImagesAPI` applies the profile.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mcp_images.config_files import read_config_text
from mcp_images.errors import ConfigError

__all__ = ["AsyncSpec", "Provider", "get_provider", "load_providers"]


class AsyncSpec(BaseModel):
    """How a provider runs a job in the background and how its result is polled (302.ai)."""

    model_config = ConfigDict(extra="forbid")

    submit_query: dict[str, str] = Field(default_factory=lambda: {"async": "true"})
    id_fields: list[str] = Field(default_factory=lambda: ["task_id", "id"])
    poll_path: str = "/async_result"  # relative to the base URL's origin, or an absolute URL
    poll_query_param: str = "task_id"
    pending_errs: list[str] = Field(default_factory=lambda: ["result pending"])
    pending_statuses: list[int] = Field(default_factory=lambda: [202, 404, 425])
    poll_interval_seconds: float = Field(default=5.0, gt=0)


class Provider(BaseModel):
    """One service's quirks. Defaults describe OpenAI's own API."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = None
    base_url: str | None = None  # None: the user must set MCP_IMAGES_BASE_URL
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"  # "" sends the raw key (azure's api-key header)
    query_params: list[str] = Field(default_factory=list)  # sent in the query string, not the body
    response_format: str | None = None  # None: send nothing (GPT image models always give b64)
    async_mode: AsyncSpec | None = None
    url_style: Literal["openai", "azure"] = "openai"
    api_version: str | None = None  # azure: sent as ?api-version=
    models: list[str] | None = None  # models it is known to serve; None = any
    permissive: bool = False  # serves models beyond `models` (other vendors' too)
    gateway_timeout_hint: str | None = None  # advice shown with an HTTP 524
    moderation_on_edits: bool = False  # OpenAI's edits endpoint takes no `moderation`

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://; got {value!r}")
        return value

    def serves(self, model: str) -> bool:
        """Whether this provider is expected to take ``model`` (known, or permissive)."""
        return self.models is None or self.permissive or model in self.models


def _line_of(text: str, name: str, path: list[str]) -> int | None:
    """The line of provider ``name`` (or of the key at ``path`` inside it) in a JSON text.

    A plain text search, good enough to point a person at the right spot of their file.
    """
    start = re.search(rf'"{re.escape(name)}"\s*:\s*\{{', text)
    if start is None:
        return None
    pos, end = start.start(), start.end()
    for key in path:
        found = re.compile(rf'"{re.escape(key)}"\s*:').search(text, end)
        if found is None:
            break
        pos, end = found.start(), found.end()
    return text.count("\n", 0, pos) + 1


def _parse(text: str, source: str, base: dict[str, Provider]) -> dict[str, Provider]:
    """Providers from a JSON text, each laid over ``base``'s profile of the same name.

    Raises:
        ConfigError: not JSON, not the expected shape, or a field is wrong (with its line).
    """
    try:
        raw: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: line {exc.lineno}, column {exc.colno}: {exc.msg}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("providers"), dict):
        raise ConfigError(f'{source}: expected an object with a "providers" object inside')
    found: dict[str, Provider] = {}
    for name, body in raw["providers"].items():
        if not isinstance(body, dict):
            where = _line_of(text, name, [])
            at = f"line {where}: " if where else ""
            raise ConfigError(f"{source}: {at}provider {name!r} must be an object")
        merged = base[name].model_dump(exclude={"name"}) if name in base else {}
        merged.update(body)
        try:
            found[name] = Provider.model_validate({**merged, "name": name})
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = [str(p) for p in first["loc"]]
            where = _line_of(text, name, [p for p in loc if not p.isdigit()])
            at = f"line {where}: " if where else ""
            raise ConfigError(f"{source}: {at}provider {name!r}, field {'.'.join(loc)}: {first['msg']}") from exc
    return found


@cache
def builtin_providers() -> dict[str, Provider]:
    """The profiles shipped in ``data/providers.json``."""
    text = resources.files("mcp_images.catalog.data").joinpath("providers.json").read_text("utf-8")
    return _parse(text, "built-in providers", {})


def load_providers(user_file: Path | None = None) -> dict[str, Provider]:
    """The built-in providers with a user's file laid over them.

    Raises:
        ConfigError: the user's file cannot be read, is not a regular file under
            `config_files.MAX_CONFIG_FILE_BYTES`, or breaks the format (line and reason).
    """
    providers = dict(builtin_providers())
    if user_file is not None:
        text = read_config_text(user_file, setting="MCP_IMAGES_PROVIDERS", what="providers file")
        providers.update(_parse(text, str(user_file), providers))
    return providers


def get_provider(name: str, user_file: Path | None = None) -> Provider:
    """The profile called ``name``.

    Raises:
        ConfigError: no provider has that name (the message lists the known ones), or the
            user's providers file is broken.
    """
    providers = load_providers(user_file)
    try:
        return providers[name]
    except KeyError:
        known = ", ".join(sorted(providers))
        raise ConfigError(
            f"unknown provider {name!r}; known providers: {known} "
            "(add your own in a providers file, MCP_IMAGES_PROVIDERS)"
        ) from None
