"""Bounded soak: mixed uploads, good and bad, at a steady rate; memory, files and latency over time.

Run from the repository root (``taggram build-models`` first)::

    .venv/bin/python -m benchmarks.soak                        # 30 minutes at 2 requests/s
    .venv/bin/python -m benchmarks.soak --minutes 10 --rate 1  # shorter

It starts ``taggram serve`` with every model of the repository (a 8 MiB upload limit and a 2 s
read timeout, so the abusive requests are cheap to make; ``--url`` loads a running service
instead) and opens one request every ``1 / --rate`` seconds, whatever the answers (open loop, at
most ``--max-in-flight`` at once; skipped starts are counted). Each request is drawn from a fixed
mix: good uploads (raw and multipart, 44.1 kHz stereo, 2 to 15 s, on every model; 60 s at
22.05 kHz), batch uploads,
and bad ones (undecodable bytes, an empty body, a wrong Content-Type, ``hop=inf``, an oversized
chunked body, a client that hangs up mid-body, one that stalls until the read timeout).

Every ``--sample-seconds`` it prints the server's resident memory and open files (from
``/metrics``, or ``/proc`` when it started the server), the window's answers by status and the
good requests' latency p50/p99. Memory is read twice: busy, then idle (new requests wait until
those in flight end, a pause of a few seconds): busy memory swings with how many models happen to
be inferring at that moment, idle memory shows a leak. At the end it prints the idle resident
memory growth after the first ``--settle-minutes`` (the criterion: less than 10 MB over the rest
of a 30-minute run).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import typer

from benchmarks import MODEL_REPOSITORY
from benchmarks.serving import (
    Samples,
    metric,
    percentile_ms,
    proc_status,
    scrape,
    served,
    synthetic_wav,
)
from taggram.service.inference.batcher import IDLE_RELEASE_SECONDS

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
UPLOAD_LIMIT = 8 * 1024 * 1024
# (kind, weight): about 60 % good work, 40 % abuse.
MIX = [
    ("raw", 30),
    ("multipart", 15),
    ("long", 5),
    ("batch", 5),
    ("undecodable", 8),
    ("empty", 5),
    ("wrong_type", 5),
    ("bad_option", 7),
    ("oversized", 5),
    ("hang_up", 10),
    ("stall", 5),
]


@dataclass
class Window:
    statuses: Counter[str] = field(default_factory=Counter)
    good_latencies: list[float] = field(default_factory=list)
    skipped: int = 0


@dataclass(frozen=True)
class Bodies:
    short: list[bytes]
    long: bytes
    models: list[str]


async def _raw_socket(url: str, head: bytes, body: bytes, then_wait: float) -> str:
    """Send ``head + body`` on a raw connection; hang up (``then_wait`` 0) or wait for an answer."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + body)
        await writer.drain()
        if then_wait == 0:
            return "hung_up"
        status_line = await asyncio.wait_for(reader.readline(), then_wait)
        return status_line.split()[1].decode() if status_line else "closed"
    finally:
        writer.close()


async def one_request(client: httpx.AsyncClient, url: str, kind: str, bodies: Bodies) -> str:
    """Make one request of ``kind``; returns its status (or what became of it)."""
    model = random.choice(bodies.models)
    audio = {"Content-Type": "audio/wav"}
    if kind == "raw":
        response = await client.post(
            "/v1/tag", params={"model": model}, content=random.choice(bodies.short), headers=audio
        )
    elif kind == "multipart":
        upload = {"file": ("a.wav", random.choice(bodies.short), "audio/wav")}
        response = await client.post("/v1/tag", data={"model": model}, files=upload)
    elif kind == "long":
        response = await client.post("/v1/tag", content=bodies.long, headers=audio)
    elif kind == "batch":
        files = [("files", (f"{i}.wav", body, "audio/wav")) for i, body in enumerate(bodies.short)]
        response = await client.post("/v1/tag/batch", files=files)
    elif kind == "undecodable":
        response = await client.post("/v1/tag", content=random.randbytes(50_000), headers=audio)
    elif kind == "empty":
        response = await client.post("/v1/tag", content=b"", headers=audio)
    elif kind == "wrong_type":
        response = await client.post(
            "/v1/tag", content=bodies.short[0], headers={"Content-Type": "text/plain"}
        )
    elif kind == "bad_option":
        response = await client.post(
            "/v1/tag", params={"hop": "inf"}, content=bodies.short[0], headers=audio
        )
    elif kind == "oversized":

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(UPLOAD_LIMIT // 65536 + 64):
                yield bytes(65536)

        try:
            response = await client.post("/v1/tag", content=chunks(), headers=audio)
        except httpx.TransportError:  # the server closed while we were still sending
            return "413_cut"
    else:
        head = (
            b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            b"Content-Length: 1000000\r\n\r\n"
        )
        wait = 0.0 if kind == "hang_up" else 30.0
        return await _raw_socket(url, head, bodies.short[0][:20_000], wait)
    return str(response.status_code)


async def soak(url: str, pid: int | None, args: dict[str, float], bodies: Bodies) -> None:
    duration = args["minutes"] * 60
    kinds, weights = zip(*MIX, strict=True)
    window = Window()
    in_flight: set[asyncio.Task[None]] = set()
    samples: list[tuple[float, float]] = []  # (elapsed s, RSS MiB)

    async def run(client: httpx.AsyncClient, kind: str) -> None:
        started = time.perf_counter()
        try:
            status = await one_request(client, url, kind, bodies)
        except (httpx.HTTPError, OSError) as error:  # counted: a soak reports, it does not stop
            status = f"{kind}_{type(error).__name__}"
        window.statuses[status] += 1
        if kind in ("raw", "multipart", "long", "batch") and status == "200":
            window.good_latencies.append(time.perf_counter() - started)

    def rss_mib(values: Samples) -> float:
        if pid:
            return float(proc_status(pid)["VmRSS"])
        return metric(values, "process_resident_memory_bytes") / 2**20

    async def sample(elapsed: float) -> None:
        """Print the window; memory is read busy, then idle (after the requests in flight end):
        busy memory swings with how many models happen to be inferring, idle memory shows a
        leak."""
        nonlocal window
        busy = rss_mib(scrape(url))
        busy_in_flight = len(in_flight)
        await asyncio.gather(*in_flight)
        await asyncio.sleep(IDLE_RELEASE_SECONDS + 1.5)  # idle models give memory back
        values = scrape(url)
        idle = rss_mib(values)
        files = metric(values, "process_open_fds")
        samples.append((elapsed, idle))
        statuses = " ".join(f"{k}:{v}" for k, v in sorted(window.statuses.items()))
        print(
            f"| {elapsed / 60:5.1f} | {busy:.0f} | {idle:.0f} | {files:.0f} | {busy_in_flight} | "
            f"{percentile_ms(window.good_latencies, 50)} | "
            f"{percentile_ms(window.good_latencies, 99)} | {statuses} | {window.skipped} |",
            flush=True,
        )
        window = Window()

    print(
        "| minute | RSS busy MiB | RSS idle MiB | open files (idle) | in flight | good p50 ms "
        "| good p99 ms | answers | skipped |"
    )
    print("|" + "---|" * 9)
    limits = httpx.Limits(max_connections=int(args["max_in_flight"]))
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        next_start, next_sample = started, started + args["sample_seconds"]
        await sample(0.0)
        while (now := time.perf_counter()) < started + duration:
            if now >= next_sample:
                await sample(now - started)
                next_sample += args["sample_seconds"]
                next_start = time.perf_counter()  # no burst to make up for the pause
            if len(in_flight) >= args["max_in_flight"]:
                window.skipped += 1
            else:
                task = asyncio.create_task(run(client, random.choices(kinds, weights)[0]))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            next_start += 1 / args["rate"]
            await asyncio.sleep(max(next_start - time.perf_counter(), 0))
        await sample(time.perf_counter() - started)
    settle = args["settle_minutes"] * 60
    settled = [rss for elapsed, rss in samples if elapsed >= settle]
    if len(settled) >= 2:
        print(
            f"\nidle resident memory after {args['settle_minutes']:g} min: {settled[0]:.0f} MiB, "
            f"at the end {settled[-1]:.0f} MiB: growth {settled[-1] - settled[0]:+.0f} MiB "
            f"(max {max(settled):.0f})"
        )


@app.command()
def main(
    url: str | None = typer.Option(None, help="a running service (default: start one)"),
    repository: Path = typer.Option(
        MODEL_REPOSITORY, help="model repository of the started service"
    ),
    minutes: float = typer.Option(30.0, min=0.1, help="how long requests are started"),
    rate: float = typer.Option(2.0, min=0.01, help="requests started per second"),
    max_in_flight: int = typer.Option(32, min=1, help="most requests open at once"),
    sample_seconds: float = typer.Option(30.0, min=1, help="seconds between samples"),
    settle_minutes: float = typer.Option(5.0, min=0, help="memory growth is measured after"),
    seed: int = 0,
) -> None:
    """Print one line per sample, then the resident memory growth after the settling time."""
    random.seed(seed)
    bodies = Bodies(
        short=[synthetic_wav(s, rate=44100, channels=2, seed=i) for i, s in enumerate([2, 7, 15])],
        long=synthetic_wav(60, rate=22050, channels=2, seed=9),  # 5.3 MB: under the limit
        models=[],
    )
    env = {
        "TAGGRAM_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "TAGGRAM_READ_TIMEOUT_SECONDS": "2",
    }
    with served(url, repository, env) as service:
        models = httpx.get(f"{service.url}/v1/models").json()["models"]
        bodies = Bodies(bodies.short, bodies.long, [m["name"] for m in models])
        print(
            f"soak: {minutes:g} min at {rate:g} requests/s, models {bodies.models}, "
            f"mix {dict(MIX)}\n"
        )
        arguments = {
            "minutes": minutes,
            "rate": rate,
            "max_in_flight": max_in_flight,
            "sample_seconds": sample_seconds,
            "settle_minutes": settle_minutes,
        }
        asyncio.run(soak(service.url, service.pid, arguments, bodies))


if __name__ == "__main__":
    app()
