"""Whether a Matroska or WebM file is cut short, read from its Segment element's declared size.

FFmpeg's Matroska demuxer ends a cut file as if it were whole (it only logs "File ended
prematurely"), and Matroska keeps no per-track length to compare with what decoded. The Segment,
the element holding everything after the EBML header, declares its byte size: a file smaller than
it declares was cut (a failed upload, an interrupted download). A live recording (a browser's
``MediaRecorder``, ``ffmpeg -live 1``) declares the size unknown, and a cut one cannot be told
from a whole one. Reference: RFC 8794 (EBML: variable-size integers, the all-ones "unknown" size)
and RFC 9559 (Matroska: the Segment follows the EBML header).
"""

from __future__ import annotations

_EBML_ID = b"\x1a\x45\xdf\xa3"
_SEGMENT_ID = b"\x18\x53\x80\x67"


def _vint(data: bytes, offset: int) -> tuple[int, int] | None:
    """The EBML variable-size integer at ``offset``: its value (``-1`` for the reserved all-ones
    "unknown" value) and its length in bytes; ``None`` where ``data`` ends first or the first
    byte is zero (no length marker)."""
    if offset >= len(data) or data[offset] == 0:
        return None
    length = 9 - data[offset].bit_length()
    if offset + length > len(data):
        return None
    value = int.from_bytes(data[offset : offset + length], "big") & ((1 << (7 * length)) - 1)
    return (-1 if value == (1 << (7 * length)) - 1 else value), length


def segment_end(head: bytes) -> int | None:
    """The byte offset where the Segment declares that the file ends, from ``head`` (the file's
    first bytes), or ``None``: not EBML, no Segment right after the EBML header, or a Segment of
    unknown size (a live recording)."""
    if head[:4] != _EBML_ID:
        return None
    header = _vint(head, 4)
    if header is None or header[0] < 0:
        return None
    segment = 4 + header[1] + header[0]
    if head[segment : segment + 4] != _SEGMENT_ID:
        return None
    size = _vint(head, segment + 4)
    if size is None or size[0] < 0:
        return None
    return segment + 4 + size[1] + size[0]
