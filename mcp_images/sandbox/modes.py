"""Failure modes and error answers of the sandbox, shaped like the real upstream's.

A mode comes from the ``X-Sandbox-Mode`` header or from ``[sandbox:<mode>]`` in the prompt
(the MCP server passes prompts through untouched, so keywords reach the sandbox from an agent).
Several modes may be given, comma-separated or as several keywords. The table of modes is in
the docstring of `mcp_images.sandbox.app`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

HEADER = "x-sandbox-mode"
KEYWORD = re.compile(r"\[sandbox:([^\]]*)\]", re.IGNORECASE)
RETRY_AFTER_MS = "10"

# Modes that answer with an error; each may also be given with "-once".
ERROR_MODES = ("moderation", "401", "403", "404", "429", "quota", "500", "503", "524")
PLAIN_MODES = ("url", "cut", "cut-clean", "no-usage")


class SandboxError(Exception):
    """An error answer: raised anywhere in a handler, turned into a response by the app."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


@dataclass(frozen=True)
class Failure:
    """One error answer: status, OpenAI-style error fields, extra headers."""

    status: int
    message: str
    type: str | None = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # more keys inside "error"
    html: bool = False  # a gateway's HTML page instead of JSON (524)

    def body(self) -> dict[str, Any]:
        """The OpenAI error body."""
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return {"error": {**error, **self.extra}}

    def azure_body(self) -> dict[str, Any]:
        """Azure's shape: ``code`` and ``message`` (no type), param only when there is one."""
        error: dict[str, Any] = {"code": self.code or str(self.status), "message": self.message}
        if self.param:
            error["param"] = self.param
        return {"error": {**error, **self.extra}}


def bad_request(message: str, *, param: str | None = None, code: str | None = "invalid_value") -> SandboxError:
    """A 400 invalid_request_error, ready to raise."""
    return SandboxError(Failure(400, message, code=code, param=param))


@dataclass(frozen=True)
class Modes:
    """The modes that apply to one request."""

    names: tuple[str, ...] = ()
    slow: float = 0.0

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def errors(self) -> list[tuple[str, bool]]:
        """The error modes, each with whether it is a ``-once`` mode."""
        out: list[tuple[str, bool]] = []
        for name in self.names:
            base = name.removesuffix("-once")
            if base in ERROR_MODES:
                out.append((base, name != base))
        return out


def parse_modes(header: str | None, prompt: str | None) -> Modes:
    """The modes named by the header and by ``[sandbox:...]`` keywords in the prompt.

    Raises:
        SandboxError: a mode is unknown or ``slow=`` has no number (400, param x-sandbox-mode).
    """
    words: list[str] = []
    sources = [header or "", *KEYWORD.findall(prompt or "")]
    for source in sources:
        words += [w.strip().lower() for w in source.split(",") if w.strip()]
    names: list[str] = []
    slow = 0.0
    for word in words:
        if word.startswith("slow="):
            try:
                slow = max(float(word.removeprefix("slow=")), 0.0)
            except ValueError:
                raise _unknown(word) from None
            names.append("slow")
        elif word in PLAIN_MODES or word.removesuffix("-once") in ERROR_MODES:
            names.append(word)
        else:
            raise _unknown(word)
    return Modes(names=tuple(names), slow=slow)


def _unknown(word: str) -> SandboxError:
    known = ", ".join([*ERROR_MODES, *PLAIN_MODES, "slow=<seconds>"])
    return bad_request(
        f"unknown sandbox mode {word!r}; known modes: {known} (error modes also as <mode>-once)",
        param=HEADER,
        code="unknown_sandbox_mode",
    )


def failure_for(mode: str, *, model: str, dalle: bool, request_id: str) -> Failure:
    """The error answer that ``mode`` stands for, worded as the real upstream words it."""
    if mode == "moderation":
        if dalle:
            return Failure(
                400,
                "Your request was rejected as a result of our safety system. Your prompt may "
                "contain text that is not allowed by our safety system.",
                code="content_policy_violation",
            )
        return Failure(
            400,
            "Your request was rejected by the safety system. If you believe this is an error, "
            f"contact us at help.openai.com and include the request ID {request_id}. "
            "safety_violations=[violence].",
            type="image_generation_user_error",
            code="moderation_blocked",
            extra={"moderation_details": {"categories": ["violence"]}},
        )
    if mode == "401":
        return unauthorized()
    if mode == "403":
        return Failure(
            403,
            f"Your organization must be verified to use the model `{model}`. Please go to: "
            "https://platform.openai.com/settings/organization/general and click on Verify "
            "Organization. If you just verified, it can take up to 15 minutes for access to "
            "propagate.",
        )
    if mode == "404":
        return Failure(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )
    if mode == "429":
        return Failure(
            429,
            f"Rate limit reached for {model} in organization org-sandbox on images per minute "
            "(IPM): Limit 5, Used 5, Requested 1. Please try again in 10ms.",
            type="requests",
            code="rate_limit_exceeded",
            headers={
                "retry-after-ms": RETRY_AFTER_MS,
                "x-ratelimit-limit-requests": "5",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "10ms",
            },
        )
    if mode == "quota":
        return Failure(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            type="insufficient_quota",
            code="insufficient_quota",
        )
    if mode == "500":
        return Failure(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
    if mode == "503":
        return Failure(
            503,
            "The engine is currently overloaded, please try again later.",
            type="server_error",
            code="engine_overloaded",
        )
    if mode == "524":
        return Failure(524, "A timeout occurred", type=None, html=True)
    raise ValueError(f"not an error mode: {mode!r}")


def unauthorized(*, missing: bool = False) -> Failure:
    """401 as OpenAI says it. The key itself is never echoed."""
    if missing:
        return Failure(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    return Failure(
        401,
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


GATEWAY_TIMEOUT_PAGE = (
    "<!DOCTYPE html><html><head><title>api.302.ai | 524: A timeout occurred</title></head>"
    "<body><h1>A timeout occurred</h1><p>Error code 524</p>"
    "<p>The origin web server timed out responding to this request.</p></body></html>"
)
