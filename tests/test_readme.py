"""The README and server.json say what the code does: settings, tools, commands, examples, registry.

The README's tool reference (between ``<!-- tools:start -->`` and ``<!-- tools:end -->``) is
generated from ``tools/list`` by `render_tools`. When a tool changes, this test fails and
prints the new text; paste it in, or rewrite the section in place with
``UPDATE_README=1 uv run pytest tests/test_readme.py``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import mcp_images
from mcp_images.catalog.models import load_catalog
from mcp_images.catalog.providers import builtin_providers, load_providers
from mcp_images.cli import build_parser
from mcp_images.config import Settings
from mcp_images.pricing.table import load_price_table
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SERVER_JSON = ROOT / "server.json"
CI_SCRIPT = ROOT / ".ci" / "run"
# CI checks the repository out with the shared folder beside it.
# A copy of shared/registry's transcription of the MCP registry schema (2025-12-11), kept in
# the repo so this check runs on any fresh clone.
REGISTRY_SCHEMA = ROOT / "tests" / "data" / "server.schema-2025-12-11.subset.json"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
TOOLS_START, TOOLS_END = "<!-- tools:start -->", "<!-- tools:end -->"
QUICK_START = ["pip install uv && uv run --no-dev mcp-images demo", "uv run --frozen pytest"]
ENV_PREFIX = "MCP_IMAGES_"
FALLBACKS = {"api_key": "OPENAI_API_KEY", "base_url": "OPENAI_BASE_URL"}
HINTS = (
    ("read_only_hint", "read-only", "not read-only"),
    ("destructive_hint", "destructive", "not destructive"),
    ("idempotent_hint", "idempotent", "not idempotent"),
    ("open_world_hint", "open world", "closed world"),
)


# --- reading the README -------------------------------------------------------------------


def readme() -> str:
    return README.read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section (up to the next ``## ``)."""
    match = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no '## {heading}' section"
    return match.group(1)


def code_blocks(text: str, lang: str = "") -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every table row in ``text`` (header and divider rows included)."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
            rows.append([c.strip() for c in cells])
    return rows


def settings_row(field: str) -> list[str]:
    env = ENV_PREFIX + field.upper()
    rows = [r for r in table_rows(section(readme(), "Configuration")) if r and r[0] == f"`{env}`"]
    assert len(rows) == 1, f"the configuration table needs exactly one row for {env}"
    return rows[0]


def shown_default(value: Any) -> str | None:
    """How the configuration table writes a default (None: not a plain value)."""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, int):
        return f"`{value}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return None


# --- the tool reference -------------------------------------------------------------------


def _cell(text: str) -> str:
    """Table-safe text: pipes escaped (also inside code), no raw tags, one line."""
    return " ".join(text.replace("|", "\\|").replace("<", "&lt;").split())


def _type_of(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "anyOf" in schema:
        arms = [_type_of(s) for s in schema["anyOf"] if s.get("type") != "null"]
        return " or ".join(arms)
    if schema.get("type") == "array":
        return f"list of {_type_of(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


def _span(lo: int | None, hi: int | None, unit: str) -> list[str]:
    if hi is None:
        return [f"at least {lo} {unit}"] if lo else []
    return [f"{lo}-{hi} {unit}" if lo else f"max {hi} {unit}"]


def _bounds(schema: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for arm in [schema, *schema.get("anyOf", [])]:
        lo, hi = arm.get("minimum"), arm.get("maximum")
        if lo is not None or hi is not None:
            out.append(f"{'' if lo is None else lo}-{'' if hi is None else hi}")
        out += _span(arm.get("minLength"), arm.get("maxLength"), "chars")
        out += _span(arm.get("minItems"), arm.get("maxItems"), "items")
        if "pattern" in arm:
            out.append(f"`{arm['pattern']}`")
    return out


def _default(name: str, schema: dict[str, Any], required: list[str]) -> str:
    if name in required:
        return "**required**"
    if "default" in schema:
        return f"`{json.dumps(schema['default'])}`"
    return ""


def _hints(annotations: Any) -> str:
    if annotations is None:
        return ""
    said = []
    for attr, yes, no in HINTS:
        value = getattr(annotations, attr, None)
        if value is not None:
            said.append(yes if value else no)
    return f"Hints: {', '.join(said)}."


def render_tools(tools: list[Any]) -> str:
    """The README's tool reference: per tool a heading, its description and a parameter table."""
    parts: list[str] = []
    for tool in tools:
        schema = tool.input_schema
        required = list(schema.get("required", []))
        lines = [f"### `{tool.name}`", "", f"{tool.description} {_hints(tool.annotations)}".strip(), ""]
        lines += ["| parameter | type | default | bounds | description |", "|---|---|---|---|---|"]
        for name, prop in schema.get("properties", {}).items():
            cells = [
                f"`{name}`",
                _type_of(prop),
                _default(name, prop, required),
                ", ".join(_bounds(prop)),
                prop.get("description", ""),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


async def generated_tools_section(tmp_path: Path) -> str:
    """The tool reference as a server with the built-in catalog lists its tools."""
    from mcp import Client

    from mcp_images.server.build import create_server

    # catalog=None: a catalog file in the developer's environment must not change the README.
    settings = make_settings(tmp_path, None, catalog=None, providers=None, prices=None)
    async with Client(create_server(settings)) as client:
        tools = (await client.list_tools()).tools
    return render_tools(list(tools))


def tools_section(text: str) -> str:
    start, end = text.find(TOOLS_START), text.find(TOOLS_END)
    assert 0 <= start < end, f"README needs {TOOLS_START} ... {TOOLS_END} around the tool reference"
    return text[start + len(TOOLS_START) : end].strip()


# --- tests: README ------------------------------------------------------------------------


def test_the_readme_opens_with_the_registry_name_of_server_json() -> None:
    name = json.loads(SERVER_JSON.read_text(encoding="utf-8"))["name"]
    assert f"<!-- mcp-name: {name} -->" in readme()


def test_the_quick_start_is_exactly_the_demo_and_the_test_suite() -> None:
    blocks = code_blocks(section(readme(), "Quick start"))
    assert blocks, "the quick start needs a code block"
    assert blocks[0].splitlines() == QUICK_START


def test_the_readme_test_command_is_what_ci_runs() -> None:
    test_line = code_blocks(section(readme(), "Quick start"))[0].splitlines()[1]
    ci_lines = [line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()]
    assert test_line in ci_lines


@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_every_setting_has_a_row_with_its_variable_and_default(field: str) -> None:
    row = settings_row(field)
    assert len(row) == 4, f"{row}: expected variable | CLI flag | default | meaning"
    expected = shown_default(Settings.model_fields[field].default)
    if expected is not None:
        assert row[2] == expected, f"{ENV_PREFIX}{field.upper()}: README says {row[2]}, code says {expected}"
    assert row[3], f"{ENV_PREFIX}{field.upper()} needs a meaning"


@pytest.mark.parametrize(("field", "fallback"), FALLBACKS.items())
def test_the_openai_fallback_variables_are_in_their_rows(field: str, fallback: str) -> None:
    assert fallback in " ".join(settings_row(field))


def test_the_configuration_states_the_precedence() -> None:
    assert "CLI flag > environment > .env" in section(readme(), "Configuration")


def test_every_cli_flag_that_sets_a_setting_is_named_in_its_row() -> None:
    fields = set(Settings.model_fields)
    for action in build_parser()._actions:
        if action.dest in fields and action.option_strings:
            flag = action.option_strings[0]
            assert f"`{flag}`" in settings_row(action.dest)[1], f"{flag} is missing from its row"


@pytest.mark.anyio
async def test_the_tool_reference_is_what_list_tools_says(tmp_path: Path) -> None:
    generated = await generated_tools_section(tmp_path)
    text = readme()
    if os.environ.get("UPDATE_README") == "1":
        start, end = text.index(TOOLS_START) + len(TOOLS_START), text.index(TOOLS_END)
        README.write_text(f"{text[:start]}\n{generated}\n{text[end:]}", encoding="utf-8")
        text = readme()
    assert tools_section(text) == generated, (
        "README's tool reference is out of date. Run `UPDATE_README=1 uv run pytest tests/test_readme.py`, "
        f"or paste this between {TOOLS_START} and {TOOLS_END}:\n\n{generated}\n"
    )


def test_every_json_example_in_the_readme_parses() -> None:
    blocks = code_blocks(readme(), "json")
    assert len(blocks) >= 5
    for block in blocks:
        json.loads(block)


def _example(marker: str) -> str:
    """The JSON block right after ``<!-- example: marker -->``."""
    match = re.search(rf"<!-- example: {marker} -->\s*```json\n(.*?)^```", readme(), re.M | re.S)
    assert match, f"README needs a JSON example marked <!-- example: {marker} -->"
    return match.group(1)


def test_the_catalog_example_adds_a_model_the_server_then_knows(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(_example("catalog"), encoding="utf-8")
    spec = load_catalog(path).get("gpt-image-3-preview")
    assert spec.known and spec.edits
    assert "xhigh" in spec.accepts["quality"]  # type: ignore[operator]


def test_the_prices_example_overrides_one_price_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(_example("prices"), encoding="utf-8")
    table = load_price_table(path)
    builtin = load_price_table()
    assert table.name != builtin.name
    assert table.models["gpt-image-2"].model_dump() != builtin.models["gpt-image-2"].model_dump()
    assert table.models["dall-e-3"] == builtin.models["dall-e-3"]


def test_the_providers_example_loads_over_the_built_in_ones(tmp_path: Path) -> None:
    path = tmp_path / "providers.json"
    path.write_text(_example("providers"), encoding="utf-8")
    providers = load_providers(path)
    added = set(providers) - set(builtin_providers())
    assert added, "the example should add a provider"
    assert all(providers[name].base_url for name in added)


def test_every_built_in_provider_is_described() -> None:
    text = section(readme(), "Providers and image inputs")
    for name in builtin_providers():
        assert f"`{name}`" in text, name


def test_the_performance_section_keeps_the_benchmark_markers() -> None:
    text = section(readme(), "Performance")
    assert "<!-- bench:start -->" in text and "<!-- bench:end -->" in text


# --- tests: server.json -------------------------------------------------------------------


def server_json() -> dict[str, Any]:
    return json.loads(SERVER_JSON.read_text(encoding="utf-8"))


def test_server_json_is_valid_against_the_registry_schema() -> None:
    data = server_json()
    assert data["$schema"] == SCHEMA_URL
    assert len(data["description"]) <= 100
    from jsonschema import Draft7Validator

    schema = json.loads(REGISTRY_SCHEMA.read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    validator = Draft7Validator(schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(data)]
    assert not problems, "\n".join(problems)


def test_server_json_version_is_the_package_version() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data = server_json()
    assert data["version"] == mcp_images.__version__ == pyproject["project"]["version"]
    assert [p["version"] for p in data["packages"]] == [mcp_images.__version__]


def test_server_json_runs_the_pypi_package_over_stdio_with_uvx() -> None:
    (package,) = server_json()["packages"]
    assert (package["registryType"], package["identifier"]) == ("pypi", "mcp-images")
    assert package["runtimeHint"] == "uvx"
    assert package["transport"] == {"type": "stdio"}


def test_server_json_variables_are_real_settings_with_true_defaults() -> None:
    (package,) = server_json()["packages"]
    for var in package["environmentVariables"]:
        field = var["name"].removeprefix(ENV_PREFIX).lower()
        assert field in Settings.model_fields, var["name"]
        if "default" in var:
            shown = shown_default(Settings.model_fields[field].default)
            assert shown == f"`{var['default']}`", var["name"]


def test_server_json_marks_the_key_secret_and_required_and_lists_every_provider() -> None:
    variables = {v["name"]: v for v in server_json()["packages"][0]["environmentVariables"]}
    key = variables["MCP_IMAGES_API_KEY"]
    assert key["isSecret"] and key["isRequired"]
    assert set(variables["MCP_IMAGES_PROVIDER"]["choices"]) == set(builtin_providers())
