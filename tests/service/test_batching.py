"""The batcher, on a real (tiny) ONNX Runtime session: packing, scattering, bounds, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import numpy as np
import pytest
from prometheus_client import REGISTRY

from taggram.repository import load_repository, write_model
from taggram.service.audio.patching import Patches, plan_patches
from taggram.service.errors import (
    DeadlineExceededError,
    InferenceFailedError,
    NotReadyError,
    OverloadedError,
)
from taggram.service.inference import batcher as batcher_module
from taggram.service.inference.batcher import (
    IDLE_RELEASE_SECONDS,
    PROMOTE_AFTER,
    Batcher,
    BatchResult,
    batch_size,
    share_rows,
    share_rows_by_level,
)
from taggram.service.inference.session import ModelSession, choose_providers
from tests.service.conftest import PATCH, tiny_metadata


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


def _refused(session: ModelSession, code: str, stage: str) -> float:
    labels = {"model": session.name, "code": code, "stage": stage}
    return REGISTRY.get_sample_value("taggram_refused_total", labels) or 0.0


def _histogram_sum(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(f"{name}_sum", labels) or 0.0


def _batched_patches(session: ModelSession) -> float:
    """Patches that went through inference so far, from the batch-size histogram."""
    labels = {"model": session.name, "provider": session.provider}
    return _histogram_sum("taggram_batch_size", labels)


def _admission_batcher(session: ModelSession, max_queue_delay_seconds: float) -> Batcher:
    """A batcher whose expected waits are patch counts (1 s a patch, 5 s of budget) and whose
    batches (512 rows) do not fill: requests stay queued for ``max_queue_delay_seconds``."""
    return Batcher(
        session,
        max_batch_size=512,
        max_queue_delay_seconds=max_queue_delay_seconds,
        max_queue_patches=1000,
        queue_budget_seconds=5.0,
        seconds_per_patch=1.0,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_requests_get_their_own_rows(session: ModelSession, workers: int) -> None:
    requests = [_patches(session, seconds, seed) for seed, seconds in enumerate([1, 7, 30, 12, 4])]

    async def run() -> list[dict[str, np.ndarray]]:
        batcher = Batcher(
            session,
            max_batch_size=4,
            max_queue_delay_seconds=0.01,
            max_queue_patches=100,
            workers=workers,
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


@pytest.mark.parametrize(
    ("remaining", "rows"),
    [([50, 50, 1], 16), ([3, 100], 16), ([1] * 20, 16), ([5], 16), ([0, 7, 2], 4), ([], 8)],
)
def test_rows_are_shared_round_robin(remaining: list[int], rows: int) -> None:
    counts = share_rows(remaining, rows)
    assert all(0 <= c <= left for c, left in zip(counts, remaining, strict=True))
    assert sum(counts) == min(rows, sum(remaining))
    # Nobody who still has patches gets two rows fewer than anyone else.
    hungry = [c for c, left in zip(counts, remaining, strict=True) if c < left]
    assert not hungry or max(counts) - min(hungry) <= 1


@pytest.mark.parametrize(
    ("remaining", "levels", "rows", "expected"),
    [
        ([50, 3, 50], [2, 1, 2], 8, [3, 3, 2]),  # level 1 first, level 2 shares what is left
        ([50, 9, 50], [2, 1, 2], 8, [0, 8, 0]),  # level 1 fills the batch: level 2 waits
        ([4, 4, 4], [1, 1, 2], 4, [2, 2, 0]),  # round-robin within level 1
        ([5, 5], [2, 2], 4, [2, 2]),  # one level: plain round-robin
        ([], [], 8, []),
    ],
)
def test_rows_are_shared_level_by_level(
    remaining: list[int], levels: list[int], rows: int, expected: list[int]
) -> None:
    assert share_rows_by_level(remaining, levels, rows) == expected


@pytest.mark.parametrize(
    ("pending", "free", "expected"),
    [(40, 2, 16), (32, 2, 16), (20, 2, 10), (11, 2, 6), (5, 1, 5), (1, 2, 1), (3, 0, 3)],
)
def test_a_short_queue_is_split_among_the_free_workers(
    pending: int, free: int, expected: int
) -> None:
    assert batch_size(pending, 16, free) == expected


class _MeetingSession(ModelSession):
    """The real session, but each run waits (up to 10 s) until ``parties`` runs are under way
    at once: it passes only if the batcher really has that many batches in flight."""

    def __init__(self, session: ModelSession, parties: int) -> None:
        self.__dict__.update(session.__dict__)
        self.meeting = threading.Barrier(parties, timeout=10)
        self.sizes: list[int] = []

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.sizes.append(len(batch))
        self.meeting.wait()
        return super().run(batch)


def test_two_workers_infer_two_batches_at_once(session: ModelSession) -> None:
    meeting = _MeetingSession(session, parties=2)
    patches = _patches(session, 50, 0)
    count = len(patches)
    assert 16 < count < 32  # more than one full batch, less than two

    async def run() -> dict[str, np.ndarray]:
        batcher = Batcher(
            meeting, max_batch_size=16, max_queue_delay_seconds=0.01, max_queue_patches=100,
            workers=2, seconds_per_patch=1.0,
        )  # fmt: skip
        batcher.start()
        try:
            assert batcher.expected_wait(1) == 0
            return (await batcher.infer(patches)).outputs
        finally:
            await batcher.stop()

    outputs = asyncio.run(run())
    # Split evenly and run at the same time; the two worker threads reach run() in either order.
    assert sorted(meeting.sizes, reverse=True) == [(count + 1) // 2, count // 2]
    for name, rows in _alone(session, patches).items():
        np.testing.assert_allclose(outputs[name], rows, rtol=1e-5, atol=1e-6)


def _two_workers(session: ModelSession) -> Batcher:
    """Batches of up to 16, two inferred at once; a lone request of 17 to 32 patches is split
    into two batches that run side by side."""
    return Batcher(
        session, max_batch_size=16, max_queue_delay_seconds=0.01, max_queue_patches=100,
        workers=2,
    )  # fmt: skip


class _LeavingTogetherSession(ModelSession):
    """The real session, but two runs leave it together (each waits up to 10 s for the other):
    the two batches' threads then handle their outputs at the same moment."""

    def __init__(self, session: ModelSession) -> None:
        self.__dict__.update(session.__dict__)
        self.leaving = threading.Barrier(2, timeout=10)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = super().run(batch)
        self.leaving.wait()
        return outputs


def _yield_at_every_line(frame: FrameType, event: str, arg: object) -> Callable[..., object] | None:
    """A thread trace: in the batcher's code, pause a moment at every line, so that two worker
    threads there take turns line by line (any shared state they touch interleaves)."""
    if frame.f_code.co_filename != batcher_module.__file__:
        return None

    def pause(frame: FrameType, event: str, arg: object) -> Callable[..., object] | None:
        if event == "line":
            time.sleep(0.001)
        return pause

    return pause


def test_two_batches_of_one_request_at_once_keep_every_row(session: ModelSession) -> None:
    # A lone request split into two batches inferred at once: their worker threads once both
    # wrote its rows back, each could create the request's output buffers, and one thread's
    # rows went to a buffer thrown away (np.empty garbage in the answer: NaN under load).
    leaving = _LeavingTogetherSession(session)
    requests = [_patches(session, 50, seed) for seed in range(3)]  # 2 batches of 10 and 11

    async def run() -> list[dict[str, np.ndarray]]:
        batcher = _two_workers(leaving)
        batcher.start()
        try:
            return [(await batcher.infer(patches)).outputs for patches in requests]
        finally:
            await batcher.stop()

    threading.settrace(_yield_at_every_line)  # the worker threads start after this
    try:
        results = asyncio.run(run())
    finally:
        threading.settrace(None)  # type: ignore[arg-type]
    for outputs, patches in zip(results, requests, strict=True):
        for name, rows in _alone(session, patches).items():
            np.testing.assert_allclose(outputs[name], rows, rtol=1e-5, atol=1e-6)


class _SlowMeetingSession(_MeetingSession):
    """Two runs at once, each taking at least ``seconds``."""

    def __init__(self, session: ModelSession, seconds: float) -> None:
        super().__init__(session, parties=2)
        self.seconds = seconds

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        time.sleep(self.seconds)
        return super().run(batch)


def test_batches_run_at_once_count_their_time_once(session: ModelSession) -> None:
    slow = _SlowMeetingSession(session, seconds=0.5)
    patches = _patches(session, 50, 0)  # two batches of 16, inferred side by side

    async def run() -> tuple[float, BatchResult]:
        batcher = _two_workers(slow)
        batcher.start()
        try:
            started = time.perf_counter()
            result = await batcher.infer(patches)
            return time.perf_counter() - started, result
        finally:
            await batcher.stop()

    elapsed, result = asyncio.run(run())
    assert slow.sizes and len(slow.sizes) == 2
    # About 0.5 s of inference in about 0.5 s, not 1 s (each batch's own time, summed).
    assert 0.5 <= result.inference_seconds < 0.9
    assert result.queue_seconds + result.inference_seconds <= elapsed + 1e-3


def test_request_times_are_finer_than_uvloops_milliseconds(session: ModelSession) -> None:
    """Under uvloop (uvicorn's loop when installed) ``loop.time()`` counts whole milliseconds:
    a request's time, taken on it, fell short of its queue time plus its batches' inference
    time taken on the worker's clock, and Triton's statistics disagreed (seen in CI)."""
    uvloop = pytest.importorskip("uvloop", reason="uvloop comes with uvicorn[standard]")
    requested = {"model": session.name, "outcome": "success"}
    inferred = {"model": session.name, "provider": session.provider}
    times: list[tuple[float, float, float]] = []

    async def run() -> None:
        batcher = Batcher(
            session, max_batch_size=4, max_queue_delay_seconds=0.003, max_queue_patches=100
        )
        batcher.start()
        try:
            for seed in range(20):
                before = (
                    _histogram_sum("taggram_network_request_duration_seconds", requested),
                    _histogram_sum("taggram_inference_duration_seconds", inferred),
                )
                result = await batcher.infer(_patches(session, 3, seed))
                request = (
                    _histogram_sum("taggram_network_request_duration_seconds", requested)
                    - before[0]
                )
                inference = (
                    _histogram_sum("taggram_inference_duration_seconds", inferred) - before[1]
                )
                times.append((request, result.queue_seconds, inference))
        finally:
            await batcher.stop()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())
    whole_milliseconds = [abs(t * 1000 - round(t * 1000)) < 1e-6 for t, _, _ in times]
    assert not all(whole_milliseconds), times
    for request, queue, inference in times:
        assert request >= queue + inference, (request, queue, inference)


def test_expected_wait_shares_the_work_among_workers(session: ModelSession) -> None:
    async def run() -> None:
        batcher = Batcher(
            session, max_batch_size=512, max_queue_delay_seconds=0.5, max_queue_patches=1000,
            seconds_per_patch=1.0, workers=2,
        )  # fmt: skip
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.infer(_patches(session, 30, 0)))  # 11 patches
            await asyncio.sleep(0.01)
            assert batcher.expected_wait(4) == 2.0  # 4 patches ahead, two at a time
            await first
        finally:
            await batcher.stop()

    asyncio.run(run())


def test_a_small_request_is_not_stuck_behind_long_ones(session: ModelSession) -> None:
    async def run() -> tuple[list[str], int]:
        batcher = Batcher(
            session, max_batch_size=4, max_queue_delay_seconds=0.001, max_queue_patches=1000
        )
        batcher.start()
        finished: list[str] = []
        left_when_small_finished = -1

        async def track(name: str, patches: Patches) -> None:
            nonlocal left_when_small_finished
            await batcher.infer(patches)
            finished.append(name)
            if name == "small":
                left_when_small_finished = batcher.pending_patches

        try:
            longs = [
                asyncio.ensure_future(track(f"long{i}", _patches(session, 300, i)))
                for i in range(3)
            ]  # 3 x 101 patches
            while not 0 < batcher.pending_patches < 303:  # queued and being served
                await asyncio.sleep(0)
            await track("small", _patches(session, 1, 9))
            await asyncio.gather(*longs)
        finally:
            await batcher.stop()
        return finished, left_when_small_finished

    finished, left = asyncio.run(run())
    assert finished[0] == "small"
    assert left > 100  # most of the long requests' patches were still queued


def test_admission_counts_the_work_ahead_not_the_request_itself(session: ModelSession) -> None:
    async def run() -> None:
        # A long collection window keeps the first request queued while the others ask in.
        batcher = _admission_batcher(session, 0.5)
        batcher.start()
        try:
            assert batcher.expected_wait(301) == 0  # a 900 s track on an idle model
            first = asyncio.ensure_future(batcher.infer(_patches(session, 30, 0)))  # 11 patches
            await asyncio.sleep(0.01)
            assert batcher.expected_wait(1) == 1.0  # one patch of the first ahead of it
            assert batcher.expected_wait(4) == 4.0
            before = _refused(session, "overloaded", "after_decode")
            with pytest.raises(OverloadedError) as refused:
                await batcher.infer(_patches(session, 30, 1))  # 11 patches: 11 s ahead
            assert refused.value.retry_after_seconds == pytest.approx(6.0)
            assert _refused(session, "overloaded", "after_decode") == before + 1
            small = await batcher.infer(_patches(session, 1, 2))  # 1 s ahead: admitted
            assert len(small.outputs["probabilities"]) == 1
            assert len((await first).outputs["probabilities"]) == 11
        finally:
            await batcher.stop()

    asyncio.run(run())


def test_patches_waiting_past_the_deadline_are_refused(session: ModelSession) -> None:
    async def run() -> None:
        # The batch never fills, so the patches wait the whole window: longer than the deadline.
        batcher = Batcher(
            session,
            max_batch_size=512,
            max_queue_delay_seconds=0.3,
            max_queue_patches=1000,
            deadline_seconds=0.1,
        )
        batcher.start()
        try:
            before = _batched_patches(session)
            refused_before = _refused(session, "deadline_exceeded", "deadline")
            with pytest.raises(DeadlineExceededError) as refused:
                await batcher.infer(_patches(session, 30, 0))
            assert refused.value.retryable
            assert _batched_patches(session) == before  # refused, not served late
            assert batcher.pending_patches == 0
            assert _refused(session, "deadline_exceeded", "deadline") == refused_before + 1
        finally:
            await batcher.stop()

    asyncio.run(run())


def test_a_requests_own_deadline_refuses_it_alone(session: ModelSession) -> None:
    """A request's ``deadline_seconds`` (a /v2 ``timeout``) shorter than the batcher's refuses
    that request only; one queued beside it without its own waits the batcher's deadline."""

    async def run() -> None:
        batcher = Batcher(
            session,
            max_batch_size=512,
            max_queue_delay_seconds=0.2,  # the batch never fills: every patch waits 0.2 s
            max_queue_patches=1000,
            deadline_seconds=10.0,
        )
        batcher.start()
        try:
            hurried = asyncio.ensure_future(
                batcher.infer(_patches(session, 30, 0), deadline_seconds=0.05)
            )
            patient = asyncio.ensure_future(batcher.infer(_patches(session, 30, 1)))
            with pytest.raises(DeadlineExceededError) as refused:
                await hurried
            assert "the request's timeout of 0.05 s" in refused.value.message
            assert len((await patient).outputs["probabilities"]) == 11
        finally:
            await batcher.stop()

    asyncio.run(run())


def test_an_idle_model_gives_its_memory_back_once(session: ModelSession) -> None:
    def releases() -> float:
        labels = {"model": session.name}
        return REGISTRY.get_sample_value("taggram_memory_releases_total", labels) or 0.0

    async def run() -> None:
        batcher = Batcher(
            session, max_batch_size=4, max_queue_delay_seconds=0.001, max_queue_patches=100
        )
        batcher.start()
        try:
            before = releases()
            await batcher.infer(_patches(session, 9, 0))
            for _ in range(300):  # it comes after IDLE_RELEASE_SECONDS without work
                if releases() > before:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(IDLE_RELEASE_SECONDS + 0.5)
            assert releases() == before + 1  # not again while nothing ran
            second = await batcher.infer(_patches(session, 9, 1))  # and it still works
            assert len(second.outputs["probabilities"]) == 4
        finally:
            await batcher.stop()

    asyncio.run(run())


@pytest.mark.parametrize(("priority", "most_low_rows"), [(1, 8), (2, None)])
def test_a_higher_priority_request_goes_ahead_of_queued_lower_ones(
    session: ModelSession, priority: int, most_low_rows: int | None
) -> None:
    """Three long default-level (2) requests are being served, 4 rows a batch on one worker,
    when an 11-patch request arrives. At level 1 it takes whole batches (4, 4, 3 + 1 low row):
    a handful of the long requests' rows run meanwhile (the batch already running, and one
    formed before its rows are read back). At their own level round-robin gives it one row of
    each batch, so 11 batches run and about 30 of the long requests' rows with it: the count,
    not a time, tells the two apart."""

    async def run() -> int:
        batcher = Batcher(
            session, max_batch_size=4, max_queue_delay_seconds=0.001, max_queue_patches=1000
        )
        batcher.start()
        try:
            longs = [batcher.infer(_patches(session, 300, i)) for i in range(3)]  # 3 x 101
            queued = asyncio.gather(*longs)
            while not 0 < batcher.pending_patches < 303:  # queued and being served
                await asyncio.sleep(0)
            before = batcher.pending_patches
            urgent = await batcher.infer(_patches(session, 30, 9), priority=priority)
            low_rows = before - batcher.pending_patches
            assert len(urgent.outputs["probabilities"]) == 11
            await queued
        finally:
            await batcher.stop()
        return low_rows

    low_rows = asyncio.run(run())
    if most_low_rows is not None:
        assert low_rows <= most_low_rows
    else:
        assert low_rows >= 3 * 10 - 4  # ten more batches of 4 share rows with three long ones


def test_admission_counts_higher_levels_in_full_and_lower_ones_not_at_all(
    session: ModelSession,
) -> None:
    """A level-1 request waits for level-1 work only; a level-2 one for all of level 1's and
    its round-robin share of level 2's. The collection window is never reached: the requests
    stay queued until the batcher stops, whatever the machine's speed."""

    async def run() -> None:
        batcher = _admission_batcher(session, 3600.0)
        batcher.start()
        queued = []
        try:
            assert (batcher.priority_levels, batcher.default_priority_level) == (2, 2)
            low, high = _patches(session, 30, 0), _patches(session, 9, 1)
            assert (len(low), len(high)) == (11, 4)
            queued.append(asyncio.ensure_future(batcher.infer(low)))  # the default level, 2
            await asyncio.sleep(0)
            assert batcher.expected_wait(3) == batcher.expected_wait(3, 2) == 3.0
            assert batcher.expected_wait(3, 0) == 3.0  # Triton's 0: the default level
            assert batcher.expected_wait(3, 1) == 0.0  # level 2 does not hold level 1 up
            queued.append(asyncio.ensure_future(batcher.infer(high, priority=1)))
            await asyncio.sleep(0)
            assert batcher.expected_wait(3, 1) == 3.0  # round-robin within level 1
            assert batcher.expected_wait(3, 2) == 4.0 + 3.0  # all of level 1, then its share
            # 11 level-2 patches: 4 of level 1 and 10 of level 2 would come first, over the
            # budget; at level 1 only the 4 ahead count.
            with pytest.raises(OverloadedError):
                await batcher.infer(_patches(session, 30, 2))
            batcher.admit(11, "after_decode", priority=1)
            with pytest.raises(ValueError, match="priority 3"):
                batcher.level(3)
        finally:
            await batcher.stop()
        for request in queued:  # refused as the batcher stopped, never served
            with pytest.raises(NotReadyError):
                await request

    asyncio.run(run())


def test_rows_waiting_half_their_deadline_are_served_as_the_highest_level(
    session: ModelSession,
) -> None:
    """Strict priority would let level 1 hold level 2 back until its deadline refused it. With
    the loop not started (nothing runs), batches are formed by hand at chosen instants: before
    half its deadline a level-2 request gets no row while level 1 fills the batch; after it, it
    shares the batch with level 1 round-robin, and once served waits its turn again."""

    async def run() -> None:
        batcher = Batcher(
            session,
            max_batch_size=4,
            max_queue_delay_seconds=0.001,
            max_queue_patches=1000,
            deadline_seconds=10.0,
        )
        requests = [
            asyncio.ensure_future(batcher.infer(_patches(session, 30, 0))),  # level 2
            asyncio.ensure_future(batcher.infer(_patches(session, 300, 1), priority=1)),
        ]
        await asyncio.sleep(0)
        low, high = batcher._jobs
        start = low.waiting_since

        def taken(now: float) -> dict[int, int]:
            rows = {1: 0, 2: 0}
            for part in batcher._take(now, 4):
                rows[part.job.priority] += part.count
            return rows

        try:
            assert taken(start) == {1: 4, 2: 0}
            assert taken(start + 0.9 * PROMOTE_AFTER * 10.0) == {1: 4, 2: 0}
            promoted = start + PROMOTE_AFTER * 10.0
            assert taken(promoted) == {1: 2, 2: 2}  # its slot resets its wait
            assert taken(promoted + 0.1) == {1: 4, 2: 0}
            assert high.remaining == 101 - 14 and low.remaining == 11 - 2
        finally:
            await batcher.stop()
        for request in requests:
            with pytest.raises(NotReadyError):
                await request

    asyncio.run(run())


def _ragged_session(tmp_path: Path) -> ModelSession:
    """A real model whose ``embedding`` is ``[batch, batch]`` (each patch's frame means against
    every patch's): its rows from two batches of different sizes cannot share one buffer."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    frames = PATCH.samples // 256
    nodes = [
        helper.make_node("Reshape", ["waveform", "shape"], ["framed"]),
        helper.make_node("ReduceMean", ["framed", "axis"], ["means"], keepdims=0),
        helper.make_node("Transpose", ["means"], ["across"]),
        helper.make_node("MatMul", ["means", "across"], ["embedding"]),
        helper.make_node("ReduceMean", ["means", "axis"], ["mean"], keepdims=1),
        helper.make_node("Sigmoid", ["mean"], ["probabilities"]),
    ]
    initializers = [
        helper.make_tensor("shape", onnx.TensorProto.INT64, [3], [-1, frames, 256]),
        helper.make_tensor("axis", onnx.TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(
        nodes,
        "ragged",
        [helper.make_tensor_value_info("waveform", onnx.TensorProto.FLOAT, ["b", PATCH.samples])],
        [
            helper.make_tensor_value_info("probabilities", onnx.TensorProto.FLOAT, ["b", 1]),
            helper.make_tensor_value_info("embedding", onnx.TensorProto.FLOAT, ["b", "b"]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    write_model(tmp_path, tiny_metadata(), model.SerializeToString())
    entry = load_repository(tmp_path)["tiny"]
    return ModelSession(entry, choose_providers([]), intra_op_threads=1, inter_op_threads=1)


def test_rows_that_do_not_fit_fail_the_request_instead_of_hanging(tmp_path: Path) -> None:
    # Rows go back on the event loop; a copy that fails there must still answer the request.
    session = _ragged_session(tmp_path)
    patches = _patches(session, 60, 0)  # batches of 16 and 4: embedding rows 16 then 4 wide

    async def run() -> None:
        batcher = Batcher(
            session, max_batch_size=16, max_queue_delay_seconds=0.01, max_queue_patches=100
        )
        batcher.start()
        try:
            async with asyncio.timeout(30):
                with pytest.raises(InferenceFailedError, match="inference failed on tiny"):
                    await batcher.infer(patches)
        finally:
            await batcher.stop()

    asyncio.run(run())
