"""Bounded load benchmark: short requests mixed with long uploads, at several concurrencies.

Run from the repository root (``taggram build-models`` first)::

    .venv/bin/python -m benchmarks.load                          # 3 phases of 40 s, ~4 minutes
    .venv/bin/python -m benchmarks.load -c 4 -c 16 --phase-seconds 20 --url http://127.0.0.1:8000

It starts ``taggram serve`` with one model (default settings otherwise; ``--url`` loads a running
service instead) and runs, one after the other:

1. the fairness probe: a long track is queued (350 patches at a 1 s hop), then a one-patch
   request is sent and timed; repeated ``--probes`` times. With FIFO batching that request
   waited for every queued patch; with fair batching it waits about one batch;
2. one phase per ``--concurrency``: a quarter of the clients (at least one) POST long uploads
   (``--long-seconds`` of audio, raw WAV) in a loop, the rest one-patch clips; a refused client
   waits ``Retry-After`` as a well-behaved client would. Each phase prints the short requests'
   p50/p99 latency, the long ones', how many requests got 429 and how early (client-side time to
   the 429, and how many were refused before their body was read, from ``/metrics``), throughput
   (audio seconds and patches per second) and the server's resident memory (now and peak).

Every phase stops issuing requests after ``--phase-seconds``; requests in flight then finish.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import typer

from benchmarks import MODEL_REPOSITORY
from benchmarks.serving import (
    metric,
    percentile_ms,
    proc_status,
    scrape,
    served,
    synthetic_wav,
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
SHORT_SECONDS = 2.5  # one patch


@dataclass
class Phase:
    short: list[float] = field(default_factory=list)  # latencies of answered short requests
    long: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)  # client time to each 429
    codes: dict[str, int] = field(default_factory=dict)
    audio_seconds: float = 0.0
    patches: int = 0


async def _post(
    client: httpx.AsyncClient, body: bytes, params: dict[str, float] | None = None
) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await client.post(
        "/v1/tag", content=body, params=params, headers={"Content-Type": "audio/wav"}
    )
    return response, time.perf_counter() - started


async def run_phase(
    url: str, concurrency: int, seconds: float, long_body: bytes, short_body: bytes
) -> Phase:
    phase = Phase()
    stop_at = time.perf_counter() + seconds

    async def client_loop(body: bytes, latencies: list[float]) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=600) as client:
            while time.perf_counter() < stop_at:
                response, elapsed = await _post(client, body)
                if response.status_code == 200:
                    latencies.append(elapsed)
                    answer = response.json()
                    phase.audio_seconds += answer["audio"]["duration_seconds"]
                    phase.patches += answer["patches"]
                    continue
                code = response.json()["error"]["code"]
                phase.codes[code] = phase.codes.get(code, 0) + 1
                if response.status_code != 429:
                    raise RuntimeError(f"unexpected {response.status_code}: {response.text}")
                phase.refused.append(elapsed)
                retry = float(response.headers.get("retry-after", "1"))
                await asyncio.sleep(min(retry, max(stop_at - time.perf_counter(), 0)))

    longs = max(1, concurrency // 4)
    loops = [client_loop(long_body, phase.long) for _ in range(longs)]
    loops += [client_loop(short_body, phase.short) for _ in range(concurrency - longs)]
    await asyncio.gather(*loops)
    return phase


def fairness_probe(url: str, model: str, probes: int) -> list[float]:
    """Seconds for a one-patch request sent while about 350 long-track patches are queued."""
    # One track: on an idle replica its own compute never counts against the queue budget.
    track = synthetic_wav(351.0, seed=1)  # 350 patches at a 1 s hop
    short = synthetic_wav(SHORT_SECONDS, seed=2)
    seconds = []
    for _ in range(probes):
        long = threading.Thread(
            target=httpx.post,
            args=(f"{url}/v1/tag",),
            kwargs={
                "content": track,
                "params": {"hop": 1.0},
                "headers": {"Content-Type": "audio/wav"},
                "timeout": 600,
            },
        )
        long.start()
        threads = [long]
        while metric(scrape(url), "taggram_queue_depth", model=model) < 300:
            if not long.is_alive():
                raise RuntimeError("the long track finished before 300 patches were queued")
            time.sleep(0.01)
        started = time.perf_counter()
        response = httpx.post(
            f"{url}/v1/tag", content=short, headers={"Content-Type": "audio/wav"}, timeout=600
        )
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
        for thread in threads:
            thread.join()
    return seconds


@app.command()
def main(
    url: str | None = typer.Option(None, help="a running service (default: start one)"),
    repository: Path = typer.Option(
        MODEL_REPOSITORY, help="model repository of the started service"
    ),
    model: str = typer.Option("MTT_musicnn", help="the one model loaded and requested"),
    concurrency: list[int] = typer.Option(
        [4, 16, 32], "--concurrency", "-c", help="concurrent clients, one phase each (repeatable)"
    ),
    phase_seconds: float = typer.Option(40.0, help="how long each phase issues requests"),
    long_seconds: float = typer.Option(300.0, help="audio seconds of each long upload"),
    probes: int = typer.Option(3, min=0, help="fairness probes (0: skip)"),
) -> None:
    """Print the fairness probe and one table row per concurrency."""
    env = {"TAGGRAM_MODELS": model, "TAGGRAM_DEFAULT_MODEL": model}
    long_body = synthetic_wav(long_seconds, rate=44100, channels=2, seed=3)
    short_body = synthetic_wav(SHORT_SECONDS, rate=44100, channels=2, seed=4)
    with served(url, repository, env) as service:
        if probes:
            took = fairness_probe(service.url, model, probes)
            print(
                "fairness probe: a one-patch request sent while >= 300 patches of a long "
                f"track were queued took {', '.join(f'{s:.2f}' for s in took)} s\n"
            )
        print(
            f"long uploads: {long_seconds:g} s of 44.1 kHz stereo WAV "
            f"({len(long_body) / 1e6:.0f} MB); short: {SHORT_SECONDS:g} s; "
            f"{phase_seconds:g} s per phase\n"
        )
        print(
            "| clients | short p50 ms | short p99 ms | short n | long p50 s | long n "
            "| 429 (before body / after decode / deadline) | 429 p50 ms | audio s/s "
            "| patches/s | RSS MiB | peak MiB |"
        )
        print("|" + "---|" * 12)
        for clients in concurrency:
            before = scrape(service.url)
            started = time.perf_counter()
            phase = asyncio.run(
                run_phase(service.url, clients, phase_seconds, long_body, short_body)
            )
            wall = time.perf_counter() - started
            after = scrape(service.url)
            stages = [
                metric(after, "taggram_refused_total", stage=stage)
                - metric(before, "taggram_refused_total", stage=stage)
                for stage in ("before_body", "after_decode", "deadline")
            ]
            memory = (
                proc_status(service.pid)
                if service.pid
                else {"VmRSS": int(metric(after, "process_resident_memory_bytes") / 2**20)}
            )
            long_p50 = f"{percentile_ms(phase.long, 50)}"
            print(
                f"| {clients} | {percentile_ms(phase.short, 50)} | "
                f"{percentile_ms(phase.short, 99)} | {len(phase.short)} | "
                f"{float(long_p50) / 1000 if phase.long else '-'} | {len(phase.long)} | "
                f"{len(phase.refused)} ({' / '.join(f'{s:.0f}' for s in stages)}) | "
                f"{percentile_ms(phase.refused, 50)} | {phase.audio_seconds / wall:.1f} | "
                f"{phase.patches / wall:.1f} | {memory['VmRSS']} | {memory.get('VmHWM', '-')} |",
                flush=True,
            )


if __name__ == "__main__":
    app()
