"""GPU figures: is CUDA really used, network-only throughput, end to end, and where it is bound.

Run by ``benchmarks/gpu.sh`` on a machine with an NVIDIA GPU and ``onnxruntime-gpu``::

    .venv/bin/python -m benchmarks.gpu_benchmark --repository model_repository

1. **Provider check.** Each model gets a session with ``CUDAExecutionProvider`` first; the run
   fails unless ONNX Runtime reports CUDA as the session's provider (it silently falls back to the
   CPU when the CUDA libraries are missing) and its outputs match the CPU's.
2. **Network only.** :class:`~taggram.service.inference.session.ModelSession` with I/O binding
   (page-locked host buffers) at batch 1 to 256: patches per second and audio seconds per second,
   host-to-device and back included.
3. **End to end.** ``taggram serve`` on the GPU (``TAGGRAM_GPU_MAX_BATCH_SIZE``) tagging the
   recordings at ``--concurrency`` clients: audio seconds per second, and where the time went
   (server-side decode vs inference, from each response's ``timings``), hence the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import threading
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import typer

from benchmarks import ROOT, SHARED_AUDIO
from benchmarks.http_benchmark import find_audio, run_load, table, training_tracks
from benchmarks.raw_inference import time_repeatedly
from taggram.repository import load_repository
from taggram.service.inference.session import ModelSession

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def gpu_name() -> str:
    result = subprocess.run(
        ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown (nvidia-smi failed)"


def check_providers(repository: Path, models: list[str]) -> str:
    """Every model on CUDA, agreeing with the CPU; raise otherwise."""
    entries = load_repository(repository)
    rows = []
    rng = np.random.default_rng(0)
    for name in models:
        entry = entries[name]
        gpu = ModelSession(entry, CUDA, 1, 1, io_binding="on", max_batch_size=8)
        if gpu.provider != "cuda":
            raise SystemExit(f"{name}: ONNX Runtime runs it on {gpu.provider}, not CUDA")
        cpu = ModelSession(entry, ["CPUExecutionProvider"], 2, 1, io_binding="off")
        batch = (0.1 * rng.standard_normal((8, entry.metadata.patch.samples))).astype(np.float32)
        difference = float(
            np.abs(gpu.run(batch)["probabilities"] - cpu.run(batch)["probabilities"]).max()
        )
        rows.append([name, gpu.provider, f"{difference:.2e}"])
    return table(["model", "provider", "max |GPU - CPU| probability"], rows)


def network_only(repository: Path, models: list[str], batches: list[int]) -> str:
    entries = load_repository(repository)
    rows = []
    for name in models:
        meta = entries[name].metadata
        patch_seconds = meta.patch.hop_samples / meta.sample_rate
        session = ModelSession(entries[name], CUDA, 1, 1, "on", max(batches))
        for size in batches:
            batch = np.zeros((size, meta.patch.samples), np.float32)
            timing = time_repeatedly(partial(session.run, batch), budget_s=1.0, max_runs=200)
            per_second = size / timing.median_s
            rows.append(
                [
                    name,
                    str(size),
                    f"{1000 * timing.median_s:.2f}",
                    f"{per_second:.0f}",
                    f"{per_second * patch_seconds:.0f}",
                ]
            )
    header = ["model", "batch", "ms / batch (median)", "patches / s", "audio s / s"]
    return table(header, rows)


class GpuUtilisation:
    """Samples ``nvidia-smi``'s GPU utilisation every half second while the block runs."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self._stop.wait(0.5):
            out = subprocess.run(query, capture_output=True, text=True, check=False).stdout
            with contextlib.suppress(ValueError, IndexError):
                self.samples.append(float(out.split()[0]))

    def __enter__(self) -> GpuUtilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


def end_to_end(
    repository: Path, model: str, files: list[Path], concurrency: int, gpu_batch: int
) -> str:
    """Tag the files through a GPU server; the bound is the GPU when it is busy most of the time,
    the CPU (decoding, resampling, request handling) when the server process uses every core."""
    from taggram.service.launcher import running_server

    audio = find_audio(files)
    env = {
        "TAGGRAM_MODELS": model,
        "TAGGRAM_PROVIDERS": ",".join(CUDA),
        "TAGGRAM_GPU_MAX_BATCH_SIZE": str(gpu_batch),
        "TAGGRAM_LOG_LEVEL": "warning",
    }
    with tempfile.TemporaryDirectory() as logs, running_server(repository, Path(logs), env) as srv:
        provider = httpx.get(f"{srv.url}/v1/models/{model}", timeout=30).json()
        asyncio.run(run_load(srv.url, model, audio[:1], 1, 60.0))
        with GpuUtilisation() as gpu:
            result = asyncio.run(run_load(srv.url, model, audio * 2, concurrency, 120.0))
    cores = len(os.sched_getaffinity(0))
    cpu_share = result.counters.cpu_seconds / result.wall_seconds / cores
    decode_share = float(np.sum(result.decode_seconds)) / result.wall_seconds / cores
    if gpu.mean >= 80:
        bound = "inference (GPU busy)"
    elif cpu_share >= 0.8:
        bound = "CPU: decoding and request handling"
    else:
        bound = "neither: too few clients (raise --concurrency)"
    rows = [
        ["model", f"{model} ({provider.get('description', '')[:60]})"],
        ["concurrency, GPU max batch", f"{concurrency}, {gpu_batch}"],
        ["audio s / s end to end", f"{result.audio_per_second:.0f}"],
        ["mean batch", f"{result.mean_batch:.1f}"],
        ["GPU utilisation (nvidia-smi, mean)", f"{gpu.mean:.0f} %"],
        ["server CPU, share of all cores", f"{100 * cpu_share:.0f} %"],
        ["decode, share of all cores", f"{100 * decode_share:.0f} %"],
        ["bound", bound],
    ]
    return table(["end to end on the GPU", ""], rows)


@app.command()
def main(
    repository: Path = typer.Option(ROOT / "model_repository", help="model repository"),
    model: list[str] = typer.Option(["MTT_musicnn"], help="models to measure"),
    batches: list[int] = typer.Option([1, 4, 16, 64, 256], help="network-only batch sizes"),
    audio: list[Path] = typer.Option([SHARED_AUDIO], help="audio for the end-to-end phase"),
    tracks_from: Path | None = typer.Option(None, help="a prepare-data manifest instead"),
    concurrency: int = typer.Option(16, help="clients in the end-to-end phase"),
    gpu_batch: int = typer.Option(64, help="TAGGRAM_GPU_MAX_BATCH_SIZE for the server"),
) -> None:
    """Print Markdown tables for docs/performance.md's GPU section."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise SystemExit("onnxruntime has no CUDA provider: install the gpu extra")
    files = training_tracks(tracks_from, 4) if tracks_from else audio
    typer.echo(f"GPU: {gpu_name()}; onnxruntime {onnxruntime.__version__}\n")
    typer.echo(check_providers(repository, model) + "\n")
    typer.echo(network_only(repository, model, batches) + "\n")
    for name in model:
        typer.echo(end_to_end(repository, name, files, concurrency, gpu_batch) + "\n")


if __name__ == "__main__":
    app()
