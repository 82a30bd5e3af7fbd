"""Fixtures every test folder shares."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from tests.support import audio
from tests.support.paths import SHARED_AUDIO, has_shared

MUSIC_RATE = 44100
SHORT_SECONDS = 4.0


@pytest.fixture(scope="session")
def music_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 s of music, 44.1 kHz stereo 16-bit WAV: ``../shared/audio/clip_03.wav`` where it is
    (CI and dev machines), else :func:`tests.support.audio.music` written once, so tests that
    only need some music also run in a fresh clone."""
    if has_shared():
        return SHARED_AUDIO / "clip_03.wav"
    path = tmp_path_factory.mktemp("music") / "music.wav"
    return audio.write_wav(path, audio.music(MUSIC_RATE, 30.0), MUSIC_RATE)


@pytest.fixture(scope="session")
def short_wav(music_wav: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of real-sounding audio for tests that tag a short file: the 3.7 s
    ``../shared/audio/clip_10.wav`` where it is, else the generated music's first 4 s."""
    if has_shared():
        return SHARED_AUDIO / "clip_10.wav"
    data, rate = sf.read(music_wav, dtype="float32")
    path = tmp_path_factory.mktemp("short") / "short.wav"
    return audio.write_wav(path, data[: int(SHORT_SECONDS * rate)], rate)
