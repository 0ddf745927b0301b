"""What the sandbox remembers: requests that arrived, files it serves, 302.ai-style tasks.

Tests read `SandboxState.requests` to assert what reached the upstream: which fields, how many
attempts (retries), and whether a cancelled client's disconnect was seen.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

REDACTED = "<redacted>"
# Header values that carry keys: recorded as present, never as their value.
AUTH_HEADERS = frozenset({"authorization", "api-key", "x-api-key", "proxy-authorization", "cookie"})


def new_id(prefix: str) -> str:
    """A fresh id such as ``req_sandbox_9f2c...``."""
    return f"{prefix}{secrets.token_hex(8)}"


@dataclass
class UploadRecord:
    """One uploaded file of an edit: its field name, file name, declared type and size."""

    field: str
    filename: str | None
    content_type: str | None
    size: int


@dataclass
class RequestRecord:
    """One request as the sandbox saw it (no key, no file bytes)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    request_id: str
    fields: dict[str, Any] = field(default_factory=dict)  # JSON body or form text fields
    uploads: list[UploadRecord] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)  # failure modes that applied
    status: int | None = None  # the status sent; None until the response started
    disconnected: bool = False  # the client went away before the response was complete


@dataclass
class Task:
    """A 302.ai-style asynchronous job: pending for a few polls, then its outcome."""

    task_id: str
    pending_polls: int
    status_code: int
    body: dict[str, Any] | None  # the normal response body when it succeeded
    err: str  # "" on success
    data_as_string: bool  # answer ``data`` as a JSON string (some deployments do)
    polls: int = 0


@dataclass
class StoredFile:
    """Bytes served at ``GET /files/<name>`` (``response_format=url``)."""

    data: bytes
    content_type: str


@dataclass(frozen=True)
class SandboxSettings:
    """How the sandbox behaves (see `create_app`)."""

    latency: float = 0.0
    stream_delay: float = 0.05
    async_pending_polls: int = 2
    permissive_models: bool = False  # OpenAI/Azure serve unknown models instead of 404


@dataclass
class SandboxState:
    """Everything the sandbox keeps between requests (in memory, per app)."""

    requests: list[RequestRecord] = field(default_factory=list)
    files: dict[str, StoredFile] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> RequestRecord:
        """Start the record of a request, with auth header values replaced."""
        clean = {k: (REDACTED if k in AUTH_HEADERS else v) for k, v in headers.items()}
        rec = RequestRecord(method=method, path=path, query=query, headers=clean, request_id=new_id("req_sandbox_"))
        self.requests.append(rec)
        return rec

    def first_attempt(self, mode: str, prompt: str) -> bool:
        """Count an attempt of ``prompt`` under a ``*-once`` mode; True only for the first."""
        self.attempts[(mode, prompt)] += 1
        return self.attempts[(mode, prompt)] == 1

    def store_file(self, data: bytes, ext: str, content_type: str) -> str:
        """Keep bytes for ``GET /files/<name>``; returns the name."""
        name = f"{new_id('img_')}.{ext}"
        self.files[name] = StoredFile(data=data, content_type=content_type)
        return name

    def reset(self) -> None:
        """Forget everything (between tests that share one server)."""
        self.requests.clear()
        self.files.clear()
        self.tasks.clear()
        self.attempts.clear()

    def image_requests(self) -> list[RequestRecord]:
        """The records of image calls only (generations and edits), in arrival order."""
        return [r for r in self.requests if r.path.endswith(("/images/generations", "/images/edits"))]
