"""Catalogue throughput: real recordings tagged through a local server and with ``--local``.

Run from the repository root (``make venv`` and ``taggram build-models`` first)::

    .venv/bin/python -m benchmarks.catalogue_throughput              # about 2 minutes on 2 cores
    .venv/bin/python -m benchmarks.catalogue_throughput --repeat 2 --model MTT_vgg

The catalogue is the recordings of ``../shared/audio`` copied ``--repeat`` times (distinct ids, so
nothing is skipped). For each model it runs the catalogue runner twice, one after the other so they
do not compete: against a ``taggram serve`` started on 127.0.0.1 (the client runs on the same
machine, as a catalogue pod beside a server would), then in-process (``--local``). It prints files
per second and audio-hours tagged per wall-clock hour as a Markdown table for docs/catalogue.md.
"""

from __future__ import annotations

import asyncio
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import typer
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import ROOT, SHARED_AUDIO
from taggram.catalogue.local import LocalBackend
from taggram.catalogue.remote import RemoteBackend
from taggram.catalogue.runner import Backend, JobOptions, Summary, run
from taggram.catalogue.sources import AUDIO_EXTENSIONS, Track, from_folder
from taggram.catalogue.writers import Format
from taggram.client import RetryPolicy
from taggram.service.launcher import running_server
from taggram.service.settings import Settings, in_process_settings

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@dataclass(frozen=True)
class Measurement:
    model: str
    mode: str
    summary: Summary
    cpu_seconds: float  # client + server (or the one --local process): robust on a busy machine

    def row(self) -> list[str]:
        s = self.summary
        return [
            self.model,
            self.mode,
            str(s.done),
            f"{s.audio_seconds / 3600:.2f}",
            f"{s.elapsed:.1f}",
            f"{s.done / s.elapsed:.2f}",
            f"{s.audio_seconds / s.elapsed:.0f}",
            f"{self.cpu_seconds:.1f}",
            f"{s.audio_seconds / self.cpu_seconds:.0f}",
        ]


def server_cpu_seconds(url: str) -> float:
    """The server process's CPU time, from its own ``process_cpu_seconds_total``."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "process_cpu_seconds":
            return float(family.samples[0].value)
    raise RuntimeError("the server exports no process_cpu_seconds_total")


def build_catalogue(folder: Path, repeat: int) -> list[Track]:
    """``repeat`` copies of every shared recording, each copy in its own folder (its own ids)."""
    recordings = sorted(p for p in SHARED_AUDIO.iterdir() if p.suffix in AUDIO_EXTENSIONS)
    for copy in range(repeat):
        (folder / f"copy{copy}").mkdir(parents=True)
        for recording in recordings:
            shutil.copy(recording, folder / f"copy{copy}" / recording.name)
    return from_folder(folder)


def measure(
    tracks: list[Track], backend: Backend, output: Path, concurrency: int
) -> tuple[Summary, float]:
    """The run's summary and this process's CPU seconds during it."""
    cpu = time.process_time()
    summary = asyncio.run(
        run(tracks, backend, output, Format.jsonl, concurrency=concurrency, progress=False)
    )
    if summary.failures:
        raise RuntimeError(summary.report())
    return summary, time.process_time() - cpu


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f}"


@app.command()
def main(
    models: list[str] = typer.Option(["MTT_musicnn", "MTT_vgg"], "--model", help="repeatable"),
    repeat: int = typer.Option(4, min=1, help="copies of the shared recordings"),
    concurrency: int = typer.Option(8, min=1, help="tracks in flight"),
    repository: Path = typer.Option(ROOT / "model_repository", help="model repository"),
) -> None:
    if not SHARED_AUDIO.is_dir():
        raise typer.BadParameter(f"{SHARED_AUDIO} is absent: the shared recordings are needed")
    print(f"machine before: {machine()}")
    results: list[Measurement] = []
    retry = RetryPolicy()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        tracks = build_catalogue(work / "audio", repeat)
        for model in models:
            options = JobOptions(model=model)
            env = {"TAGGRAM_MODELS": model, "TAGGRAM_DEFAULT_MODEL": model}
            with running_server(repository, work, env) as server:
                remote = RemoteBackend(server.url, options, retry, connections=concurrency)
                served = server_cpu_seconds(server.url)
                summary, cpu = measure(tracks, remote, work / f"{model}-server.jsonl", concurrency)
                cpu += server_cpu_seconds(server.url) - served
            results.append(Measurement(model, "server (HTTP, 127.0.0.1)", summary, cpu))
            local = LocalBackend(in_process_settings(repository, model), options, retry)
            summary, cpu = measure(tracks, local, work / f"{model}-local.jsonl", concurrency)
            results.append(Measurement(model, "--local (in-process)", summary, cpu))
    header = [
        "model", "mode", "files", "audio h", "wall s", "files/s", "audio-h per h",
        "CPU s", "audio-h per CPU-h",
    ]  # fmt: skip
    threads = Settings().threads_per_batch
    print(f"\n{len(tracks)} files ({repeat} x the recordings of ../shared/audio), concurrency")
    print(f"{concurrency}, {threads} ONNX Runtime threads\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for result in results:
        print("| " + " | ".join(result.row()) + " |")
    print(f"\nmachine after: {machine()}")


if __name__ == "__main__":
    app()
