"""Audio files of every kind the decoder must handle, made at test time with the ffmpeg tool.

The service decodes through FFmpeg's libraries; the tool is only a fixture generator here (tests
that need it skip where it is absent). Besides plain encodings, this builds the real-world damage
that users' files carry: MP3 cut mid-frame, junk before the first frame, ID3v2.2/2.3/2.4 tags
(with a footer), APEv2 tags, VBR without a Xing header, joined files, an Ogg stream without its
end-of-stream page. :func:`music` is the 30 s of music a fresh clone tags in place of the
recordings of ``../shared/audio`` (the ``music_wav`` fixture).
"""

from __future__ import annotations

import shutil
import struct
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


# The generated piece: 120 bpm, one bar (2 s) per chord of C - Am - F - G, MIDI note numbers.
_BAR_SECONDS = 2.0
_CHORDS = ((48, 60, 64, 67), (45, 57, 60, 64), (41, 57, 60, 65), (43, 55, 59, 62))
# Sixteenth steps of one bar with a kick, a snare or a closed hi-hat on them.
_KICK_STEPS = (0, 6, 8)
_SNARE_STEPS = (4, 12)
_HAT_STEPS = tuple(range(0, 16, 2))


def _band_noise(
    rng: np.random.Generator, frames: int, rate: int, low: float, high: float
) -> np.ndarray:
    """White noise kept between ``low`` and ``high`` Hz (an FFT mask: no filter design needed)."""
    spectrum = np.fft.rfft(rng.standard_normal(frames))
    frequencies = np.fft.rfftfreq(frames, 1 / rate)
    spectrum[(frequencies < low) | (frequencies > high)] = 0
    band = np.fft.irfft(spectrum, frames)
    return band / np.abs(band).max()


def _place(track: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Add ``sound`` into ``track`` from frame ``start``, cut at the track's end."""
    end = min(len(track), start + len(sound))
    track[start:end] += sound[: end - start]


def _harmonic(note: int, t: np.ndarray, rate: int) -> np.ndarray:
    """MIDI ``note`` as six harmonics falling as 1/k (those under Nyquist), at times ``t``."""
    frequency = 440.0 * 2 ** ((note - 69) / 12)
    ks = [k for k in range(1, 7) if k * frequency < rate / 2]
    return np.sum([np.sin(2 * np.pi * k * frequency * t) / k for k in ks], axis=0)


def music(rate: int = 44100, seconds: float = 30.0) -> np.ndarray:
    """A ``[frames, 2]`` float32 piece of music-like audio, the same on every call: chords of
    harmonic tones with plucked envelopes (their root the bass), a melody of chord tones, over a
    kick/snare/hi-hat pattern of filtered noise, every note and hit at its own loudness (so no
    two bars are alike), peaking at 0.9.

    It stands in for ``../shared/audio``'s recordings where a fresh clone lacks them: the models
    hear pitched, rhythmic, broadband audio (so tags rank clearly and encodings can disagree),
    unlike a sine or noise.
    """
    frames = int(rate * seconds)
    rng = np.random.default_rng(3)
    left, right = np.zeros(frames), np.zeros(frames)
    bar = int(rate * _BAR_SECONDS)
    note_t = np.arange(bar) / rate
    pluck = np.exp(-3.0 * note_t) * np.minimum(1.0, note_t / 0.01)  # 10 ms attack, slow decay
    step = bar // 16
    step_t = np.arange(step * 2) / rate
    kick = np.sin(2 * np.pi * 55 * step_t * (1 + np.exp(-30 * step_t))) * np.exp(-12 * step_t)
    kick += 0.3 * _band_noise(rng, len(step_t), rate, 20, 200) * np.exp(-40 * step_t)
    snare = _band_noise(rng, len(step_t), rate, 180, 6000) * np.exp(-18 * step_t)
    hat = 0.35 * _band_noise(rng, step, rate, 7000, 16000) * np.exp(-60 * step_t[:step])

    def add(sound: np.ndarray, start: int, pan: float) -> None:
        loudness = rng.uniform(0.6, 1.0)
        _place(left, (1 - pan) * loudness * sound, start)
        _place(right, pan * loudness * sound, start)

    for number, start in enumerate(range(0, frames, bar)):
        chord = _CHORDS[number % len(_CHORDS)]
        for index, note in enumerate(chord):
            # Spread the chord across the stereo field.
            add(0.12 * pluck * _harmonic(note, note_t, rate), start, 0.3 + 0.4 * index / 3)
        for beat in range(4):  # a quarter-note melody an octave above the chord
            note = int(rng.choice(chord[1:])) + 12
            add(
                0.1 * pluck[: 4 * step] * _harmonic(note, note_t[: 4 * step], rate),
                start + beat * 4 * step,
                0.6,
            )
        for steps, sound, pan in (
            (_KICK_STEPS, kick, 0.5),
            (_SNARE_STEPS, snare, 0.45),
            (_HAT_STEPS, 0.7 * hat, 0.7),
        ):
            for offset in steps:
                add(0.8 * sound, start + offset * step, pan)
    mix = np.stack([left, right], axis=1)
    return (0.9 * mix / np.abs(mix).max()).astype(np.float32)


def write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    sf.write(path, audio, rate, subtype="PCM_16")
    return path


# (libsndfile container, subtype) of the compressed copies :func:`copies` writes, by suffix.
COPIES = {".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"), ".mp3": ("MP3", "MPEG_LAYER_III")}


def copies(source: Path, folder: Path) -> dict[str, Path]:
    """``source`` (a WAV) and its FLAC, Ogg Vorbis and MP3 copies in ``folder``, by suffix:
    one real file of each kind the shared recordings come in."""
    data, rate = sf.read(source, dtype="float32")
    files = {".wav": source}
    for suffix, (container, subtype) in COPIES.items():
        files[suffix] = folder / f"{source.stem}{suffix}"
        sf.write(files[suffix], data, rate, format=container, subtype=subtype)
    return files


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


def _sealed(page: bytearray) -> bytes:
    """An Ogg page with its CRC computed anew (over the page with the CRC field zeroed)."""
    page[22:26] = b"\x00\x00\x00\x00"
    page[22:26] = _ogg_crc(bytes(page)).to_bytes(4, "little")
    return bytes(page)


def without_end_of_stream(ogg: bytes) -> bytes:
    """``ogg`` with the end-of-stream flag of its last page cleared (CRC fixed): what a live or
    interrupted capture leaves behind."""
    last = ogg.rfind(b"OggS")
    page = bytearray(ogg[last:])
    page[5] &= ~0x04
    return ogg[:last] + _sealed(page)


def replaced_in_ogg(ogg: bytes, old: bytes, new: bytes) -> bytes:
    """``ogg`` with ``old`` replaced by ``new`` (as long) and every page's CRC fixed: a comment
    rewritten in bytes an encoder might have written (Latin-1 rather than UTF-8)."""
    assert len(old) == len(new) and old in ogg
    data, pages, at = ogg.replace(old, new), [], 0
    while at < len(data):
        count = data[at + 26]
        end = at + 27 + count + sum(data[at + 27 : at + 27 + count])
        pages.append(_sealed(bytearray(data[at:end])))
        at = end
    return b"".join(pages)


def protracker_module(orders: int, note: bool = True) -> bytes:
    """A 4-channel ProTracker module: one looped square-wave sample held from the first row of
    pattern 0 (silence without ``note``), played ``orders`` times (64 rows at speed 6 and
    125 BPM: 7.68 s each)."""
    sample = b"square".ljust(22, b"\0") + struct.pack(">HBBHH", 32, 0, 64, 0, 32)
    empty = b"\0" * 22 + struct.pack(">HBBHH", 0, 0, 0, 0, 1)
    pattern = bytearray(64 * 4 * 4)
    if note:
        pattern[0:4] = bytes([428 >> 8, 428 & 0xFF, 0x10, 0])  # sample 1 at period 428 (C-2)
    wave = np.where(np.arange(64) < 32, 100, -100).astype(np.int8).tobytes()
    order_table = bytes([orders, 127]) + bytes(128)
    return b"test".ljust(20, b"\0") + sample + empty * 30 + order_table + b"M.K." + pattern + wave
