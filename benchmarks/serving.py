"""What the load, soak and memory benchmarks share: a served process, its memory, its metrics,
synthetic uploads and latency percentiles."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import soundfile
from prometheus_client.parser import text_string_to_metric_families

from taggram.service.launcher import running_server


@dataclass(frozen=True)
class Served:
    """A service to load: its URL and, when this run started it, its process id."""

    url: str
    pid: int | None


@contextlib.contextmanager
def served(url: str | None, repository: Path, env: Mapping[str, str]) -> Iterator[Served]:
    """The ``--url`` given, or a ``taggram serve`` started on a free 127.0.0.1 port for the run."""
    if url is not None:
        yield Served(url.rstrip("/"), None)
        return
    base = {"TAGGRAM_LOG_LEVEL": "warning", "TAGGRAM_DRAIN_GRACE_SECONDS": "0"}
    with (
        tempfile.TemporaryDirectory() as logs,
        running_server(repository, Path(logs), {**base, **env}) as server,
    ):
        yield Served(server.url, server.process.pid)


def proc_status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak) of process ``pid``, MiB (Linux ``/proc``)."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) // 1024
    return figures


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of ``/metrics``: (name, labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def metric(
    samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def synthetic_wav(seconds: float, rate: int = 16000, channels: int = 1, seed: int = 0) -> bytes:
    """A tone in noise as 16-bit WAV: ``seconds`` long at ``rate`` Hz, ``channels`` channels."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    mono = 0.2 * np.sin(2 * np.pi * 220 * t) + rng.normal(0, 0.05, t.size)
    audio = np.repeat(mono[:, None], channels, axis=1)
    out = io.BytesIO()
    soundfile.write(out, audio.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def percentile_ms(seconds: list[float], q: float) -> str:
    return f"{np.percentile(seconds, q) * 1000:.0f}" if seconds else "-"
