"""The GPU path's I/O binding, exercised on the CPU provider (the same binding code runs there).

On CUDA the host buffers are page-locked; on the CPU provider they are ordinary memory, but the
binding, the reuse of buffers across batch sizes and the copy-out are the same code.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from taggram.repository import load_repository
from taggram.service.inference.session import (
    HostBuffer,
    ModelSession,
    max_batch_for,
    uses_io_binding,
)
from taggram.service.settings import Settings
from taggram.service.tagging import Tagger, TagOptions

CPU = ["CPUExecutionProvider"]


def _session(repository: Path, mode: str, max_batch_size: int = 4) -> ModelSession:
    entry = load_repository(repository)["tiny"]
    return ModelSession(entry, CPU, 1, 1, io_binding=mode, max_batch_size=max_batch_size)  # type: ignore[arg-type]


def test_bound_outputs_equal_plain_run(tiny_repository: Path) -> None:
    bound, plain = _session(tiny_repository, "on"), _session(tiny_repository, "off")
    assert bound._bound is not None and plain._bound is None
    rng = np.random.default_rng(1)
    # sizes below, at and above the buffers' rows (above falls back to a plain run)
    for rows in (3, 1, 4, 6):
        batch = rng.standard_normal((rows, 48128)).astype(np.float32)
        got, expected = bound.run(batch), plain.run(batch)
        assert got.keys() == expected.keys()
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name])


def test_results_survive_the_next_batch(tiny_repository: Path) -> None:
    """Outputs are copied out of the reused host buffers, so earlier results stay intact."""
    session = _session(tiny_repository, "on")
    first = session.run(np.ones((2, 48128), np.float32))
    kept = {name: value.copy() for name, value in first.items()}
    session.run(-np.ones((2, 48128), np.float32))
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name])


def test_auto_binds_only_on_an_accelerator(tiny_repository: Path) -> None:
    assert _session(tiny_repository, "auto")._bound is None  # CPU provider
    assert uses_io_binding("cuda", "auto") and not uses_io_binding("cuda", "off")
    assert uses_io_binding("cpu", "on") and not uses_io_binding("cpu", "auto")


def test_gpu_batch_size_applies_only_on_a_gpu(tiny_repository: Path) -> None:
    entry = load_repository(tiny_repository)["tiny"]
    session = ModelSession(entry, CPU, 1, 1, max_batch_size=8, gpu_max_batch_size=128)
    assert session.max_batch_size == 8  # the session runs on the CPU
    assert max_batch_for("cuda", 8, 128) == 128 and max_batch_for("cpu", 8, 128) == 8


def test_host_buffer_without_an_accelerator_is_ordinary_memory() -> None:
    buffer = HostBuffer((2, 3), "CPUExecutionProvider")
    assert not buffer.pinned and buffer.array.shape == (2, 3)
    assert buffer.address == buffer.array.ctypes.data


def test_settings_validate_the_gpu_options() -> None:
    settings = Settings(io_binding="on", gpu_max_batch_size=256)
    assert settings.io_binding == "on" and settings.gpu_max_batch_size == 256
    with pytest.raises(ValueError):
        Settings(io_binding="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Settings(gpu_max_batch_size=0)


def test_a_bound_model_runs_one_batch_at_a_time(tiny_repository: Path) -> None:
    """I/O binding's host buffers serve one batch at a time: with TAGGRAM_IO_BINDING=on on a
    CPU, two inference workers overwrote each other's inputs and outputs (wrong rows, now and
    then), so a bound model gets one worker whatever TAGGRAM_INFERENCE_WORKERS says."""
    rng = np.random.default_rng(2)
    clips = [(0.3 * rng.standard_normal(16000 * 40)).astype(np.float32) for _ in range(4)]

    async def tag(io_binding: str) -> tuple[int, list[np.ndarray]]:
        settings = Settings(
            model_repository=tiny_repository, default_model="tiny", io_binding=io_binding,
            inference_workers=2, max_batch_size=4, warmup=False,
        )  # fmt: skip
        async with Tagger(settings) as tagger:
            workers = tagger._batchers["tiny"].workers
            results = await asyncio.gather(
                *(tagger.tag(_wav(clip), TagOptions(taggram=True)) for clip in clips)
            )
        return workers, [result.taggram for result in results]  # type: ignore[misc]

    bound_workers, bound = asyncio.run(tag("on"))
    plain_workers, plain = asyncio.run(tag("off"))
    assert (bound_workers, plain_workers) == (1, 2)
    for got, expected in zip(bound, plain, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16000, format="WAV", subtype="FLOAT")
    return buffer.getvalue()
