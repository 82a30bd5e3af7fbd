"""What decoding costs: memory and time of the service's decoder on bombs and on real files.

Two parts, both printed as Markdown tables for ``docs/audio.md``:

1. **Bombs**: small files that declare or hold a lot of audio (the 164 kB FLAC holding 899 s at
   384 kHz, a FLAC over the length limit, a 2 Hz WAV declaring hours, a long silent MP3). Each
   runs in a fresh process, which reports the extra peak memory (``ru_maxrss`` after minus
   before) and the wall time of the service's ``decode`` (block-wise, soxr streaming), and of
   the previous whole-signal path (libsndfile reads everything, then soxr resamples it) for
   comparison.
2. **Decoders per format**: for each file of ``../shared/audio`` and ``../shared/bugs``, FFmpeg
   through PyAV (what the service uses) against libsndfile + soxr HQ (what librosa, and so the
   original musicnn, used): decoded length, largest sample difference at 16 kHz, and time.

Run: ``python -m benchmarks.decode_cost`` (the ffmpeg tool makes the bombs; nothing is kept).
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf
import soxr
import typer

from benchmarks import SHARED
from taggram.service.audio.decode import DecodeLimits, decode
from taggram.service.errors import TaggramError

RATE = 16000
T = TypeVar("T")


def old_decode(path: Path, max_seconds: float) -> np.ndarray:
    """The previous service path: header check, the whole native signal downmixed block by block
    into one mono array, then one-shot resampling."""
    with sf.SoundFile(path) as sound:
        if sound.frames / sound.samplerate > max_seconds:
            raise ValueError("too long (header)")
        mono = np.empty(sound.frames, dtype=np.float32)
        filled = 0
        for block in sound.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
            mono[filled : filled + len(block)] = block.mean(axis=1)
            filled += len(block)
        rate = sound.samplerate
    out = soxr.resample(mono[:filled], rate, RATE, quality="HQ")
    return out[: math.ceil(filled * RATE / rate)]


def _measure(path: str, decoder: str, max_seconds: float, max_rate: int) -> dict[str, object]:
    """Run one decode in this (fresh) process: extra peak memory in MB, seconds, outcome."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        if decoder == "service":
            limits = DecodeLimits(1 << 34, max_seconds, max_sample_rate=max_rate)
            with Path(path).open("rb") as handle:
                seconds = decode(handle, RATE, limits).duration_seconds
        else:
            seconds = len(old_decode(Path(path), max_seconds)) / RATE
        outcome = f"{seconds:.1f} s decoded"
    except (TaggramError, ValueError, sf.SoundFileError) as error:
        outcome = f"refused: {getattr(error, 'code', type(error).__name__)}"
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    extra_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"extra_mb": extra_mb, "seconds": elapsed, "cpu_seconds": cpu, "outcome": outcome}


def _in_fresh_process(path: Path, decoder: str, max_seconds: float, max_rate: int) -> dict:
    code = (
        "import json, sys; from benchmarks.decode_cost import _measure; "
        f"print(json.dumps(_measure({str(path)!r}, {decoder!r}, {max_seconds}, {max_rate})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def _ffmpeg(*args: str | Path) -> None:
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)]
    subprocess.run(command, check=True)


def make_bombs(folder: Path) -> list[tuple[str, Path, float, int]]:
    """(what, file, duration limit s, sample-rate cap Hz) of each bomb."""
    silence = "anullsrc=r={rate}:cl=mono"
    flac384 = folder / "384k_899s.flac"
    _ffmpeg("-f", "lavfi", "-i", silence.format(rate=384000), "-t", "899", flac384)
    flac192 = folder / "192k_3000s.flac"
    _ffmpeg("-f", "lavfi", "-i", silence.format(rate=192000), "-t", "3000", flac192)
    unknown = folder / "192k_3000s_length_unknown.flac"
    data = bytearray(flac192.read_bytes())
    data[21] &= 0xF0  # STREAMINFO's 36-bit total sample count, zeroed: "unknown"
    data[22:26] = bytes(4)
    unknown.write_bytes(bytes(data))
    mp3 = folder / "8k_3000s.mp3"
    _ffmpeg("-f", "lavfi", "-i", silence.format(rate=8000), "-t", "3000", "-b:a", "8k", mp3)
    wav = folder / "2hz_hours.wav"
    sf.write(wav, np.zeros(20000, np.float32), 2, subtype="PCM_16")
    return [
        ("FLAC, 384 kHz, 899 s of silence (cap raised to 400 kHz)", flac384, 900, 400_000),
        ("FLAC, 192 kHz, 3000 s of silence (limit 900 s)", flac192, 900, 192_000),
        ("the same, its header's length zeroed (unknown)", unknown, 900, 192_000),
        ("MP3, 8 kHz, 3000 s of silence (limit 900 s)", mp3, 900, 192_000),
        ("WAV, 2 Hz, header declares 10000 s (limit 900 s)", wav, 900, 192_000),
    ]


def bombs_table() -> str:
    lines = [
        "| file | size | decoder | extra peak memory | wall time | CPU time | outcome |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for what, path, max_seconds, max_rate in make_bombs(Path(tmp)):
            size = f"{path.stat().st_size / 1024:.0f} kB"
            for decoder in ("service", "whole-signal"):
                if decoder == "whole-signal" and path.suffix == ".mp3":
                    continue  # libsndfile's MP3 length is a header estimate: not comparable
                got = _in_fresh_process(path, decoder, max_seconds, max_rate)
                lines.append(
                    f"| {what} | {size} | {decoder} | {got['extra_mb']:.0f} MB | "
                    f"{got['seconds']:.2f} s | {got['cpu_seconds']:.2f} s | {got['outcome']} |"
                )
                print(lines[-1], file=sys.stderr)
    return "\n".join(lines)


def _libsndfile(path: Path) -> np.ndarray:
    mono, rate = sf.read(path, dtype="float32", always_2d=True)
    out = soxr.resample(mono.mean(axis=1, dtype=np.float32), rate, RATE, quality="HQ")
    return out[: math.ceil(len(mono) * RATE / rate)]


def _best_of(runs: int, step: Callable[[], T]) -> tuple[float, T]:
    """The least CPU time of ``runs`` calls (robust on a shared machine), and the last result."""
    best = math.inf
    for _ in range(runs):
        started = time.process_time()
        value = step()
        best = min(best, time.process_time() - started)
    return best, value


def decoders_table(shared: Path, runs: int) -> str:
    lines = [
        "| file | format | PyAV length | libsndfile length | max abs difference | "
        "PyAV CPU time | libsndfile CPU time |",
        "|---|---|---|---|---|---|---|",
    ]
    files = sorted(
        p
        for folder in (shared / "audio", shared / "bugs")
        for p in folder.glob("*.*")
        if p.suffix not in {".md", ".csv"}
    )
    limits = DecodeLimits(1 << 34, 3600)
    for path in files:
        data = path.read_bytes()
        pyav_s, decoded = _best_of(runs, partial(decode, data, RATE, limits))
        pyav, head = decoded.waveform, f"| {path.name} | {decoded.info.format} |"
        try:
            sndfile_s, sndfile = _best_of(runs, partial(_libsndfile, path))
        except sf.SoundFileError as error:
            lines.append(
                f"{head} {len(pyav) / RATE:.3f} s | fails: {error} | | {pyav_s * 1000:.0f} ms | |"
            )
            continue
        n = min(len(pyav), len(sndfile))
        difference = float(np.abs(pyav[:n] - sndfile[:n]).max()) if n else math.nan
        lines.append(
            f"{head} {len(pyav) / RATE:.3f} s | {len(sndfile) / RATE:.3f} s | {difference:.1e} | "
            f"{pyav_s * 1000:.0f} ms | {sndfile_s * 1000:.0f} ms |"
        )
        print(lines[-1], file=sys.stderr)
    return "\n".join(lines)


def main(
    shared: Path = typer.Option(SHARED, help="the shared folder (audio/ and bugs/)"),
    runs: int = typer.Option(3, min=1, help="runs per file in the decoder table (best kept)"),
    bombs: bool = typer.Option(True, help="measure the bombs (several minutes of CPU)"),
    decoders: bool = typer.Option(True, help="compare the decoders on the shared files"),
) -> None:
    """Print the bombs table and the per-format decoder table."""
    if bombs:
        print(bombs_table(), end="\n\n")
    if not decoders:
        return
    if (shared / "audio").is_dir():
        print(decoders_table(shared, runs))
    else:
        print(f"{shared}/audio is absent: decoder table skipped", file=sys.stderr)


if __name__ == "__main__":
    typer.run(main)
