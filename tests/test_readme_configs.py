"""Every client config in the README works on the day it is read.

Each JSON block that configures a server is valid JSON, runs a command uv provides (``uv`` or
``uvx``) in a form that starts this project's ``mcp-images`` script from a checkout, and names
the same placeholder path the text tells a person to replace; the Claude Code line does too.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CHECKOUT = "/path/to/mcp-images"
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
# What works from a checkout before the package is on PyPI: the arguments after the command.
CHECKOUT_FORMS = {
    "uv": ["run", "--directory", CHECKOUT, "mcp-images"],
    "uvx": ["--from", CHECKOUT, "mcp-images"],
}


def json_blocks() -> list[str]:
    return re.findall(r"^```json\n(.*?)^```", README, re.M | re.S)


def server_entries() -> list[dict[str, Any]]:
    entries = []
    for block in json_blocks():
        data = json.loads(block)
        for key in ("mcpServers", "servers"):
            entries += list(data.get(key, {}).values()) if isinstance(data, dict) else []
    return entries


def test_every_json_block_in_the_readme_is_valid_json() -> None:
    for block in json_blocks():
        json.loads(block)


def test_the_readme_configures_claude_desktop_cursor_vs_code_and_an_aggregator() -> None:
    assert len(server_entries()) >= 4


@pytest.mark.parametrize("entry", server_entries(), ids=lambda e: " ".join([e["command"], *e["args"]]))
def test_every_client_config_runs_the_checkout_with_a_command_uv_provides(entry: dict[str, Any]) -> None:
    assert entry["command"] in CHECKOUT_FORMS, f"{entry['command']}: not a command uv installs"
    assert entry["args"] == CHECKOUT_FORMS[entry["command"]]
    assert entry["args"][-1] in SCRIPTS
    assert all(isinstance(v, str) for v in entry.get("env", {}).values())


def test_the_claude_code_line_runs_the_checkout_too() -> None:
    (line,) = [ln for ln in README.splitlines() if ln.startswith("claude mcp add ")]
    after = shlex.split(line.split(" -- ", 1)[1])
    assert after[0] in CHECKOUT_FORMS and after[1:] == CHECKOUT_FORMS[after[0]]


def test_the_readme_says_which_command_to_use_once_the_package_is_on_pypi() -> None:
    text = re.search(r"^## Use it in your client$(.*?)^## ", README, re.M | re.S)
    assert text is not None
    assert "`uvx mcp-images`" in text.group(1) and "PyPI" in text.group(1)
    assert CHECKOUT in text.group(1)
