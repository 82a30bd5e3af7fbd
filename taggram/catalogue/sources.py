"""Where the tracks come from: a folder (searched recursively) or a manifest of ``id,path``.

A track's id is what makes runs resumable and shards stable, so it must not depend on where the
catalogue is mounted: for a folder it is the path relative to the folder (through any symlinked
sub-folders, as the user sees it), for a manifest it is the manifest's own ``id`` column.

A folder's audio files are those whose extension is one the service decodes
(:data:`taggram.formats.AUDIO_EXTENSIONS`); every other file is counted and listed as skipped,
as is a file named like audio that is not a regular file (a named pipe, socket or device: never
opened, as reading a pipe would wait for a writer and a device might never end).
Manifests are UTF-8, with or without the byte-order mark Excel's "CSV UTF-8" writes; a legacy code
page (Excel's plain "CSV" on Windows is cp1252) is read with ``encoding``.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from taggram.filenames import printable
from taggram.formats import AUDIO_EXTENSIONS

MANIFEST_EXTENSIONS = frozenset({".csv", ".jsonl", ".ndjson"})
# "utf-8-sig" reads UTF-8 and drops a leading byte-order mark when there is one.
DEFAULT_ENCODING = "utf-8-sig"

__all__ = ["AUDIO_EXTENSIONS", "Source", "SourceError", "Track", "from_folder", "load_source"]


@dataclass(frozen=True)
class Track:
    """One catalogue entry: a unique ``id`` (the manifest's, or the path relative to the folder)
    and the audio file's ``path``.
    """

    id: str
    path: Path


@dataclass(frozen=True)
class Source:
    """The tracks to tag, and the files of a folder skipped (ids, sorted): ``not_audio`` by
    extension, ``not_regular`` named like audio but a named pipe, socket or device."""

    tracks: list[Track]
    not_audio: list[str] = field(default_factory=list)
    not_regular: list[str] = field(default_factory=list)


class SourceError(ValueError):
    """The source cannot be read: missing, unknown kind, malformed or duplicate ids."""


def _walk(root: Path) -> Iterator[Path]:
    """Every file under ``root``, following symlinked folders; a folder reached twice (a link
    loop, or two links to one album) is entered once."""
    seen: set[tuple[int, int]] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        status = Path(folder).stat()
        if (status.st_dev, status.st_ino) in seen:
            subfolders.clear()
            continue
        seen.add((status.st_dev, status.st_ino))
        subfolders.sort()
        yield from (Path(folder) / name for name in files)


def is_special_file(path: Path) -> bool:
    """Whether ``path`` (through links) is a named pipe, socket or device: found by its status,
    never by opening it (opening a pipe waits for a writer). A path whose status cannot be read
    (a link to nothing, a folder without access) is not: as a track, the run records why it
    cannot be read."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode)


def scan_folder(root: Path) -> Source:
    """Audio files under ``root`` (by extension, case-insensitive) sorted by id, and the rest.

    A file name that is not UTF-8 gets an id with ``\\xNN`` escapes (:func:`printable`), one
    every output format can hold. A link to nothing named like audio is a track, which then fails
    as unreadable: a missing file of the catalogue is a problem to report, not a file to skip.
    A named pipe, socket or device named like audio is skipped as not a regular file.
    """
    tracks, not_audio, not_regular = [], [], []
    for path in _walk(root):
        track_id = printable(path.relative_to(root).as_posix())
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            not_audio.append(track_id)
        elif is_special_file(path):
            not_regular.append(track_id)
        else:
            tracks.append(Track(id=track_id, path=path))
    return Source(sorted(tracks, key=lambda t: t.id), sorted(not_audio), sorted(not_regular))


def from_folder(root: Path) -> list[Track]:
    """Every audio file under ``root``, sorted by id (see :func:`scan_folder`)."""
    return scan_folder(root).tracks


def _csv_rows(path: Path, lines: Iterable[str]) -> Iterator[dict[str, str]]:
    reader = csv.DictReader(lines)
    columns = [name.strip() for name in reader.fieldnames or []]
    if "id" not in columns or "path" not in columns:
        raise SourceError(f"{path}: the header must name the columns id and path, found {columns}")
    reader.fieldnames = columns
    yield from reader


def _jsonl_rows(path: Path, lines: Iterable[str]) -> Iterator[dict[str, str]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise SourceError(f"{path}:{number}: expected an object with id and path")
        # null is no value (a missing id or path), not the text "None"
        yield {key: str(value) for key, value in row.items() if value is not None}


def _manifest_rows(path: Path, encoding: str) -> list[dict[str, str]]:
    read = _csv_rows if path.suffix.lower() == ".csv" else _jsonl_rows
    try:
        with path.open(newline="", encoding=encoding) as handle:
            return list(read(path, handle))
    except UnicodeDecodeError as error:
        raise SourceError(
            f"{path}: byte {error.start} is not {encoding} text; for a legacy code page pass "
            "--encoding (e.g. cp1252 for Excel's plain CSV on Windows)"
        ) from error
    except csv.Error as error:
        raise SourceError(f"{path}: not a readable CSV file ({error})") from error
    except OSError as error:
        raise SourceError(f"{path}: cannot be read ({error.strerror})") from error


def from_manifest(path: Path, encoding: str = DEFAULT_ENCODING) -> list[Track]:
    """Tracks listed in a CSV (header ``id,path``) or JSONL manifest; relative paths are taken
    relative to the manifest's folder, so a manifest travels with its audio."""
    tracks = []
    for number, row in enumerate(_manifest_rows(path, encoding), start=1):
        if not row.get("id") or not row.get("path"):
            raise SourceError(f"{path}: row {number} lacks an id or a path")
        if "\0" in row["path"]:
            raise SourceError(f"{path}: row {number}'s path contains a NUL byte")
        track_path = Path(row["path"])
        tracks.append(
            Track(
                id=row["id"],
                path=track_path if track_path.is_absolute() else path.parent / track_path,
            )
        )
    _check_unique(tracks, path)
    return tracks


def _check_unique(tracks: Iterable[Track], origin: Path) -> None:
    seen: set[str] = set()
    for track in tracks:
        if track.id in seen:
            raise SourceError(f"{origin}: id {track.id!r} appears more than once")
        seen.add(track.id)


def load_source(source: Path, encoding: str = DEFAULT_ENCODING) -> Source:
    """A folder or a manifest file (read as ``encoding``), decided by what ``source`` is.

    Raises :class:`SourceError` with a one-line reason for anything that cannot be used.
    """
    try:
        codecs.lookup(encoding)
    except LookupError as error:
        raise SourceError(f"unknown encoding {encoding!r}") from error
    if source.is_dir():
        return scan_folder(source)
    if source.is_file() and source.suffix.lower() in MANIFEST_EXTENSIONS:
        return Source(from_manifest(source, encoding))
    if not source.exists():
        raise SourceError(f"{source} does not exist")
    raise SourceError(f"{source}: expected a folder or a .csv/.jsonl manifest")
