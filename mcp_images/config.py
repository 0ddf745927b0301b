"""Settings: CLI flag, then environment, then a ``.env`` file in the working folder.

Every variable is listed in the README's configuration table; keep the two in step
(``tests/test_readme.py`` checks that every field here is documented there).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

InlineMode = Literal["preview", "full", "none"]
ProviderName = str  # built-in: openai, 302ai, yescale, agcloud, compatible, azure; more from a providers file

DEFAULT_TIMEOUT_SECONDS = 600.0  # high quality at large sizes takes minutes
DEFAULT_RESULT_BUDGET = 800_000  # base64 characters of previews in one tool result (Claude Desktop: 1 MiB)
DEFAULT_PREVIEW_MAX = 140_000  # base64 characters for a single image's preview


def default_output_dir() -> Path:
    """``~/Pictures/mcp-images``: a per-user folder a person finds with a file browser."""
    return Path.home() / "Pictures" / "mcp-images"


class Settings(BaseSettings):
    """All configuration. Secrets are SecretStr and never logged or returned."""

    model_config = SettingsConfigDict(
        env_prefix="MCP_IMAGES_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        hide_input_in_errors=True,  # a refused value may hold a secret (a base URL's password)
    )

    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("api_key", "MCP_IMAGES_API_KEY", "OPENAI_API_KEY"),
        description="Upstream API key; falls back to OPENAI_API_KEY.",
    )
    base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("base_url", "MCP_IMAGES_BASE_URL", "OPENAI_BASE_URL"),
        description="Upstream base URL including /v1; falls back to OPENAI_BASE_URL; default from the provider.",
    )
    provider: ProviderName = Field(default="openai", description="openai, 302ai, yescale, agcloud, compatible, azure")
    default_model: str = Field(default="gpt-image-2", description="Model used when a call names none.")
    allowed_models: str = Field(
        default="", description="Models an agent may use (comma-separated); empty = any. Refused before any call."
    )
    output_dir: Path = Field(default_factory=default_output_dir, description="Where images are saved.")
    data_dir: Path | None = Field(default=None, description="Tasks database; default beside the output folder.")
    timeout: float = Field(default=DEFAULT_TIMEOUT_SECONDS, gt=0, description="Upstream read timeout, seconds.")
    max_retries: int = Field(default=2, ge=0, le=10, description="Retries on 408/409/429/5xx and connection errors.")
    inline: InlineMode = Field(default="preview", description="Images in results: preview, full or none.")
    result_budget: int = Field(default=DEFAULT_RESULT_BUDGET, ge=20_000, le=1_000_000)
    catalog: Path | None = Field(default=None, description="Your own model catalog file (JSON).")
    prices: Path | None = Field(default=None, description="Your own price table file (JSON).")
    providers: Path | None = Field(default=None, description="Your own providers file (JSON).")
    input_dirs: str = Field(default="", description="Folders local input images may come from (os.pathsep-separated).")
    allowed_hosts: str = Field(
        default="", description="Hosts allowed for image URLs even on private addresses (comma-separated)."
    )
    convert_mask: bool = Field(
        default=False, description="Convert a black-and-white mask (white = edit) to an alpha mask."
    )
    sync_timeout: float = Field(
        default=50.0,
        ge=0,
        description="Seconds a synchronous call may run before it hands over to a task (0 = never).",
    )
    task_ttl_days: float = Field(default=7.0, gt=0, description="Days a finished task's record is kept.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("output_dir", "data_dir", "catalog", "prices", "providers", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        if isinstance(value, str) and value:
            try:
                return Path(os.path.expandvars(value)).expanduser()
            except RuntimeError as exc:  # "~someone" with no such user
                raise ValueError(f"{value!r} names an unknown home folder") from exc
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _clean_key(cls, value: Any) -> Any:
        # A key pasted with its line end (MCP_IMAGES_API_KEY=$'sk-...\n') made every call fail
        # with the key quoted, escaped, in the error; a non-ASCII one failed as "internal error".
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            return value
        key = raw.strip()
        if not key:
            return None
        if any(not " " <= c <= "~" for c in key):  # only printable ASCII can go in an HTTP header
            raise ValueError(
                "the API key (MCP_IMAGES_API_KEY or OPENAI_API_KEY) holds a control character or a "
                "non-ASCII character (a stray quote, line break or typographic dash from copying?): copy it again"
            )
        return key

    @field_validator("base_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return value or None

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, value: str | None) -> str | None:
        # A password in the URL would be shown in messages and logs, and would replace the
        # key's Authorization header (httpx2 turns user:pass@ into Basic auth).
        if value is not None and "@" in urlsplit(value).netloc:
            raise ValueError(
                "the base URL must not hold a user name or password (user:pass@host): "
                "give the key in MCP_IMAGES_API_KEY instead"
            )
        return value

    @property
    def resolved_output_dir(self) -> Path:
        return self.output_dir.expanduser().resolve()

    @property
    def resolved_data_dir(self) -> Path:
        if self.data_dir is not None:
            return self.data_dir.expanduser().resolve()
        out = self.resolved_output_dir
        return out.parent / f".{out.name}-data"

    @property
    def input_dir_list(self) -> list[Path]:
        return [Path(p).expanduser().resolve() for p in self.input_dirs.split(os.pathsep) if p.strip()]

    @property
    def allowed_host_set(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())


def load_settings(**overrides: Any) -> Settings:
    """Settings with CLI overrides on top (None means "not given on the command line")."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**given)
