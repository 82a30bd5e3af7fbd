"""Where the tracks come from: a folder (searched recursively) or a manifest of ``id,path``.

A track's id is what makes runs resumable and shards stable, so it must not depend on where the
catalogue is mounted: for a folder it is the path relative to the folder, for a manifest it is
the manifest's own ``id`` column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# What the service decodes (libsndfile formats, Ogg Vorbis/Opus, MP3).
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc"}
)
MANIFEST_EXTENSIONS = frozenset({".csv", ".jsonl", ".ndjson"})


@dataclass(frozen=True)
class Track:
    id: str
    path: Path


class SourceError(ValueError):
    """The source cannot be read: missing, unknown kind, malformed or duplicate ids."""


def from_folder(root: Path) -> list[Track]:
    """Every audio file under ``root`` (by extension, case-insensitive), sorted by id."""
    files = (p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    return sorted(
        (Track(id=p.relative_to(root).as_posix(), path=p) for p in files), key=lambda t: t.id
    )


def _manifest_rows(path: Path) -> Iterator[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix.lower() == ".csv":
            yield from csv.DictReader(handle)
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise SourceError(f"{path}:{number}: expected an object with id and path")
            yield {key: str(value) for key, value in row.items()}


def from_manifest(path: Path) -> list[Track]:
    """Tracks listed in a CSV (header ``id,path``) or JSONL manifest; relative paths are taken
    relative to the manifest's folder, so a manifest travels with its audio."""
    tracks = []
    for number, row in enumerate(_manifest_rows(path), start=1):
        if not row.get("id") or not row.get("path"):
            raise SourceError(f"{path}: row {number} lacks an id or a path")
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


def load_source(source: Path) -> list[Track]:
    """A folder or a manifest file, decided by what ``source`` is."""
    if source.is_dir():
        return from_folder(source)
    if source.is_file() and source.suffix.lower() in MANIFEST_EXTENSIONS:
        return from_manifest(source)
    if not source.exists():
        raise SourceError(f"{source} does not exist")
    raise SourceError(f"{source}: expected a folder or a .csv/.jsonl manifest")
