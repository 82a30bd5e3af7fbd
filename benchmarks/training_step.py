"""What one training step of the shipped waveform student costs, on the CPU and on a GPU.

Run from the repository root (needs the ``models`` extra; a GPU is used when torch sees one)::

    .venv/bin/python -m benchmarks.training_step                        # CPU, batch 16
    .venv/bin/python -m benchmarks.training_step --batch 16 --batch 64 --batch 256
    python3 -m benchmarks.training_step --device cuda --batch 64 --threads 16   # GPU only

A step is what ``taggram train`` does per batch: forward pass (under bfloat16 autocast or in
float32), BCE + listwise loss, backward pass and an Adam update, for the architecture of
``taggram/models/trained/MTT_sample_cnn`` (from its metadata). The input is random audio, which
costs the same as music to a convolution; reading batches from disk is not included (a GPU run's
``history.json`` gives the end-to-end figure). Prints a Markdown table for docs/training.md:
milliseconds per step (median of the timed steps) and patches per second.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from typing import Any

import torch
import typer

from benchmarks import ROOT
from taggram.models.architectures import build
from taggram.models.training.patching import patch_spec
from taggram.models.training.trainer import DEVICES, training_loss

METADATA = ROOT / "taggram" / "models" / "trained" / "MTT_sample_cnn" / "metadata.json"

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def step_seconds(
    metadata: dict[str, Any], device: str, precision: str, batch: int, steps: int
) -> float:
    """Median wall time (s) of ``steps`` training steps after 3 warm-up steps of the model that
    ``metadata`` (a trained model's metadata.json) describes."""
    options = metadata["training"]["config"]["architecture_options"]
    module = build("sample_cnn", len(metadata["tags"]), **options).to(device).train()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-4)
    samples = patch_spec("sample_cnn").samples
    audio = (0.1 * torch.randn(batch, samples)).to(device)
    targets = torch.rand(batch, len(metadata["tags"])).to(device)
    times = []
    for step in range(steps + 3):
        started = time.perf_counter()
        loss = training_loss(module, audio, targets, precision, listwise_weight=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()  # the step is queued, not done, until the GPU finishes it
        if step >= 3:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


@app.command()
def main(
    batch: list[int] = typer.Option(
        [16], min=2, help="batch sizes to time (batch norm needs at least 2)"
    ),
    steps: int = typer.Option(10, min=1, help="timed steps per setting"),
    threads: int = typer.Option(2, min=1, help="torch CPU threads"),
    device: list[str] = typer.Option(
        [], help="cpu and/or cuda (default: the CPU, and the GPU when torch sees one)"
    ),
) -> None:
    """Print ms per step and patches per second per device, precision and batch size."""
    torch.set_num_threads(threads)
    devices = device or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for where in devices:
        if where not in DEVICES:
            raise typer.BadParameter(f"--device must be cpu or cuda, got {where!r}")
    names = {"cpu": f"{platform.processor() or platform.machine()}, {threads} threads"}
    if "cuda" in devices:
        if not torch.cuda.is_available():
            raise typer.BadParameter(f"torch {torch.__version__} sees no CUDA GPU")
        names["cuda"] = torch.cuda.get_device_name()
    print(f"torch {torch.__version__}; " + "; ".join(f"{d}: {n}" for d, n in names.items()))
    metadata = json.loads(METADATA.read_text())
    print("\n| device | precision | batch | ms per step | patches per s |")
    print("|---|---|---|---|---|")
    for where in devices:
        for precision in ("float32", "bfloat16"):
            for size in batch:
                seconds = step_seconds(metadata, where, precision, size, steps)
                print(
                    f"| {where} | {precision} | {size} | {1000 * seconds:.1f} | "
                    f"{size / seconds:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    app()
