"""``taggram catalogue`` against the e2e suite's server and the local repository: options
checked before any track is sent, and the decoder's warnings kept in the records.

A model or layer that the service (or the local repository) does not serve would fail every
track alike: the run must stop at once as a usage error (exit 2, one line), as docs/catalogue.md
says bad options do, not record every track as a permanent failure and exit 0.
"""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taggram.catalogue.records import Record
from taggram.catalogue.remote import RemoteBackend
from taggram.catalogue.runner import JobOptions
from taggram.catalogue.sources import Track
from taggram.catalogue.writers import read_records
from taggram.cli import app
from taggram.client import RetryPolicy
from tests.support.paths import require_repository
from tests.support.server import Server
from tests.support.web_page import html_page_server


def _run(short_wav: Path, tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    music = tmp_path / "music"
    music.mkdir()
    (music / "a.wav").write_bytes(short_wav.read_bytes())
    output = tmp_path / "out.jsonl"
    result = CliRunner().invoke(
        app, ["catalogue", str(music), "--output", str(output), *args], env={"TAGGRAM_URL": ""}
    )
    return result.exit_code, result.stderr, output


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--model", "nope"], "no model named 'nope'"),
        (["--model", "MTT_musicnn,MSD_musicnn"], "a record holds one model's tags"),
        (["--embeddings", "nope"], "--embeddings 'nope': MTT_musicnn has no such layer"),
        (["--model", "MTT_vgg", "--embeddings", "penultimate"], "MTT_vgg has no such layer"),
    ],
)
def test_remote_options_the_service_lacks_are_a_usage_error(
    server: Server, short_wav: Path, tmp_path: Path, options: list[str], named: str
) -> None:
    code, stderr, output = _run(short_wav, tmp_path, "--url", server.url, *options)
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and named in stderr and "Traceback" not in stderr
    assert not output.exists()  # refused before anything was sent


def test_a_url_with_v1_on_it_is_a_usage_error_not_every_track_failed(
    server: Server, short_wav: Path, tmp_path: Path
) -> None:
    """``--url http://host:8000/v1``: every track was recorded as failed for good (``not_found``)
    and the run exited 0, so a rerun with the right URL skipped them all."""
    code, stderr, output = _run(short_wav, tmp_path, "--url", f"{server.url}/v1")
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "no taggram service answers there" in stderr
    assert not output.exists()


def test_remote_options_the_service_has_are_run(
    server: Server, short_wav: Path, tmp_path: Path
) -> None:
    code, stderr, output = _run(
        short_wav, tmp_path, "--url", server.url, "--model", "MTT_vgg", "--embeddings", "pool5"
    )
    assert code == 0, stderr
    assert '"status":"ok"' in output.read_text()


@pytest.mark.parametrize("mode", ["local", "url"])
def test_several_models_are_a_usage_error(
    mode: str, server: Server, short_wav: Path, tmp_path: Path
) -> None:
    """``/v1/tag`` answers ``model=A,B`` with a list of results: the remote run recorded a few
    tracks and then died on a KeyError traceback, the local one named ``'A,B'`` as one model
    missing from the repository."""
    target = ["--url", server.url] if mode == "url" else ["--local"]
    repository = ["--repository", str(require_repository())]
    code, stderr, output = _run(
        short_wav, tmp_path, *target, *repository, "--model", "MTT_musicnn,MSD_musicnn"
    )
    assert code == 2, stderr
    assert stderr == (
        "taggram catalogue: --model 'MTT_musicnn,MSD_musicnn': a record holds one model's tags; "
        "run the catalogue once per model, each into its own --output\n"
    )
    assert not output.exists()


def test_local_embedding_layer_the_model_lacks_is_a_usage_error(
    short_wav: Path, tmp_path: Path
) -> None:
    repository = str(require_repository())
    args = ("--local", "--repository", repository, "--model", "MTT_vgg", "--embeddings", "nope")
    code, stderr, output = _run(short_wav, tmp_path, *args)
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and "MTT_vgg has no such layer" in stderr
    assert not output.exists()


@pytest.mark.parametrize(
    ("mode", "resumed_with", "refused"),
    [
        ("url", ["--model", "MTT_vgg"], True),
        ("local", ["--embeddings", "penultimate"], True),
        ("url", ["--model", "MTT_musicnn"], False),  # the default, named: the same run
    ],
)
def test_resuming_with_another_model_or_layer_is_a_usage_error(
    mode: str,
    resumed_with: list[str],
    refused: bool,
    server: Server,
    short_wav: Path,
    tmp_path: Path,
) -> None:
    """Resume matches records by id only: rerun into the same --output with another model (or
    with embeddings), every track was skipped, exit 0, and the output still held only the first
    model's tags, which the user took for the new ones."""
    target = ["--url", server.url] if mode == "url" else ["--local"]
    target += ["--repository", str(require_repository())]
    code, stderr, output = _run(short_wav, tmp_path, *target)
    assert code == 0, stderr
    first = output.read_bytes()
    args = ["catalogue", str(tmp_path / "music"), "--output", str(output), *target, *resumed_with]
    again = CliRunner().invoke(app, args, env={"TAGGRAM_URL": ""})
    assert output.read_bytes() == first
    if not refused:
        assert again.exit_code == 0, again.stderr
        return
    assert again.exit_code == 2, again.stderr
    assert again.stderr.count("\n") == 1 and "tagged by MTT_musicnn without embeddings" in (
        again.stderr
    )
    assert "its own --output" in again.stderr


def test_the_summary_says_what_limit_left_undone(
    server: Server, short_wav: Path, tmp_path: Path
) -> None:
    """With --limit the summary counted done, failed and skipped, and said nothing of the tracks
    not tried at all: a trial run read as a finished catalogue."""
    music = tmp_path / "music"
    music.mkdir()
    for index in range(3):
        (music / f"{index}.wav").write_bytes(short_wav.read_bytes())
    args = ["catalogue", str(music), "--url", server.url, "--output", str(tmp_path / "out.jsonl")]
    trial = CliRunner().invoke(app, [*args, "--limit", "1"])
    assert trial.exit_code == 0, trial.stderr
    assert trial.stderr.startswith(
        "catalogue: 3 tracks; done 1, failed 0, skipped 0 (already in the output), "
        "left 2 for the next run (--limit)\n"
    )
    rest = CliRunner().invoke(app, args)
    assert rest.stderr.startswith(
        "catalogue: 3 tracks; done 2, failed 0, skipped 1 (already in the output)\n"
    )


def test_a_run_that_tags_no_track_exits_1_and_one_that_tags_some_exits_0(
    short_wav: Path, tmp_path: Path
) -> None:
    """Every track unreadable (links to files on a share that is not mounted): the run reported
    each failure and exited 0, so a script or Job took the catalogue for done, where ``taggram
    tag`` exits 1. It exits 1, and so does the same command run again, which skips them. Once a
    track is tagged it exits 0, the failures reported as before; a resumed run with every track
    tagged before is a success."""
    music = tmp_path / "music"
    music.mkdir()
    for name in ("gone.mp3", "lost.flac"):
        (music / name).symlink_to(tmp_path / "unmounted" / name)
    output = tmp_path / "out.jsonl"
    repository = str(require_repository())
    command = ["catalogue", str(music), "--local", "--repository", repository]
    command += ["--output", str(output), "--no-progress"]
    runner = CliRunner()

    def run(*more: str) -> tuple[int, str]:
        result = runner.invoke(
            app, [*command, *more], env={"TAGGRAM_URL": "", "TAGGRAM_WARMUP": "false"}
        )
        assert "Traceback" not in result.output
        return result.exit_code, result.stderr

    code, stderr = run()
    assert code == 1, stderr
    assert stderr.startswith("catalogue: 2 tracks; done 0, failed 2, skipped 0 ")
    assert "  failed 2 x unreadable\n" in stderr
    assert stderr.endswith("\ntaggram catalogue: no track could be tagged\n")
    outcomes = {(r.id, r.status, r.error and r.error.code) for r in read_records(output)}
    assert outcomes == {("gone.mp3", "error", "unreadable"), ("lost.flac", "error", "unreadable")}
    code, stderr = run()  # settled failures are skipped: still nothing tagged
    assert code == 1, stderr
    assert "done 0, failed 0, skipped 2 " in stderr and "no track could be tagged" in stderr

    (music / "song.wav").write_bytes(short_wav.read_bytes())
    code, stderr = run("--retry-failed")
    assert code == 0, stderr
    assert stderr.startswith("catalogue: 3 tracks; done 1, failed 2, skipped 0 ")
    assert "  failed 2 x unreadable\n" in stderr and "no track could be tagged" not in stderr
    code, stderr = run("--retry-failed")  # the two fail again, the song was tagged before
    assert code == 0, stderr
    assert "done 0, failed 2, skipped 1 " in stderr and "no track could be tagged" not in stderr

    for name in ("gone.mp3", "lost.flac"):
        (music / name).unlink()
    code, stderr = run()  # resumed, every track tagged before
    assert code == 0, stderr
    assert stderr.startswith("catalogue: 1 track; done 0, failed 0, skipped 1 ")


def test_an_output_that_cannot_be_written_is_one_line_and_resumes(
    server: Server, short_wav: Path, tmp_path: Path
) -> None:
    """The disk filled mid-run (here a file-size limit: the same failed write): the run died on
    a Python traceback. It says so in one line, exit 1; with room again it resumes."""
    music = tmp_path / "music"
    music.mkdir()
    for index in range(12):
        (music / f"{index}.wav").write_bytes(short_wav.read_bytes())
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "taggram", "catalogue", str(music), "--url", server.url]
    command += ["--output", str(output), "--no-progress"]

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (8000, 8000))  # about two records

    full = subprocess.run(command, capture_output=True, text=True, preexec_fn=small_disk)
    assert full.returncode == 1, full.stderr
    assert full.stderr.startswith(f"taggram catalogue: --output {output}: cannot write: File too")
    assert full.stderr.count("\n") == 1
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert sorted(record.id for record in read_records(output)) == sorted(
        f"{index}.wav" for index in range(12)
    )


@pytest.mark.parametrize("mode", ["local", "url"])
def test_records_carry_the_decoders_warnings(
    mode: str, server: Server, music_wav: Path, short_wav: Path, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    music.mkdir()
    (music / "cut.wav").write_bytes(music_wav.read_bytes()[:2_000_000])
    (music / "whole.wav").write_bytes(short_wav.read_bytes())
    output = tmp_path / "out.csv"
    where = ["--local", "--repository", str(require_repository())]
    args = where if mode == "local" else ["--url", server.url]
    result = CliRunner().invoke(
        app, ["catalogue", str(music), "--output", str(output), *args], env={"TAGGRAM_URL": ""}
    )
    assert result.exit_code == 0, result.output
    warnings = {record.id: record.warnings for record in read_records(output)}
    assert warnings == {
        "cut.wav": ["the file is truncated: its header declares 30.00 s, 11.34 s decoded"],
        "whole.wav": [],
    }


@pytest.mark.parametrize(
    ("mode", "suffix"), [("local", ".csv"), ("url", ".jsonl"), ("url", ".parquet")]
)
def test_a_file_name_that_is_not_utf8_is_tagged_under_an_escaped_id(
    mode: str, suffix: str, server: Server, short_wav: Path, tmp_path: Path
) -> None:
    """A Latin-1 file name (byte 0xe9 on a UTF-8 file system) stopped the run with a traceback:
    httpx could not encode it for the upload, the writers could not write its id."""
    music = tmp_path / "music"
    music.mkdir()
    (music / os.fsdecode(b"caf\xe9.wav")).write_bytes(short_wav.read_bytes())
    output = tmp_path / f"out{suffix}"
    where = ["--local", "--repository", str(require_repository())]
    args = where if mode == "local" else ["--url", server.url]
    result = CliRunner().invoke(
        app, ["catalogue", str(music), "--output", str(output), *args], env={"TAGGRAM_URL": ""}
    )
    assert result.exit_code == 0, result.output
    (record,) = read_records(output)
    assert (record.id, record.status) == ("caf\\xe9.wav", "ok")
    assert record.path.endswith("caf\\xe9.wav")


def test_a_page_that_is_not_json_is_a_retryable_failure_not_a_crash(
    short_wav: Path, tmp_path: Path
) -> None:
    """A proxy that answers a track with its own page (a login page, a maintenance page) in the
    middle of a run: the record says so and another run retries it; the run went on. The JSON
    decoder's error escaped the backend, which "never raises"."""

    async def tag(url: str) -> Record:
        async with RemoteBackend(url, JobOptions(), RetryPolicy(attempts=1), 1) as backend:
            return await backend.tag(Track("a.wav", short_wav))

    with html_page_server() as url:
        record = asyncio.run(tag(url))
    assert record.status == "error" and record.error is not None
    assert record.error.code == "not_a_service" and record.error.retryable
