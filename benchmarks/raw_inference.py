"""The floor under the service: the machine's float32 GEMM rate and onnxruntime's bare cost.

The service can be no faster than onnxruntime on the same patches, and onnxruntime no faster
than the network's multiply-adds at the machine's matrix-product rate. Measuring both lets
``docs/performance.md`` say where the service's time goes: the network, or everything around it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import median

import numpy as np
import onnxruntime as ort

from service.repository import ModelEntry, load_repository


@dataclass(frozen=True)
class RawInference:
    """Median wall time of one ``session.run`` for one model at one batch size."""

    model: str
    batch: int
    ms_per_batch: float
    flops_per_patch: int | None

    @property
    def ms_per_patch(self) -> float:
        return self.ms_per_batch / self.batch

    @property
    def gflops(self) -> float | None:
        """Effective rate: the model's nominal FLOPs per patch over the measured time."""
        if self.flops_per_patch is None:
            return None
        return self.flops_per_patch / (self.ms_per_patch * 1e6)


def _repeat_median(
    step: Callable[[], object], budget_s: float, min_runs: int = 3, max_runs: int = 50
) -> float:
    """Median seconds of ``step()`` over as many runs as fit the budget (within the bounds)."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() < deadline):
        begin = time.perf_counter()
        step()
        times.append(time.perf_counter() - begin)
    return median(times)


def gemm_gflops(size: int = 2048, budget_s: float = 2.0) -> float:
    """GFLOP/s of a square float32 matrix product through NumPy's BLAS (all cores it uses)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    a @ b  # let the BLAS start its threads before timing
    seconds = _repeat_median(lambda: a @ b, budget_s)
    return 2 * size**3 / seconds / 1e9


def _session(entry: ModelEntry, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(entry.onnx_path), options, providers=["CPUExecutionProvider"])


def measure_model(
    entry: ModelEntry, batches: list[int], threads: int, budget_s: float
) -> list[RawInference]:
    """Time the model alone on random audio (network cost does not depend on the content)."""
    metadata = entry.metadata
    session = _session(entry, threads)
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        audio = 0.1 * rng.standard_normal((batch, metadata.patch.samples), dtype=np.float32)
        # Every output, as the service fetches them; the first run allocates for this shape.
        run = partial(session.run, None, {metadata.input_name: audio})
        run()
        seconds = _repeat_median(run, budget_s)
        rows.append(RawInference(metadata.name, batch, seconds * 1e3, metadata.flops_per_patch))
    return rows


def measure_repository(
    repository: Path, batches: list[int], threads: int, budget_s: float = 1.5
) -> list[RawInference]:
    """Every model in the repository at every batch size, ``budget_s`` per measurement."""
    entries = load_repository(repository)
    return [
        row
        for entry in entries.values()
        for row in measure_model(entry, batches, threads, budget_s)
    ]
