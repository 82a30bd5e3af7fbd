"""Random access to training audio as mono float32 at the model's sample rate.

Compressed or off-rate files are decoded once into a cache of float WAV files (same code as the
data recipe), so drawing a random patch is a seek and a short read, whatever the source format.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import soundfile as sf

from taggram.models.data.prepare import decode_to_wav


def random_access(path: Path, cache: Path, sample_rate: int) -> Path:
    """``path`` itself when it is already a mono WAV at ``sample_rate``, else its cached decode.

    Raises ``ValueError`` naming the file if libsndfile cannot read it (an M4A, say).
    """
    try:
        info = sf.info(str(path))
    except sf.LibsndfileError as error:
        raise ValueError(
            f"{path}: libsndfile cannot read it ({error.error_string}); training reads WAV, "
            "FLAC, Ogg Vorbis/Opus and MP3"
        ) from error
    if info.samplerate == sample_rate and info.channels == 1 and info.format == "WAV":
        return path
    digest = hashlib.sha1(f"{path.resolve()}:{path.stat().st_mtime_ns}".encode()).hexdigest()
    target = cache / f"{digest[:20]}_{sample_rate}.wav"
    if not target.is_file():
        decode_to_wav(path, target, sample_rate)
    return target


def frames(path: Path) -> int:
    """Number of samples per channel in the audio file at ``path`` (read from its header)."""
    return int(sf.info(str(path)).frames)


def read_patch(path: Path, start: int, samples: int) -> np.ndarray:
    """``samples`` samples from ``start`` on, zero-padded past either end of the file."""
    patch = np.zeros(samples, dtype=np.float32)
    offset = max(0, -start)
    with sf.SoundFile(str(path)) as handle:
        handle.seek(max(0, start))
        data = handle.read(samples - offset, dtype="float32")
    patch[offset : offset + len(data)] = data
    return patch
