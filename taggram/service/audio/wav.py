"""What a RIFF/WAVE (or Sony Wave64) header declares about its samples, read from the bytes.

FFmpeg gives a WAV stream the length of the data it finds, not the one the header declares, so a
WAV cut short (a failed upload, a full disk) decodes as if whole; and a data chunk declaring less
than the file holds is read, by FFmpeg and libsndfile alike, only as far as it declares. The
declared length is needed to tell the user either way (``docs/audio.md``, "Length"). Reference:
Microsoft's RIFF/WAVE layout (``RIFF`` size ``WAVE``, then chunks of a 4-byte id, a little-endian
32-bit size and the body, padded to even length; ``fmt `` carries ``nBlockAlign`` at byte 12 of its
body). Wave64 is the same with 16-byte GUIDs for ids and 64-bit sizes that count the chunk's
24-byte header, chunks padded to 8 bytes (FFmpeg's ``libavformat/w64.c``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

# A data size FFmpeg and libsndfile read as "unknown, to the end of the file" (streamed WAVs).
_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})
# Wave64's GUIDs: ``fmt ``, ``data`` (and ``wave``) are the RIFF ids followed by these 12 bytes;
# others (``riff``, ``list``, ``levl``) have their own, and are passed over by their size.
_W64_SUFFIX = bytes.fromhex("f3acd3118cd100c04f8edb8a")
_W64_RIFF = b"riff" + bytes.fromhex("2e91cf11a5d628db04c10000")
_W64_CHUNK_HEADER = 24
# Chunks read before giving up on finding ``data`` (real files have a handful before it; the
# bound keeps a body of tiny chunks from costing a read per 8 bytes).
_MAX_CHUNKS = 256
# A Wave64 data size written to a pipe, where the real one could not be filled in (FFmpeg).
_W64_UNKNOWN_SIZE = (1 << 63) - 1


@dataclass(frozen=True)
class DataChunk:
    """The ``data`` chunk as declared: where its samples start, their declared byte count, and
    the bytes per frame (``fmt `` chunk's ``nBlockAlign``)."""

    offset: int
    size: int
    block_align: int

    @property
    def end(self) -> int:
        """The byte after the chunk as declared, its pad byte included."""
        return self.offset + self.size + (self.size & 1)

    def frames(self) -> int:
        """Declared frames, for PCM (where one block is one frame)."""
        return self.size // self.block_align


def _read(handle: BinaryIO, offset: int, size: int) -> bytes:
    handle.seek(offset)
    return handle.read(size)


def data_chunk(handle: BinaryIO) -> DataChunk | None:
    """The ``data`` chunk of the RIFF WAVE file ``handle``, or ``None``: not RIFF WAVE (RF64 keeps
    its sizes elsewhere), no ``fmt `` before ``data`` within the first ``_MAX_CHUNKS`` chunks, or
    a size declared unknown (0 or 0xFFFFFFFF). Chunks are passed over by seeking, so a large one
    before the samples (embedded cover art, an XMP or iXML packet, ``JUNK`` padding) costs one
    read, however large."""
    start = _read(handle, 0, 12)
    if start[:4] != b"RIFF" or start[8:12] != b"WAVE":
        return None
    offset, block_align = 12, 0
    for _ in range(_MAX_CHUNKS):
        header = _read(handle, offset, 8 + 14)
        if len(header) < 8:
            return None
        chunk_id, size = header[:4], struct.unpack_from("<I", header, 4)[0]
        body = offset + 8
        if chunk_id == b"fmt " and len(header) >= 8 + 14:
            block_align = struct.unpack_from("<H", header, 8 + 12)[0]
        elif chunk_id == b"data":
            if not block_align or size in _UNKNOWN_SIZES:
                return None
            return DataChunk(offset=body, size=size, block_align=block_align)
        offset = body + size + (size & 1)
    return None


def wave64_data_chunk(handle: BinaryIO) -> DataChunk | None:
    """The ``data`` chunk of the Wave64 file ``handle``, or ``None``: not Wave64, or no ``fmt ``
    before ``data`` within the first ``_MAX_CHUNKS`` chunks, or a size declared unknown
    (``INT64_MAX`` and above). ``size`` is the samples' bytes (the chunk's own size less its
    header)."""
    start = _read(handle, 0, 40)
    if start[:16] != _W64_RIFF or start[24:40] != b"wave" + _W64_SUFFIX:
        return None
    offset, block_align = 40, 0
    for _ in range(_MAX_CHUNKS):
        header = _read(handle, offset, _W64_CHUNK_HEADER + 14)
        if len(header) < _W64_CHUNK_HEADER:
            return None
        guid, size = header[:16], struct.unpack_from("<Q", header, 16)[0]
        body = offset + _W64_CHUNK_HEADER
        if size < _W64_CHUNK_HEADER:
            return None
        if guid == b"fmt " + _W64_SUFFIX and len(header) >= _W64_CHUNK_HEADER + 14:
            block_align = struct.unpack_from("<H", header, _W64_CHUNK_HEADER + 12)[0]
        elif guid == b"data" + _W64_SUFFIX:
            if not block_align or size >= _W64_UNKNOWN_SIZE:
                return None
            return DataChunk(offset=body, size=size - _W64_CHUNK_HEADER, block_align=block_align)
        offset += (size + 7) // 8 * 8
    return None


def is_chunk(header: bytes, room: int) -> bool:
    """Whether ``header`` (8 bytes) opens a RIFF chunk (an id of printable ASCII, a size that fits
    ``room``, the bytes left after it): metadata such as ``LIST`` or ``id3 `` after the samples."""
    if len(header) < 8:
        return False
    size = struct.unpack_from("<I", header, 4)[0]
    return all(32 <= byte < 127 for byte in header[:4]) and size <= room
