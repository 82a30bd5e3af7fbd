"""``taggram tag``: in-process and through a real server, table, JSON and the taggram picture."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from taggram.cli import app
from tests.e2e.conftest import tag_file
from tests.support.paths import require_repository
from tests.support.server import Server, free_port
from tests.support.web_page import html_page_server


def run(*args: str | Path, env: dict[str, str] | None = None) -> Any:
    # TAGGRAM_URL unset unless a test sets it: the default is in-process.
    full_env = {"TAGGRAM_URL": "", **(env or {})}
    return CliRunner().invoke(app, ["tag", *map(str, args)], env=full_env)


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def api_tags(server: Server, path: Path) -> list[dict[str, Any]]:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        response = tag_file(client, path)
    assert response.status_code == 200, response.text
    return list(response.json()["tags"])


@pytest.fixture(scope="module")
def repository() -> Path:
    return require_repository()


@pytest.fixture(scope="module")
def clips(music_mp3: Path, short_wav: Path) -> tuple[Path, Path]:
    """30 s of music as an MP3, and a few seconds as a WAV."""
    return music_mp3, short_wav


def test_local_json_matches_the_service(
    server: Server, clips: tuple[Path, Path], repository: Path
) -> None:
    paths = list(clips)
    result = run(*paths, "--local", "--repository", repository, "--top-k", "3", "--json")
    assert result.exit_code == 0, result.output
    lines = json_lines(result.stdout)
    assert [line["file"] for line in lines] == [str(path) for path in paths]
    for line, path in zip(lines, paths, strict=True):
        expected = api_tags(server, path)[:3]
        assert [item["tag"] for item in line["tags"]] == [item["tag"] for item in expected]
        got = [item["probability"] for item in line["tags"]]
        np.testing.assert_allclose(got, [item["probability"] for item in expected], atol=1e-5)
        assert line["model"]["name"] == "MTT_musicnn"
        assert "taggram" not in line or line["taggram"] is None


@pytest.mark.parametrize("where", ["--local", "--url"])
def test_taggram_option_adds_the_taggram_to_each_json_line(
    server: Server, clips: tuple[Path, Path], repository: Path, where: str
) -> None:
    music = clips[0]
    target = (
        ["--local", "--repository", repository] if where == "--local" else ["--url", server.url]
    )
    result = run(music, *target, "--json", "--taggram")
    assert result.exit_code == 0, result.output
    (line,) = json_lines(result.stdout)
    with httpx.Client(base_url=server.url, timeout=300) as client:
        expected = tag_file(client, music, taggram="true").json()["taggram"]
    assert line["taggram"]["tags"] == expected["tags"]
    assert len(line["taggram"]["patches"]) == len(expected["patches"]) > 1
    for got, want in zip(line["taggram"]["patches"], expected["patches"], strict=True):
        assert got["start_seconds"] == want["start_seconds"]
        np.testing.assert_allclose(got["values"], want["values"], atol=1e-5)


def test_taggram_option_without_json_is_a_usage_error(clips: tuple[Path, Path]) -> None:
    result = run(clips[1], "--local", "--taggram")
    assert result.exit_code == 2
    assert "--json" in result.output
    plotted = run(clips[1], "--local", "--taggram", "--plot", "taggram.png")
    assert plotted.exit_code == 2
    assert "--plot draws the taggram without --taggram" in plotted.output


def test_url_prints_a_table_of_the_top_tags(server: Server, clips: tuple[Path, Path]) -> None:
    path = clips[0]
    result = run(path, "--url", server.url, "--top-k", "4", "--model", "MSD_vgg")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(str(path)) and "MSD_vgg" in lines[0]
    with httpx.Client(base_url=server.url, timeout=300) as client:
        expected = tag_file(client, path, model="MSD_vgg", top_k=4).json()["tags"]
    assert [line.split()[0] for line in lines[1:5]] == [item["tag"].split()[0] for item in expected]
    assert f"{expected[0]['probability']:.3f}" in lines[1]


def test_the_heading_counts_one_patch_in_the_singular(
    server: Server, music_wav: Path, tmp_path: Path
) -> None:
    data, rate = sf.read(music_wav, dtype="float32")
    clip = tmp_path / "two_seconds.wav"
    sf.write(clip, data[: 2 * rate], rate)  # shorter than a patch: padded into one
    result = run(clip, "--url", server.url)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"{clip}  (2.0 s, 1 patch, MTT_musicnn 1.0.0)"


@pytest.mark.parametrize(
    ("samples", "shown"), [(441, "0.010 s"), (18522, "0.42 s"), (44055, "1.0 s"), (44, "0.0010 s")]
)
def test_the_heading_shows_a_clip_under_a_second_to_two_significant_figures(
    server: Server, music_wav: Path, tmp_path: Path, samples: int, shown: str
) -> None:
    """A 0.01 s file was headed "0.0 s", as if nothing had been decoded; one tenth of a second
    is all the fixed-point form can say below a second. The padding warning under the heading
    gives the same length (it read "0.01 s" under "0.010 s")."""
    data, rate = sf.read(music_wav, dtype="float32")
    assert rate == 44100
    clip = tmp_path / "short.wav"
    sf.write(clip, data[:samples], rate)
    result = run(clip, "--url", server.url)
    assert result.exit_code == 0, result.output
    heading, warning = result.stdout.splitlines()[:2]
    assert heading == f"{clip}  ({shown}, 1 patch, MTT_musicnn 1.0.0)"
    assert warning.startswith(f"  warning: the audio ({shown}) is shorter than one patch"), warning


def test_taggram_url_environment_variable_selects_the_service(
    server: Server, clips: tuple[Path, Path]
) -> None:
    path = clips[1]
    # A repository that does not exist: only the service can have answered.
    result = run(path, "--json", "--repository", "/nonexistent", env={"TAGGRAM_URL": server.url})
    assert result.exit_code == 0, result.output
    (line,) = json_lines(result.stdout)
    assert line["tags"][0]["tag"] == api_tags(server, path)[0]["tag"]
    assert line["request_id"] != "local"


def test_local_wins_over_the_environment_variable(
    clips: tuple[Path, Path], repository: Path
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    path = clips[1]
    result = run(path, "--local", "--json", "--repository", repository, env={"TAGGRAM_URL": nobody})
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[0]["request_id"] == "local"


@pytest.mark.parametrize("mode", ["local", "url"])
def test_bad_files_are_reported_and_the_others_tagged(
    mode: str, server: Server, clips: tuple[Path, Path], repository: Path, tmp_path: Path
) -> None:
    """Both ways give the same codes: through the service a missing file or a folder was coded
    ``FileNotFoundError`` / ``IsADirectoryError``, in-process ``unreadable``."""
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n" * 50)
    missing = tmp_path / "missing.wav"
    good = clips[1]
    target = ["--url", server.url] if mode == "url" else ["--local", "--repository", repository]
    result = run(text, good, missing, tmp_path, *target, "--json")
    assert result.exit_code == 1
    lines = json_lines(result.stdout)
    assert [line["file"] for line in lines] == [str(text), str(good), str(missing), str(tmp_path)]
    assert lines[0]["error"]["code"] == "unsupported_format"
    assert lines[1]["tags"]
    assert lines[2]["error"]["code"] == lines[3]["error"]["code"] == "unreadable"
    assert f"{text}: unsupported_format" in result.stderr
    # `taggram tag music/*` with a subfolder: the folder's line says what tags a folder
    assert f"taggram catalogue {tmp_path} --output" in lines[3]["error"]["message"]


def test_not_audio_named_as_audio_gets_the_same_answer_in_process_and_through_the_service(
    server: Server, repository: Path, tmp_path: Path
) -> None:
    """The bytes decide, not the name: in-process, FFmpeg was handed the file's name and its
    ``.mp3``/``.flac`` made it read noise as MP3 or FLAC (422 'no sample rate'), while the
    service, which never sees a name, answered 415 ``unsupported_format``."""
    noise = np.random.default_rng(0).bytes(100_000)
    paths = [tmp_path / "noise.mp3", tmp_path / "noise.flac"]
    for path in paths:
        path.write_bytes(noise)
    answers = []
    for target in (["--url", server.url], ["--local", "--repository", repository]):
        result = run(*paths, *target, "--json")
        assert result.exit_code == 1, result.output
        answers.append([line["error"] for line in json_lines(result.stdout)])
    through_service, in_process = answers
    assert [error["code"] for error in through_service] == ["unsupported_format"] * 2
    assert in_process == through_service


def test_unreachable_service_fails_clearly(clips: tuple[Path, Path]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run(clips[1], "--url", url)
    assert result.exit_code == 1
    assert ": unreachable: " in result.stderr  # the catalogue's code for it, not a class name


def test_an_unreachable_service_is_tried_once_not_once_per_file(
    clips: tuple[Path, Path],
) -> None:
    """A service that hangs up on every connection: the model listing's tries, then every file
    reported at once. Each file was tried as long again (about 3 s each: 25 minutes for 500)."""
    accepted = 0
    stop = threading.Event()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.settimeout(0.1)

        def hang_up() -> None:
            nonlocal accepted
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                accepted += 1
                connection.close()

        thread = threading.Thread(target=hang_up)
        thread.start()
        try:
            url = f"http://127.0.0.1:{listener.getsockname()[1]}"
            result = run(*clips, clips[1], "--url", url, "--json")
        finally:
            stop.set()
            thread.join()
    assert result.exit_code == 1
    codes = [line["error"]["code"] for line in json_lines(result.stdout)]
    assert codes == ["unreachable"] * 3
    assert 1 <= accepted <= 4  # the listing's tries (RetryPolicy(attempts=4)), none per file


@pytest.mark.parametrize("url", ["notaurl", "127.0.0.1:8000", "ftp://host", "http://"])
def test_a_url_that_names_no_service_is_a_usage_error(clips: tuple[Path, Path], url: str) -> None:
    result = run(clips[1], "--url", url)
    assert result.exit_code == 2
    assert "is not a service URL" in result.output


@pytest.mark.parametrize("path", ["/v1", "/v1/tag"])
def test_a_url_with_an_endpoint_on_it_is_a_usage_error(
    server: Server, clips: tuple[Path, Path], path: str
) -> None:
    """``--url http://host:8000/v1`` (the API's base, or the tag endpoint, as curl is given it):
    every file was reported as ``not_found: Not Found`` (exit 1), which named neither the URL
    nor what was wrong with it."""
    result = run(*clips, "--url", server.url + path)
    assert result.exit_code == 2, result.output
    assert f"{server.url}{path}: no taggram service answers there" in result.output
    assert "give the service's root URL" in result.output


def test_a_web_server_that_is_no_taggram_service_is_a_usage_error(clips: tuple[Path, Path]) -> None:
    """A URL where another web server answers every GET with a page: the listing's HTML ended in
    a JSONDecodeError traceback."""

    with html_page_server() as url:
        result = run(clips[1], "--url", url)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "the answer is not JSON (text/html): no taggram service answers there" in result.output


def test_unknown_model_is_a_usage_error(clips: tuple[Path, Path], repository: Path) -> None:
    result = run(clips[1], "--local", "--repository", repository, "-m", "nope")
    assert result.exit_code == 2
    assert "nope" in result.output


@pytest.mark.parametrize("mode", ["local", "url"])
@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ("mfcc", "mfcc has no tags: it is a feature extractor for custom taggers"),
        ("nope", "no model named 'nope'; tag with one of MSD_musicnn"),
    ],
)
def test_a_model_without_tags_or_not_served_is_a_usage_error(
    mode: str, model: str, problem: str, server: Server, clips: tuple[Path, Path], repository: Path
) -> None:
    """A feature extractor printed each file's heading over an empty table (exit 0); an unknown
    model through the service uploaded every file to have each refused alone (exit 1). The
    models offered are those that tag: an unknown one listed mfcc and random_*, refused next."""
    target = ["--url", server.url] if mode == "url" else ["--local", "--repository", repository]
    result = run(*clips, *target, "--model", model, env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert problem in result.output
    assert "mfcc," not in result.output and "random_vgg" not in result.output
    assert "patches" not in result.stdout


@pytest.mark.parametrize("mode", ["local", "url"])
def test_several_models_are_a_usage_error(
    mode: str, server: Server, clips: tuple[Path, Path], repository: Path
) -> None:
    """``/v1/tag`` answers ``model=A,B`` with a list of results: through the service each file
    ended in a KeyError traceback, in-process ``'A,B'`` was named as one missing model."""
    target = ["--url", server.url] if mode == "url" else ["--local", "--repository", repository]
    result = run(clips[1], *target, "--model", "MTT_musicnn,MSD_musicnn", env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert "tag with one model at a time" in result.output
    assert result.stdout.count(str(clips[1])) == 0


@pytest.mark.parametrize("mode", ["local", "url"])
def test_a_model_name_with_spaces_around_it_is_read_as_the_service_reads_it(
    mode: str, server: Server, clips: tuple[Path, Path], repository: Path
) -> None:
    """`--model " MSD_musicnn"` (pasted) was "no model named ' MSD_musicnn'" here, while the
    service and `taggram catalogue` strip the spaces."""
    target = ["--url", server.url] if mode == "url" else ["--local", "--repository", repository]
    result = run(clips[1], *target, "--model", " MSD_musicnn ", "--json")
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[0]["model"]["name"] == "MSD_musicnn"


def test_a_provider_that_is_not_installed_is_a_usage_error(
    clips: tuple[Path, Path], repository: Path
) -> None:
    """One line and exit 2 before any file is read, not ONNX Runtime's traceback."""
    env = {"TAGGRAM_PROVIDERS": "NoSuchExecutionProvider"}
    result = run(clips[1], "--local", "--repository", repository, env=env)
    assert result.exit_code == 2, result.output
    assert "providers ['NoSuchExecutionProvider'] are not installed" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_device_is_refused_not_read_into_memory(server: Server, clips: tuple[Path, Path]) -> None:
    """``taggram tag /dev/zero --url ...`` read the endless device into memory until the
    kernel killed the process (22 GB on a 24 GB machine); now that file is reported and the
    others tagged. Run under a 2 GiB address-space limit, so that a regression fails here
    with a MemoryError instead of exhausting the machine."""

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    command = [sys.executable, "-m", "taggram", "tag", "/dev/zero", str(clips[1])]
    finished = subprocess.run(
        [*command, "--url", server.url, "-k", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_memory,
        env={**os.environ, "TAGGRAM_URL": ""},
    )
    assert finished.returncode == 1, finished.stderr
    assert (
        finished.stderr
        == "/dev/zero: unreadable: [Errno 22] a device, not an audio file: '/dev/zero'\n"
    )
    assert finished.stdout.startswith(f"{clips[1]}  (")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
@pytest.mark.parametrize("mode", ["local", "url"])
def test_a_pipe_is_tagged_and_a_device_refused_both_ways(
    mode: str, server: Server, clips: tuple[Path, Path], repository: Path
) -> None:
    """``cat song.wav | taggram tag /dev/stdin`` (or ``<(curl ...)``): the client uploads what
    the pipe holds, while in-process the decoder tried to seek it ('File or stream is not
    seekable', unreadable); ``/dev/zero``, refused through the service, looked empty in-process
    (400 ``empty_body``). Now both ways tag the pipe and refuse the device alike."""
    target = ["--url", server.url] if mode == "url" else ["--local", "--repository", repository]
    finished = subprocess.run(
        [sys.executable, "-m", "taggram", "tag", "/dev/stdin", "/dev/zero", *target, "--json"],
        input=clips[1].read_bytes(),
        capture_output=True,
        timeout=300,
        env={**os.environ, "TAGGRAM_URL": ""},
    )
    assert finished.returncode == 1, finished.stderr
    piped, device = json_lines(finished.stdout.decode())
    expected = api_tags(server, clips[1])[:5]  # --top-k's default
    assert [item["tag"] for item in piped["tags"]] == [item["tag"] for item in expected]
    assert device["error"] == {
        "code": "unreadable",
        "message": "[Errno 22] a device, not an audio file: '/dev/zero'",
    }


def test_a_file_name_that_is_not_utf8_is_uploaded(
    server: Server, clips: tuple[Path, Path], tmp_path: Path
) -> None:
    """A Latin-1 file name (byte 0xe9 on a UTF-8 file system) crashed ``taggram tag --url``
    with a UnicodeEncodeError traceback: httpx cannot put the name in the multipart header."""
    latin1 = tmp_path / os.fsdecode(b"caf\xe9.wav")
    latin1.write_bytes(clips[1].read_bytes())
    result = run(latin1, "--url", server.url, "--json")
    assert result.exit_code == 0, result.output
    (line,) = json_lines(result.stdout)
    assert line["tags"][0]["tag"] == api_tags(server, clips[1])[0]["tag"]


def test_url_and_local_together_are_refused(clips: tuple[Path, Path]) -> None:
    result = run(clips[1], "--local", "--url", "http://127.0.0.1:1")
    assert result.exit_code == 2
    assert "not both" in result.output


@pytest.mark.parametrize("mode", ["local", "url"])
def test_plot_writes_the_taggram_picture(
    mode: str, server: Server, clips: tuple[Path, Path], repository: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    import matplotlib.image

    where = ["--local", "--repository", repository] if mode == "local" else ["--url", server.url]
    paths = list(clips)
    result = run(*paths, *where, "--plot", tmp_path / "taggram.png", "--plot-tags", "10")
    assert result.exit_code == 0, result.output
    for path in paths:
        picture = tmp_path / f"taggram-{path.stem}.png"
        assert f"taggram written to {picture}" in result.stderr
        image = matplotlib.image.imread(picture)
        assert image.shape[0] > 300 and image.shape[1] > 600  # rows for 10 tags, a time axis
        assert len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 50  # a heat-map

    one = run(paths[0], *where, "--plot", tmp_path / "one.svg")
    assert one.exit_code == 0, one.output
    assert (tmp_path / "one.svg").read_text().lstrip().startswith("<?xml")


def test_plot_of_a_file_name_that_is_not_utf8(
    clips: tuple[Path, Path], repository: Path, tmp_path: Path
) -> None:
    """A Latin-1 file name (lone surrogates) crashed the table on a strict UTF-8 stdout (a
    UnicodeEncodeError under en_US.UTF-8, as in CliRunner) and matplotlib drawing the title (a
    TypeError); both have the byte escaped, and the picture is written."""
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    latin1 = tmp_path / os.fsdecode(b"caf\xe9.wav")
    latin1.write_bytes(clips[1].read_bytes())
    picture = tmp_path / "taggram.svg"
    result = run(latin1, "--local", "--repository", repository, "--plot", picture)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{tmp_path}/caf\\xe9.wav  (")
    assert "caf\\xe9.wav" in picture.read_text()


@pytest.mark.parametrize("mode", ["local", "url"])
def test_the_table_shows_the_decoders_warnings(
    mode: str, server: Server, music_wav: Path, repository: Path, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.wav"  # the first 2,000,000 bytes of a 30 s WAV
    cut.write_bytes(music_wav.read_bytes()[:2_000_000])
    where = ["--local", "--repository", repository] if mode == "local" else ["--url", server.url]
    result = run(cut, *where)
    assert result.exit_code == 0, result.output
    heading, warning = result.stdout.splitlines()[:2]
    assert heading.startswith(f"{cut}  (11.3 s")
    truncated = "the file is truncated: its header declares 30.00 s, 11.34 s decoded"
    assert warning == f"  warning: {truncated}"


def test_plot_names_are_unique_when_inputs_share_a_name(
    clips: tuple[Path, Path], repository: Path, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    inputs = {"a/song.mp3": clips[0], "b/song.wav": clips[1], "c/song.wav": clips[1]}
    paths = []
    for name, clip in inputs.items():
        path = tmp_path / name
        path.parent.mkdir()
        path.write_bytes(clip.read_bytes())
        paths.append(path)
    out = tmp_path / "out"
    out.mkdir()
    result = run(*paths, "--local", "--repository", repository, "--plot", out / "tg.png")
    assert result.exit_code == 0, result.output
    expected = ["tg-song-mp3.png", "tg-song-wav.png", "tg-song-wav-2.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for path, name in zip(paths, expected, strict=True):
        assert f"taggram written to {out / name}" in result.stderr, path


def test_plot_into_a_missing_folder_is_refused_before_tagging(
    server: Server, clips: tuple[Path, Path], tmp_path: Path
) -> None:
    """Each file used to be tagged and printed, then its picture failed to write (exit 1): a
    usage error, one line and exit 2, before any file is sent, as for a bad suffix."""
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    picture = tmp_path / "absent" / "t.png"
    result = run(*clips, "--url", server.url, "--plot", picture)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    expected = f"error: --plot: {picture}: the folder {picture.parent} does not exist"
    assert result.stderr.startswith(expected), result.stderr
    assert result.stderr.count("\n") == 1
    assert not picture.parent.exists()


def test_plot_that_cannot_be_written_is_reported_after_the_tags(
    server: Server, clips: tuple[Path, Path], tmp_path: Path
) -> None:
    """A write that fails all the same (here a folder where the picture goes) is reported for
    its file, exit 1, the tags printed."""
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    picture = tmp_path / "t.png"
    picture.mkdir()
    result = run(clips[1], "--url", server.url, "--plot", picture)
    assert result.exit_code == 1
    assert f"could not write {picture}" in result.stderr
    assert result.stdout.startswith(str(clips[1]))  # the tags are still printed


def test_plot_to_a_format_matplotlib_does_not_write_is_refused_before_tagging(
    server: Server, clips: tuple[Path, Path], tmp_path: Path
) -> None:
    """Each file used to be tagged and then fail alone at matplotlib's savefig (exit 1): a
    usage error, one line and exit 2, before any file is sent."""
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    picture = tmp_path / "taggram.xyz"
    result = run(*clips, "--url", server.url, "--plot", picture)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: --plot: {picture}: 'xyz' is no picture format")
    assert ".png" in result.stderr and result.stderr.count("\n") == 1
    assert not picture.exists()


def test_plot_without_matplotlib_says_how_to_install_it(
    clips: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an install without it does
    result = run(clips[1], "--plot", tmp_path / "t.png")
    assert result.exit_code == 2
    assert "pip install 'taggram[plot]'" in result.stderr
    assert not (tmp_path / "t.png").exists()
