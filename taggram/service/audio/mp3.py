"""How long an MP3's first frame says the stream is, read from the bytes.

An encoder writes a Xing or Info frame (LAME, FFmpeg) or a VBRI frame (Fraunhofer) first, holding
the count of the stream's frames: an exact length, so a file cut short can be told. FFmpeg's
stream duration is not that count: where the file's size disagrees with the Xing frame's byte
count (files joined with ``cat``, zeros or junk appended) FFmpeg drops the count and estimates the
length from the bitrate ("invalid concatenated file detected - using bitrate for duration"), which
for a low-bitrate part followed by a high-bitrate one claims many times the real length. Only the
count itself is used. References: the Xing header (Xing Technology's ``DXHEAD`` layout, as LAME
writes it) and FFmpeg's ``libavformat/mp3dec.c`` (``mp3_parse_info_tag``, ``mp3_parse_vbri_tag``).
Our own reader, not mutagen's (which reads the same count): mutagen is GPL-2.0-or-later, and the
service and its image are distributed under ISC.
"""

from __future__ import annotations

import struct

from taggram.formats import mpeg_audio_header

# Sample rates by MPEG version bits (0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1) and rate index.
_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}
# The Xing flags saying what follows them, in order: frame count (4 bytes), byte count (4), table
# of contents (100), quality (4).
_XING_FRAMES = 0x1
_XING_FIELDS = ((_XING_FRAMES, 4), (0x2, 4), (0x4, 100), (0x8, 4))
# The LAME tag after the Xing fields, by the encoders FFmpeg trusts it from: the 12-bit encoder
# delay and 12-bit padding, in samples, sit 21 bytes into it.
_LAME_ENCODERS = (b"LAME", b"Lavf", b"Lavc")
_LAME_DELAYS = 21
# VBRI sits at a fixed offset: after the 4-byte frame header and 32 bytes.
_VBRI_OFFSET = 36


def _samples_per_frame(version: int, layer: int) -> int:
    """Samples per frame: layer I 384, layer II 1152, layer III 1152 (MPEG-1) or 576 (MPEG-2/2.5);
    ``layer`` is the header's layer bits (3: I, 2: II, 1: III)."""
    if layer == 3:
        return 384
    return 1152 if layer == 2 or version == 3 else 576


def _side_info_bytes(version: int, mono: bool) -> int:
    """Layer III side information after the frame header, where a Xing or Info tag starts."""
    if version == 3:
        return 17 if mono else 32
    return 9 if mono else 17


def _xing_seconds(frame: bytes, flags_at: int, per_frame: int, rate: int) -> float | None:
    """The Xing or Info frame's count in seconds, less the LAME tag's delay and padding."""
    flags = struct.unpack_from(">I", frame, flags_at)[0]
    if not flags & _XING_FRAMES or len(frame) < flags_at + 8:
        return None
    count = struct.unpack_from(">I", frame, flags_at + 4)[0]
    lame = flags_at + 4 + sum(size for flag, size in _XING_FIELDS if flags & flag)
    samples = count * per_frame
    if frame[lame : lame + 4] in _LAME_ENCODERS and len(frame) >= lame + _LAME_DELAYS + 3:
        delays = int.from_bytes(frame[lame + _LAME_DELAYS : lame + _LAME_DELAYS + 3], "big")
        samples = max(0, samples - (delays >> 12) - (delays & 0xFFF))
    return samples / rate


def declared_seconds(frame: bytes) -> float | None:
    """The length in seconds that the Xing, Info or VBRI frame at the start of ``frame`` (the
    bytes after any ID3v2 tag) counts, or ``None``: no MPEG audio frame header there, no such tag
    in the frame, or a tag without a frame count."""
    header = mpeg_audio_header(frame)
    if header is None:
        return None
    version, layer, rate_index = header
    rate = _RATES[version][rate_index]
    per_frame = _samples_per_frame(version, layer)
    xing = 4 + _side_info_bytes(version, mono=frame[3] >> 6 == 3)
    if frame[xing : xing + 4] in (b"Xing", b"Info") and len(frame) >= xing + 8:
        return _xing_seconds(frame, xing + 4, per_frame, rate)
    if frame[_VBRI_OFFSET : _VBRI_OFFSET + 4] == b"VBRI" and len(frame) >= _VBRI_OFFSET + 18:
        count = struct.unpack_from(">I", frame, _VBRI_OFFSET + 14)[0]
        return count * per_frame / rate
    return None
