"""The shipped waveform student, ``MTT_sample_cnn``: its committed checkpoint is the model that
ships, and on the recordings of ``../shared/audio`` it agrees with its teacher as documented.

The agreement floor is below the figures docs/models.md reports for the music clips (mean
Pearson correlation of the clip-level tag vectors: 0.744, 0.772 and 0.766 for versions 2.0.0,
2.1.0 and 2.2.0): it guards against shipping a student that agrees clearly less with its teacher
than those documented, not against chance.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from benchmarks.student_vs_teacher import (
    LIMITS,
    Agreement,
    clip_tags,
    has_tracks,
    paired,
    summary,
)
from taggram.models.architectures import build
from taggram.repository import load_repository
from taggram.service.audio.decode import decode
from taggram.service.inference.session import ModelSession
from tests.support.onnx_parity import assert_onnx_matches_module
from tests.support.paths import ROOT, require_repository, require_shared

STUDENT = ROOT / "taggram" / "models" / "trained" / "MTT_sample_cnn"
MUSIC_PEARSON_FLOOR = 0.72


def test_committed_checkpoint_is_the_shipped_model() -> None:
    """checkpoint.pt resumes the run (its last.pt) and holds the weights that model.onnx ships."""
    checkpoint = torch.load(STUDENT / "checkpoint.pt", weights_only=False)
    entry = load_repository(STUDENT.parent)["MTT_sample_cnn"]
    assert checkpoint["shipped_epoch"] == entry.metadata.training["best_epoch"]
    assert checkpoint["epoch"] == entry.metadata.training["epochs_run"]
    assert checkpoint["optimizer"]["state"]  # resumable: the optimiser's moments are there
    module = build(
        checkpoint["architecture"], len(checkpoint["tags"]), **checkpoint["architecture_options"]
    )
    module.load_state_dict(checkpoint["shipped_state_dict"])
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, (2, entry.metadata.patch.samples))
    assert_onnx_matches_module(
        entry.onnx_path, module.eval(), audio.astype(np.float32), atol=1e-5, embedding_atol=1e-4
    )


def test_student_agrees_with_its_teacher_on_shared_music() -> None:
    audio = require_shared()
    entries = load_repository(require_repository())
    student = ModelSession(entries["MTT_sample_cnn"], ["CPUExecutionProvider"], 2, 1)
    teacher = ModelSession(entries["MTT_musicnn"], ["CPUExecutionProvider"], 2, 1)
    with (audio / "manifest.csv").open(newline="") as handle:
        clips = [row for row in csv.DictReader(handle) if row["kind"] == "music"]
    pearson = []
    for clip in clips:
        waveform = decode((audio / clip["file"]).read_bytes(), 16000, LIMITS).waveform
        pearson.append(
            np.corrcoef(clip_tags(student, waveform), clip_tags(teacher, waveform))[0, 1]
        )
    assert np.mean(pearson) >= MUSIC_PEARSON_FLOOR, pearson


def _rows(overlaps: list[float], pearsons: list[float]) -> list[Agreement]:
    return [
        Agreement(f"clip_{i}", "music", "", overlap / 5, pearson, [], [])
        for i, (overlap, pearson) in enumerate(zip(overlaps, pearsons, strict=True))
    ]


def test_paired_differences_cancel_what_the_clips_share() -> None:
    """Two models a constant 0.5 apart on clips of very different difficulty: unpaired, each
    mean carries the clips' spread (SE 0.91); paired, the difference is exact (SE 0)."""
    hard_and_easy = [1.0, 5.0, 2.0, 4.0]
    better = _rows([v + 0.5 for v in hard_and_easy], [0.9, 0.8, 0.7, 0.6])
    worse = _rows(hard_and_easy, [0.88, 0.79, 0.69, 0.58])
    assert summary("worse", worse) == "| worse | 4 | 3.00 ± 0.91 | 0.735 |"
    assert paired("all", better, worse) == "| all | 4 | +0.50 ± 0.00 | +0.015 ± 0.003 |"
    with pytest.raises(ValueError, match="same clips"):
        paired("all", better, worse[::-1])


def test_per_track_rows_only_where_a_track_has_several_clips() -> None:
    """validation_clips names each middle excerpt's track, one clip each: a per-track row
    there repeated the per-clip one."""
    one_each = [Agreement(f"c{i}", "music", str(i), 0.8, 0.9, [], []) for i in range(3)]
    segments = [Agreement(f"c{i}", "music", str(i // 2), 0.8, 0.9, [], []) for i in range(4)]
    unnamed = [Agreement(f"c{i}", "music", "", 0.8, 0.9, [], []) for i in range(3)]
    assert [has_tracks(rows) for rows in (one_each, segments, unnamed, [])] == [
        False,
        True,
        False,
        False,
    ]
