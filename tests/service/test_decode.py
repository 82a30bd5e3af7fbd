"""Decoding: every container and sample width, limits from the header, librosa-equal output."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from taggram.service.audio.decode import DecodeLimits, decode
from taggram.service.errors import (
    AudioTooLongError,
    EmptyAudioError,
    InvalidAudioError,
    PayloadTooLargeError,
    UndecodableAudioError,
)
from tests.support.paths import require_shared

LIMITS = DecodeLimits(max_bytes=50 * 1024 * 1024, max_duration_seconds=60)
FORMATS = [
    ("WAV", "PCM_U8"),
    ("WAV", "PCM_16"),
    ("WAV", "PCM_24"),
    ("WAV", "PCM_32"),
    ("WAV", "FLOAT"),
    ("FLAC", "PCM_16"),
    ("OGG", "VORBIS"),
    ("OGG", "OPUS"),
    ("MP3", "MPEG_LAYER_III"),
]


def _encode(audio: np.ndarray, rate: int, container: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=container, subtype=subtype)
    return buffer.getvalue()


def _tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([left, -left if channels == 2 else left][:channels], axis=1).astype(np.float32)


@pytest.mark.parametrize(("container", "subtype"), FORMATS)
def test_every_format_decodes_to_mono_at_the_model_rate(container: str, subtype: str) -> None:
    rate = 48000
    data = _encode(_tone(rate, 2.0, 2)[:, :1].repeat(2, axis=1), rate, container, subtype)
    decoded = decode(data, 16000, LIMITS)
    assert decoded.info.format == f"{container}/{subtype}"
    assert (decoded.info.sample_rate, decoded.info.channels) == (rate, 2)
    assert decoded.waveform.dtype == np.float32 and decoded.waveform.ndim == 1
    # Lossy codecs may add priming samples; the duration is still about 2 s at 16 kHz.
    assert abs(decoded.duration_seconds - 2.0) < 0.1
    # A 440 Hz tone survives every codec: its spectrum peaks at 440 Hz.
    spectrum = np.abs(np.fft.rfft(decoded.waveform))
    assert abs(np.argmax(spectrum) * 16000 / len(decoded.waveform) - 440) < 5


def test_channels_are_averaged() -> None:
    audio = _tone(16000, 1.0, 2)  # right = -left: the mean is silence
    decoded = decode(_encode(audio, 16000, "WAV", "FLOAT"), 16000, LIMITS)
    assert np.abs(decoded.waveform).max() == 0.0


def test_resampled_length_follows_librosa() -> None:
    decoded = decode(_encode(_tone(44100, 1.0, 1), 44100, "WAV", "PCM_16"), 16000, LIMITS)
    assert len(decoded.waveform) == int(np.ceil(44100 * 16000 / 44100))


@pytest.mark.parametrize(
    "name", ["clip_01.mp3", "clip_03.wav", "clip_04.flac", "clip_07.wav", "clip_06.ogg"]
)
def test_matches_librosa_load_like_the_original(name: str) -> None:
    librosa = pytest.importorskip("librosa")
    path = require_shared() / name
    expected, _ = librosa.load(path, sr=16000)
    decoded = decode(path.read_bytes(), 16000, LIMITS)
    np.testing.assert_array_equal(decoded.waveform, expected)


def test_tiny_file_claiming_hours_is_refused_from_its_header() -> None:
    # 40 kB of 16-bit samples declared at 2 Hz: 5.5 hours that would resample to 320 M samples.
    data = _encode(np.zeros((20000, 1), np.float32), 2, "WAV", "PCM_16")
    assert len(data) < 50_000
    with pytest.raises(AudioTooLongError, match="declares"):
        decode(data, 16000, LIMITS)


def test_limits_and_bad_input() -> None:
    wav = _encode(_tone(16000, 1.0, 1), 16000, "WAV", "PCM_16")
    with pytest.raises(EmptyAudioError):
        decode(b"", 16000, LIMITS)
    with pytest.raises(PayloadTooLargeError):
        decode(wav, 16000, DecodeLimits(max_bytes=len(wav) - 1, max_duration_seconds=60))
    with pytest.raises(UndecodableAudioError):
        decode(b"RIFF but not really a wave file" * 10, 16000, LIMITS)
    with pytest.raises(UndecodableAudioError):
        decode(wav[: len(wav) // 1000], 16000, LIMITS)
    broken = _tone(16000, 1.0, 1)
    broken[100] = np.nan
    with pytest.raises(InvalidAudioError, match="NaN"):
        decode(_encode(broken, 16000, "WAV", "FLOAT"), 16000, LIMITS)
    with pytest.raises(InvalidAudioError, match="no samples"):
        decode(_encode(np.zeros((0, 1), np.float32), 16000, "WAV", "PCM_16"), 16000, LIMITS)


def test_reads_open_files() -> None:
    data = _encode(_tone(22050, 1.0, 1), 22050, "FLAC", "PCM_16")
    with io.BytesIO(data) as handle:
        assert decode(handle, 16000, LIMITS).info.sample_rate == 22050
