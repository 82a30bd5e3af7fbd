"""The batcher, on a real (tiny) ONNX Runtime session: packing, scattering, bounds, cancellation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from taggram.repository import load_repository
from taggram.service.audio.patching import Patches, plan_patches
from taggram.service.errors import OverloadedError
from taggram.service.inference.batcher import Batcher
from taggram.service.inference.session import ModelSession, choose_providers


@pytest.fixture(scope="module")
def session(tiny_repository: Path) -> ModelSession:
    entry = load_repository(tiny_repository)["tiny"]
    return ModelSession(entry, choose_providers([]), intra_op_threads=1, inter_op_threads=1)


def _patches(session: ModelSession, seconds: float, seed: int) -> Patches:
    spec = session.metadata.patch
    waveform = np.random.default_rng(seed).normal(size=int(seconds * 16000)).astype(np.float32)
    plan = plan_patches(len(waveform), spec, spec.hop_samples, 1000)
    return Patches(waveform, spec, plan)


def _alone(session: ModelSession, patches: Patches) -> dict[str, np.ndarray]:
    """Each patch on its own, batch size 1: what any batching must reproduce."""
    rows = [session.run(patches[i][None, :]) for i in range(len(patches))]
    return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}


def _batched_patches(session: ModelSession) -> float:
    """Patches that went through inference so far, from the batch-size histogram."""
    labels = {"model": session.name, "provider": session.provider}
    return REGISTRY.get_sample_value("taggram_batch_size_sum", labels) or 0.0


def test_concurrent_requests_get_their_own_rows(session: ModelSession) -> None:
    requests = [_patches(session, seconds, seed) for seed, seconds in enumerate([1, 7, 30, 12, 4])]

    async def run() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(
            session, max_batch_size=4, max_queue_delay_seconds=0.01, max_queue_patches=100
        )
        batcher.start()
        try:
            results = await asyncio.gather(*(batcher.infer(p) for p in requests))
        finally:
            await batcher.stop()
        assert batcher.pending_patches == 0
        return [result.outputs for result in results]

    patched_before = _batched_patches(session)
    for outputs, patches in zip(asyncio.run(run()), requests, strict=True):
        expected = _alone(session, patches)
        for name, rows in expected.items():
            np.testing.assert_allclose(outputs[name], rows, rtol=1e-5, atol=1e-6)
    assert _batched_patches(session) - patched_before == sum(len(p) for p in requests)


def test_full_queue_answers_overloaded_with_retry_after(session: ModelSession) -> None:
    async def run() -> None:
        batcher = Batcher(
            session, max_batch_size=2, max_queue_delay_seconds=0.5, max_queue_patches=12
        )
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.infer(_patches(session, 30, 0)))  # 11 patches
            await asyncio.sleep(0)
            with pytest.raises(OverloadedError) as refused:
                await batcher.infer(_patches(session, 7, 1))
            assert refused.value.retryable
            assert refused.value.retry_after_seconds is not None
            assert refused.value.retry_after_seconds > 0
            assert len((await first).outputs["probabilities"]) == 11
        finally:
            await batcher.stop()

    asyncio.run(run())


def test_cancelled_request_patches_are_dropped(session: ModelSession) -> None:
    async def run() -> None:
        # A long delay keeps everything queued until the cancellation has happened.
        batcher = Batcher(
            session, max_batch_size=64, max_queue_delay_seconds=0.3, max_queue_patches=100
        )
        batcher.start()
        try:
            doomed = asyncio.ensure_future(batcher.infer(_patches(session, 60, 0)))
            kept = asyncio.ensure_future(batcher.infer(_patches(session, 9, 1)))
            await asyncio.sleep(0.05)
            assert batcher.pending_patches == 21 + 4
            doomed.cancel()
            await asyncio.sleep(0)
            assert batcher.pending_patches == 4
            before = _batched_patches(session)
            result = await kept
            assert len(result.outputs["probabilities"]) == 4
            assert _batched_patches(session) - before == 4  # only the surviving request ran
            assert doomed.cancelled()
        finally:
            await batcher.stop()

    asyncio.run(run())
