"""Settings: environment variables, comma lists, and the CLI options that override them."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import onnxruntime as ort
import pytest
from pydantic_core import PydanticUndefined
from typer.testing import CliRunner

from taggram.cli import app as taggram_app
from taggram.repository import load_repository
from taggram.service.api.auth import key_id
from taggram.service.cli import app, settings_from_options
from taggram.service.settings import (
    Settings,
    available_cores,
    cpu_limit,
    misspelt_variables,
)
from tests.support.paths import ROOT

README = (ROOT / "README.md").read_text()


def test_defaults_serve_the_musicnn_default_model() -> None:
    settings = Settings()
    assert settings.default_model == "MTT_musicnn"
    assert settings.max_duration_seconds >= 600  # a 10-minute track is accepted
    assert settings.threads_per_batch >= 1
    assert settings.inference_workers >= 1


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGRAM_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("TAGGRAM_PROVIDERS", "CUDAExecutionProvider, CPUExecutionProvider")
    monkeypatch.setenv("TAGGRAM_MODELS", "MTT_musicnn")
    monkeypatch.setenv("TAGGRAM_MODEL_REPOSITORY", "elsewhere")
    settings = Settings()
    assert settings.max_batch_size == 8
    assert settings.providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert settings.models == ["MTT_musicnn"]
    assert settings.model_repository == Path("elsewhere")


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGRAM_MAX_BATCH_SIZE", "0")
    with pytest.raises(ValueError, match="max_batch_size"):
        Settings()


def test_command_line_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGRAM_PORT", "9000")
    monkeypatch.setenv("TAGGRAM_MAX_BATCH_SIZE", "8")
    settings = settings_from_options({"port": 8123, "max_batch_size": None})
    assert (settings.port, settings.max_batch_size) == (8123, 8)


def test_every_setting_is_a_serve_option() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in result.output


def test_serve_help_gives_each_default_as_the_readme_does() -> None:
    """An operator reads the defaults in ``taggram serve --help``: the README table's values."""
    result = CliRunner().invoke(taggram_app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    rows = re.findall(r"^\| `TAGGRAM_(\w+)` \| `[^`]*` \| `([^`]*)`", README, flags=re.M)
    documented = {name.lower(): default for name, default in rows}
    assert "max_batch_size" in documented
    for name, field in Settings.model_fields.items():
        env = f"env TAGGRAM_{name.upper()})"
        if field.default in (None, "", PydanticUndefined):  # unset, or computed at start-up
            assert f"({env}" in shown, name
        else:
            assert f"(default {documented[name]}; {env}" in shown, name


def test_the_bodies_in_flight_must_hold_the_largest_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """A budget below one body at its limit would refuse that body forever: refused at start."""
    monkeypatch.setenv("TAGGRAM_MAX_BODY_BYTES_IN_FLIGHT", str(256 * 1024 * 1024))
    with pytest.raises(ValueError, match="TAGGRAM_MAX_BATCH_BYTES"):
        Settings()  # the batch limit's default is 512 MiB
    assert Settings(max_batch_bytes=128 * 1024 * 1024).max_body_bytes_in_flight == 256 << 20


def test_a_near_miss_of_a_setting_is_named_with_the_setting_it_misses() -> None:
    environ = {
        "TAGGRAM_MAX_UPLOAD_BYTE": "1",  # a typo: the default stays in force
        "TAGGRAM_API_KEY": "k" * 32,  # the client's variable on a server: no authentication
        "TAGGRAM_MAX_UPLOAD_BYTES": "1",  # a setting
        "TAGGRAM_URL": "http://x",  # the client's, nothing like a setting
        "TAGGRAM_SHARED": "/data",
        "PATH": "/bin",
    }
    assert misspelt_variables(environ) == {
        "TAGGRAM_MAX_UPLOAD_BYTE": "TAGGRAM_MAX_UPLOAD_BYTES",
        "TAGGRAM_API_KEY": "TAGGRAM_API_KEYS",
    }


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2, limits.cpu: 1500m
        ({"cpu.max": "max 100000\n"}, None),  # v2 without a limit
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),  # outside a cgroup that says
    ],
)
def test_the_cpu_limit_is_read_from_the_cgroup(
    tmp_path: Path, files: dict[str, str], limit: float | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_limit(tmp_path) == limit
    unlimited = available_cores(tmp_path / "none")
    expected = min(unlimited, math.ceil(limit)) if limit else unlimited
    assert available_cores(tmp_path) == expected


def test_a_fraction_of_a_core_is_still_one_core(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("10000 100000\n")
    assert available_cores(tmp_path) == 1


def test_help_and_usage_errors_read_in_an_80_column_terminal() -> None:
    """rich's panels cut names short at 80 columns ("TAGGRAM_MODEL_REPOS…") and boxed a usage
    error over several lines; click's plain help wraps at words, its error is one line."""
    runner = CliRunner()
    shown = runner.invoke(taggram_app, ["serve", "--help"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    words = set(shown.output.split())
    for name in Settings.model_fields:
        assert f"--{name.replace('_', '-')}" in words, name
        assert f"TAGGRAM_{name.upper()})" in words, name
    refused = runner.invoke(taggram_app, ["tag", "a.wav", "--top-k", "0"], env={"COLUMNS": "80"})
    assert refused.exit_code == 2
    assert refused.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--top-k' / '-k': Input should be greater than or equal to 1"
    )


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"| `TAGGRAM_{name.upper()}` |" in readme, name


@pytest.mark.parametrize(
    ("given", "kept"), [("", ""), ("/", ""), ("/taggram/", "/taggram"), ("/a/b", "/a/b")]
)
def test_root_path_is_normalised(given: str, kept: str) -> None:
    assert Settings(root_path=given).root_path == kept


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("*", ["*"]),
        ("https://app.example/", ["https://app.example"]),
        (
            "HTTPS://App.Example:8443, http://localhost:3000/",
            ["https://app.example:8443", "http://localhost:3000"],
        ),
    ],
)
def test_cors_origins_are_kept_as_browsers_send_them(given: str, kept: list[str]) -> None:
    assert Settings(cors_origins=given).cors_origins == kept


@pytest.mark.parametrize("origin", ["app.example", "https://app.example/ui", "null", "https://"])
def test_a_cors_origin_that_no_browser_sends_refuses_to_start(
    origin: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """It started, and matched no browser's Origin. (A missing repository: nothing serves.)"""
    monkeypatch.setenv("TAGGRAM_CORS_ORIGINS", origin)
    result = CliRunner().invoke(app, ["--model-repository", str(tmp_path / "none"), "--port", "1"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: TAGGRAM_CORS_ORIGINS: {origin!r} is not an origin: give scheme://host[:port] "
        "(no path), e.g. https://app.example.com, or * for any"
    ]


def test_a_bad_value_is_named_as_it_was_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A variable by its name, an option by its flag: the line said ``max_batch_size: ...``,
    neither what a ConfigMap sets nor what was typed."""
    monkeypatch.setenv("TAGGRAM_MAX_BATCH_SIZE", "abc")
    repository = str(tmp_path / "none")
    arguments = ["--model-repository", repository, "--port", "1", "--max-queue-delay-ms", "-3"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "error: TAGGRAM_MAX_BATCH_SIZE: Input should be a valid integer, unable to parse string "
        "as an integer",
        "error: --max-queue-delay-ms: Input should be greater than or equal to 0",
    ]


def test_root_path_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="root_path"):
        Settings(root_path="taggram")


@pytest.mark.parametrize(
    "name", [name for name, field in Settings.model_fields.items() if field.annotation is float]
)
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "-1"])
def test_every_float_setting_is_finite_and_in_range(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"TAGGRAM_{name.upper()}", value)
    with pytest.raises(ValueError, match=name):
        Settings()


def test_an_unset_default_model_follows_the_models_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAGGRAM_MODELS", "MTT_vgg_int8,MSD_vgg")
    assert Settings().default_model == "MTT_vgg_int8"
    monkeypatch.setenv("TAGGRAM_MODELS", "MSD_vgg,MTT_musicnn")
    assert Settings().default_model == "MTT_musicnn"  # the built-in default, still loaded
    monkeypatch.setenv("TAGGRAM_DEFAULT_MODEL", "MSD_vgg")
    assert Settings().default_model == "MSD_vgg"


def test_an_explicit_default_model_that_is_not_loaded_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAGGRAM_MODELS", "MTT_vgg_int8")
    monkeypatch.setenv("TAGGRAM_DEFAULT_MODEL", "MTT_musicnn")
    with pytest.raises(ValueError, match=r"'MTT_musicnn' .* is not among the models loaded"):
        Settings()
    result = CliRunner().invoke(app, ["--port", "1"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: default_model 'MTT_musicnn' (TAGGRAM_DEFAULT_MODEL) is not among the models "
        "loaded, MTT_vgg_int8 (TAGGRAM_MODELS): add it to them, or leave default_model unset "
        "to use the first of them that tags"
    ]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            ["--model-repository", "{missing}"],
            # the command builds the folder named, not ./model_repository
            "model repository {missing} does not exist; "
            "run `taggram build-models --repository {missing}`",
        ),
        (
            ["--model-repository", "{tiny}", "--models", "NOPE"],
            "models ['NOPE'] are not in {tiny} (TAGGRAM_MODELS); it has {names}",
        ),
        (
            # the setting named, and what the repository has: a mistyped name was a guess
            ["--model-repository", "{tiny}", "--default-model", "tiny_"],
            "default model 'tiny_' is not in {tiny} (TAGGRAM_DEFAULT_MODEL); it has {names}",
        ),
    ],
)
def test_a_missing_repository_or_model_refuses_to_start_in_one_line(
    options: list[str], expected: str, tiny_repository: Path, tmp_path: Path
) -> None:
    """Checked before the port opens: uvicorn used to log the failed start-up's traceback."""
    paths = {"missing": tmp_path / "missing", "tiny": tiny_repository}
    arguments = [option.format(**paths) for option in options]
    result = CliRunner().invoke(app, [*arguments, "--port", "1", "--no-warmup"])
    assert result.exit_code == 2, result.output
    names = ", ".join(sorted(load_repository(tiny_repository)))
    assert result.stderr.strip().splitlines() == [f"error: {expected.format(**paths, names=names)}"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (
            ["--api-keys", "a-long-enough-key-0123,short-key"],
            "API key {short} (entry 2 of TAGGRAM_API_KEYS) is shorter than 16 characters",
        ),
        (
            ["--api-keys", "a-long-enough-key-0123:owner"],
            "API key {long} (entry 1 of TAGGRAM_API_KEYS): unknown scope 'owner'; use ('tag', "
            "'admin')",
        ),
        (
            ["--api-keys-file", "{keys_file}"],
            "API key {short} (line 3 of TAGGRAM_API_KEYS_FILE {keys_file}) is shorter than 16 "
            "characters",
        ),
        (
            ["--api-keys-file", "{missing}"],
            "cannot read TAGGRAM_API_KEYS_FILE {missing}: [Errno 2] No such file or directory: "
            "'{missing}'",
        ),
        (
            ["--providers", "NoSuchExecutionProvider"],
            "providers ['NoSuchExecutionProvider'] are not installed (TAGGRAM_PROVIDERS); "
            "available: {available}",
        ),
    ],
    ids=[
        "short-key",
        "unknown-scope",
        "short-key-in-file",
        "unreadable-keys-file",
        "provider-not-installed",
    ],
)
def test_a_bad_api_key_or_provider_refuses_to_start_in_one_line(
    options: list[str], expected: str, tiny_repository: Path, tmp_path: Path
) -> None:
    """Checked before the port opens: a bad key or keys file was a 30-line traceback (exit 1),
    and a provider that is not installed failed the lifespan after the port had opened. A bad
    key is named by its id and where it was given, never by the key itself."""
    keys_file = tmp_path / "keys"
    keys_file.write_text("a-long-enough-key-0123:admin\n# the tagging service\nshort-key\n")
    values = {
        "keys_file": keys_file,
        "missing": tmp_path / "missing",
        "short": key_id("short-key"),
        "long": key_id("a-long-enough-key-0123"),
        "available": ort.get_available_providers(),
    }
    arguments = [option.format(**values) for option in options]
    handlers = list(logging.getLogger().handlers)
    result = CliRunner().invoke(
        app,
        [*arguments, "--model-repository", str(tiny_repository), "--models", "tiny", "--port", "1"],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [f"error: {expected.format(**values)}"]
    # Logging is left as it was: a root handler on the runner's stream, closed once the command
    # returned, made every later test that logs print '--- Logging error ---' into its stderr.
    assert logging.getLogger().handlers == handlers


@pytest.mark.parametrize(
    "command",
    [
        ["tag", "{audio}", "--local"],
        ["catalogue", "{folder}", "--local", "--output", "{folder}/out.jsonl"],
        ["models", "create", "m", "{folder}/examples.csv", "--local"],
        ["models", "list", "--local"],
        ["models", "delete", "m", "--local"],
    ],
    ids=["tag", "catalogue", "models-create", "models-list", "models-delete"],
)
def test_a_bad_environment_variable_is_a_usage_error_in_process(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-process commands read the TAGGRAM_* variables as serve does: a bad value was
    pydantic's report in a traceback (exit 1); now one line naming the variable, exit 2."""
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    (tmp_path / "examples.csv").write_text("path,label\na.wav,x\na.wav,y\n")
    monkeypatch.setenv("TAGGRAM_MAX_BATCH_SIZE", "abc")
    monkeypatch.setenv("TAGGRAM_URL", "")
    arguments = [part.format(audio=audio, folder=tmp_path) for part in command]
    result = CliRunner().invoke(taggram_app, arguments, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert (
        "TAGGRAM_MAX_BATCH_SIZE: Input should be a valid integer, unable to parse string as an "
        "integer" in result.output
    )


def test_optional_numeric_settings_show_their_type_in_help() -> None:
    """``--intra-op-threads`` (``int | None``) showed ``<str>``, and took ``abc`` until the
    settings refused it; an optional setting shows and parses its own type."""
    result = CliRunner().invoke(taggram_app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "--intra-op-threads <int>" in result.output
    assert "--api-keys-file <path>" in result.output
