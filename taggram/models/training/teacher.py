"""Soft targets for distillation: a repository model's patch-level probabilities on unlabeled audio.

The teacher runs once, in onnxruntime, over windows of its own patch length laid every ``hop``
samples through each file; the result is cached (keyed by the teacher's ONNX hash, the hop and
the file list), so training runs and reruns never pay for it again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf
from tqdm import tqdm

from taggram.repository import ModelEntry


@dataclass(frozen=True)
class TeacherTargets:
    """Teacher probabilities per window: window ``w`` covers ``starts[w] + [0, window)``."""

    teacher: str
    tags: list[str]
    window: int
    file_index: np.ndarray  # int64 [windows]
    starts: np.ndarray  # int64 [windows]
    probabilities: np.ndarray  # float32 [windows, tags]


def _session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def _run(
    entry: ModelEntry, files: list[Path], hop: int, batch: int, threads: int
) -> TeacherTargets:
    metadata = entry.metadata
    window = metadata.patch.samples
    session = _session(entry.onnx_path, threads)
    file_index, starts, probabilities = [], [], []
    for index, path in enumerate(tqdm(files, desc=f"teacher {metadata.name}", unit="file")):
        audio = sf.read(str(path), dtype="float32")[0]
        if audio.ndim != 1 or len(audio) < window:
            continue
        begin = np.arange(0, len(audio) - window + 1, hop)
        for chunk in range(0, len(begin), batch):
            chunk_starts = begin[chunk : chunk + batch]
            patches = np.stack([audio[s : s + window] for s in chunk_starts])
            (scores,) = session.run([metadata.probabilities_output], {metadata.input_name: patches})
            probabilities.append(scores.astype(np.float32))
            starts.append(chunk_starts)
            file_index.append(np.full(len(chunk_starts), index))
    return TeacherTargets(
        teacher=metadata.name,
        tags=list(metadata.tags),
        window=window,
        file_index=np.concatenate(file_index).astype(np.int64),
        starts=np.concatenate(starts).astype(np.int64),
        probabilities=np.concatenate(probabilities),
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
    key = json.dumps([entry.metadata.onnx_sha256, hop, [str(f) for f in files]])
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
