"""The audio containers taggram accepts: one explicit allow-list, shared by the service and the
catalogue.

The service (``taggram.service.audio``) decodes exactly these containers and refuses anything else
with 415 ``unsupported_format``; ``taggram catalogue`` scans a folder for exactly their file
extensions, so every extension a container's files commonly carry belongs here (``.mov`` and
``.spx`` were missing: the service decoded them, the catalogue skipped them as not audio). The
README's format table follows this one (a test compares them). The table lives at the package
root, free of imports, because a catalogue machine that talks to a remote service must not load
the server stack (``tests/test_layering.py``).

Detection is by content, never by name: :func:`sniff` recognises each container from its first
bytes (skipping an ID3v2 tag, which MP3, AAC and FLAC files may carry in front). Streams with no
signature at byte 0 (an MP3 captured mid-frame, MP3 after junk) are left to FFmpeg's probe, whose
answer is checked against :attr:`Container.demuxers`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Container:
    """One accepted container: how it is named, found, and opened."""

    name: str  # short name used in responses (``audio.format``) and messages
    description: str  # what it holds, for people (README table, 415 messages)
    extensions: tuple[str, ...]  # lower-case file extensions, with the dot
    demuxers: tuple[str, ...]  # FFmpeg demuxer names (``av.open(format=...)``); the first opens it


CONTAINERS: tuple[Container, ...] = (
    Container("WAV", "PCM, float, μ-law, A-law, ADPCM (RIFF, RF64)", (".wav", ".wave"), ("wav",)),
    Container("Wave64", "PCM, float (Sony Wave64)", (".w64",), ("w64",)),
    Container("AIFF", "PCM, float, μ-law (AIFF, AIFF-C)", (".aif", ".aiff", ".aifc"), ("aiff",)),
    Container("AU", "Sun/NeXT audio: PCM, μ-law", (".au", ".snd"), ("au",)),
    Container("CAF", "Apple Core Audio: PCM, ALAC, AAC", (".caf",), ("caf",)),
    Container("FLAC", "FLAC", (".flac",), ("flac",)),
    Container("Ogg", "Vorbis, Opus, FLAC, Speex", (".ogg", ".oga", ".opus", ".spx"), ("ogg",)),
    Container("MP3", "MPEG-1/2 audio layer III (and II)", (".mp3", ".mp2"), ("mp3",)),
    Container(
        "MP4", "AAC, ALAC (M4A, QuickTime, iTunes/Apple Music, phones, podcasts)",
        (".m4a", ".m4b", ".mp4", ".mov", ".3gp"), ("mov,mp4,m4a,3gp,3g2,mj2",),
    ),
    Container("AAC", "raw AAC in ADTS frames", (".aac", ".adts"), ("aac",)),
    Container("Matroska", "Opus, Vorbis, AAC, FLAC (WebM, MKA)", (".webm", ".mka", ".mkv"),
              ("matroska,webm",)),
    Container("ASF", "WMA (Windows Media Audio)", (".wma", ".asf"), ("asf",)),
    Container("AC-3", "Dolby Digital AC-3 and E-AC-3", (".ac3", ".eac3"), ("ac3", "eac3")),
)  # fmt: skip

AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    extension for container in CONTAINERS for extension in container.extensions
)
_BY_NAME = {container.name: container for container in CONTAINERS}
_BY_DEMUXER = {demuxer: container for container in CONTAINERS for demuxer in container.demuxers}

# Signatures of common non-audio uploads, so a refusal can say what was sent.
_NOT_AUDIO = (
    (b"\x1f\x8b", "gzip data (send it with Content-Encoding: gzip)"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%PDF", "a PDF document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"MThd", "a MIDI file (notes, not audio)"),
    (b"<", "markup (HTML or XML)"),
    (b"{", "JSON"),
    # A multipart body sent as raw audio (its Content-Type overridden with audio/*, say).
    (
        b"--",
        "a multipart/form-data body (send it with Content-Type: multipart/form-data; "
        "boundary=..., as clients set it themselves)",
    ),
)
# Tracker modules (.xm, .it, .s3m, .mod: notes and samples that a player renders, as games ship
# music): (offset, signature). The libopenmpt build of the ffmpeg command renders them.
_TRACKER_MODULES = ((0, b"Extended Module: "), (0, b"IMPM"), (44, b"SCRM"), (1080, b"M.K."))


def supported() -> str:
    """The allow-list in one line, for refusals: ``WAV, AIFF, ..., AC-3``."""
    return ", ".join(container.name for container in CONTAINERS)


def by_demuxer(name: str) -> Container | None:
    """The accepted container FFmpeg's demuxer ``name`` reads, or ``None`` if not allowed."""
    return _BY_DEMUXER.get(name)


def id3_size(head: bytes) -> int:
    """Bytes of the ID3v2 tag at the start of ``head`` (header, frames and footer), else 0."""
    if len(head) < 10 or head[:3] != b"ID3" or any(byte >= 0x80 for byte in head[6:10]):
        return 0
    size = 10 + sum(byte << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))  # syncsafe
    has_footer = head[3] == 4 and head[5] & 0x10
    return size + (10 if has_footer else 0)


def mpeg_audio_header(head: bytes) -> tuple[int, int, int] | None:
    """The version bits (0: MPEG-2.5, 2: MPEG-2, 3: MPEG-1), layer bits (3: I, 2: II, 1: III) and
    sample-rate index of a valid MPEG audio frame header at byte 0 of ``head``, else ``None``
    (no frame sync, or a reserved version, layer, bitrate or rate; an ADTS header's layer is
    00, reserved here)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return None
    version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
    bitrate, rate = head[2] >> 4, (head[2] >> 2) & 3
    valid = version != 1 and layer != 0 and bitrate != 15 and rate != 3
    return (version, layer, rate) if valid else None


def _mpeg_sync(head: bytes) -> str | None:
    """``MP3`` or ``AAC`` for an MPEG audio / ADTS frame header at byte 0."""
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # 12-bit sync, layer 00
        return "AAC"
    return "MP3" if mpeg_audio_header(head) else None


def _signature(head: bytes) -> str | None:
    """The container whose signature starts ``head``, by name."""
    fourcc, form = head[:4], head[8:12]
    if fourcc in (b"RIFF", b"RF64", b"BW64") and form == b"WAVE":
        return "WAV"
    if head[:8] == b"riff\x2e\x91\xcf\x11":  # Wave64's GUID
        return "Wave64"
    if fourcc == b"FORM" and form in (b"AIFF", b"AIFC"):
        return "AIFF"
    if head[4:8] == b"ftyp":
        return "MP4"
    signatures = {
        b"fLaC": "FLAC",
        b"OggS": "Ogg",
        b"caff": "CAF",
        b".snd": "AU",
        b"\x1a\x45\xdf\xa3": "Matroska",
        b"\x30\x26\xb2\x75": "ASF",
    }
    if fourcc in signatures:
        return signatures[fourcc]
    if head[:2] == b"\x0b\x77":
        return "AC-3"
    return _mpeg_sync(head)


def sniff(head: bytes) -> Container | None:
    """The accepted container whose signature ``head`` (the first KB or so of a file) starts with.

    ``None`` when no signature is at byte 0 (after an ID3v2 tag): FFmpeg's probe decides then.
    A file that is only an ID3v2 tag, or whose tag runs past ``head``, counts as MP3, which is
    what ID3v2 was made for.
    """
    skip = id3_size(head)
    if skip:
        found = _signature(head[skip:])
        return _BY_NAME[found or "MP3"]
    found = _signature(head)
    return _BY_NAME[found] if found else None


def describe_unknown(head: bytes) -> str:
    """What a body that is no accepted container looks like, for the 415 message."""
    if any(head[offset : offset + len(magic)] == magic for offset, magic in _TRACKER_MODULES):
        return (
            "a tracker module (notes and samples, not audio): render it first,"
            " e.g. ffmpeg -i song.xm song.flac"
        )
    stripped = head.lstrip()
    for magic, what in _NOT_AUDIO:
        if stripped.startswith(magic):
            return what
    if head and all(32 <= byte < 127 or byte in b"\t\r\n" for byte in head[:64]):
        return "text"
    return f"unrecognised data starting {head[:8].hex(' ')}" if head else "no data"
