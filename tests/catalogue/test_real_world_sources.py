"""``taggram catalogue`` on the sources people have, through a real server: M4A and WebM albums
behind symlinks (one link looping back), files that are not audio, Excel manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from taggram.cli import app
from tests.support import audio
from tests.support.paths import require_bugs
from tests.support.server import Server, running_server


@pytest.fixture(scope="module")
def server(
    repository: Path, server_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with running_server(repository, tmp_path_factory.mktemp("logs"), env=server_env) as started:
        yield started


@pytest.fixture(scope="module")
def library(short_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/``: one MP3, an album linked in from elsewhere, a loop, two files not audio."""
    base = tmp_path_factory.mktemp("library")
    album = base / "elsewhere" / "album"
    album.mkdir(parents=True)
    audio.encode(short_wav, album / "01 applause.m4a", "m4a_aac")
    audio.encode(short_wav, album / "02 applause.webm", "webm_opus")
    (album / "cover.jpg").write_bytes(b"\xff\xd8\xff not really a picture")
    root = base / "root"
    root.mkdir()
    audio.mp3(short_wav, root / "single.mp3")
    (root / "notes.txt").write_text("liner notes\n")
    (root / "album").symlink_to(album, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)
    return root


def _run(*args: str) -> tuple[int, str, list[dict]]:
    result = CliRunner().invoke(app, ["catalogue", *args, "--no-progress"])
    output = Path(args[args.index("--output") + 1])
    records = (
        [json.loads(line) for line in output.read_text().splitlines()] if output.exists() else []
    )
    return result.exit_code, result.stderr, records


def test_symlinked_m4a_album_is_tagged_and_not_audio_is_reported(
    server: Server, library: Path, short_wav: Path, tmp_path: Path
) -> None:
    code, report, records = _run(
        str(library), "--url", server.url, "--output", str(tmp_path / "out.jsonl")
    )
    seconds = sf.info(str(short_wav)).duration  # every file is an encoding of it
    assert code == 0, report
    by_id = {record["id"]: record for record in records}
    assert sorted(by_id) == ["album/01 applause.m4a", "album/02 applause.webm", "single.mp3"]
    assert all(record["status"] == "ok" for record in records), records
    assert all(abs(record["duration_s"] - seconds) < 0.1 for record in records), records
    assert "catalogue: 3 tracks" in report
    assert "not audio: 2 files skipped" in report
    assert "album/cover.jpg" in report and "notes.txt" in report


def _catalogue_in_a_subprocess(
    source: Path, output: Path, server: Server
) -> subprocess.CompletedProcess[str]:
    """``taggram catalogue SOURCE --url`` as a user runs it; exit status 0 asserted."""
    command = [sys.executable, "-m", "taggram", "catalogue", str(source), "--output", str(output)]
    done = subprocess.run(
        [*command, "--url", server.url, "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,  # had it opened a pipe, it would wait here for a writer
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_pipe_named_like_audio_is_reported_not_opened(
    server: Server, short_wav: Path, tmp_path: Path
) -> None:
    """A FIFO named ``live.wav`` beside a song: reported as not a regular file, where it was
    "not audio (by extension)"; the run neither opens it (it would wait for a writer) nor
    counts it as a failure."""
    folder = tmp_path / "folder"
    folder.mkdir()
    audio.mp3(short_wav, folder / "song.mp3")
    os.mkfifo(folder / "live.wav")
    output = tmp_path / "out.jsonl"
    done = _catalogue_in_a_subprocess(folder, output, server)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(record["id"], record["status"]) for record in records] == [("song.mp3", "ok")]
    assert "catalogue: 1 track; done 1, failed 0" in done.stderr
    assert (
        "  not a regular file: 1 file skipped (a named pipe, socket or device; never opened)\n"
        "    live.wav\n"
    ) in done.stderr
    assert "not audio" not in done.stderr


def test_a_pipe_a_manifest_names_is_recorded_unreadable_not_opened(
    server: Server, short_wav: Path, tmp_path: Path
) -> None:
    """A manifest's row naming a FIFO: the run records it as unreadable (not a regular file)
    without opening it, where it waited for a writer for ever; the song beside it is tagged."""
    audio.mp3(short_wav, tmp_path / "song.mp3")
    os.mkfifo(tmp_path / "live.wav")
    manifest = tmp_path / "tracks.csv"
    manifest.write_text("id,path\nsong,song.mp3\nlive,live.wav\n")
    output = tmp_path / "out.jsonl"
    _catalogue_in_a_subprocess(manifest, output, server)
    records = {record["id"]: record for record in map(json.loads, output.read_text().splitlines())}
    assert records["song"]["status"] == "ok"
    live = records["live"]
    assert (live["status"], live["error"]["code"]) == ("error", "unreadable")
    assert "not a regular file" in live["error"]["message"]
    assert live["error"]["retryable"] is False


def test_excel_manifests_are_read_or_refused_in_one_line(
    server: Server, library: Path, tmp_path: Path
) -> None:
    text = "id,path\nBjörk – Jóga,single.mp3\n"
    bom = library.parent / "excel-utf8.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + text.replace("single.mp3", "root/single.mp3").encode())
    code, report, records = _run(
        str(bom), "--url", server.url, "--output", str(tmp_path / "a.jsonl")
    )
    assert code == 0, report
    assert [(r["id"], r["status"]) for r in records] == [("Björk – Jóga", "ok")]
    legacy = library / "excel-cp1252.csv"
    legacy.write_bytes(text.encode("cp1252"))
    code, report, _ = _run(str(legacy), "--url", server.url, "--output", str(tmp_path / "b.jsonl"))
    assert code == 2
    assert len(report.strip().splitlines()) == 1 and "--encoding" in report
    assert "Traceback" not in report
    code, report, records = _run(
        str(legacy), "--encoding", "cp1252", "--url", server.url,
        "--output", str(tmp_path / "c.jsonl"),
    )  # fmt: skip
    assert code == 0, report
    assert [(r["id"], r["status"]) for r in records] == [("Björk – Jóga", "ok")]


def test_the_shared_excel_manifest_is_not_refused(tmp_path: Path) -> None:
    """Its paths are illustrative: the run gets as far as tagging (and fails to find the files),
    where it used to stop at row 1. No track is tagged, so the run exits 1."""
    manifest = require_bugs() / "18_manifest_excel_utf8_bom.csv"
    code, report, records = _run(
        str(manifest), "--url", "http://127.0.0.1:9", "--output", str(tmp_path / "x.jsonl"),
        "--retries", "1",
    )  # fmt: skip
    assert "lacks an id or a path" not in report
    assert records and all(record["id"] for record in records), report
    assert all(record["status"] == "error" for record in records), records
    assert code == 1 and "no track could be tagged" in report, report
