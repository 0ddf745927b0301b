"""The rules that tie declared parameters together (transparent needs png or webp, gif takes
no stream, svg makes one image, markup excludes mask), as data read by `checks`.

A rule names parameters of `parameters.PARAMS`; a condition on a parameter the caller left
out uses its documented default (``output_format`` png, ``n`` 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mcp_images.catalog.parameters import BY_NAME


@dataclass(frozen=True)
class Cond:
    """``name`` is given (or has a documented default) and its value is in ``values``
    (any value when empty) and above ``above`` (when set)."""

    name: str
    values: tuple[Any, ...] = ()
    above: float | None = None

    def holds(self, given: Mapping[str, Any]) -> bool:
        value = given.get(self.name, BY_NAME[self.name].default if self.name in BY_NAME else None)
        if value is None:
            return False
        if self.values and value not in self.values:
            return False
        return self.above is None or value > self.above


@dataclass(frozen=True)
class Rule:
    """When ``when`` holds, ``then`` must hold (``needs``) or must not (``excludes``)."""

    when: Cond
    then: Cond
    kind: Literal["needs", "excludes"]
    message: str
    blame: Literal["when", "then"] = "when"  # whose field the refusal names

    def broken(self, given: Mapping[str, Any]) -> bool:
        if not self.when.holds(given):
            return False
        return self.then.holds(given) != (self.kind == "needs")

    @property
    def field(self) -> str:
        return self.when.name if self.blame == "when" else self.then.name


GIF = Cond("output_format", ("gif",))
SVG = Cond("output_format", ("svg",))

RULES: tuple[Rule, ...] = (
    Rule(
        Cond("background", ("transparent",)),
        Cond("output_format", ("png", "webp")),
        "needs",
        "background=transparent needs output_format png or webp; you sent {output_format}",
    ),
    Rule(
        Cond("output_compression"),
        Cond("output_format", ("jpeg", "webp")),
        "needs",
        "output_compression works only with output_format jpeg or webp; you have {output_format}",
    ),
    Rule(Cond("partial_images", above=0), Cond("stream", (True,)), "needs", "partial_images needs stream=true"),
    Rule(Cond("frame_count"), GIF, "needs", "frame_count needs output_format=gif"),
    Rule(Cond("frame_duration_ms"), GIF, "needs", "frame_duration_ms needs output_format=gif"),
    Rule(GIF, Cond("stream", (True,)), "excludes", "output_format=gif cannot stream; set stream=false", "then"),
    Rule(GIF, Cond("partial_images"), "excludes", "output_format=gif takes no partial_images; leave it out", "then"),
    Rule(GIF, Cond("mask"), "excludes", "output_format=gif cannot be combined with a mask; leave the mask out", "then"),
    Rule(
        GIF,
        Cond("output_compression"),
        "excludes",
        "output_format=gif takes no output_compression; leave it out",
        "then",
    ),
    Rule(Cond("svg"), SVG, "needs", "svg options need output_format=svg"),
    Rule(
        SVG, Cond("n", (1,)), "needs", "output_format=svg makes one image a call: set n=1 (you asked for {n})", "then"
    ),
    Rule(SVG, Cond("stream", (True,)), "excludes", "output_format=svg cannot stream; set stream=false", "then"),
    Rule(SVG, Cond("partial_images"), "excludes", "output_format=svg takes no partial_images; leave it out", "then"),
    Rule(
        SVG,
        Cond("output_compression"),
        "excludes",
        "output_format=svg takes no output_compression; leave it out",
        "then",
    ),
    Rule(Cond("markup"), Cond("mask"), "excludes", "markup cannot be combined with mask; send one of them"),
)
