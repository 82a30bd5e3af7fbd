"""File names as text that can be written anywhere (JSON, CSV, Parquet, HTTP headers).

On POSIX a file name is bytes; Python hands one that is not UTF-8 (a Latin-1 ``café.ogg`` copied
from an old disk) over as a ``str`` holding lone surrogates (PEP 383), which no UTF-8 encoder
accepts: httpx raised ``UnicodeEncodeError`` building the upload and the catalogue's writers
failed to serialise the track's id, each stopping the whole run with a traceback.
"""

from __future__ import annotations


def printable(name: str) -> str:
    """``name`` with each byte that was not UTF-8 written as a ``\\xNN`` escape
    (``'caf\\udce9.ogg'`` -> ``'caf\\\\xe9.ogg'``); a name that is valid text is returned as is.

    The escapes keep distinct names distinct and the result stable from run to run, so a
    catalogue's ids stay unique and its resume and shards keep working.
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
