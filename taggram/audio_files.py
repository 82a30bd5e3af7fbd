"""Audio files named on a command line, opened to read whole: shared by the client (which
uploads them) and the service's in-process tagging (``taggram tag --local``), free of imports
so that neither loads the other's stack (``tests/test_layering.py``)."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO


def open_audio_file(path: Path) -> BinaryIO:
    """``path`` opened for reading (binary): a regular file, or a pipe (``taggram tag <(curl
    ...)``, ``/dev/stdin``), which cannot seek. A device is refused: ``/dev/zero`` or
    ``/dev/urandom`` never ends, and reading one filled all of memory before any byte limit
    could answer (a terminal as ``/dev/stdin`` waits for typing).

    Raises:
        OSError: ``path`` cannot be opened, or is a device (``EINVAL``).
    """
    handle = path.open("rb")
    mode = os.fstat(handle.fileno()).st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        handle.close()
        raise OSError(errno.EINVAL, "a device, not an audio file", str(path))
    return handle
