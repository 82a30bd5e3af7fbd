"""Soft targets for distillation: a repository model's patch-level probabilities on unlabeled audio.

The teacher runs once over each file exactly as the service would tag it with ``hop``: the
service's ONNX Runtime session (:class:`~taggram.service.inference.session.ModelSession`) and patch
plan (:func:`~taggram.service.audio.patching.plan_patches`, end-aligned tail included); the
result is cached (keyed by the teacher's ONNX hash, the hop and the file list), so training runs
and reruns never pay for it again.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from taggram.repository import ModelEntry
from taggram.service.audio.patching import Patches, plan_patches
from taggram.service.inference.session import ModelSession


@dataclass(frozen=True)
class TeacherTargets:
    """Teacher probabilities per window: window ``w`` covers ``starts[w] + [0, window)``."""

    teacher: str
    tags: list[str]
    window: int
    file_index: np.ndarray  # int64 [windows]
    starts: np.ndarray  # int64 [windows]
    probabilities: np.ndarray  # float32 [windows, tags]


def _run(
    entry: ModelEntry, files: list[Path], hop: int, batch: int, threads: int
) -> TeacherTargets:
    """The teacher exactly as the service runs it: its ONNX Runtime session and patch plan."""
    metadata = entry.metadata
    spec = metadata.patch
    session = ModelSession(entry, ["CPUExecutionProvider"], threads, 1)
    file_index, starts, probabilities = [], [], []
    for index, path in enumerate(tqdm(files, desc=f"teacher {metadata.name}", unit="file")):
        audio = sf.read(str(path), dtype="float32")[0]
        if audio.ndim != 1 or len(audio) < spec.span_samples:
            continue
        plan = plan_patches(len(audio), spec, hop, max_patches=sys.maxsize)
        patches = Patches(audio, spec, plan)
        for first in range(0, len(plan), batch):
            rows = np.empty((min(batch, len(plan) - first), spec.samples), np.float32)
            patches.copy_into(rows, first)
            probabilities.append(session.run(rows)[metadata.tag_output])
        starts.append(plan.starts)
        file_index.append(np.full(len(plan), index))
    return TeacherTargets(
        teacher=metadata.name,
        tags=list(metadata.tags),
        window=spec.span_samples,
        file_index=np.concatenate(file_index).astype(np.int64),
        starts=np.concatenate(starts).astype(np.int64),
        probabilities=np.concatenate(probabilities).astype(np.float32),
    )


def teacher_targets(
    entry: ModelEntry,
    files: list[Path],
    hop: int,
    cache: Path,
    batch: int = 16,
    threads: int = 2,
) -> TeacherTargets:
    """The teacher's windows over ``files`` (mono WAV at its rate), from the cache when present."""
    # "service-plan": targets laid by the service's patch plan (older caches used other windows).
    key = json.dumps(["service-plan", entry.metadata.onnx_sha256, hop, [str(f) for f in files]])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    cached = cache / f"teacher_{entry.metadata.name}_{digest}.npz"
    if cached.is_file():
        data = np.load(cached)
        return TeacherTargets(
            teacher=str(data["teacher"]),
            tags=[str(t) for t in data["tags"]],
            window=int(data["window"]),
            file_index=data["file_index"],
            starts=data["starts"],
            probabilities=data["probabilities"],
        )
    targets = _run(entry, files, hop, batch, threads)
    cache.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".partial.npz")
    np.savez(
        partial,
        teacher=targets.teacher,
        tags=np.array(targets.tags),
        window=targets.window,
        file_index=targets.file_index,
        starts=targets.starts,
        probabilities=targets.probabilities,
    )
    partial.replace(cached)
    return targets
