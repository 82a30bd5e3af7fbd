"""Audio files of every kind the decoder must handle, made at test time with the ffmpeg tool.

The service decodes through FFmpeg's libraries; the tool is only a fixture generator here (tests
that need it skip where it is absent). Besides plain encodings, this builds the real-world damage
that users' files carry: MP3 cut mid-frame, junk before the first frame, ID3v2.2/2.3/2.4 tags
(with a footer), APEv2 tags, VBR without a Xing header, joined files, an Ogg stream without its
end-of-stream page.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# (suffix, ffmpeg output options) of each encoding made from a WAV source.
ENCODINGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mp3": (".mp3", ("-c:a", "libmp3lame", "-b:a", "128k")),
    "m4a_aac": (".m4a", ("-c:a", "aac", "-b:a", "128k")),
    "m4a_alac": (".m4a", ("-c:a", "alac")),
    "adts_aac": (".aac", ("-c:a", "aac", "-b:a", "128k", "-f", "adts")),
    "webm_opus": (".webm", ("-c:a", "libopus", "-b:a", "96k")),
    "mka_vorbis": (".mka", ("-c:a", "libvorbis")),
    "ogg_opus": (".opus", ("-c:a", "libopus", "-b:a", "96k")),
    "ogg_flac": (".oga", ("-c:a", "flac")),
    "wma": (".wma", ("-c:a", "wmav2", "-b:a", "128k")),
    "ac3": (".ac3", ("-c:a", "ac3", "-b:a", "192k")),
    "aiff": (".aiff", ("-c:a", "pcm_s16be")),
    "caf_alac": (".caf", ("-c:a", "alac")),
    "wav_mulaw": (".wav", ("-c:a", "pcm_mulaw")),
    "wav_alaw": (".wav", ("-c:a", "pcm_alaw")),
    "wav_f64": (".wav", ("-c:a", "pcm_f64le")),
    "wav_adpcm": (".wav", ("-c:a", "adpcm_ima_wav")),
    "rf64": (".wav", ("-c:a", "pcm_s24le", "-rf64", "always")),
    "wave64": (".w64", ("-c:a", "pcm_f32le")),
    "au": (".au", ("-c:a", "pcm_mulaw")),
}


def require_ffmpeg() -> str:
    """The ffmpeg tool's path, or skip (it only makes fixtures; the service never runs it)."""
    found = shutil.which("ffmpeg")
    if found is None:
        pytest.skip("the ffmpeg tool is not installed: it generates these test files")
    return found


def ffmpeg(*args: str | Path) -> None:
    """Run the ffmpeg tool quietly, overwriting outputs."""
    command = [require_ffmpeg(), "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(command, check=True)


def tone(rate: int, seconds: float, channels: int = 2, frequency: float = 440.0) -> np.ndarray:
    """A ``[frames, channels]`` float32 sine at half scale."""
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * frequency * t)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def noise_then_tone(rate: int, noise_seconds: float, tone_seconds: float) -> np.ndarray:
    """Loud white noise then a quiet tone, mono: a VBR encoder's bitrate drops after the intro,
    so a length estimated from the first frame's bitrate is far too short."""
    noise = np.random.default_rng(0).uniform(-0.9, 0.9, int(rate * noise_seconds))
    quiet = 0.01 * tone(rate, tone_seconds, 1)[:, 0]
    return np.concatenate([noise, quiet]).astype(np.float32)[:, None]


def write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


def encode(source: Path, out: Path, kind: str) -> Path:
    """``source`` re-encoded as ``kind`` (a key of :data:`ENCODINGS`)."""
    _, options = ENCODINGS[kind]
    ffmpeg("-i", source, *options, out)
    return out


def mp3(source: Path, out: Path, *options: str) -> Path:
    """An MP3 of ``source`` without any ID3 tag (options: e.g. VBR, no Xing header)."""
    ffmpeg("-i", source, "-c:a", "libmp3lame", "-id3v2_version", "0", *options, out)
    return out


def _syncsafe(size: int) -> bytes:
    return bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))


def id3v2(version: int, footer: bool = False, padding: int = 256) -> bytes:
    """An ID3v2.``version`` tag with one title frame, ``padding`` zero bytes after it (where a
    tagger leaves room for edits, or as big as cover art), and the v2.4 footer when asked."""
    text = b"\x00a title"
    if version == 2:
        frames = b"TT2" + len(text).to_bytes(3, "big") + text
    else:
        size = _syncsafe(len(text)) if version == 4 else len(text).to_bytes(4, "big")
        frames = b"TIT2" + size + b"\x00\x00" + text
    frames += b"\x00" * padding
    flags = 0x10 if footer else 0
    header = b"ID3" + bytes((version, 0, flags)) + _syncsafe(len(frames))
    tail = b"3DI" + bytes((version, 0, flags)) + _syncsafe(len(frames)) if footer else b""
    return header + frames + tail


def ape_tag() -> bytes:
    """An APEv2 tag (one Title item, header and footer) as players append it to an MP3."""
    item = (5).to_bytes(4, "little") + (0).to_bytes(4, "little") + b"Title\x00hello"
    size = len(item) + 32

    def block(flags: int) -> bytes:
        return (
            b"APETAGEX"
            + (2000).to_bytes(4, "little")
            + size.to_bytes(4, "little")
            + (1).to_bytes(4, "little")
            + flags.to_bytes(4, "little")
            + b"\x00" * 8
        )

    return block(0xA0000000) + item + block(0x80000000)


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def without_end_of_stream(ogg: bytes) -> bytes:
    """``ogg`` with the end-of-stream flag of its last page cleared (CRC fixed): what a live or
    interrupted capture leaves behind."""
    last = ogg.rfind(b"OggS")
    page = bytearray(ogg[last:])
    page[5] &= ~0x04
    page[22:26] = b"\x00\x00\x00\x00"
    page[22:26] = _ogg_crc(bytes(page)).to_bytes(4, "little")
    return ogg[:last] + bytes(page)
