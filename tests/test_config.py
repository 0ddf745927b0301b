"""Settings precedence: CLI flag > environment > .env, with the OPENAI_* fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_images import cli
from mcp_images.config import load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in (
        "MCP_IMAGES_API_KEY",
        "OPENAI_API_KEY",
        "MCP_IMAGES_BASE_URL",
        "OPENAI_BASE_URL",
        "MCP_IMAGES_DEFAULT_MODEL",
        "MCP_IMAGES_PROVIDER",
        "MCP_IMAGES_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_a_flag_beats_the_environment_which_beats_the_env_file(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MCP_IMAGES_DEFAULT_MODEL=from-dotenv\nMCP_IMAGES_TIMEOUT=11\n")
    assert load_settings().default_model == "from-dotenv"
    clean_env.setenv("MCP_IMAGES_DEFAULT_MODEL", "from-env")
    settings = load_settings()
    assert settings.default_model == "from-env"
    assert settings.timeout == 11  # still from .env: nothing else set it
    assert load_settings(default_model="from-flag").default_model == "from-flag"


def test_the_openai_variables_are_fallbacks(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OPENAI_API_KEY", "sk-openai")
    clean_env.setenv("OPENAI_BASE_URL", "https://example.invalid/v1")
    settings = load_settings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-openai"
    assert settings.base_url == "https://example.invalid/v1"
    clean_env.setenv("MCP_IMAGES_API_KEY", "sk-ours")
    settings = load_settings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-ours"


def test_the_key_never_shows_in_the_settings_text(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("MCP_IMAGES_API_KEY", "sk-very-secret")
    settings = load_settings()
    assert "sk-very-secret" not in repr(settings) and "sk-very-secret" not in str(settings)


def test_without_a_key_the_settings_still_load(clean_env: pytest.MonkeyPatch) -> None:
    assert load_settings().api_key is None


def test_the_default_output_folder_is_absolute_and_per_user(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.resolved_output_dir.is_absolute()
    assert str(Path.home()) in str(settings.resolved_output_dir)
    assert settings.resolved_data_dir.parent == settings.resolved_output_dir.parent


@pytest.mark.parametrize("pasted", ["{key}\n", "{key}\r\n", "  {key}\t", "\n{key}"])
def test_a_key_pasted_with_its_line_end_or_spaces_is_used_without_them(
    clean_env: pytest.MonkeyPatch, pasted: str
) -> None:
    clean_env.setenv("MCP_IMAGES_API_KEY", pasted.format(key="sk-very-secret"))
    settings = load_settings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-very-secret"


@pytest.mark.parametrize("bad", ["sk-very\x7fsecret", "sk-very\x1bsecret", "sk-very\u2013secret", "sk-véry-secret"])
def test_a_key_with_a_control_or_non_ascii_character_stops_the_start_naming_the_variable_not_the_key(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    clean_env.setenv("MCP_IMAGES_API_KEY", bad)
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "MCP_IMAGES_API_KEY" in err
    assert "sk-very" not in err and "secret" not in err
    assert "Traceback" not in err
