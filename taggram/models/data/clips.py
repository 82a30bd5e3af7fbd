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
"""

from __future__ import annotations

import csv
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
    manifest: Path, out: Path, seconds: float = CLIP_SECONDS, every_segment: bool = False
) -> Path:
    """Excerpts (mono 16 kHz float WAV, at most ``seconds`` long, from each file's middle, or
    every whole segment of that length with ``every_segment``) of the manifest's
    ``split == validation`` rows into ``out``; returns ``out/manifest.csv``.

    Raises ``ValueError`` when the manifest has no validation rows.
    """
    with manifest.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("split") == "validation"]
    if not rows:
        raise ValueError(f"{manifest}: no rows with split == validation")
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
    clips_manifest = out / "manifest.csv"
    with clips_manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(written)
    return clips_manifest
