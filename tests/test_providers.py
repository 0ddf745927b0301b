"""Provider profiles: the built-in table, a user's file laid over it, and broken files."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_images.catalog.providers import Provider, get_provider, load_providers
from mcp_images.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "base_url", "auth_header", "auth_scheme", "url_style"),
    [
        ("openai", "https://api.openai.com/v1", "Authorization", "Bearer", "openai"),
        ("302ai", "https://api.302.ai/v1", "Authorization", "Bearer", "openai"),
        ("yescale", "https://api.yescale.io/v1", "Authorization", "Bearer", "openai"),
        ("agcloud", None, "Authorization", "Bearer", "openai"),
        ("compatible", None, "Authorization", "Bearer", "openai"),
        ("azure", None, "api-key", "", "azure"),
    ],
)
def test_builtin_providers_have_the_documented_endpoints_and_auth(
    name: str, base_url: str | None, auth_header: str, auth_scheme: str, url_style: str
) -> None:
    provider = get_provider(name)
    assert provider.name == name
    assert provider.base_url == base_url
    assert provider.auth_header == auth_header
    assert provider.auth_scheme == auth_scheme
    assert provider.url_style == url_style


def test_302ai_sends_response_format_and_async_in_the_query_and_polls_async_result() -> None:
    provider = get_provider("302ai")
    assert set(provider.query_params) == {"response_format", "async"}
    assert provider.response_format == "url"
    assert provider.moderation_on_edits
    assert provider.gateway_timeout_hint and "524" in provider.gateway_timeout_hint
    spec = provider.async_mode
    assert spec is not None
    assert spec.submit_query == {"async": "true"}
    assert spec.id_fields == ["task_id", "id"]
    assert spec.poll_path == "/async_result"
    assert spec.poll_query_param == "task_id"
    assert "result pending" in spec.pending_errs
    assert set(spec.pending_statuses) == {202, 404, 425}


def test_openai_asks_for_no_response_format_and_takes_no_moderation_on_edits() -> None:
    provider = get_provider("openai")
    assert provider.response_format is None
    assert provider.async_mode is None
    assert not provider.moderation_on_edits


def test_azure_has_a_default_api_version() -> None:
    assert get_provider("azure").api_version


def test_permissive_providers_serve_models_they_do_not_list() -> None:
    assert get_provider("yescale").serves("imagen-4")
    assert get_provider("openai").serves("gpt-image-2")
    assert not get_provider("openai").serves("flux-pro")


def test_a_user_file_changes_one_field_of_a_builtin_and_keeps_the_rest(tmp_path: Path) -> None:
    user = tmp_path / "providers.json"
    user.write_text('{"providers": {"azure": {"api_version": "2099-01-01"}}}')
    azure = get_provider("azure", user)
    assert azure.api_version == "2099-01-01"
    assert azure.auth_header == "api-key"
    assert azure.url_style == "azure"


def test_a_user_file_adds_a_provider(tmp_path: Path) -> None:
    user = tmp_path / "providers.json"
    user.write_text(
        '{"providers": {"mine": {"base_url": "https://img.example/v1", "permissive": true,'
        ' "async_mode": {"poll_path": "/v1/async_result"}}}}'
    )
    providers = load_providers(user)
    assert {"openai", "302ai", "mine"} <= set(providers)
    mine = providers["mine"]
    assert mine.base_url == "https://img.example/v1"
    assert mine.async_mode is not None
    assert mine.async_mode.poll_path == "/v1/async_result"
    assert mine.async_mode.id_fields == ["task_id", "id"]


def test_a_file_that_is_not_json_is_refused_with_its_line(tmp_path: Path) -> None:
    user = tmp_path / "providers.json"
    user.write_text('{\n  "providers": {\n    "mine": {"base_url": }\n  }\n}\n')
    with pytest.raises(ConfigError, match=r"providers\.json: line 3"):
        load_providers(user)


def test_a_wrong_field_is_refused_with_the_line_and_the_reason(tmp_path: Path) -> None:
    user = tmp_path / "providers.json"
    user.write_text(
        '{\n  "providers": {\n    "mine": {\n      "base_url": "https://x.example/v1",\n'
        '      "url_style": "soap"\n    }\n  }\n}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_providers(user)
    message = str(caught.value)
    assert "line 5" in message
    assert "'mine'" in message
    assert "url_style" in message


def test_an_unknown_field_is_refused_so_typos_do_not_pass_silently(tmp_path: Path) -> None:
    user = tmp_path / "providers.json"
    user.write_text('{"providers": {"mine": {"base_ulr": "https://x.example/v1"}}}')
    with pytest.raises(ConfigError, match="base_ulr"):
        load_providers(user)


def test_a_base_url_without_a_scheme_is_refused(tmp_path: Path) -> None:
    user = tmp_path / "providers.json"
    user.write_text('{"providers": {"mine": {"base_url": "api.example.com/v1"}}}')
    with pytest.raises(ConfigError, match="http"):
        load_providers(user)


@pytest.mark.parametrize("text", ['["openai"]', '{"models": {}}', '{"providers": {"mine": "https://x.example"}}'])
def test_a_file_of_the_wrong_shape_is_refused(tmp_path: Path, text: str) -> None:
    user = tmp_path / "providers.json"
    user.write_text(text)
    with pytest.raises(ConfigError, match="providers"):
        load_providers(user)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_providers(tmp_path / "nope.json")


def test_an_unknown_provider_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        get_provider("openia")
    message = str(caught.value)
    for name in ("openai", "302ai", "yescale", "agcloud", "compatible", "azure"):
        assert name in message


def test_a_provider_needs_only_a_name() -> None:
    bare = Provider(name="x")
    assert bare.auth_header == "Authorization"
    assert bare.auth_scheme == "Bearer"
    assert bare.url_style == "openai"
    assert bare.serves("anything")
