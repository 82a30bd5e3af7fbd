"""Whether an MP4/QuickTime file lacks its index, read from its top-level boxes.

An MP4's samples (the ``mdat`` box) can only be found through its index (the ``moov`` box),
which encoders write at the end unless told to put it first (``ffmpeg -movflags +faststart``).
A file cut short (a failed upload, a recording app stopped mid-write) then has audio but no way
to find it, and FFmpeg says only "Invalid data found when processing input": this tells the user
what happened. Reference: ISO/IEC 14496-12 (boxes: a 32-bit big-endian size counting the 8-byte
header, a 4-character type; size 1: a 64-bit size follows; size 0: to the end of the file).
"""

from __future__ import annotations

import io
import struct
from typing import BinaryIO

# Top-level boxes read before giving up (files have a handful: ftyp, free, mdat, moov, udta).
_MAX_BOXES = 64


def lacks_index(handle: BinaryIO) -> bool:
    """Whether the MP4 file ``handle`` holds media data (``mdat``) but no index (``moov``) among
    its top-level boxes: one cut short before the index an encoder writes at its end. ``False``
    where the boxes do not parse (then FFmpeg's own reason stands)."""
    end = handle.seek(0, io.SEEK_END)
    offset, media = 0, False
    for _ in range(_MAX_BOXES):
        # A box running past the end is the file's last (cut inside it); its 64-bit size may
        # also be any number up to 2**64, past what a seek takes.
        if offset >= end:
            break
        handle.seek(offset)
        header = handle.read(16)
        if len(header) < 8:
            break
        size, kind = struct.unpack_from(">I4s", header)
        if kind == b"moov":
            return False
        media = media or kind == b"mdat"
        if size == 1 and len(header) == 16:
            size = struct.unpack_from(">Q", header, 8)[0]
        if size == 0:  # the last box, to the end of the file
            break
        if size < 8:
            return False
        offset += size
    return media
