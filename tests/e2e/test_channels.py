"""Uploads of any channel count through a real server and ``taggram tag --local``.

8 channels and more once crashed the whole process (PyAV's planar frames hold 8 data pointers);
a header declaring no channels, or more than FFmpeg accepts, was a 500.
"""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from taggram.cli import app
from tests.support.paths import require_repository

RATE = 44100


def _file(channels: int, container: str = "WAV", subtype: str = "PCM_16") -> bytes:
    """2 s of a tone at 44.1 kHz in ``channels`` channels, each at its own level."""
    t = np.arange(2 * RATE) / RATE
    wave = np.sin(2 * np.pi * 440 * t)
    samples = np.stack([wave / (1 + c) for c in range(channels)], axis=1).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, 0.5 * samples, RATE, format=container, subtype=subtype)
    return buffer.getvalue()


def _declaring(channels: int) -> bytes:
    """A stereo WAV whose header is patched to declare ``channels`` channels."""
    data = bytearray(_file(2))
    data[22:24] = channels.to_bytes(2, "little")  # the fmt chunk's channel count
    return bytes(data)


@pytest.mark.parametrize(
    ("channels", "container"), [(8, "WAV"), (9, "WAV"), (8, "FLAC"), (16, "WAV")]
)
def test_many_channels_are_tagged_and_the_server_lives(
    client: httpx.Client, channels: int, container: str
) -> None:
    upload = _file(channels, container)
    response = client.post("/v1/tag", files={"file": (f"ch{channels}", upload)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["audio"]["channels"] == channels
    assert body["audio"]["duration_seconds"] == pytest.approx(2.0)
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("declared", [0, 65535])
def test_impossible_channel_counts_are_undecodable(client: httpx.Client, declared: int) -> None:
    response = client.post("/v1/tag", files={"file": ("bad.wav", _declaring(declared))})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "undecodable_audio"
    assert "no valid channel count" in problem["detail"]
    too_many = client.post("/v1/tag", files={"file": ("ch65.wav", _file(65))})
    assert too_many.status_code == 422, too_many.text
    assert "65 channels; at most 64" in too_many.json()["detail"]
    batch = client.post(
        "/v1/tag/batch",
        files=[("files", ("bad.wav", _declaring(declared))), ("files", ("ch9.wav", _file(9)))],
    )
    assert batch.status_code == 200, batch.text
    first, second = batch.json()["results"]
    assert (first["error"]["code"], first["error"]["status"]) == ("undecodable_audio", 422)
    assert second["result"]["audio"]["channels"] == 9


def test_tag_local_reports_a_bad_header_and_tags_the_others(tmp_path: Path) -> None:
    bad, many = tmp_path / "bad.wav", tmp_path / "ch8.wav"
    bad.write_bytes(_declaring(65535))
    many.write_bytes(_file(8))
    repository = require_repository()
    result = CliRunner().invoke(
        app,
        ["tag", str(bad), str(many), "--local", "--repository", str(repository), "--json"],
        env={"TAGGRAM_URL": ""},
    )
    assert result.exit_code == 1, result.output
    assert f"{bad}: undecodable_audio" in result.stderr
    assert '"channels": 8' in result.stdout
