"""How long creating a custom tagger takes: 40 three-second examples, ``auto``, every feature.

Run from the repository root, with a repository that has the feature extractors::

    nice .venv/bin/python -m benchmarks.custom_creation
    nice .venv/bin/python -m benchmarks.custom_creation --models MTT_musicnn,mfcc --repeat 3

It creates the model in-process (``Tagger.create_custom``: the code behind ``POST /v1/models``
minus the upload) into a temporary custom-models folder, ``--repeat`` times with the models
already loaded and warm, and prints the wall-clock seconds of each step. The examples are
synthetic 16 kHz clips of four kinds (tones, noise, click trains, chirps), made by the script.
"""

from __future__ import annotations

import asyncio
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import typer

from benchmarks import ROOT
from taggram.service.custom.creation import CreateRequest, Example
from taggram.service.settings import Settings
from taggram.service.tagging import Tagger

RATE = 16000
KINDS = ("tone", "noise", "clicks", "chirp")

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def example(kind: str, seed: int, seconds: float = 3.0) -> bytes:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == "tone":
        audio = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t)
    elif kind == "noise":
        audio = rng.uniform(0.05, 0.3) * rng.standard_normal(len(t))
    elif kind == "clicks":
        audio = np.zeros(len(t))
        audio[:: int(RATE / rng.uniform(2, 8))] = 0.9
    else:
        start, end = rng.uniform(100, 1000), rng.uniform(1000, 4000)
        audio = 0.3 * np.sin(2 * np.pi * (start + (end - start) * t / seconds / 2) * t)
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


async def measure(
    settings: Settings, count: int, repeat: int, features: str | None
) -> list[dict[str, float]]:
    examples = [
        Example(f"{KINDS[i % 4]}_{i}.wav", example(KINDS[i % 4], i), KINDS[i % 4])
        for i in range(count)
    ]
    rows = []
    async with Tagger(settings) as tagger:
        for attempt in range(repeat):
            started = time.perf_counter()
            request = CreateRequest(f"bench{attempt}", examples, features=features)
            record = await tagger.create_custom(request)
            wall = time.perf_counter() - started
            rows.append({**record.seconds, "wall": wall, "candidates": len(record.candidates)})
            members = " + ".join(f"{m.classifier} on {m.features}" for m in record.members)
            networks = sorted({c.features.rpartition(".")[0] for c in record.candidates})
            print(f"{record.name}: {members}; networks run {networks}; {record.seconds}")
    return rows


@app.command()
def main(
    repository: Path = typer.Option(ROOT / "model_repository", help="model repository"),
    models: str = typer.Option("", help="comma-separated models to load (default: all)"),
    examples: int = typer.Option(40, min=4, help="number of 3 s examples (4 classes)"),
    repeat: int = typer.Option(3, min=1, help="creations, one after the other"),
    features: str = typer.Option("auto", help="the request's features (auto, or a list)"),
) -> None:
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(
            model_repository=repository,
            models=[m for m in models.split(",") if m],
            custom_models=Path(folder),
            default_model=models.split(",")[0] if models else "MTT_musicnn",
        )
        rows = asyncio.run(measure(settings, examples, repeat, features))
    after = os.getloadavg()[0]
    print(
        f"\n{examples} examples x 3 s, {int(rows[0]['candidates'])} candidates, "
        f"{platform.machine()} with {os.cpu_count()} cores, load average (1 min) "
        f"{before:.1f} before and {after:.1f} after\n"
    )
    print("| run | features s | selection + fit s | total s (wall) |")
    print("|---|---|---|---|")
    for i, row in enumerate(rows, 1):
        print(
            f"| {i} | {row['features']:.2f} | {row['selection_and_fit']:.2f} "
            f"| {row['total']:.2f} ({row['wall']:.2f}) |"
        )


if __name__ == "__main__":
    app()
