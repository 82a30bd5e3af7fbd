"""Turn a label table (+ optional teacher) into training windows and a description of the data.

The description (files, hours, per-package versions and licences, the teacher) is stored in the
checkpoint and ends up in the exported model's metadata, so every shipped model says what it
learnt from.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from taggram.models.training.audio import frames, random_access
from taggram.models.training.dataset import (
    Windows,
    distilled_windows,
    labelled_windows,
    shortest_distilled_file,
)
from taggram.models.training.labels import LabelTable
from taggram.models.training.teacher import teacher_targets
from taggram.repository import ModelEntry


def _packages(labels_csv: Path, seconds: list[float]) -> dict[str, dict[str, Any]]:
    """Per-package summary when the CSV is the data recipe's manifest (has a package column)."""
    with labels_csv.open(newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "package" not in rows[0]:
        return {}
    packages: dict[str, dict[str, Any]] = {}
    for row, duration in zip(rows, seconds, strict=True):
        entry = packages.setdefault(
            row["package"],
            {"version": row.get("version", ""), "licence": row.get("licence", ""), "files": 0},
        )
        entry["files"] += 1
        entry["hours"] = round(entry.get("hours", 0.0) + duration / 3600, 3)
    return packages


def load_windows(
    labels_csv: Path,
    table: LabelTable,
    audio_root: Path,
    samples: int,
    sample_rate: int,
    cache: Path,
    teacher: ModelEntry | None = None,
    teacher_hop: int | None = None,
) -> tuple[Windows, list[str], dict[str, Any]]:
    """Windows over the table's files, their tag names and the data description.

    Raises ``FileNotFoundError`` if a listed file is missing, ``ValueError`` if one is not
    audio libsndfile reads or, when distilling, if no file holds a whole patch.
    """
    missing = [path for path in table.paths if not (audio_root / path).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of the {len(table.paths)} files of {labels_csv.name} are not under "
            f"{audio_root} (the audio root its paths are relative to), e.g. {missing[0]!r}"
        )
    files = [random_access(audio_root / path, cache / "audio", sample_rate) for path in table.paths]
    seconds = [frames(path) / sample_rate for path in files]
    info: dict[str, Any] = {
        "labels": labels_csv.name,
        "files": len(files),
        "hours": round(sum(seconds) / 3600, 3),
    }
    packages = _packages(labels_csv, seconds)
    if packages:
        info["packages"] = packages
    if teacher is None:
        windows = labelled_windows(table, files, samples)
        return windows, table.tags, info
    hop = teacher_hop or teacher.metadata.patch.hop_samples
    targets = teacher_targets(teacher, files, hop, cache)
    windows = distilled_windows(targets, files, table.groups, samples)
    if not len(windows):
        shortest = shortest_distilled_file(targets.window, hop, samples)
        raise ValueError(
            f"no file of {labels_csv.name} holds a student patch ({samples} samples) centred on "
            f"one of the teacher's windows ({targets.window} samples every {hop}): distilling "
            f"gives no window to train on; a file needs {shortest / sample_rate:.2f} s at least "
            "(a smaller --teacher-hop-seconds lowers it)"
        )
    info["teacher"] = {
        "name": teacher.metadata.name,
        "onnx_sha256": teacher.metadata.onnx_sha256,
        "targets": "patch-level probabilities (soft targets), student patch centred on each "
        "teacher patch",
        "window_samples": targets.window,
        "hop_samples": hop,
        "windows": len(targets.starts),
    }
    return windows, targets.tags, info
