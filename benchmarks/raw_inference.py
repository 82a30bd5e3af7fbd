"""The floor under the service: the machine's float32 GEMM rate and onnxruntime's bare cost.

A helper, not a script: ``python -m benchmarks.http_benchmark`` runs it and prints its tables.

The service can be no faster than onnxruntime on the same patches, and onnxruntime no faster
than the network's multiply-adds at the machine's matrix-product rate. Measuring both lets
``docs/performance.md`` say where the service's time goes: the network, or everything around it.

On a machine shared with other work the wall times wander, so every measurement keeps the
median and the best run (the best is what the hardware can do when left alone) and the process
CPU time (which other processes barely disturb).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from statistics import median

import numpy as np

from taggram.repository import load_repository
from taggram.service.inference.session import ModelSession


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one repeated step: median and best wall time, median CPU time."""

    median_s: float
    best_s: float
    cpu_s: float


def time_repeatedly(
    step: Callable[[], object], budget_s: float, min_runs: int = 3, max_runs: int = 50
) -> Timing:
    """Run ``step()`` as often as fits ``budget_s`` (within the bounds) after one untimed run."""
    step()  # allocations, thread start-up, caches
    walls: list[float] = []
    cpus: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(walls) < max_runs and (len(walls) < min_runs or time.perf_counter() < deadline):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return Timing(median(walls), min(walls), median(cpus))


@dataclass(frozen=True)
class GemmRate:
    """GFLOP/s of a large float32 matrix product: wall (median, best) and per CPU-second.

    The per-CPU-second rate is the load-proof one: times the cores, it is the wall rate the
    machine gives when nothing else runs.
    """

    median: float
    best: float
    per_cpu_second: float


def gemm_rate(size: int = 2048, budget_s: float = 3.0) -> GemmRate:
    """Time a square float32 matrix product through NumPy's BLAS (which uses every core)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    timing = time_repeatedly(lambda: a @ b, budget_s)
    gflop = 2 * size**3 / 1e9
    return GemmRate(gflop / timing.median_s, gflop / timing.best_s, gflop / timing.cpu_s)


def ort_gemm_rate(
    int8: bool, size: int = 2048, threads: int = 2, budget_s: float = 3.0
) -> GemmRate:
    """G(FL)OP/s of a square matrix product in onnxruntime's own kernels (MLAS), the floor its
    convolutions are measured against: float32 ``MatMul``, or uint8 x int8 -> int32
    ``MatMulInteger`` (the kernel family of its int8 convolutions: AVX-512 VNNI, AVX-VNNI or AVX2
    by CPU). NumPy's BLAS is a weaker yardstick: onnxruntime's convolutions outrun it here."""
    import onnx
    import onnxruntime as ort

    helper = onnx.helper
    types = (onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.INT32)
    if not int8:
        types = (onnx.TensorProto.FLOAT,) * 3
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger" if int8 else "MatMul", ["a", "b"], ["c"])],
        "gemm",
        [
            helper.make_tensor_value_info("a", types[0], [size, size]),
            helper.make_tensor_value_info("b", types[1], [size, size]),
        ],
        [helper.make_tensor_value_info("c", types[2], [size, size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    feed: dict[str, np.ndarray]
    if int8:
        feed = {
            "a": rng.integers(0, 256, (size, size), dtype=np.uint8),
            "b": rng.integers(-128, 128, (size, size), dtype=np.int8),
        }
    else:
        feed = {name: rng.standard_normal((size, size), dtype=np.float32) for name in "ab"}
    timing = time_repeatedly(lambda: session.run(None, feed), budget_s)
    gop = 2 * size**3 / 1e9
    return GemmRate(gop / timing.median_s, gop / timing.best_s, gop / timing.cpu_s)


@dataclass(frozen=True)
class RawInference:
    """One model at one batch size through the service's own session class, without the service."""

    model: str
    batch: int
    timing: Timing
    flops_per_patch: int | None

    def ms_per_patch(self, seconds: float) -> float:
        return 1000 * seconds / self.batch

    def gflop_per_cpu_second(self) -> float | None:
        """The model's nominal FLOPs over the CPU time: comparable with the GEMM's."""
        if self.flops_per_patch is None:
            return None
        return self.flops_per_patch * self.batch / self.timing.cpu_s / 1e9


def measure_repository(
    repository: Path, batches: list[int], threads: int, budget_s: float = 1.5
) -> list[RawInference]:
    """Every model at every batch size on random audio (the cost does not depend on content).

    :class:`~taggram.service.inference.session.ModelSession` sets the same session options as the
    service (graph optimisation, threads, no spinning), so this is exactly the inference the
    service runs.
    """
    rng = np.random.default_rng(0)
    rows = []
    for entry in load_repository(repository).values():
        session = ModelSession(entry, ["CPUExecutionProvider"], threads, 1)
        for batch in batches:
            audio = 0.1 * rng.standard_normal((batch, entry.metadata.patch.samples), np.float32)
            timing = time_repeatedly(partial(session.run, audio), budget_s)
            rows.append(
                RawInference(entry.metadata.name, batch, timing, entry.metadata.flops_per_patch)
            )
    return rows
