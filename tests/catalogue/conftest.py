"""A catalogue of ~100 short real tracks, cut at test time from ``../shared/audio`` (or, in a fresh
clone without it, from the generated ``music_wav``).

Good files are 3-6 s pieces of those recordings in a mix of containers and encodings, spread
over sub-folders; bad files are empty, random bytes, or real files cut off inside their header,
each of which must come back as an error record, never stop the run.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from taggram.repository import load_repository
from tests.support.audio import copies
from tests.support.paths import SHARED_AUDIO, has_shared, require_repository

GOOD_FILES = 92
# (extension, libsndfile format, subtype)
ENCODINGS = [
    ("wav", "WAV", "PCM_16"),
    ("flac", "FLAC", "PCM_16"),
    ("ogg", "OGG", "VORBIS"),
    ("mp3", "MP3", "MPEG_LAYER_III"),
    ("wav", "WAV", "FLOAT"),
    ("flac", "FLAC", "PCM_24"),
]
PREFERRED_MODELS = ("MTT_vgg", "MSD_vgg")  # the cheapest spectrogram models on 2 cores


@dataclass(frozen=True)
class Catalogue:
    root: Path
    good: dict[str, Path]  # id (path relative to root) -> file
    bad: dict[str, Path]

    def manifest(self, path: Path, ids: list[str]) -> Path:
        """A CSV manifest of some ids, with paths relative to the manifest."""
        files = {**self.good, **self.bad}
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "path"])
            for track_id in ids:
                writer.writerow([track_id, os.path.relpath(files[track_id], path.parent)])
        return path


def _sources(music_wav: Path, folder: Path) -> dict[str, Path]:
    """A real file of each suffix to cut: the shared recordings where they are, else
    ``music_wav`` and its encodings into ``folder``."""
    if has_shared():
        names = ("clip_03.wav", "clip_04.flac", "clip_02.ogg", "clip_01.mp3")
        return {Path(name).suffix: SHARED_AUDIO / name for name in names}
    return copies(music_wav, folder)


def _bad_files(sources: dict[str, Path]) -> dict[str, bytes]:
    def head(suffix: str, size: int) -> bytes:
        return sources[suffix].read_bytes()[:size]

    noise = np.random.default_rng(1).bytes(4096)
    return {
        "broken/empty.wav": b"",
        "broken/empty.mp3": b"",
        "broken/noise.wav": noise,
        "broken/noise.flac": noise[:1500],
        "broken/header-only.wav": head(".wav", 30),
        "broken/cut.flac": head(".flac", 100),
        "broken/cut.ogg": head(".ogg", 300),
        "broken/cut.mp3": head(".mp3", 200),
    }


@pytest.fixture(scope="session")
def catalogue(music_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    sources = _sources(music_wav, tmp_path_factory.mktemp("sources"))
    if has_shared():
        suffixes = {".wav", ".flac", ".ogg", ".mp3"}
        clips = sorted(p for p in SHARED_AUDIO.iterdir() if p.suffix in suffixes)
    else:
        clips = [music_wav]
    decoded = [sf.read(clip, dtype="float32", always_2d=True) for clip in clips]
    root = tmp_path_factory.mktemp("catalogue")
    rng = np.random.default_rng(0)
    good: dict[str, Path] = {}
    for number in range(GOOD_FILES):
        (audio, rate), clip = decoded[number % len(clips)], clips[number % len(clips)]
        length = min(len(audio), int(rng.uniform(3.0, 6.0) * rate))
        start = int(rng.integers(0, len(audio) - length + 1))
        extension, container, subtype = ENCODINGS[number % len(ENCODINGS)]
        track_id = f"album{number % 5}/{number:03d}-{clip.stem}.{extension}"
        path = root / track_id
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, audio[start : start + length], rate, format=container, subtype=subtype)
        good[track_id] = path
    bad: dict[str, Path] = {}
    for track_id, data in _bad_files(sources).items():
        path = root / track_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        bad[track_id] = path
    (root / "album0" / "liner-notes.txt").write_text("not audio: the folder source skips it\n")
    return Catalogue(root=root, good=good, bad=bad)


@pytest.fixture(scope="session")
def repository() -> Path:
    return require_repository()


@pytest.fixture(scope="session")
def model(repository: Path) -> str:
    """A VGG model when the repository has one (fastest on 2 cores), else its first model."""
    names = sorted(load_repository(repository, verify_hashes=False))
    return next((name for name in PREFERRED_MODELS if name in names), names[0])


@pytest.fixture(scope="session")
def server_env(model: str) -> dict[str, str]:
    """Serve only the model under test; stop at once on SIGTERM (no load balancer to drain)."""
    return {
        "TAGGRAM_MODELS": model,
        "TAGGRAM_DEFAULT_MODEL": model,
        "TAGGRAM_DRAIN_GRACE_SECONDS": "0",
    }
