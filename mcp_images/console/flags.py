"""Command-line options read off the one parameter declaration (`catalog.parameters`).

Each `Param` a tool takes becomes one option: ``output_format`` -> ``--output-format``, an
object's members become one option per leaf (``svg`` -> ``--svg-model``,
``--svg-reasoning-effort``, with ``--svg-effort`` as the short form). Only the shape is taken
from the declaration (type, allowed values, help); bounds and every rule between parameters
are left to the tool, so a refusal here is the tool's own structured refusal, word for word.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from mcp_images.catalog.parameters import Param, params_of

# ``async`` is left out: the command's process is the server, so a background job would stop
# with it. check_task's own parameters are the ``tasks`` command's arguments.
OMITTED = frozenset({"async", "task_id", "wait_seconds"})
ALIASES: dict[str, tuple[str, ...]] = {"output_format": ("--format",), "n": ("-n",)}
DEST_PREFIX = "tool__"
SEP = "__"
TYPES: dict[str, type] = {"integer": int, "number": float}


def _help(text: str) -> str:
    """A declaration's description as argparse help (no templates, ``%`` escaped)."""
    sentences = [s for s in text.split(". ") if "{" not in s]
    return ". ".join(sentences).replace("%", "%%")


def _leaves(param: Param, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Param]]:
    """(path, leaf) for a parameter, or for each member of an object, depth first."""
    here = (*path, param.name)
    if param.kind == "object" and param.fields:
        for member in param.fields:
            yield from _leaves(member, here)
    else:
        yield here, param


def _flags(path: tuple[str, ...]) -> list[str]:
    flags = ["--" + "-".join(p.replace("_", "-") for p in path)]
    if len(path) > 2:  # --svg-reasoning-effort is also --svg-effort
        flags.append(f"--{path[0].replace('_', '-')}-{path[-1].replace('_', '-')}")
    return flags + list(ALIASES.get(path[0], ()) if len(path) == 1 else ())


def _kwargs(leaf: Param, top: Param) -> dict[str, Any]:
    kw: dict[str, Any] = {"help": _help(leaf.description if leaf is top else f"{top.name}: {leaf.description}")}
    if leaf.kind == "boolean":
        kw["action"] = argparse.BooleanOptionalAction
    elif leaf.kind == "image_refs":
        kw.update(nargs="+", metavar="IMAGE")
    else:
        kw["type"] = TYPES.get(leaf.kind, str)
        if leaf.values:
            kw["choices"] = list(leaf.values)
        else:
            kw["metavar"] = leaf.name.upper()
    return kw


def add_tool_options(parser: argparse.ArgumentParser, tool: str, *, positional: tuple[str, ...] = ()) -> None:
    """Add an option for every parameter ``tool`` takes; those in ``positional`` as positionals.

    A parameter the tool requires (``prompt`` of an edit) is a required option.
    """
    group = parser.add_argument_group(f"{tool} arguments (checked by the tool, as for an agent)")
    for param in params_of(tool):
        if param.name in OMITTED:
            continue
        for path, leaf in _leaves(param):
            dest = DEST_PREFIX + SEP.join(path)
            kw = _kwargs(leaf, param)
            if path[0] in positional:
                kw.pop("metavar", None)
                optional = tool not in param.required_in
                nargs = kw.pop("nargs", "?" if optional else None)
                if nargs:
                    kw["nargs"] = nargs
                parser.add_argument(dest, metavar=param.name.upper(), **kw)
                continue
            if tool in param.required_in and len(path) == 1:
                kw["required"] = True
            group.add_argument(*_flags(path), dest=dest, default=None, **kw)


def tool_arguments(ns: argparse.Namespace) -> dict[str, Any]:
    """The tool call's arguments: only what was given, objects rebuilt from their leaves."""
    out: dict[str, Any] = {}
    for dest, value in sorted(vars(ns).items()):
        if not dest.startswith(DEST_PREFIX) or value is None:
            continue
        *parents, name = dest[len(DEST_PREFIX) :].split(SEP)
        here = out
        for part in parents:
            here = here.setdefault(part, {})
        here[name] = value
    return out
