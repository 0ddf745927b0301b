"""Cutting secrets out of text: every form a secret takes once it is inside a message.

A key is rarely quoted raw. A failed request says ``Illegal header value b'Bearer sk-...\\n'``
(the bytes' repr, so a newline is two characters ``\\n``); a URL carries it percent-encoded;
a Basic ``Authorization`` header carries ``base64(user:key)``; an upstream that dumps its
request echoes it JSON-escaped. Replacing only the raw text missed all of these (issue 10).

`make_scrubber` takes the secrets once and works out their forms: raw, repr-escaped (str and
bytes), JSON-escaped, URL-encoded (``quote``, ``quote_plus``, upper and lower case hex),
and base64 (standard and urlsafe) of the secret alone and inside any ``user:secret``. For the
last, the user is unknown, so the secret's position in the encoded text is known only modulo
3 bytes: for each of the three alignments the characters that depend on the secret alone are
cut, which leaves at most two characters (a byte or so) at each edge.

Residual risk: a secret split across strings, hashed, or encoded some other way (hex, a
second layer of base64) passes; so do secrets under `MIN_SECRET_CHARS`, which are not secrets
(a test's one-letter key would rewrite ``resource_link``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["MIN_SECRET_CHARS", "REDACTED", "Scrubber", "make_scrubber", "secret_forms"]

REDACTED = "[redacted]"
# Shorter strings are not secrets and are everywhere in ordinary text; real keys are 20+.
MIN_SECRET_CHARS = 8
BASE64_ALIGNMENTS = 3  # a secret inside base64 starts at byte offset 0, 1 or 2 of a 3-byte group


def _repr_forms(secret: str) -> set[str]:
    """The secret as it shows inside a str's or a bytes' repr, with either quote escaped."""
    forms: set[str] = set()
    for body in (repr(secret)[1:-1], repr(secret.encode("utf-8"))[2:-1]):
        # The enclosing text's quotes decide whether a ' is escaped, not the secret's own.
        forms |= {body, body.replace("\\'", "'"), body.replace("'", "\\'")}
    return forms


def _url_forms(secret: str) -> set[str]:
    forms = {quote(secret), quote(secret, safe=""), quote_plus(secret), quote_plus(secret, safe="")}
    return forms | {_lower_hex(f) for f in forms}


def _lower_hex(encoded: str) -> str:
    """``%2F`` -> ``%2f``: some encoders write lower-case hex."""
    parts = encoded.split("%")
    return parts[0] + "".join("%" + p[:2].lower() + p[2:] for p in parts[1:])


def _base64_cores(data: bytes) -> set[str]:
    """The base64 characters that depend on ``data`` alone, at each of the three alignments.

    At alignment ``r`` the data starts ``8r`` bits into a group; character ``i`` covers bits
    ``6i .. 6i+6``, so the characters from ``ceil(8r/6)`` up to ``floor(8(r+n)/6)`` hold only
    the data's bits, whatever comes before or after it.
    """
    cores: set[str] = set()
    for r in range(BASE64_ALIGNMENTS):
        encoded = base64.b64encode(b"\0" * r + data).decode("ascii")
        start, end = -(-8 * r // 6), 8 * (r + len(data)) // 6
        cores.add(encoded[start:end])
    return cores


def _base64_forms(secret: str) -> set[str]:
    data = secret.encode("utf-8")
    whole = {base64.b64encode(v).decode("ascii") for v in (data, b":" + data, data + b":")}
    forms = whole | {w.rstrip("=") for w in whole} | _base64_cores(data)
    return forms | {f.replace("+", "-").replace("/", "_") for f in forms}


def secret_forms(secret: str) -> frozenset[str]:
    """Every text the scrubber cuts for ``secret`` (empty for one under `MIN_SECRET_CHARS`)."""
    if len(secret) < MIN_SECRET_CHARS:
        return frozenset()
    forms = {secret, json.dumps(secret)[1:-1]} | _repr_forms(secret) | _url_forms(secret) | _base64_forms(secret)
    # A form can be shorter than the secret (a base64 core of a short one): still 8+ or it is noise.
    return frozenset(f for f in forms if len(f) >= MIN_SECRET_CHARS)


@dataclass(frozen=True)
class Scrubber:
    """Cuts a fixed set of secrets out of strings and JSON values. Build it with `make_scrubber`."""

    forms: tuple[str, ...] = ()  # longest first, so a longer form is never cut in half by a shorter

    def __bool__(self) -> bool:
        return bool(self.forms)

    def text(self, text: str) -> str:
        """``text`` with every form of every secret replaced by `REDACTED`."""
        for form in self.forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

    def __call__(self, value: Any) -> Any:
        """A JSON value (str, list, dict, number...) with every string scrubbed, dict keys included."""
        if not self.forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self(k): self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


def make_scrubber(secrets: Iterable[str | None]) -> Scrubber:
    """A scrubber for ``secrets`` (API keys, tokens, passwords); None and short ones are skipped."""
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms |= secret_forms(secret)
    return Scrubber(tuple(sorted(forms, key=lambda f: (-len(f), f))))
