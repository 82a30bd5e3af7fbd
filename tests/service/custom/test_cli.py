"""``taggram models`` on the command line: manifests, and create/list/delete with ``--local``."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import httpx
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from taggram.cli import app
from taggram.repository import load_repository
from taggram.service.custom import storage
from taggram.service.custom.cli import read_manifest
from tests.service.custom.test_storage import record
from tests.service.custom.test_tagger import LEVELS, wav
from tests.support.paths import require_repository
from tests.support.server import running_server
from tests.support.web_page import html_page_server


def test_manifests_in_csv_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("path,label\nx.wav,low\nsub/y.wav,high|loud\n")
    rows = [{"path": "x.wav", "label": "low"}, {"path": "/abs/y.wav", "label": ["high", "loud"]}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_manifest(tmp_path / "a.csv") == [
        (tmp_path / "x.wav", "low"),
        (tmp_path / "sub/y.wav", "high|loud"),
    ]
    assert read_manifest(tmp_path / "a.jsonl") == [
        (tmp_path / "x.wav", "low"),
        (Path("/abs/y.wav"), "high|loud"),
    ]
    (tmp_path / "bad.csv").write_text("file,tag\nx.wav,low\n")
    (tmp_path / "empty.csv").write_text("path,label\n")
    for bad in ("bad.csv", "empty.csv", "missing.csv"):
        with pytest.raises(typer.BadParameter):
            read_manifest(tmp_path / bad)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_manifest_saved_with_a_byte_order_mark_reads_as_without(
    tmp_path: Path, suffix: str
) -> None:
    """Excel's "CSV UTF-8" (and some editors' UTF-8) start with a byte-order mark: it was "not a
    manifest with path and label (KeyError('path'))", and JSONDecodeError for JSONL."""
    if suffix == ".csv":
        text = "path,label\nBjörk – Jóga.wav,voix\n"
    else:
        text = json.dumps({"path": "Björk – Jóga.wav", "label": "voix"}, ensure_ascii=False)
    manifest = tmp_path / f"a{suffix}"
    manifest.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert read_manifest(manifest) == [(tmp_path / "Björk – Jóga.wav", "voix")]


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("short.csv", "path,label\nx.wav,low\ny.wav\n", "example 2 (y.wav) has no label"),
        ("blank.csv", "path,label\nx.wav,low\ny.wav, \n", "example 2 (y.wav) has no label"),
        ("null.jsonl", '{"path": "y.wav", "label": null}\n', "example 1 (y.wav) has no label"),
        ("none.jsonl", '{"path": "y.wav"}\n', "example 1 (y.wav) has no label"),
        ("list.jsonl", '{"path": "y.wav", "label": []}\n', "example 1 (y.wav) has no label"),
        ("semicolons.csv", "path;label\nx.wav;low\n", "must name path and label"),
    ],
)
def test_a_manifest_row_without_a_label_is_a_usage_error(
    tmp_path: Path, name: str, text: str, said: str
) -> None:
    """A CSV row missing its label field (or a JSONL label null) made a class named "None"."""
    (tmp_path / name).write_text(text)
    with pytest.raises(typer.BadParameter, match=re.escape(said)):
        read_manifest(tmp_path / name)


def test_manifest_columns_may_have_spaces_around_them(tmp_path: Path) -> None:
    """As the catalogue's manifests read them: "path, label" (a space after the comma)."""
    (tmp_path / "a.csv").write_text("path, label\nx.wav,low\n")
    assert read_manifest(tmp_path / "a.csv") == [(tmp_path / "x.wav", "low")]


def test_a_manifest_naming_absent_files_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(wav(0.0, 0))
    manifest = tmp_path / "a.csv"
    manifest.write_text("path,label\nx.wav,low\ngone.wav,high\n")
    made = CliRunner().invoke(app, ["models", "create", "m", str(manifest), "--url", "http://x"])
    assert made.exit_code == 2, made.output
    assert "gone.wav" in made.output and "x.wav" not in made.output  # the panel wraps lines


@pytest.mark.parametrize("command", [["list"], ["delete", "m"], ["create", "m", "{manifest}"]])
def test_a_url_that_names_no_service_is_a_usage_error(tmp_path: Path, command: list[str]) -> None:
    """'127.0.0.1:8000' (no scheme) was httpx's 'missing an http:// or https:// protocol' after
    the manifest was read, exit 1; now a usage error, as taggram tag refuses it."""
    manifest = tmp_path / "examples.csv"
    manifest.write_text("path,label\n")
    arguments = [part.format(manifest=manifest) for part in command]
    result = CliRunner().invoke(
        app, ["models", *arguments, "--url", "127.0.0.1:8000"], env={"COLUMNS": "300"}
    )
    assert result.exit_code == 2, result.output
    assert "'127.0.0.1:8000' is not a service URL" in result.output


@pytest.mark.parametrize("command", [["list"], ["delete", "m"], ["create", "m", "{manifest}"]])
def test_a_url_where_another_web_server_answers_is_a_usage_error(
    tmp_path: Path, command: list[str]
) -> None:
    """A page of HTML where the service should be: list printed nothing at all, delete and
    create an HTTP status and the page."""
    (tmp_path / "x.wav").write_bytes(wav(0.0, 0))
    (tmp_path / "y.wav").write_bytes(wav(0.4, 1))
    manifest = tmp_path / "examples.csv"
    manifest.write_text("path,label\nx.wav,low\ny.wav,high\n")
    arguments = [part.format(manifest=manifest) for part in command]
    with html_page_server() as url:
        result = CliRunner().invoke(
            app, ["models", *arguments, "--url", url], env={"COLUMNS": "300"}
        )
    assert result.exit_code == 2, result.output
    assert "no taggram service answers there" in result.output


def test_a_service_that_cannot_be_reached_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    (tmp_path / "x.wav").write_bytes(wav(0.0, 0))
    (tmp_path / "y.wav").write_bytes(wav(0.4, 1))
    manifest = tmp_path / "a.csv"
    manifest.write_text("path,label\nx.wav,low\ny.wav,high\n")
    runner = CliRunner()
    for args in (["create", "m", str(manifest)], ["list"], ["delete", "m"]):
        result = runner.invoke(app, ["models", *args, "--url", url])
        assert result.exit_code == 1, result.output
        assert f"cannot reach the service at {url}/v1/models" in result.output
        assert not isinstance(result.exception, httpx.HTTPError)


@pytest.mark.parametrize("setting", ["MODEL_REPOSITORY", "PROVIDERS"])
def test_local_create_without_usable_models_is_a_usage_error(
    setting: str, tiny_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing repository (run outside the clone) or a provider that is not installed: one
    line and exit 2, not a RepositoryError or ONNX Runtime traceback."""
    values = {"MODEL_REPOSITORY": str(tmp_path / "absent"), "PROVIDERS": "NoSuchProvider"}
    monkeypatch.setenv("TAGGRAM_MODEL_REPOSITORY", str(tiny_repository))
    monkeypatch.setenv("TAGGRAM_DEFAULT_MODEL", "tiny")
    monkeypatch.setenv("TAGGRAM_CUSTOM_MODELS", str(tmp_path / "custom"))
    monkeypatch.setenv(f"TAGGRAM_{setting}", values[setting])
    (tmp_path / "a.wav").write_bytes(wav(0.1, 0))
    manifest = tmp_path / "examples.csv"
    manifest.write_text("path,label\na.wav,a\n")
    made = CliRunner().invoke(
        app, ["models", "create", "m", str(manifest), "--local"], env={"COLUMNS": "300"}
    )
    assert made.exit_code == 2, made.output
    assert isinstance(made.exception, SystemExit)
    expected = "does not exist" if setting == "MODEL_REPOSITORY" else "are not installed"
    assert expected in made.output


def _local_examples(tiny_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """In-process settings on the tiny repository (no service URL), and a manifest of three
    examples per loudness level under ``tmp_path``: the manifest's path."""
    for name, value in {
        "MODEL_REPOSITORY": str(tiny_repository),
        "CUSTOM_MODELS": str(tmp_path / "custom"),
        "DEFAULT_MODEL": "tiny",
        "WARMUP": "false",
        "URL": "",
    }.items():
        monkeypatch.setenv(f"TAGGRAM_{name}", value)
    lines = ["path,label"]
    for label, level in LEVELS.items():
        for i in range(3):
            (tmp_path / f"{label}{i}.wav").write_bytes(wav(level, i))
            lines.append(f"{label}{i}.wav,{label}")
    manifest = tmp_path / "examples.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def test_local_create_list_delete(
    tiny_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = _local_examples(tiny_repository, tmp_path, monkeypatch)
    runner = CliRunner()

    made = runner.invoke(app, ["models", "create", "levels", str(manifest), "--local"])
    assert made.exit_code == 0, made.output
    assert "levels: " in made.output and "3 classes from 9 examples" in made.output
    assert (tmp_path / "custom" / "levels" / "record.json").is_file()
    listed = runner.invoke(app, ["models", "list", "--local"])
    assert listed.exit_code == 0 and "levels: " in listed.output
    twice = runner.invoke(app, ["models", "create", "levels", str(manifest), "--local"])
    assert twice.exit_code == 1 and "model_exists" in twice.output
    both = runner.invoke(app, ["models", "list", "--local", "--url", "http://x"])
    assert both.exit_code != 0
    assert runner.invoke(app, ["models", "delete", "levels", "--local"]).exit_code == 0
    assert "levels" not in runner.invoke(app, ["models", "list", "--local"]).output
    gone = runner.invoke(app, ["models", "delete", "levels", "--local"])
    assert gone.exit_code == 1 and "model_not_found" in gone.output


def test_a_model_created_locally_tags_in_process(
    tiny_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`taggram tag --model` and `taggram catalogue --local --model` with a custom tagger of
    the folder, as `models create --local` leaves it: both refused it ("no model named",
    "models ['levels'] are not in ...") since they loaded only repository models."""
    _local_examples(tiny_repository, tmp_path, monkeypatch)
    songs = tmp_path / "songs"
    songs.mkdir()
    for label, level in LEVELS.items():
        (songs / f"{label}.wav").write_bytes(wav(level, 99, seconds=7))
    runner = CliRunner()
    made = runner.invoke(
        app, ["models", "create", "levels", str(tmp_path / "examples.csv"), "--local"]
    )
    assert made.exit_code == 0, made.output

    tagged = runner.invoke(app, ["tag", str(songs / "high.wav"), "--model", "levels", "--json"])
    assert tagged.exit_code == 0, tagged.output
    body = json.loads(tagged.stdout)
    assert body["model"]["name"] == "levels"
    assert body["tags"][0]["tag"] == "high"
    assert {item["tag"] for item in body["tags"]} == set(LEVELS)
    unknown = runner.invoke(app, ["tag", str(songs / "high.wav"), "--model", "nope"])
    assert unknown.exit_code == 2 and "levels" in unknown.output  # listed as served

    output = tmp_path / "tags.jsonl"
    args = ["catalogue", str(songs), "--local", "--model", "levels", "--output", str(output)]
    catalogued = runner.invoke(app, args)
    assert catalogued.exit_code == 0, catalogued.output
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert {(r["id"], r["status"], r["model"]) for r in records} == {
        (f"{label}.wav", "ok", "levels") for label in LEVELS
    }
    assert all(r["top_tags"][0]["tag"] == r["id"].removesuffix(".wav") for r in records)


def test_local_create_checks_the_classes_given(
    tiny_repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /v1/models takes the classes meant, to catch a mistyped label; the command line had
    no way to give them."""
    manifest = _local_examples(tiny_repository, tmp_path, monkeypatch)
    runner = CliRunner()
    create = ["models", "create", "levels", str(manifest), "--local"]
    meant = ["low", "mid", "hihg"]  # the last one mistyped
    refused = runner.invoke(app, [*create, *(f"--class={c}" for c in meant)])
    assert refused.exit_code == 1, refused.output
    assert "invalid_examples" in refused.output and "are not among the classes" in refused.output
    made = runner.invoke(app, [*create, *(f"--class={c}" for c in LEVELS)])
    assert made.exit_code == 0, made.output
    assert "3 classes from 9 examples" in made.output


def test_local_list_names_every_model_served_with_its_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It listed the custom models only: a user looking for what to tag with, or for the
    features of ``--features``, saw nothing of the repository's taggers and feature extractors.
    The custom model's summary is kept, after its kind."""
    repository = require_repository()
    storage.write(tmp_path / "custom", record("drums"), {"mean": np.zeros(2)})
    monkeypatch.setenv("TAGGRAM_MODEL_REPOSITORY", str(repository))
    monkeypatch.setenv("TAGGRAM_CUSTOM_MODELS", str(tmp_path / "custom"))
    listed = CliRunner().invoke(app, ["models", "list", "--local"])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    served = load_repository(repository, verify_hashes=False)
    assert [line.split(":")[0] for line in lines] == [*served, "drums"]
    assert "MTT_musicnn: tagger, 50 tags; embeddings penultimate, mean_pool, max_pool" in lines
    assert "MTT_sample_cnn: tagger, 50 tags; embeddings embedding" in lines
    assert "MTT_vgg_int8: tagger, 50 tags; embeddings pool5" in lines
    assert "mfcc: feature extractor; embeddings statistics" in lines
    assert "random_vgg: feature extractor; embeddings features" in lines
    assert lines[-1] == (
        "drums: custom, prototypes on MTT_musicnn.penultimate, 2 classes from 4 examples; "
        "accuracy 1.000 (chance 0.500); 1.0 s"
    )
    # only the models the service would load, in its order
    monkeypatch.setenv("TAGGRAM_MODELS", "MTT_vgg,mfcc")
    subset = CliRunner().invoke(app, ["models", "list", "--local"])
    assert subset.exit_code == 0, subset.output
    assert [line.split(":")[0] for line in subset.stdout.splitlines()] == [
        "MTT_vgg",
        "mfcc",
        "drums",
    ]


def test_local_list_refuses_a_model_the_repository_lacks_as_the_service_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``TAGGRAM_MODELS=MTT_vgg,MTT_vgq``: the list left the mistyped name out without a word and
    exited 0, while a service with that setting refuses to start. It says what was asked and what
    the repository has, in the service's own words, as a usage error (exit 2)."""
    from taggram.repository import RepositoryError
    from taggram.service.settings import environment_settings
    from taggram.service.tagging import Tagger

    repository = require_repository()
    storage.write(tmp_path / "custom", record("drums"), {"mean": np.zeros(2)})
    monkeypatch.setenv("TAGGRAM_MODEL_REPOSITORY", str(repository))
    monkeypatch.setenv("TAGGRAM_CUSTOM_MODELS", str(tmp_path / "custom"))
    monkeypatch.setenv("TAGGRAM_MODELS", "MTT_vgg,MTT_vgq")
    listed = CliRunner().invoke(app, ["models", "list", "--local"])
    assert listed.exit_code == 2, listed.output
    assert isinstance(listed.exception, SystemExit)  # no traceback
    assert listed.stdout == ""  # no partial list that reads as what the service serves
    has = ", ".join(sorted(load_repository(repository, verify_hashes=False)))
    said = f"models ['MTT_vgq'] are not in {repository} (TAGGRAM_MODELS); it has {has}"
    assert said in " ".join(listed.stderr.split())
    with pytest.raises(RepositoryError) as refused:  # the service's start-up, the same check
        Tagger(environment_settings())
    assert str(refused.value) == said


def test_list_through_the_service_names_its_models_with_their_kind(tmp_path: Path) -> None:
    env = {
        "TAGGRAM_MODELS": "MTT_vgg,mfcc",
        "TAGGRAM_WARMUP": "0",
        "TAGGRAM_CUSTOM_MODELS": str(tmp_path / "custom"),
    }
    keyed = {**env, "TAGGRAM_API_KEYS": "list-key-0123456789"}
    with running_server(require_repository(), tmp_path, env=keyed) as server:
        refused = CliRunner().invoke(app, ["models", "list", "--url", server.url])
        listed = CliRunner().invoke(
            app, ["models", "list", "--url", server.url, "--api-key", "list-key-0123456789"]
        )
    assert refused.exit_code == 1
    assert refused.stderr.startswith("--api-key (TAGGRAM_API_KEY): the service refused it: 401")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.splitlines() == [
        "MTT_vgg: tagger, 50 tags; embeddings pool5",
        "mfcc: feature extractor; embeddings statistics",
    ]
