"""The exceptions mcp-images raises, as one tree.

```
McpImagesError                    base of everything below
├── RequestError                  the caller can fix it: the message says what to change
│   ├── ValidationProblem         an argument breaks a model's rule (catalog)
│   └── InputError                an image reference cannot be used (inputs)
├── ConfigError                   the server is not set up for this (missing key, bad file)
├── TaskError                     unknown or expired task id
└── UpstreamError                 the image API answered with an error or not at all
    ├── BadRequestError           400 (other than moderation)
    ├── ModerationError           400 moderation_blocked / content_policy_violation
    ├── AuthenticationError       401: the key was refused
    ├── PermissionDeniedError     403: region, organisation verification
    ├── NotFoundError             404: unknown model or path
    ├── RateLimitError            429 rate limit (retried)
    ├── QuotaExceededError        429 insufficient_quota (never retried)
    ├── ServerError               5xx (retried)
    ├── GatewayTimeoutError       524 from an aggregator's gateway
    ├── TimeoutError_             the read timed out
    ├── ConnectionError_          the upstream could not be reached
    └── StreamError               an SSE stream broke or carried an error event
```

Every message is safe to show to the agent: no secret ever goes into one.
"""

from __future__ import annotations

import copy
from typing import Self


class McpImagesError(Exception):
    """Base class for every error this package raises on purpose."""

    # What the call cost when it failed after the upstream billed it (a pricing.CostBreakdown),
    # so the spending ledger records the real figure, not the estimate.
    cost: object = None

    @property
    def plain(self) -> str:
        """The message alone (an upstream error's status and ids are shown beside it)."""
        return str(getattr(self, "message", None) or self)

    def reworded(self, message: str) -> Self:
        """A copy of this error (same type, same facts) that says ``message`` instead."""
        twin = copy.copy(self)
        twin.args = (message,)
        if hasattr(twin, "message"):
            setattr(twin, "message", message)  # noqa: B010 - UpstreamError renders its message attribute
        return twin


class RequestError(McpImagesError):
    """The request cannot be served as given; the message says what to change."""


class ValidationProblem(RequestError):
    """An argument is unknown, of the wrong type or out of bounds, or breaks a model's rule.

    `field` names the (first) argument at fault, for example ``size``, so that a caller can
    point at it; `fix` says what to send instead when there is one clear answer; `problems`
    lists every (field, message) found, so an agent can correct all of them in one go.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        fix: str | None = None,
        problems: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.problems = problems or ([(field, message)] if field else [])
        self.fix = fix or _fix_of(self.problems[0][1] if self.problems else message)


def _fix_of(message: str) -> str | None:
    """The "what to change" half of a message written as "what is wrong; what to do"."""
    _, sep, advice = message.rpartition("; ")
    return advice.strip() or None if sep else None


class InputError(RequestError):
    """An image reference (path, id, data URI, URL) cannot be used."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ConfigError(McpImagesError):
    """The server's configuration does not allow this (missing key, broken data file)."""


class TaskError(McpImagesError):
    """A task id is unknown, or its record has expired."""


class UpstreamError(McpImagesError):
    """The upstream image API failed. Carries what it said, never the key."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        error_type: str | None = None,
        param: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.error_type = error_type
        self.param = param
        self.request_id = request_id

    def __str__(self) -> str:
        parts = [self.message]
        details = []
        if self.status_code is not None:
            details.append(f"HTTP {self.status_code}")
        if self.code:
            details.append(f"code {self.code}")
        if self.param:
            details.append(f"param {self.param}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        if details:
            parts.append(f"({', '.join(details)})")
        return " ".join(parts)


class BadRequestError(UpstreamError):
    """400: the upstream refused the request's arguments."""


class ModerationError(UpstreamError):
    """400: the upstream's safety system refused the prompt or an input image."""

    def __init__(self, message: str, *, categories: list[str] | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.categories = categories or []


class AuthenticationError(UpstreamError):
    """401: the key was missing or refused."""


class PermissionDeniedError(UpstreamError):
    """403: the account may not use this model (region, organisation verification)."""


class NotFoundError(UpstreamError):
    """404: unknown model or endpoint."""


class RateLimitError(UpstreamError):
    """429: too many requests; retried with backoff."""


class QuotaExceededError(UpstreamError):
    """429 insufficient_quota: the account is out of credit; never retried."""


class ServerError(UpstreamError):
    """5xx: the upstream failed or is overloaded; retried."""


class GatewayTimeoutError(UpstreamError):
    """524: an aggregator's gateway cut a long synchronous request (302.ai: ~100 s)."""


class TimeoutError_(UpstreamError):
    """The upstream did not answer within the read timeout."""


class ConnectionError_(UpstreamError):
    """The upstream could not be reached."""


class StreamError(UpstreamError):
    """A server-sent event stream ended early or carried an error event."""


def error_dict(exc: BaseException) -> dict[str, object]:
    """What a tool error (or a failed task) carries: type, message and the upstream's ids."""
    detail: dict[str, object] = {"type": type(exc).__name__.rstrip("_"), "message": str(exc)}
    if isinstance(exc, UpstreamError):
        detail.update(status_code=exc.status_code, code=exc.code, request_id=exc.request_id)
    if isinstance(exc, ModerationError):
        detail["categories"] = exc.categories
    field = getattr(exc, "field", None)
    if field:
        detail["field"] = field
    if isinstance(exc, ValidationProblem):
        if exc.fix:
            detail["fix"] = exc.fix
        if len(exc.problems) > 1:
            detail["problems"] = [{"field": f, "message": m} for f, m in exc.problems]
    return detail
