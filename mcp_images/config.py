"""Settings: CLI flag, then environment, then a ``.env`` file in the working folder.

Every variable is listed in the README's configuration table; keep the two in step
(``tests/test_readme.py`` checks that every field here is documented there).

`load_settings` is the start-up check: a bad value (and an unknown provider) stops the start
with the variable or flag a person set, what is wrong and an example of a good value (each
field's ``examples``), instead of pydantic's field names and help URL, or a failure at the
first call. The refused value is never repeated: it may be a key put in the wrong variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mcp_images.errors import ConfigError

InlineMode = Literal["preview", "full", "none"]
ProviderName = str  # built-in: openai, 302ai, yescale, agcloud, compatible, azure; more from a providers file

DEFAULT_TIMEOUT_SECONDS = 600.0  # high quality at large sizes takes minutes
DEFAULT_RESULT_BUDGET = 800_000  # base64 characters of previews in one tool result (Claude Desktop: 1 MiB)
DEFAULT_PREVIEW_MAX = 140_000  # base64 characters for a single image's preview
# The largest HTTP request body, MiB. A JSON call's inline inputs decide it: an image may be up to
# 50 MiB (inputs.references.InputPolicy.max_file_bytes, the most any model takes), 66.7 MiB as
# base64 (4/3), with a mask (4 MiB -> 5.3 MiB) and a prompt (32000 characters, up to 6 bytes
# each JSON-escaped: 0.2 MiB): 72.2 MiB, and 80 leaves room for the JSON around them. More or
# larger images at once go as https:// URLs or images:// ids. No higher: a body under the limit
# costs six to seven times its size while it is parsed (measured: 79 MiB -> +458 MiB peak RSS,
# benchmarks/http_body_limit.py).
DEFAULT_HTTP_MAX_BODY_MB = 80
# Concurrency over HTTP. Per identity: a person's agent rarely runs more than a few image
# calls at once; more is a loop gone wrong. All identities: what one server's upstream quota
# and memory (an answer is decoded and previewed per call) carry comfortably.
DEFAULT_MAX_CALLS_PER_IDENTITY = 4
DEFAULT_MAX_CALLS = 64
# Upstream requests in flight at once, all calls and tasks: above the provider's concurrency
# a burst only earns 429s and their retries (self-inflicted rate limits).
DEFAULT_MAX_UPSTREAM = 32


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
        examples=["sk-proj-..."],
    )
    base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("base_url", "MCP_IMAGES_BASE_URL", "OPENAI_BASE_URL"),
        description="Upstream base URL including /v1; falls back to OPENAI_BASE_URL; default from the provider.",
        examples=["https://api.openai.com/v1"],
    )
    provider: ProviderName = Field(
        default="openai", description="openai, 302ai, yescale, agcloud, compatible, azure", examples=["openai"]
    )
    default_model: str = Field(
        default="gpt-image-2", description="Model used when a call names none.", examples=["gpt-image-2"]
    )
    allowed_models: str = Field(
        default="",
        description="Models an agent may use (comma-separated); empty = any. Refused before any call.",
        examples=["gpt-image-2,gpt-image-1-mini"],
    )
    # --- the spending guard (pricing/guard.py), in the price table's currency ---
    max_cost_per_call: float | None = Field(
        default=None, ge=0, description="Most one call may cost (its estimate's upper end); refused above.",
        examples=[0.5],
    )  # fmt: skip
    daily_budget: float | None = Field(
        default=None, ge=0, description="Most spent per UTC day (per identity over HTTP); refused beyond.",
        examples=[1.0],
    )  # fmt: skip
    confirm_above: float | None = Field(
        default=None, ge=0, description="A call estimated above this needs a person's confirmation.",
        examples=[0.25],
    )  # fmt: skip
    output_dir: Path = Field(
        default_factory=default_output_dir, description="Where images are saved.", examples=["~/Pictures/mcp-images"]
    )
    data_dir: Path | None = Field(
        default=None,
        description="Tasks database; default beside the output folder.",
        examples=["~/Pictures/.mcp-images-data"],
    )
    # --- many replicas (README "Running many replicas"): both unset = one machine, as always ---
    database_url: SecretStr | None = Field(
        default=None, description="Task database: sqlite:///<path> (default: the data folder's) or postgresql://.",
        examples=["postgresql://mcp:secret@db:5432/images"],
    )  # fmt: skip
    storage_url: str | None = Field(
        default=None, description="Where images are kept: a folder (default: the output folder) or s3://bucket/prefix.",
        examples=["s3://images/mcp"],
    )  # fmt: skip
    timeout: float = Field(
        default=DEFAULT_TIMEOUT_SECONDS, gt=0, description="Upstream read timeout, seconds.", examples=[600]
    )
    max_retries: int = Field(
        default=2, ge=0, le=10, description="Retries on 408/409/429/5xx and connection errors.", examples=[2]
    )
    inline: InlineMode = Field(
        default="preview", description="Images in results: preview, full or none.", examples=["preview"]
    )
    result_budget: int = Field(default=DEFAULT_RESULT_BUDGET, ge=20_000, le=1_000_000, examples=[800_000])
    catalog: Path | None = Field(
        default=None, description="Your own model catalog file (JSON).", examples=["~/mcp-images/catalog.json"]
    )
    prices: Path | None = Field(
        default=None, description="Your own price table file (JSON).", examples=["~/mcp-images/prices.json"]
    )
    providers: Path | None = Field(
        default=None, description="Your own providers file (JSON).", examples=["~/mcp-images/providers.json"]
    )
    input_dirs: str = Field(
        default="",
        description="Folders local input images may come from (os.pathsep-separated).",
        examples=[os.pathsep.join(["~/Pictures", "~/Downloads"])],
    )
    allowed_hosts: str = Field(
        default="",
        description="Hosts allowed for image URLs even on private addresses (comma-separated).",
        examples=["images.example.com,cdn.example.com"],
    )
    convert_mask: bool = Field(
        default=False, description="Convert a black-and-white mask (white = edit) to an alpha mask.", examples=[True]
    )
    sync_timeout: float = Field(
        default=50.0,
        ge=0,
        description="Seconds a synchronous call may run before it hands over to a task (0 = never).",
        examples=[50],
    )
    task_ttl_days: float = Field(default=7.0, gt=0, description="Days a finished task's record is kept.", examples=[7])
    http_max_body_mb: int = Field(
        default=DEFAULT_HTTP_MAX_BODY_MB,
        ge=1,
        le=1024,
        description="Largest HTTP request body in MiB (one inline 50 MiB image as base64, a mask and a prompt).",
        examples=[DEFAULT_HTTP_MAX_BODY_MB],
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", examples=["INFO"])
    # --- serving a team over HTTP (server/http_app.py) ---
    http_tokens: SecretStr | None = Field(
        default=None,
        description="Static bearer tokens for HTTP, comma-separated name:token pairs.",
        examples=["alice:tok-alice-0123456789,bob:tok-bob-0123456789"],
    )
    http_tokens_file: Path | None = Field(
        default=None, description="A file of name:token pairs, one a line.", examples=["/run/secrets/mcp-tokens"]
    )
    oauth_issuer: str | None = Field(
        default=None, description="OAuth 2.1 authorization server (issuer) whose JWTs are accepted.",
        examples=["https://auth.example.com/realms/team"],
    )  # fmt: skip
    oauth_audience: str | None = Field(
        default=None, description="This server's resource URL: the audience tokens must name.",
        examples=["https://images.example.com/mcp"],
    )  # fmt: skip
    oauth_jwks_url: str | None = Field(
        default=None, description="The issuer's JWKS URL (default: from its metadata).",
        examples=["https://auth.example.com/realms/team/protocol/openid-connect/certs"],
    )  # fmt: skip
    oauth_scopes: str = Field(
        default="", description="Scopes every token must carry (space or comma separated).", examples=["images"]
    )
    http_allowed_hosts: str = Field(
        default="", description="Extra Host names the HTTP server answers (comma-separated).",
        examples=["images.example.com"],
    )  # fmt: skip
    http_allowed_origins: str = Field(
        default="", description="Extra Origins allowed to call the HTTP server (comma-separated).",
        examples=["https://studio.example.com"],
    )  # fmt: skip
    http_max_calls_per_identity: int = Field(
        default=DEFAULT_MAX_CALLS_PER_IDENTITY, ge=1, le=10_000,
        description="Image calls one identity may run at once over HTTP.", examples=[DEFAULT_MAX_CALLS_PER_IDENTITY],
    )  # fmt: skip
    http_max_calls: int = Field(
        default=DEFAULT_MAX_CALLS, ge=1, le=100_000,
        description="Image calls the HTTP server runs at once, all identities.", examples=[DEFAULT_MAX_CALLS],
    )  # fmt: skip
    max_upstream: int = Field(
        default=DEFAULT_MAX_UPSTREAM, ge=1, le=1024,
        description="Upstream requests in flight at once.", examples=[DEFAULT_MAX_UPSTREAM],
    )  # fmt: skip
    http_shutdown_grace: float = Field(
        default=30.0, ge=0, le=3600, description="Seconds running calls get to finish on SIGTERM.", examples=[30]
    )
    public_url: str | None = Field(
        default=None, description="The server's public base URL; turns on signed image download URLs.",
        examples=["https://images.example.com"],
    )  # fmt: skip
    url_secret: SecretStr | None = Field(
        default=None, description="HMAC key for signed download URLs (required with public_url).",
        examples=["a-long-random-string-of-32-characters"],
    )  # fmt: skip
    request_state_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Key every replica shares to seal the request state of protocol 2026-07-28 (a spending "
            "confirmation answered on another replica); default: derived from MCP_IMAGES_URL_SECRET, "
            "else a key of this process only."
        ),
        examples=["another-long-random-string-of-32-characters"],
    )
    url_ttl: float = Field(
        default=3600.0, gt=0, le=7 * 86400, description="Seconds a signed download URL stays valid.", examples=[3600]
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Access logs on stderr: text or json (one JSON object a line).", examples=["json"]
    )

    @field_validator("output_dir", "data_dir", "catalog", "prices", "providers", "http_tokens_file", mode="before")
    @classmethod
    def _expand(cls, value: Any) -> Any:
        if isinstance(value, str) and value:
            try:
                return Path(os.path.expandvars(value)).expanduser()
            except RuntimeError as exc:  # "~someone" with no such user
                raise ValueError(f"{value!r} names an unknown home folder") from exc
        return value

    @field_validator("request_state_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (it is stretched into an AES-256 key)")
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
                "holds a control character or a non-ASCII character (a stray quote, line break "
                "or typographic dash from copying?): copy the key again"
            )
        return key

    @field_validator("base_url", "oauth_issuer", "oauth_audience", "oauth_jwks_url", "public_url", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return value or None

    @field_validator("base_url")
    @classmethod
    def _no_credentials_in_url(cls, value: str | None) -> str | None:
        # A password in the URL would be shown in messages and logs, and would replace the
        # key's Authorization header (httpx2 turns user:pass@ into Basic auth).
        if value is None:
            return value
        parts = urlsplit(value.strip())
        if "@" in parts.netloc:
            raise ValueError(
                "must not hold a user name or password (user:pass@host): give the key in MCP_IMAGES_API_KEY instead"
            )
        # Without a scheme httpx2 fails every attempt (and the retries) only at the first call.
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host name, including the API's path (/v1)")
        try:
            _ = parts.port
        except ValueError:
            raise ValueError("has a port that is not a number from 0 to 65535") from None
        return value.strip()

    @field_validator("oauth_issuer", "oauth_audience", "oauth_jwks_url", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            raise ValueError("must be an http:// or https:// URL with a host name (no user:password@)")
        return value.strip()

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_in_lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("max_cost_per_call", "daily_budget", "confirm_above", mode="before")
    @classmethod
    def _blank_money_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", "storage_url", mode="before")
    @classmethod
    def _blank_store_is_default(cls, value: Any) -> Any:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(raw, str) and not raw.strip() else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        # The value is never quoted back: it may hold the database's password.
        if value is None:
            return value
        url = value.get_secret_value().strip()
        parts = urlsplit(url)
        if parts.scheme == "sqlite" and parts.path not in ("", "/") and not parts.netloc:
            return SecretStr(url)
        if parts.scheme in ("postgresql", "postgres") and parts.hostname:
            return SecretStr(url)
        raise ValueError("must be sqlite:///<path to a file> or postgresql://user:password@host:port/database")

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value  # a folder
        parts = urlsplit(value.strip())
        if parts.scheme != "s3" or not parts.netloc or "@" in parts.netloc:
            raise ValueError(
                "must be a folder or s3://bucket/prefix (no user:password@: give the keys in "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            )
        return value.strip()

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_capitals(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

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
    def http_max_body_bytes(self) -> int:
        return self.http_max_body_mb * 1024 * 1024

    @property
    def allowed_host_set(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.allowed_hosts.split(",") if h.strip())


# --- start-up: settings a person can fix ---------------------------------------------------

ENV_FILE = ".env"
# What a refused value is missing, by pydantic's error type; the value itself is never quoted
# (it may be a key put in the wrong variable).
PROBLEMS = {
    "float_parsing": "is not a number",
    "float_type": "is not a number",
    "int_parsing": "is not a whole number",
    "int_type": "is not a whole number",
    "int_from_float": "is not a whole number",
    "bool_parsing": "is not true or false",
    "bool_type": "is not true or false",
    "greater_than": "must be more than {gt}",
    "greater_than_equal": "must be at least {ge}",
    "less_than": "must be less than {lt}",
    "less_than_equal": "must be at most {le}",
    "literal_error": "must be one of {expected}",
    "string_type": "must be text",
}


def setting_variables(field: str) -> list[str]:
    """The environment variables that set ``field``, in the order they are looked up."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str) and c.isupper()]
    return [f"MCP_IMAGES_{field.upper()}"]


def _named(field: str, flags: Mapping[str, str], given: Mapping[str, Any]) -> tuple[str, str]:
    """How a person set ``field`` and how an example of it is written: (name, name=example)."""
    example = (Settings.model_fields[field].examples or [""])[0]
    example = str(example).lower() if isinstance(example, bool) else str(example)
    if field in given:  # a CLI flag, or a keyword of load_settings
        flag = flags.get(field)
        return (flag, f"{flag} {example}") if flag else (f"argument {field}", f"{field}={example!r}")
    names = setting_variables(field)
    used = [n for n in names if n in os.environ] or names
    return f"{' or '.join(used)} ({field})", f"{used[0]}={example}"


def _problem(error: Mapping[str, Any]) -> str:
    if error["type"] == "value_error":
        return str(error.get("ctx", {}).get("error", error["msg"]))
    template = PROBLEMS.get(error["type"])
    if template is None:
        msg = str(error["msg"])
        return msg[:1].lower() + msg[1:]
    return template.format(**error.get("ctx", {}))


def describe_settings_error(
    exc: ValidationError, *, given: Mapping[str, Any] = {}, flags: Mapping[str, str] = {}
) -> str:
    """One line per refused setting: its variable (or flag), what is wrong, an example.

    ``MCP_IMAGES_TIMEOUT (timeout) is not a number; for example MCP_IMAGES_TIMEOUT=600``.
    Never the rejected value, nor pydantic's help URL.
    """
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        if field not in Settings.model_fields:
            lines.append(f"bad setting: {_problem(error)}")
            continue
        name, example = _named(field, flags, given)
        lines.append(f"{name} {_problem(error)}; for example {example}")
    return "\n".join(lines)


def _check_env_file() -> None:
    """Refuse a ``.env`` that is a FIFO, a device or huge before pydantic-settings reads it whole.

    A folder called ``.env`` (a common name for a virtualenv) is skipped, as pydantic-settings does.

    Raises:
        ConfigError: the file is not a regular file or is larger than the limit.
    """
    from mcp_images.config_files import check_config_file

    path = Path(ENV_FILE).absolute()
    if os.path.exists(path) and not os.path.isdir(path):
        check_config_file(path, setting=ENV_FILE, what="settings file")


def _check_provider(settings: Settings, flags: Mapping[str, str], given: Mapping[str, Any]) -> None:
    """Refuse a provider no profile has, now rather than at the first call.

    Raises:
        ConfigError: the providers file is broken, or no provider has the name.
    """
    from mcp_images.catalog.providers import load_providers

    known = load_providers(settings.providers)
    if settings.provider not in known:
        name, example = _named("provider", flags, given)
        raise ConfigError(
            f"{name}: there is no provider {settings.provider!r}; known: {', '.join(sorted(known))} "
            f"(add your own in a providers file, MCP_IMAGES_PROVIDERS); for example {example}"
        )


def load_settings(*, flags: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings with CLI overrides on top (None means "not given on the command line"), checked.

    ``flags`` maps a field to the command-line flag that set it (``{"timeout": "--timeout"}``),
    so that a message names what the person typed. Every setting is checked here, the provider
    against the known profiles too, so a bad one stops the start instead of the first call.

    Raises:
        ConfigError: a setting is refused; one line per setting with its variable (or flag),
            what is wrong and an example of a good value. Never the refused value.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    flags = flags or {}
    _check_env_file()
    try:
        settings = Settings(**given)
    except ValidationError as exc:
        # Not chained: pydantic's error holds the refused values, and one may be a key.
        raise ConfigError(describe_settings_error(exc, given=given, flags=flags)) from None
    _check_provider(settings, flags, given)
    return settings
