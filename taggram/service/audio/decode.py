"""Decode any supported container into mono float32 at the model's sample rate.

The steps reproduce what the original musicnn did through ``librosa.load(file, sr=16000)``:
libsndfile decodes to float32, channels are averaged, and soxr resamples with its ``HQ`` quality
(librosa 0.11's default ``soxr_hq``), the result trimmed or zero-padded to
``ceil(frames * target / native)`` samples as librosa does. Limits are checked against the file's
header before anything is decoded, so a tiny file that claims hours of audio costs nothing.
Decoding is blocking and CPU-bound: callers run :func:`decode` in a worker thread.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from taggram.service.errors import (
    AudioTooLongError,
    EmptyAudioError,
    InvalidAudioError,
    PayloadTooLargeError,
    UndecodableAudioError,
)

AudioSource = bytes | BinaryIO
# Frames read per block when downmixing, bounding the multichannel buffer to a few MB.
_BLOCK_FRAMES = 1 << 16


@dataclass(frozen=True)
class AudioInfo:
    """What the file's header says about the original audio."""

    sample_rate: int
    channels: int
    frames: int
    format: str

    @property
    def duration_seconds(self) -> float:
        return self.frames / self.sample_rate


@dataclass(frozen=True)
class DecodedAudio:
    info: AudioInfo
    waveform: np.ndarray  # float32 mono at ``sample_rate``
    sample_rate: int

    @property
    def duration_seconds(self) -> float:
        return len(self.waveform) / self.sample_rate


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int
    max_duration_seconds: float


def _as_file(source: AudioSource) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes | bytearray | memoryview) else source


def _byte_size(handle: BinaryIO) -> int:
    start = handle.tell()
    size = handle.seek(0, io.SEEK_END) - start
    handle.seek(start)
    return size


def _read_mono(sound: sf.SoundFile) -> np.ndarray:
    """All frames as float32 mono (mean of channels), without holding the multichannel audio."""
    mono = np.empty(sound.frames, dtype=np.float32)
    # A matrix-vector product is the channel mean (bit-identical for mono and stereo) at a
    # fraction of np.mean's cost over a 2-wide last axis (~1 ms instead of 26 ms for 30 s).
    weights = np.full(sound.channels, 1.0 / sound.channels, dtype=np.float32)
    filled = 0
    for block in sound.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
        np.matmul(block, weights, out=mono[filled : filled + len(block)])
        filled += len(block)
    return mono[:filled]


def resample(waveform: np.ndarray, native_rate: int, target_rate: int) -> np.ndarray:
    """soxr HQ resampling with librosa's output length (``ceil(n * ratio)``)."""
    if native_rate == target_rate:
        return waveform
    out = soxr.resample(waveform, native_rate, target_rate, quality="HQ")
    size = int(np.ceil(len(waveform) * (float(target_rate) / native_rate)))
    if len(out) >= size:
        return np.ascontiguousarray(out[:size], dtype=np.float32)
    return np.pad(out, (0, size - len(out))).astype(np.float32, copy=False)


def decode(source: AudioSource, target_rate: int, limits: DecodeLimits) -> DecodedAudio:
    """Check size and declared duration, then decode, downmix and resample to ``target_rate``."""
    handle = _as_file(source)
    size = _byte_size(handle)
    if size == 0:
        raise EmptyAudioError("the request carried no audio")
    if size > limits.max_bytes:
        raise PayloadTooLargeError(
            f"upload of {size} bytes exceeds the limit of {limits.max_bytes}"
        )
    try:
        with sf.SoundFile(handle) as sound:
            info = AudioInfo(
                sample_rate=sound.samplerate,
                channels=sound.channels,
                frames=sound.frames,
                format=f"{sound.format}/{sound.subtype}",
            )
            if info.duration_seconds > limits.max_duration_seconds:
                raise AudioTooLongError(
                    f"audio declares {info.duration_seconds:.1f} s, more than the limit of "
                    f"{limits.max_duration_seconds:g} s"
                )
            mono = _read_mono(sound)
    except sf.SoundFileError as error:
        reason = getattr(error, "error_string", str(error))
        raise UndecodableAudioError(f"not a supported audio file: {reason}") from error
    if len(mono) == 0:
        raise InvalidAudioError("the audio contains no samples")
    if not math.isfinite(float(np.sum(mono, dtype=np.float64))):
        raise InvalidAudioError("the audio contains NaN or infinite samples")
    waveform = resample(mono, info.sample_rate, target_rate)
    return DecodedAudio(info=info, waveform=waveform, sample_rate=target_rate)
