"""A bad setting stops the start with its variable, what is wrong and a good example.

Never pydantic's help URL, a traceback, an internal field name alone, or the refused value.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mcp_images import cli
from mcp_images.config import Settings, load_settings
from mcp_images.errors import ConfigError

SECRET = "sk-wrong-place-0123456789"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("MCP_IMAGES_", "OPENAI_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def start_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """What ``mcp-images serve`` says on stderr when it refuses to start (it must refuse)."""
    assert cli.main(["serve", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    for noise in ("errors.pydantic.dev", "Traceback", "validation error", "Input should"):
        assert noise not in captured.err
    return captured.err


BAD = [
    ("MCP_IMAGES_TIMEOUT", "abc", "is not a number", "MCP_IMAGES_TIMEOUT=600"),
    ("MCP_IMAGES_TIMEOUT", "0", "must be more than 0", "MCP_IMAGES_TIMEOUT=600"),
    ("MCP_IMAGES_MAX_RETRIES", "99", "must be at most 10", "MCP_IMAGES_MAX_RETRIES=2"),
    ("MCP_IMAGES_MAX_RETRIES", "1.5", "is not a whole number", "MCP_IMAGES_MAX_RETRIES=2"),
    ("MCP_IMAGES_INLINE", "thumbnail", "must be one of 'preview', 'full' or 'none'", "MCP_IMAGES_INLINE=preview"),
    ("MCP_IMAGES_CONVERT_MASK", "maybe", "is not true or false", "MCP_IMAGES_CONVERT_MASK=true"),
    ("MCP_IMAGES_RESULT_BUDGET", "5", "must be at least 20000", "MCP_IMAGES_RESULT_BUDGET=800000"),
    ("MCP_IMAGES_SYNC_TIMEOUT", "-1", "must be at least 0", "MCP_IMAGES_SYNC_TIMEOUT=50"),
    ("MCP_IMAGES_LOG_LEVEL", "LOUD", "must be one of", "MCP_IMAGES_LOG_LEVEL=INFO"),
    ("MCP_IMAGES_BASE_URL", "api.example.com/v1", "http:// or https://", "MCP_IMAGES_BASE_URL=https://"),
    ("MCP_IMAGES_BASE_URL", "ftp://files.example.com/v1", "http:// or https://", "MCP_IMAGES_BASE_URL=https://"),
    ("MCP_IMAGES_BASE_URL", "https:///v1", "with a host name", "MCP_IMAGES_BASE_URL=https://"),
    ("MCP_IMAGES_BASE_URL", "https://up.example:99999/v1", "port", "MCP_IMAGES_BASE_URL=https://"),
    ("OPENAI_BASE_URL", "localhost:8000/v1", "http:// or https://", "OPENAI_BASE_URL=https://"),
    ("MCP_IMAGES_PROVIDER", "openia", "there is no provider 'openia'", "MCP_IMAGES_PROVIDER=openai"),
]


@pytest.mark.parametrize(("variable", "value", "problem", "example"), BAD, ids=[f"{v}={x}" for v, x, _, _ in BAD])
def test_a_bad_setting_stops_the_start_naming_its_variable_the_problem_and_a_good_example(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, problem: str,
    example: str,
) -> None:  # fmt: skip
    clean_env.setenv(variable, value)
    err = start_error(capsys)
    assert err.startswith(f"mcp-images: {variable} ")
    assert problem in err
    assert f"for example {example}" in err


def test_a_short_request_state_secret_stops_the_start_without_showing_it(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("MCP_IMAGES_REQUEST_STATE_SECRET", "short-shared-secret-9f3a")
    err = start_error(capsys)
    assert err.startswith("mcp-images: MCP_IMAGES_REQUEST_STATE_SECRET ")
    assert "at least 32 characters" in err and "short-shared-secret-9f3a" not in err


def test_every_bad_setting_is_reported_at_once_one_line_each(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("MCP_IMAGES_TIMEOUT", "abc")
    clean_env.setenv("MCP_IMAGES_INLINE", "x")
    clean_env.setenv("MCP_IMAGES_TASK_TTL_DAYS", "0")
    lines = start_error(capsys).splitlines()
    assert [line.split()[1] for line in lines] == [
        "MCP_IMAGES_TIMEOUT",
        "MCP_IMAGES_INLINE",
        "MCP_IMAGES_TASK_TTL_DAYS",
    ]


def test_a_bad_flag_is_named_as_the_flag(clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    err = start_error(capsys, "--base-url", "api.example.com/v1")
    assert err.startswith("mcp-images: --base-url must be an http:// or https:// URL")
    assert "for example --base-url https://api.openai.com/v1" in err


def test_an_unknown_provider_flag_lists_the_known_ones(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    err = start_error(capsys, "--provider", "nope")
    assert err.startswith("mcp-images: --provider: there is no provider 'nope'")
    assert "openai" in err and "302ai" in err and "MCP_IMAGES_PROVIDERS" in err


def test_a_secret_put_in_the_wrong_variable_is_never_repeated(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for variable in ("MCP_IMAGES_TIMEOUT", "MCP_IMAGES_INLINE", "MCP_IMAGES_BASE_URL", "MCP_IMAGES_PROVIDER"):
        clean_env.setenv(variable, SECRET)
    err = start_error(capsys)
    assert "MCP_IMAGES_TIMEOUT" in err and "MCP_IMAGES_BASE_URL" in err
    assert SECRET not in err and SECRET[:12] not in err


def test_a_provider_from_the_providers_file_is_known_at_start_up(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    providers = tmp_path / "providers.json"
    providers.write_text(json.dumps({"providers": {"mine": {"base_url": "https://mine.example/v1"}}}))
    clean_env.setenv("MCP_IMAGES_PROVIDERS", str(providers))
    assert load_settings(provider="mine").provider == "mine"
    with pytest.raises(ConfigError, match=r"^argument provider: there is no provider 'yours'"):
        load_settings(provider="yours")


@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_every_settings_example_is_itself_a_good_value(field: str) -> None:
    examples = Settings.model_fields[field].examples
    assert examples, f"{field} needs an example for its error message"
    Settings(_env_file=None, **{field: examples[0]})  # type: ignore[call-arg]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_called_env_stops_the_start_instead_of_hanging_it(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / ".env")
    err = start_error(capsys)
    assert "mcp-images: .env: settings file" in err and "not a regular file" in err


def test_a_huge_env_file_stops_the_start_and_a_folder_called_env_is_ignored(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with (tmp_path / ".env").open("wb") as f:
        f.truncate(5 * 1024 * 1024)
    assert "at most 4 MiB" in start_error(capsys)
    (tmp_path / ".env").unlink()
    (tmp_path / ".env").mkdir()  # a virtualenv named .env
    assert load_settings().provider == "openai"


@pytest.mark.parametrize("port", ["http", "70000", "-1"])
def test_a_bad_port_is_refused_by_the_command_line_with_an_example(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.main(["serve", "--transport", "http", "--port", port])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "--port" in err and "for example --port 8000" in err and "Traceback" not in err
