"""Validation clips: 30 s excerpts of the held-out packages, laid out like ``../shared/audio``.

The clip-level figures of the issue (Pearson correlation and top-5 overlap of a student's clip
tags with its teacher's) are measured by ``benchmarks.student_vs_teacher`` on a folder of clips
with a ``manifest.csv`` (``file``, ``kind``, ...). This writes such a folder from the validation
split of the data recipe's manifest: one excerpt from the middle of each validation file (music
tracks, reels of speech or effects), so every clip comes from a package the model never trained on.
"""

from __future__ import annotations

import csv
from pathlib import Path

import soundfile as sf

from taggram.models.data.prepare import SAMPLE_RATE, write_wav

CLIP_SECONDS = 30.0
FIELDS = ("file", "set", "package", "source_path_in_package", "license", "start_s", "duration_s")


def write_validation_clips(manifest: Path, out: Path, seconds: float = CLIP_SECONDS) -> Path:
    """Excerpts (mono 16 kHz float WAV, at most ``seconds`` long, from each file's middle) of the
    manifest's ``split == validation`` rows into ``out``; returns ``out/manifest.csv``.
    """
    with manifest.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("split") == "validation"]
    if not rows:
        raise ValueError(f"{manifest}: no rows with split == validation")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for number, row in enumerate(rows):
        source = manifest.parent / row["path"]
        frames = sf.info(str(source)).frames
        length = min(frames, round(seconds * SAMPLE_RATE))
        start = (frames - length) // 2
        audio, _ = sf.read(str(source), start=start, frames=length, dtype="float32")
        name = f"clip_{number:03d}.wav"
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
            }
        )
    clips_manifest = out / "manifest.csv"
    with clips_manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*FIELDS, "kind"])
        writer.writeheader()
        writer.writerows(written)
    return clips_manifest
