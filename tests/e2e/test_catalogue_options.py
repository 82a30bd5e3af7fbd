"""``taggram catalogue`` checks its model and embedding layer before sending any track.

A model or layer that the service (or the local repository) does not serve would fail every
track alike: the run must stop at once as a usage error (exit 2, one line), as docs/catalogue.md
says bad options do, not record every track as a permanent failure and exit 0.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from taggram.cli import app
from tests.support.paths import require_repository
from tests.support.server import Server


def _run(shared_audio: Path, tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    music = tmp_path / "music"
    music.mkdir()
    (music / "a.wav").write_bytes((shared_audio / "clip_10.wav").read_bytes())
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["catalogue", str(music), "--output", str(output), *args], env={"TAGGRAM_URL": ""}
    )
    return result.exit_code, result.stderr, output


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--model", "nope"], "no model named 'nope'"),
        (["--model", "MTT_musicnn,nope"], "no model named 'nope'"),
        (["--embeddings", "nope"], "--embeddings 'nope': MTT_musicnn has no such layer"),
        (["--model", "MTT_vgg", "--embeddings", "penultimate"], "MTT_vgg has no such layer"),
    ],
)
def test_remote_options_the_service_lacks_are_a_usage_error(
    server: Server, shared_audio: Path, tmp_path: Path, options: list[str], named: str
) -> None:
    code, stderr, output = _run(shared_audio, tmp_path, "--url", server.url, *options)
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and named in stderr and "Traceback" not in stderr
    assert not output.exists()  # refused before anything was sent


def test_remote_options_the_service_has_are_run(
    server: Server, shared_audio: Path, tmp_path: Path
) -> None:
    code, stderr, output = _run(
        shared_audio, tmp_path, "--url", server.url, "--model", "MTT_vgg", "--embeddings", "pool5"
    )
    assert code == 0, stderr
    assert '"status":"ok"' in output.read_text()


def test_local_embedding_layer_the_model_lacks_is_a_usage_error(
    shared_audio: Path, tmp_path: Path
) -> None:
    repository = str(require_repository())
    args = ("--local", "--repository", repository, "--model", "MTT_vgg", "--embeddings", "nope")
    code, stderr, output = _run(shared_audio, tmp_path, *args)
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "MTT_vgg has no such layer" in stderr
    assert not output.exists()
