"""Validation clips: 30 s excerpts of the held-out packages, laid out like ``../shared/audio``.

The clip-level figures of the issue (Pearson correlation and top-5 overlap of a student's clip
tags with its teacher's) are measured by ``benchmarks.student_vs_teacher`` on a folder of clips
with a ``manifest.csv`` (``file``, ``kind``, ...). This writes such a folder from the validation
split of the data recipe's manifest: one excerpt from the middle of each validation file (music
tracks, reels of speech or effects), so every clip comes from a package the model never trained on.

With ``every_segment``, every whole 30 s segment of each file becomes a clip instead (a file
shorter than that gives one clip), each with its file's number in a ``track`` column: about five
times the clips of the same files, so a figure averaged per track (over its segments first) has a
smaller standard error than one excerpt per track gives.

With ``sources``, a regular expression, the files whose path inside their package matches it are
taken instead, whatever their split: files added to the recipe after a model was trained (version
2.2.0 never trained on the tracker modules, ``(?i)\\.(mod|xm|it|s3m)$``) are music that model never
saw either.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import soundfile as sf

from taggram.models.data.prepare import SAMPLE_RATE, write_wav

CLIP_SECONDS = 30.0
FIELDS = (
    "file",
    "set",
    "package",
    "source_path_in_package",
    "license",
    "start_s",
    "duration_s",
    "kind",
    "track",
)


def _starts(frames: int, length: int, every_segment: bool) -> list[int]:
    """Start samples of a file's clips of ``length``: its middle one, or every whole segment."""
    if every_segment:
        return [k * length for k in range(max(1, frames // length))]
    return [(frames - length) // 2]


def write_validation_clips(
    manifest: Path,
    out: Path,
    seconds: float = CLIP_SECONDS,
    every_segment: bool = False,
    sources: str | None = None,
) -> Path:
    """Excerpts (mono 16 kHz float WAV, at most ``seconds`` long, from each file's middle, or
    every whole segment of that length with ``every_segment``) of the manifest's
    ``split == validation`` rows (or, with ``sources``, the rows whose ``source`` matches that
    regular expression, whatever their split) into ``out``; returns ``out/manifest.csv``.

    Raises ``ValueError`` when no row is selected or ``sources`` is not a regular expression.
    """
    try:
        pattern = re.compile(sources) if sources is not None else None
    except re.error as error:
        raise ValueError(f"sources {sources!r} is not a regular expression: {error}") from None
    with manifest.open(newline="") as handle:
        rows = [
            row
            for row in csv.DictReader(handle)
            if (pattern.search(row["source"]) if pattern else row.get("split") == "validation")
        ]
    if not rows:
        wanted = f"source matching {sources!r}" if sources is not None else "split == validation"
        raise ValueError(f"{manifest}: no rows with {wanted}")
    out.mkdir(parents=True, exist_ok=True)
    written: list[dict[str, object]] = []
    for track, row in enumerate(rows):
        source = manifest.parent / row["path"]
        frames = sf.info(str(source)).frames
        length = min(frames, round(seconds * SAMPLE_RATE))
        for start in _starts(frames, length, every_segment):
            audio, _ = sf.read(str(source), start=start, frames=length, dtype="float32")
            name = f"clip_{len(written):03d}.wav"
            write_wav(audio, out / name)
            written.append(
                {
                    "file": name,
                    "set": "validation",
                    "package": row["package"],
                    "source_path_in_package": row["source"],
                    "license": row["licence"],
                    "start_s": round(start / SAMPLE_RATE, 2),
                    "duration_s": round(length / SAMPLE_RATE, 2),
                    "kind": row["kind"],
                    "track": track,
                }
            )
    return write_clip_manifest(out, written)


def write_clip_manifest(out: Path, clips: list[dict[str, object]]) -> Path:
    """Write ``out/manifest.csv`` (the columns of ``FIELDS``, one row per clip) and return it."""
    clips_manifest = out / "manifest.csv"
    with clips_manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(clips)
    return clips_manifest
