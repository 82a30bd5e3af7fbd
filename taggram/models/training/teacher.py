"""Soft targets for distillation: a repository model's patch-level probabilities on unlabeled audio.

The teacher runs once over each file exactly as the service would tag it with ``hop``: the
service's ONNX Runtime session (:class:`~taggram.service.inference.session.ModelSession`) and patch
plan (:func:`~taggram.service.audio.patching.plan_patches`, end-aligned tail included); the
result is cached per file (keyed by the teacher's ONNX hash, the hop and the file), so training runs
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


def _run_file(
    session: ModelSession, path: Path, hop: int, batch: int
) -> tuple[np.ndarray, np.ndarray]:
    """(starts int64 [patches], probabilities float32 [patches, tags]) of one file, exactly as the
    service tags it: its ONNX Runtime session and patch plan; empty when the file is too short.
    """
    metadata = session.metadata
    spec = metadata.patch
    audio = sf.read(str(path), dtype="float32")[0]
    if audio.ndim != 1 or len(audio) < spec.span_samples:
        return np.zeros(0, np.int64), np.zeros((0, len(metadata.tags)), np.float32)
    plan = plan_patches(len(audio), spec, hop, max_patches=sys.maxsize)
    patches = Patches(audio, spec, plan)
    probabilities = []
    for first in range(0, len(plan), batch):
        rows = np.empty((min(batch, len(plan) - first), spec.samples), np.float32)
        patches.copy_into(rows, first)
        probabilities.append(session.run(rows)[metadata.tag_output])
    return plan.starts.astype(np.int64), np.concatenate(probabilities).astype(np.float32)


def _file_key(entry: ModelEntry, path: Path, hop: int) -> str:
    """Cache key of one file's targets: teacher weights, hop, and the file's path, size, mtime.

    The path is resolved, so a file reached by another spelling (relative, through a link) or
    from another working directory keeps its targets.
    """
    stat = path.stat()
    # "service-plan": targets laid by the service's patch plan (older caches used other windows).
    key = json.dumps(
        [
            "service-plan",
            entry.metadata.onnx_sha256,
            hop,
            str(path.resolve()),
            stat.st_size,
            stat.st_mtime_ns,
        ]
    )
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def teacher_targets(
    entry: ModelEntry,
    files: list[Path],
    hop: int,
    cache: Path,
    batch: int = 16,
    threads: int = 2,
) -> TeacherTargets:
    """The teacher's windows over ``files`` (mono WAV at its rate).

    Each file's targets are cached on their own (``cache/teacher_<name>/``, keyed by the teacher's
    ONNX hash, the hop and the file's path, size and modification time), so adding files to a
    dataset only runs the teacher on the new ones.
    """
    metadata = entry.metadata
    folder = cache / f"teacher_{metadata.name}"
    folder.mkdir(parents=True, exist_ok=True)
    session: ModelSession | None = None
    file_index, starts, probabilities = [], [], []
    for index, path in enumerate(tqdm(files, desc=f"teacher {metadata.name}", unit="file")):
        cached = folder / f"{_file_key(entry, path, hop)}.npz"
        if cached.is_file():
            with np.load(cached) as data:
                file_starts, file_probabilities = data["starts"], data["probabilities"]
        else:
            if session is None:
                session = ModelSession(entry, ["CPUExecutionProvider"], threads, 1)
            file_starts, file_probabilities = _run_file(session, path, hop, batch)
            partial = cached.with_suffix(".partial.npz")
            np.savez(partial, starts=file_starts, probabilities=file_probabilities)
            partial.replace(cached)
        starts.append(file_starts)
        probabilities.append(file_probabilities)
        file_index.append(np.full(len(file_starts), index, dtype=np.int64))
    return TeacherTargets(
        teacher=metadata.name,
        tags=list(metadata.tags),
        window=metadata.patch.span_samples,
        file_index=np.concatenate(file_index),
        starts=np.concatenate(starts),
        probabilities=np.concatenate(probabilities),
    )
