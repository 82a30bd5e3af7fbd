"""A catalogue of ~100 short real tracks, cut at test time from ``../shared/audio``.

Good files are 3-6 s pieces of the shared recordings in a mix of containers and encodings, spread
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
from tests.support.paths import require_repository, require_shared

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


def _bad_files(shared: Path) -> dict[str, bytes]:
    def head(name: str, size: int) -> bytes:
        return (shared / name).read_bytes()[:size]

    noise = np.random.default_rng(1).bytes(4096)
    return {
        "broken/empty.wav": b"",
        "broken/empty.mp3": b"",
        "broken/noise.wav": noise,
        "broken/noise.flac": noise[:1500],
        "broken/header-only.wav": head("clip_03.wav", 30),
        "broken/cut.flac": head("clip_04.flac", 100),
        "broken/cut.ogg": head("clip_02.ogg", 300),
        "broken/cut.mp3": head("clip_01.mp3", 200),
    }


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    shared = require_shared()
    clips = sorted(p for p in shared.iterdir() if p.suffix in {".wav", ".flac", ".ogg", ".mp3"})
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
    for track_id, data in _bad_files(shared).items():
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
