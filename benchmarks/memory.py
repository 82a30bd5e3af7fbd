"""Resident memory and throughput of the service, with and without releasing arena memory.

Run from the repository root (``taggram build-models`` first)::

    .venv/bin/python -m benchmarks.memory                 # both settings, 2-4 minutes
    .venv/bin/python -m benchmarks.memory --seconds 300   # a shorter track

For each value of ``TAGGRAM_RELEASE_MEMORY_WHEN_IDLE`` it starts ``taggram serve`` with every
model of the repository and reads the server process's resident memory (``VmRSS``) once it is
ready (warmed up) and its peak so far (start-up), then resets the peak (Linux
``/proc/PID/clear_refs``). It then POSTs one long synthetic track (default 900 s, the default
duration limit; 16 kHz mono WAV) to the default model ``--repeats`` times and reports the peak
resident memory while tagging (``VmHWM``), the throughput (patches per wall second, best run;
server CPU milliseconds per patch from ``process_cpu_seconds_total``, which other processes on a
shared machine barely disturb) and the resident memory once idle again (after the idle release).
The figures go in docs/deploy.md ("Sizing").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import typer

from benchmarks import MODEL_REPOSITORY
from benchmarks.serving import metric, proc_status, scrape, served, synthetic_wav
from taggram.service.inference.batcher import IDLE_RELEASE_SECONDS

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def cpu_seconds(url: str) -> float:
    return metric(scrape(url), "process_cpu_seconds_total")


@dataclass(frozen=True)
class Figures:
    release: bool
    rss_ready_mib: int
    startup_peak_mib: int
    peak_mib: int
    rss_after_mib: int
    patches_per_second: float
    cpu_ms_per_patch: float


def measure(repository: Path, release: bool, track: bytes, repeats: int) -> Figures:
    env = {"TAGGRAM_RELEASE_MEMORY_WHEN_IDLE": str(release).lower()}
    with served(None, repository, env) as srv:
        assert srv.pid is not None
        time.sleep(1.0)  # let the loader's last allocations settle
        at_ready = proc_status(srv.pid)
        ready, startup_peak = at_ready["VmRSS"], at_ready["VmHWM"]
        # Linux: writing 5 to clear_refs resets the peak, so the next one is the tagging's own.
        Path(f"/proc/{srv.pid}/clear_refs").write_text("5")
        rates, cpus = [], []
        for _ in range(repeats):
            cpu_before, started = cpu_seconds(srv.url), time.perf_counter()
            response = httpx.post(
                f"{srv.url}/v1/tag",
                content=track,
                headers={"Content-Type": "audio/wav"},
                timeout=3600,
            )
            wall = time.perf_counter() - started
            response.raise_for_status()
            patches = response.json()["patches"]
            rates.append(patches / wall)
            cpus.append((cpu_seconds(srv.url) - cpu_before) / patches * 1000)
        peak = proc_status(srv.pid)["VmHWM"]
        time.sleep(IDLE_RELEASE_SECONDS + 1.5)  # the idle model gives its memory back
        status = {"VmHWM": peak, "VmRSS": proc_status(srv.pid)["VmRSS"]}
    return Figures(
        release, ready, startup_peak, status["VmHWM"], status["VmRSS"], max(rates), min(cpus)
    )


@app.command()
def main(
    repository: Path = typer.Option(
        MODEL_REPOSITORY, help="model repository of the started service"
    ),
    seconds: float = typer.Option(900.0, help="length of the synthetic track, seconds"),
    repeats: int = typer.Option(2, min=1, help="POSTs of the track per setting"),
) -> None:
    """Print resident memory and throughput with arena memory released when idle, and kept."""
    track = synthetic_wav(seconds)
    print(f"track: {seconds:g} s, {len(track) / 1e6:.1f} MB WAV; every model loaded\n")
    print(
        "| release_memory_when_idle | RSS ready, MiB | start-up peak, MiB | peak tagging, MiB "
        "| RSS idle after, MiB | patches/s | CPU ms/patch |"
    )
    print("|---|---|---|---|---|---|---|")
    for release in (True, False):
        f = measure(repository, release, track, repeats)
        print(
            f"| {str(f.release).lower()} | {f.rss_ready_mib} | {f.startup_peak_mib} | "
            f"{f.peak_mib} | {f.rss_after_mib} "
            f"| {f.patches_per_second:.1f} | {f.cpu_ms_per_patch:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    app()
