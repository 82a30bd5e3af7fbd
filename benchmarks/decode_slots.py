"""Peak memory and wall time of a burst of long uploads, by the number of decode slots.

Run from the repository root (``taggram build-models`` first)::

    .venv/bin/python -m benchmarks.decode_slots                    # slots 2 and 16, 16 uploads
    .venv/bin/python -m benchmarks.decode_slots --uploads 8 --slots 1 --slots 8

For each ``TAGGRAM_DECODE_SLOTS`` value it starts ``taggram serve`` with the ``mfcc`` feature
extractor alone (the cheapest network: decoding, not inference, is what is measured), resets the
server's peak resident memory once it is ready (Linux ``/proc/PID/clear_refs``), POSTs
``--uploads`` copies of one synthetic track at once (44.1 kHz mono FLAC, resampled to 16 kHz as
it decodes) and reports the peak resident memory (``VmHWM``) and the wall time of the burst.
Sixteen slots stand for the old default on a large node: Python's default executor,
min(32, cores + 4) threads, counted a 64-core node's cores in a 2-CPU pod. The queue budget and
deadline and the queue's patch bound are lifted so that every upload is served in both
settings. The figures go in
docs/deploy.md ("Sizing the budgets, memory and /tmp").
"""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import typer

from benchmarks import MODEL_REPOSITORY
from benchmarks.serving import proc_status, served

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def flac_track(seconds: float, rate: int = 44_100) -> bytes:
    """A tone in faint noise, ``seconds`` long, as mono FLAC at ``rate`` Hz."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(0).normal(0, 0.01, t.size)
    out = io.BytesIO()
    sf.write(
        out,
        (0.2 * np.sin(2 * np.pi * 220 * t) + noise).astype(np.float32),
        rate,
        "PCM_16",
        format="FLAC",
    )
    return out.getvalue()


def burst(repository: Path, slots: int, track: bytes, uploads: int) -> tuple[int, float]:
    """(peak resident MiB, wall seconds) of ``uploads`` POSTs of ``track`` at once."""
    env = {
        "TAGGRAM_MODELS": "mfcc",
        "TAGGRAM_DECODE_SLOTS": str(slots),
        "TAGGRAM_QUEUE_BUDGET_SECONDS": "86400",
        "TAGGRAM_QUEUE_DEADLINE_SECONDS": "86400",
        "TAGGRAM_MAX_QUEUE_PATCHES": "65536",
    }
    with served(None, repository, env) as srv:
        assert srv.pid is not None
        time.sleep(1.0)
        Path(f"/proc/{srv.pid}/clear_refs").write_text("5")  # the burst's own peak

        def post(_: int) -> int:
            answer = httpx.post(
                f"{srv.url}/v1/tag",
                params={"embeddings": "statistics"},
                content=track,
                headers={"Content-Type": "audio/flac"},
                timeout=600,
            )
            return answer.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(uploads) as pool:
            statuses = list(pool.map(post, range(uploads)))
        wall = time.perf_counter() - started
        assert statuses == [200] * uploads, statuses
        return proc_status(srv.pid)["VmHWM"], wall


@app.command()
def main(
    repository: Path = MODEL_REPOSITORY,
    seconds: float = typer.Option(900.0, help="length of the synthetic track, seconds"),
    uploads: int = typer.Option(16, min=1, help="uploads sent at once"),
    slots: list[int] = typer.Option([2, 16], help="TAGGRAM_DECODE_SLOTS values to compare"),
) -> None:
    """Print the peak resident memory and wall time of one burst per number of slots."""
    track = flac_track(seconds)
    print(
        f"track: {seconds:g} s, 44.1 kHz mono FLAC, {len(track) / 1e6:.1f} MB; {uploads} at once\n"
    )
    print("| decode slots | peak resident, MiB | burst wall time, s |")
    print("|---|---|---|")
    for count in slots:
        peak, wall = burst(repository, count, track, uploads)
        print(f"| {count} | {peak} | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    app()
