from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from llmserver.app.settings import (
    Environment,
    LogFormat,
    Settings,
    SettingsError,
    load_settings,
    unknown_variables,
)

REPO = Path(__file__).resolve().parents[3]


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = load_settings({}, root=tmp_path)
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.redis_url is None
    assert settings.profile == "demo"


def test_values_are_converted_to_their_types(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "LLMSERVER_PORT": "9001",
            "LLMSERVER_HOT_CACHE": "off",
            "LLMSERVER_REQUEST_TIMEOUT_S": "2.5",
            "LLMSERVER_LOG_FORMAT": "Console",
            "LLMSERVER_CORS_ORIGINS": "http://a.test, http://b.test",
            "LLMSERVER_REDIS_URL": "",
            "LLMSERVER_TORCH_THREADS": "3",
        },
        root=tmp_path,
    )
    assert settings.port == 9001
    assert settings.hot_cache is False
    assert settings.request_timeout_s == 2.5
    assert settings.log_format is LogFormat.CONSOLE
    assert settings.cors_origins == ("http://a.test", "http://b.test")
    assert settings.redis_url is None
    assert settings.torch_threads == 3


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("LLMSERVER_PORT", "eighty", "an integer"),
        ("LLMSERVER_PORT", "70000", "1 to 65535"),
        ("LLMSERVER_HOT_CACHE", "maybe", "true or false"),
        ("LLMSERVER_LOG_FORMAT", "xml", "auto, json, console"),
        ("LLMSERVER_REDIS_FAILURE_POLICY", "retry", "fail_open, fail_closed"),
        ("LLMSERVER_PROFILE", "gpu", "demo, cpu, local, none"),
        ("LLMSERVER_DATABASE_URL", "mysql://x", "postgresql+asyncpg://"),
        ("LLMSERVER_MAX_QUEUE", "0", ">= 1"),
        ("LLMSERVER_REQUEST_TIMEOUT_S", "soon", "a number"),
        ("LLMSERVER_PREFIX_CACHE_MB", "-1", ">= 0 (0: off)"),
        ("LLMSERVER_PREFILL_CHUNK_TOKENS", "0", ">= 1"),
        ("LLMSERVER_OTEL_ENDPOINT", "collector:4318", "http:// or https://"),
        ("LLMSERVER_OTEL_SERVICE_NAME", " ", "a non-empty name"),
    ],
)
def test_invalid_value_names_the_variable_and_what_is_accepted(
    tmp_path: Path, variable: str, value: str, accepted: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({variable: value}, root=tmp_path)
    assert caught.value.variable == variable
    assert variable in str(caught.value)
    assert accepted in str(caught.value)


def test_env_files_layer_with_environment_last(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LLMSERVER_PORT=8100\nLLMSERVER_LOG_LEVEL=DEBUG\n")
    (tmp_path / ".env.local").write_text("# local\nexport LLMSERVER_PORT='8200'\n")
    assert load_settings({}, root=tmp_path).port == 8200
    assert load_settings({}, root=tmp_path).log_level == "DEBUG"
    assert load_settings({"LLMSERVER_PORT": "8300"}, root=tmp_path).port == 8300


def test_server_secret_is_required_outside_tests(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="LLMSERVER_SERVER_SECRET"):
        load_settings({}, root=tmp_path).require_server_secret()
    with pytest.raises(SettingsError, match="LLMSERVER_SERVER_SECRET"):
        load_settings({"LLMSERVER_SERVER_SECRET": "short"}, root=tmp_path).require_server_secret()
    strong = "s" * 40
    assert (
        load_settings({"LLMSERVER_SERVER_SECRET": strong}, root=tmp_path).require_server_secret()
        == strong
    )
    test_env = load_settings({"LLMSERVER_ENV": "test"}, root=tmp_path)
    assert test_env.env is Environment.TEST
    assert len(test_env.require_server_secret()) >= 32


def test_secret_values_are_not_echoed_in_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(
            {"LLMSERVER_SERVER_SECRET": "tiny-secret-value"}, root=tmp_path
        ).require_server_secret()
    assert "tiny-secret-value" not in str(caught.value)


def test_unknown_variables_are_reported() -> None:
    env = {"LLMSERVER_PROT": "1", "LLMSERVER_PORT": "2", "LLMSERVER_TEST_X": "3", "HOME": "/"}
    assert unknown_variables(env) == ["LLMSERVER_PROT"]


def test_env_example_documents_every_setting() -> None:
    app_part = (REPO / ".env.example").read_text().split("# --- docker compose only")[0]
    documented = set(re.findall(r"^(LLMSERVER_[A-Z0-9_]+)=", app_part, re.M))
    fields = {"LLMSERVER_" + f.name.upper() for f in msgspec.structs.fields(Settings)}
    assert documented == fields


def test_readme_configuration_table_mentions_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    fields = {"LLMSERVER_" + f.name.upper() for f in msgspec.structs.fields(Settings)}
    missing = {name for name in fields if f"`{name}`" not in readme}
    assert not missing
