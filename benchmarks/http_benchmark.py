"""Benchmark the tagging service end to end and compare it with the original musicnn.

Run from the repository root (``make venv`` and ``taggram build-models`` first)::

    .venv/bin/python -m benchmarks.http_benchmark            # everything, 5-10 minutes
    .venv/bin/python -m benchmarks.http_benchmark --tracks-from data/manifest.csv --concurrency 4
    .venv/bin/python -m benchmarks.http_benchmark --url http://127.0.0.1:8000 --no-original

In one run it measures, one after the other so they do not compete for the cores:

1. the floor: the machine's float32 and int8 GEMM rates and raw onnxruntime time per patch for
   every model in the repository (float32 and int8) at a few batch sizes
   (:mod:`benchmarks.raw_inference`);
2. the service, for each ``--model``: real recordings POSTed to ``/v1/tag`` of a ``taggram serve``
   it starts on 127.0.0.1 (or the one at ``--url``) at each concurrency, giving audio seconds
   tagged per wall-clock second, client-side latency percentiles, from ``/metrics`` the mean batch
   size, and the server's resident memory (``/proc``: after warm-up, after the load, peak);
3. resident memory with every model of the repository loaded: after warm-up, and the peak while
   tagging one long (``--long-seconds``, 900 s) track;
4. the original musicnn code on the same files in its own environment
   (:mod:`benchmarks.original_musicnn`), and each model's speed ratio against it.

Everything is printed as Markdown tables for ``docs/performance.md``. Each load phase stops
issuing requests after ``--phase-budget`` seconds, so the run stays bounded on a slow machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import soundfile
import typer
from prometheus_client.parser import text_string_to_metric_families

from benchmarks import ROOT, SHARED_AUDIO
from benchmarks.original_musicnn import (
    DEFAULT_VENV,
    ORIGINAL_MODELS,
    OriginalRun,
    ensure_venv,
    run_original,
)
from benchmarks.raw_inference import (
    GemmRate,
    RawInference,
    gemm_rate,
    measure_repository,
    ort_gemm_rate,
)
from taggram.catalogue.sources import AUDIO_EXTENSIONS
from taggram.repository import load_repository

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@dataclass(frozen=True)
class AudioFile:
    path: Path
    data: bytes
    seconds: float


@dataclass(frozen=True)
class Counters:
    """The service's cumulative counters for one model, read from ``/metrics``."""

    batch_rows: float  # taggram_batch_size_sum: patches put through batches
    batches: float  # taggram_batch_size_count
    cpu_seconds: float  # process_cpu_seconds_total: the whole server process, every thread

    def __sub__(self, other: Counters) -> Counters:
        return Counters(
            self.batch_rows - other.batch_rows,
            self.batches - other.batches,
            self.cpu_seconds - other.cpu_seconds,
        )


@dataclass(frozen=True)
class LoadResult:
    concurrency: int
    audio_seconds: float
    wall_seconds: float
    latencies: list[float]
    decode_seconds: list[float]  # the server's own decode stage, from each response body
    counters: Counters
    rejected: int  # 429 answers (retried after Retry-After)
    model: str = ""
    floor_ms: float | None = None  # GEMM floor, CPU ms per patch
    memory: Memory | None = None  # the server's, after the phase

    @property
    def audio_per_second(self) -> float:
        return self.audio_seconds / self.wall_seconds

    @property
    def cpu_per_audio_second(self) -> float:
        return self.counters.cpu_seconds / self.audio_seconds

    @property
    def mean_batch(self) -> float:
        return self.counters.batch_rows / self.counters.batches if self.counters.batches else 0.0

    def ms_per_patch(self, seconds: float) -> float:
        rows = self.counters.batch_rows
        return 1000 * seconds / rows if rows else float("nan")

    def percentile_ms(self, q: float) -> float:
        return 1000 * float(np.percentile(self.latencies, q))


def find_audio(paths: list[Path]) -> list[AudioFile]:
    """The audio files named, or found directly inside the folders named, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise typer.BadParameter(f"{path} does not exist (the recordings are in ../shared)")
        found += sorted(path.iterdir()) if path.is_dir() else [path]
    audio = [p for p in found if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS]
    if not audio:
        raise typer.BadParameter(f"no audio files ({sorted(AUDIO_EXTENSIONS)}) in {paths}")
    return [AudioFile(p, p.read_bytes(), soundfile.info(str(p)).duration) for p in audio]


async def read_counters(client: httpx.AsyncClient, model: str) -> Counters:
    response = await client.get("/metrics")
    response.raise_for_status()
    values = {"taggram_batch_size_sum": 0.0, "taggram_batch_size_count": 0.0}
    cpu = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in values and sample.labels.get("model") == model:
                values[sample.name] += sample.value
            elif sample.name == "process_cpu_seconds_total":
                cpu = sample.value
    return Counters(values["taggram_batch_size_sum"], values["taggram_batch_size_count"], cpu)


async def post_until_accepted(
    client: httpx.AsyncClient, model: str | None, audio: AudioFile
) -> tuple[float, int]:
    """POST one file to ``model`` (None: the service's default); on 429 wait as told and retry
    (latency counts the wait: clients see it).

    Returns the server's decode time for the file, in seconds, and the number of 429 answers.
    """
    rejected = 0
    while True:
        response = await client.post(
            "/v1/tag",
            params={"model": model} if model else {},
            content=audio.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if response.status_code != 429:
            response.raise_for_status()
            return float(response.json()["timings"]["decode_ms"]) / 1000, rejected
        rejected += 1
        await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))


async def run_load(
    url: str, model: str, requests: list[AudioFile], concurrency: int, budget_s: float
) -> LoadResult:
    """``concurrency`` clients each send the next pending file as soon as their last is answered."""
    pending = iter(requests)
    latencies: list[float] = []
    decode_seconds: list[float] = []
    audio_seconds = 0.0
    rejected = 0
    limits = httpx.Limits(max_connections=concurrency + 1)
    async with httpx.AsyncClient(base_url=url, timeout=600.0, limits=limits) as client:
        before = await read_counters(client, model)
        started = time.perf_counter()

        async def client_loop() -> None:
            nonlocal audio_seconds, rejected
            for audio in pending:
                if time.perf_counter() - started > budget_s:
                    return
                begin = time.perf_counter()
                decode, retries = await post_until_accepted(client, model, audio)
                latencies.append(time.perf_counter() - begin)
                decode_seconds.append(decode)
                audio_seconds += audio.seconds
                rejected += retries

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        counters = await read_counters(client, model) - before
    return LoadResult(
        concurrency, audio_seconds, wall, latencies, decode_seconds, counters, rejected
    )


@contextlib.contextmanager
def service_url(
    url: str | None, repository: Path, model: str | None, max_batch_size: int | None
) -> Iterator[tuple[str, int | None]]:
    """The ``--url`` given, or a ``taggram serve`` started on a free 127.0.0.1 port for the run
    (serving ``model`` only, or every model of the repository when ``model`` is None), with the
    server's process id when it is ours."""
    if url is not None:
        yield url.rstrip("/"), None
        return
    from taggram.service.launcher import running_server  # the end-to-end tests use it too

    env = {"TAGGRAM_LOG_LEVEL": "warning", "TAGGRAM_DRAIN_GRACE_SECONDS": "0"}
    if model is not None:
        env |= {"TAGGRAM_MODELS": model, "TAGGRAM_DEFAULT_MODEL": model}
    if max_batch_size is not None:
        env["TAGGRAM_MAX_BATCH_SIZE"] = str(max_batch_size)
    with tempfile.TemporaryDirectory() as logs, running_server(repository, Path(logs), env) as srv:
        yield srv.url, srv.process.pid


@dataclass(frozen=True)
class Memory:
    """A process's resident memory from ``/proc/<pid>/status``, MiB: now and the peak so far."""

    rss_mib: float
    peak_mib: float


def memory(pid: int | None) -> Memory | None:
    if pid is None:
        return None
    fields: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                fields[key] = float(value.split()[0]) / 1024
    if len(fields) < 2:
        return None
    return Memory(fields["VmRSS"], fields["VmHWM"])


def training_tracks(manifest: Path, count: int, min_seconds: float = 120.0) -> list[Path]:
    """The ``count`` longest tracks of at least ``min_seconds`` from a ``taggram prepare-data``
    manifest, at most one per package, as the packages ship them (their original files)."""
    with manifest.open(newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: -float(row["seconds"]))
    chosen: dict[str, Path] = {}
    for row in rows:
        original = manifest.parent / "packages" / row["package"] / row["source"]
        long_enough = float(row["seconds"]) >= min_seconds
        if long_enough and row["package"] not in chosen and original.is_file():
            chosen[row["package"]] = original
    if len(chosen) < count:
        raise typer.BadParameter(f"{manifest}: fewer than {count} tracks of {min_seconds:.0f} s")
    return list(chosen.values())[:count]


def long_track(files: list[AudioFile], seconds: float, folder: Path) -> AudioFile:
    """One ``seconds``-long FLAC (44.1 kHz stereo, 16-bit) made by repeating the files' audio."""
    parts, total = [], 0.0
    while total < seconds:
        for audio in files:
            data, rate = soundfile.read(str(audio.path), dtype="float32", always_2d=True)
            stereo = data[:, :2] if data.shape[1] > 1 else np.repeat(data, 2, axis=1)
            if rate != 44100:
                import soxr

                stereo = soxr.resample(stereo, rate, 44100)
            parts.append(stereo)
            total += len(stereo) / 44100
    path = folder / f"long_{seconds:.0f}s.flac"
    soundfile.write(str(path), np.concatenate(parts)[: int(seconds * 44100)], 44100, "PCM_16")
    return AudioFile(path, path.read_bytes(), seconds)


def cpu_model() -> str:
    """``lscpu``'s model name (what docs/performance.md records), or the platform's guess."""
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in lines.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# CPU features that decide which kernels onnxruntime's MLAS picks (it dispatches on cpuid).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16")
AMX_FLAGS = ("amx_tile", "amx_int8", "amx_bf16")


def cpu_flags() -> list[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in (*ISA_FLAGS, *AMX_FLAGS) if flag in present]
    return []


def instruction_sets(flags: list[str]) -> str:
    """What MLAS runs here: its float32 GEMM and its u8 x s8 (int8) kernels, chosen by cpuid."""
    fp32 = "AVX-512F" if "avx512f" in flags else "AVX2 + FMA" if "fma" in flags else "SSE"
    if "amx_int8" in flags:
        int8 = "AMX"
    elif "avx512_vnni" in flags:
        int8 = "AVX-512 VNNI"
    elif "avx_vnni" in flags:
        int8 = "AVX-VNNI"
    else:
        int8 = "AVX2 (no VNNI)" if "avx2" in flags else "SSE"
    return f"float32 {fp32}, int8 {int8}"


def machine_table(
    gemm: GemmRate,
    load_before: float,
    load_after: float,
    ort_float: GemmRate | None = None,
    int8: GemmRate | None = None,
) -> str:
    import onnxruntime

    flags = cpu_flags()
    rows = [
        ["CPU (lscpu model name)", cpu_model()],
        ["CPU flags (of those MLAS dispatches on)", ", ".join(flags) or "unknown"],
        [
            f"onnxruntime {onnxruntime.__version__} kernels (MLAS, by cpuid)",
            instruction_sets(flags),
        ],
        ["cores available", str(len(os.sched_getaffinity(0)))],
        [
            "float32 GEMM (NumPy, 2048²), wall median / best",
            f"{gemm.median:.0f} / {gemm.best:.0f} GFLOP/s",
        ],
        [
            "float32 GEMM per CPU-second (× cores = rate on an idle machine)",
            f"{gemm.per_cpu_second:.0f} GFLOP",
        ],
    ]
    if ort_float is not None and int8 is not None:
        rows += [
            [
                "float32 GEMM (onnxruntime MatMul, 2048²), per CPU-second: the floor below",
                f"{ort_float.per_cpu_second:.0f} GFLOP",
            ],
            [
                "int8 GEMM (onnxruntime MatMulInteger u8 x s8, 2048²), per CPU-second",
                f"{int8.per_cpu_second:.0f} GOP "
                f"({int8.per_cpu_second / ort_float.per_cpu_second:.1f}× float32)",
            ],
        ]
    rows.append(["1-min load average before / after", f"{load_before:.1f} / {load_after:.1f}"])
    return table(["machine", ""], rows)


def floor_cpu_ms(flops_per_patch: int | None, gemm: GemmRate) -> float | None:
    """CPU milliseconds a patch needs if every FLOP ran at the GEMM's rate."""
    return None if flops_per_patch is None else 1000 * flops_per_patch / (gemm.per_cpu_second * 1e9)


def raw_table(rows: list[RawInference], gemm: GemmRate, int8: GemmRate | None = None) -> str:
    """Raw onnxruntime per patch, beside the floor the GEMM rate sets for the model's FLOPs
    (the int8 GEMM's rate for the ``_int8`` models, whose convolutions run in int8)."""
    body = []
    for row in rows:
        t = row.timing
        rate = row.gflop_per_cpu_second()
        floor_gemm = int8 if int8 is not None and row.model.endswith("_int8") else gemm
        floor = floor_cpu_ms(row.flops_per_patch, floor_gemm)
        body.append(
            [
                row.model,
                str(row.batch),
                f"{row.ms_per_patch(t.median_s):.1f}",
                f"{row.ms_per_patch(t.best_s):.1f}",
                f"{row.ms_per_patch(t.cpu_s):.1f}",
                "" if floor is None else f"{floor:.1f}",
                "" if rate is None else f"{100 * rate / floor_gemm.per_cpu_second:.0f} %",
            ]
        )
    header = [
        "model",
        "batch",
        "ms / patch (median)",
        "ms / patch (best)",
        "CPU ms / patch",
        "GEMM floor, CPU ms / patch",
        "of GEMM rate (int8 GEMM for _int8)",
    ]
    return table(header, body)


def load_table(results: list[LoadResult], originals: dict[str, OriginalRates]) -> str:
    """One row per model and concurrency; "vs original" against the original of the same
    network (``MTT_musicnn_int8`` against ``MTT_musicnn``), timed in the same run."""
    body = []
    for r in results:
        original = originals.get(r.model.removesuffix("_int8"))
        cpu_ms = r.ms_per_patch(r.counters.cpu_seconds)
        body.append(
            [
                r.model,
                str(r.concurrency),
                str(len(r.latencies)),
                f"{r.audio_seconds:.0f}",
                f"{r.audio_per_second:.1f}",
                f"{r.percentile_ms(50):.0f}",
                f"{r.percentile_ms(95):.0f}",
                f"{1000 * np.mean(r.decode_seconds):.0f}",
                f"{r.mean_batch:.1f}",
                f"{r.ms_per_patch(r.wall_seconds):.1f}",
                f"{cpu_ms:.1f}",
                "" if r.floor_ms is None else f"{100 * r.floor_ms / cpu_ms:.0f} %",
                "" if original is None else f"{r.audio_per_second / original.audio_per_s:.1f}×",
                ""
                if original is None
                else f"{original.cpu_per_audio_s / r.cpu_per_audio_second:.1f}×",
                "" if r.memory is None else f"{r.memory.rss_mib:.0f} / {r.memory.peak_mib:.0f}",
                str(r.rejected),
            ]
        )
    header = [
        "model",
        "concurrency",
        "requests",
        "audio s",
        "audio s / s",
        "p50 ms",
        "p95 ms",
        "decode ms",
        "mean batch",
        "wall ms / patch",
        "server CPU ms / patch",
        "GEMM floor / server CPU",
        "vs original",
        "vs original, CPU",
        "server RSS / peak MiB",
        "429s",
    ]
    return table(header, body)


def memory_table(models: int, warm: Memory | None, long: Memory | None, seconds: float) -> str:
    rows = [
        [
            f"after start-up and warm-up, {models} models loaded",
            "" if warm is None else f"{warm.rss_mib:.0f}",
        ],
        [
            f"peak while tagging one {seconds:.0f} s track (44.1 kHz stereo FLAC)",
            "" if long is None else f"{long.peak_mib:.0f}",
        ],
        ["after that request", "" if long is None else f"{long.rss_mib:.0f}"],
    ]
    return table(["server resident memory (every model of the repository)", "MiB"], rows)


@dataclass(frozen=True)
class OriginalRates:
    """The original's speed: audio seconds per wall second, CPU seconds per audio second."""

    audio_per_s: float
    cpu_per_audio_s: float


def original_table(run: OriginalRun, durations: dict[Path, float]) -> tuple[str, OriginalRates]:
    """The original's figures and its rates (per call, in a warm process)."""
    audio = sum(durations[Path(item.file)] for item in run.files)
    total = sum(item.total_s for item in run.files)
    cpu = sum(item.cpu_s for item in run.files)
    network = sum(item.network_s for item in run.files)
    first = sum(item.first_patch_s for item in run.files)
    patches = sum(item.patches for item in run.files)
    rate = audio / total
    calls = len(run.files)
    later = patches - calls
    steady = f"{1000 * (network - first) / later:.1f}" if later else "n/a"
    rows = [
        ["files tagged (one process, sequential)", str(calls)],
        ["audio seconds", f"{audio:.0f}"],
        ["wall seconds in `extractor` calls", f"{total:.1f}"],
        ["audio s / s", f"{rate:.1f}"],
        ["CPU s per audio minute", f"{60 * cpu / audio:.1f}"],
        ["network ms / patch, all passes (batch 1)", f"{1000 * network / patches:.1f}"],
        ["network ms / patch, after each call's first pass", steady],
        ["first pass of each call (graph optimisation), ms", f"{1000 * first / calls:.0f}"],
        [
            "rest (graph build, restore, decode, mel) per call, ms",
            f"{1000 * (total - network) / calls:.0f}",
        ],
        ["one-off: import TensorFlow + musicnn, s", f"{run.import_s:.1f}"],
        ["one-off: first call (librosa JIT, TF initialisation), s", f"{run.first_call_s:.1f}"],
    ]
    return table(["original musicnn 0.1.0", ""], rows), OriginalRates(rate, cpu / audio)


async def tag_once(url: str, model: str | None, audio: AudioFile) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=600.0) as client:
        await post_until_accepted(client, model, audio)


def measure_memory(
    repository: Path, files: list[AudioFile], seconds: float
) -> tuple[int, Memory | None, Memory | None]:
    """A server with every model: resident memory after warm-up, then around one long track."""
    with (
        tempfile.TemporaryDirectory() as folder,
        service_url(None, repository, None, None) as (
            base,
            pid,
        ),
    ):
        models = len(load_repository(repository))
        warm = memory(pid)
        track = long_track(files, seconds, Path(folder))
        asyncio.run(tag_once(base, None, track))
        return models, warm, memory(pid)


@app.command()
def main(
    url: str | None = typer.Option(None, help="benchmark this running service instead"),
    repository: Path = typer.Option(ROOT / "model_repository", help="model repository"),
    model: list[str] = typer.Option(
        ["MTT_musicnn", "MTT_musicnn_int8"], help="models the requests name, one phase each"
    ),
    audio: list[Path] = typer.Option([SHARED_AUDIO], help="audio files or folders to send"),
    tracks_from: Path | None = typer.Option(
        None, help="send the longest tracks of this `taggram prepare-data` manifest instead"
    ),
    tracks: int = typer.Option(4, min=1, help="how many tracks --tracks-from picks"),
    repeat: int = typer.Option(2, min=1, help="times each file is sent per concurrency level"),
    concurrency: list[int] = typer.Option([1, 4, 16], help="concurrent clients, per phase"),
    phase_budget: float = typer.Option(60.0, help="seconds after which a phase stops sending"),
    max_batch_size: int | None = typer.Option(None, help="server's max batch (default: its own)"),
    raw: bool = typer.Option(
        True, help="time raw onnxruntime per model (GEMM rates are always measured: the floor)"
    ),
    raw_batches: list[int] = typer.Option([1, 8, 32], help="batch sizes for raw onnxruntime"),
    threads: int = typer.Option(2, help="onnxruntime intra-op threads for the raw measurement"),
    memory_check: bool = typer.Option(
        True, "--memory/--no-memory", help="resident memory with every model loaded"
    ),
    long_seconds: float = typer.Option(900.0, help="length of the memory check's long track"),
    original: bool = typer.Option(True, help="also run the original musicnn code"),
    original_venv: Path = typer.Option(DEFAULT_VENV, help="the original's environment"),
) -> None:
    """Print Markdown tables: machine, the service per model, memory, raw onnxruntime, original."""
    load_before = os.getloadavg()[0]
    paths = training_tracks(tracks_from, tracks) if tracks_from else audio
    files = find_audio(paths)
    numpy_gemm = gemm_rate()
    gemm = ort_gemm_rate(int8=False, threads=threads)
    int8 = ort_gemm_rate(int8=True, threads=threads)
    raw_section = None
    if raw:
        typer.echo("raw onnxruntime ...", err=True)
        rows = measure_repository(repository, raw_batches, threads)
        raw_section = raw_table(rows, gemm, int8)

    results = []
    for name in model:
        with service_url(url, repository, name, max_batch_size) as (base, pid):
            metadata = httpx.get(f"{base}/v1/models/{name}", timeout=30.0).raise_for_status()
            flops = metadata.json().get("flops_per_patch")
            floor_ms = floor_cpu_ms(flops, int8 if name.endswith("_int8") else gemm)
            asyncio.run(run_load(base, name, files[:1], 1, phase_budget))  # warm the path once
            for level in concurrency:
                typer.echo(f"service {name} at concurrency {level} ...", err=True)
                result = asyncio.run(run_load(base, name, files * repeat, level, phase_budget))
                results.append(
                    dataclasses.replace(result, model=name, floor_ms=floor_ms, memory=memory(pid))
                )

    memory_section = None
    if memory_check and url is None:
        typer.echo("memory, every model loaded ...", err=True)
        memory_section = memory_table(
            *measure_memory(repository, files, long_seconds), long_seconds
        )

    original_sections, originals = [], {}
    for name in dict.fromkeys(m.removesuffix("_int8") for m in model):
        if original and name in ORIGINAL_MODELS:
            typer.echo(f"original musicnn {name} ...", err=True)
            run = run_original(ensure_venv(original_venv), [f.path for f in files], name)
            section, originals[name] = original_table(run, {f.path: f.seconds for f in files})
            original_sections.append(section)
    sections = [
        machine_table(numpy_gemm, load_before, os.getloadavg()[0], gemm, int8),
        load_table(results, originals),
        memory_section,
        raw_section,
        *original_sections,
    ]
    listed = ", ".join(f"{f.path.name} ({f.seconds:.0f} s)" for f in files)
    typer.echo(
        f"\nmodels {', '.join(model)}; {len(files)} files sent {repeat}× per level: {listed}\n"
    )
    typer.echo("\n\n".join(section for section in sections if section))


if __name__ == "__main__":
    app()
