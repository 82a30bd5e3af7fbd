"""End-to-end fixtures: one real ``taggram serve`` process for the suite, audio made at test time.

Every audio file is generated into a temporary folder (never committed): from ``../shared/audio``,
or from the ``music_wav`` fixture where some music will do (generated in a fresh clone).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.support.paths import SHARED_AUDIO, has_shared, require_repository, require_shared
from tests.support.server import Server, running_server

SERVER_ENV = {
    # A longer collection window makes cross-request batches certain under test concurrency.
    "TAGGRAM_MAX_QUEUE_DELAY_MS": "20",
    "TAGGRAM_MAX_UPLOAD_BYTES": str(32 * 1024 * 1024),
    "TAGGRAM_DRAIN_GRACE_SECONDS": "0",
}
# (file suffix, libsndfile container, subtype) of every format the service must accept.
FORMATS = {
    "wav_u8": (".wav", "WAV", "PCM_U8"),
    "wav_16": (".wav", "WAV", "PCM_16"),
    "wav_24": (".wav", "WAV", "PCM_24"),
    "wav_32": (".wav", "WAV", "PCM_32"),
    "wav_float": (".wav", "WAV", "FLOAT"),
    "flac": (".flac", "FLAC", "PCM_16"),
    "ogg_vorbis": (".ogg", "OGG", "VORBIS"),
    "opus": (".opus", "OGG", "OPUS"),
    "mp3": (".mp3", "MP3", "MPEG_LAYER_III"),
}
# How the service names each of them in ``audio.format`` (container/codec, as FFmpeg decodes it).
DECODED_FORMATS = {
    "wav_u8": "WAV/pcm_u8",
    "wav_16": "WAV/pcm_s16le",
    "wav_24": "WAV/pcm_s24le",
    "wav_32": "WAV/pcm_s32le",
    "wav_float": "WAV/pcm_f32le",
    "flac": "FLAC/flac",
    "ogg_vorbis": "Ogg/vorbis",
    "opus": "Ogg/opus",
    "mp3": "MP3/mp3",
}
# Opus only encodes at 8, 12, 16, 24 or 48 kHz.
OPUS_RATE = 48000


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    return require_shared()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repository = require_repository()
    # Custom models it might create stay in a folder of its own, not the working directory.
    env = {**SERVER_ENV, "TAGGRAM_CUSTOM_MODELS": str(tmp_path_factory.mktemp("custom_models"))}
    with running_server(repository, tmp_path_factory.mktemp("logs"), env=env) as started:
        yield started


# Keys of the secured server (at least 16 characters; test values, not secrets).
TAG_KEY = "tag-key-for-tests-0123456789"
ADMIN_KEY = "admin-key-for-tests-0123456789"


@dataclass(frozen=True)
class SecuredServer:
    """A server with API keys on: ``tag_key`` (scope tag) from the environment, ``admin_key``
    (scope admin) from a keys file; two models, one spectrogram and one waveform CNN."""

    server: Server
    tag_key: str
    admin_key: str
    keys_file: Path

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture(scope="session")
def secured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredServer]:
    repository = require_repository()
    folder = tmp_path_factory.mktemp("secured")
    keys_file = folder / "keys"
    keys_file.write_text(f"# mounted from a Secret\n{ADMIN_KEY}:admin\n")
    env = {
        **SERVER_ENV,
        "TAGGRAM_MODELS": "MTT_sample_cnn,MTT_musicnn",
        "TAGGRAM_DEFAULT_MODEL": "MTT_sample_cnn",
        "TAGGRAM_MAX_BATCH_FILES": "4",
        "TAGGRAM_API_KEYS": TAG_KEY,
        "TAGGRAM_API_KEYS_FILE": str(keys_file),
        # The contract test creates custom models: in a folder of its own, from few examples.
        "TAGGRAM_CUSTOM_MODELS": str(folder / "custom_models"),
        "TAGGRAM_MAX_CUSTOM_EXAMPLES": "6",
    }
    with running_server(repository, folder, env=env) as started:
        yield SecuredServer(started, TAG_KEY, ADMIN_KEY, keys_file)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300) as http:
        yield http


@pytest.fixture(scope="session")
def format_files(music_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``music_wav`` (30 s, 44.1 kHz stereo, 16-bit) re-encoded in every supported format."""
    audio, rate = sf.read(music_wav, dtype="float32")
    folder = tmp_path_factory.mktemp("formats")
    files = {}
    for name, (suffix, container, subtype) in FORMATS.items():
        data, data_rate = audio, rate
        if subtype == "OPUS":
            data, data_rate = soxr.resample(audio, rate, OPUS_RATE), OPUS_RATE
        path = folder / f"music_{name}{suffix}"
        sf.write(path, data, data_rate, format=container, subtype=subtype)
        files[name] = path
    return files


@pytest.fixture(scope="session")
def music_mp3(format_files: dict[str, Path]) -> Path:
    """30 s of music as an MP3: ``../shared/audio/clip_01.mp3`` where it is, else the MP3 of
    ``format_files``."""
    return SHARED_AUDIO / "clip_01.mp3" if has_shared() else format_files["mp3"]


def long_track(music_wav: Path, folder: Path, seconds: float) -> Path:
    """A ``seconds``-long 16 kHz mono WAV made by looping ``music_wav``."""
    audio, rate = sf.read(music_wav, dtype="float32")
    mono = soxr.resample(audio.mean(axis=1), rate, 16000)
    looped = np.resize(mono, int(seconds * 16000))
    path = folder / f"long_{int(seconds)}s.wav"
    sf.write(path, looped, 16000, subtype="PCM_16")
    return path


def excerpt(clip: Path, out: Path, seconds: float, start: float = 0.0) -> Path:
    """``seconds`` of ``clip`` from ``start`` seconds, at its own rate and channels, as a float
    WAV."""
    audio, rate = sf.read(clip, dtype="float32")
    sf.write(out, audio[int(start * rate) : int((start + seconds) * rate)], rate, subtype="FLOAT")
    return out


def tag_file(client: httpx.Client, path: Path, **params: str | int | float) -> httpx.Response:
    """POST one file as a multipart upload."""
    with path.open("rb") as handle:
        return client.post("/v1/tag", params=params, files={"file": (path.name, handle)})


def probabilities(body: dict[str, object]) -> dict[str, float]:
    tags = body["tags"]
    assert isinstance(tags, list)
    return {item["tag"]: item["probability"] for item in tags}
