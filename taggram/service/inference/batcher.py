"""The dynamic batcher: packs patches from concurrent requests into full inference batches.

One :class:`Batcher` per model is the only owner of that model's queue. Requests hand it their
patches and await a future; a single loop task takes up to ``max_batch_size`` patches (from one
or many requests; a request's patches may span several batches), waiting at most
``max_queue_delay`` for a batch to fill, runs ONNX Runtime in its own worker thread, and writes
each output row back into the owning request's buffers. The queue is bounded in patches: a
request that does not fit is refused at once with 429 instead of growing memory. A request
cancelled while waiting (its client disconnected) has its remaining patches dropped before
inference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from taggram.service import metrics
from taggram.service.audio.patching import PatchSource
from taggram.service.errors import InferenceFailedError, NotReadyError, OverloadedError
from taggram.service.inference.session import ModelSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchResult:
    """One request's output rows (one per patch, every model output) and where time went."""

    outputs: dict[str, np.ndarray]
    queue_seconds: float
    inference_seconds: float


@dataclass(eq=False)
class _Job:
    patches: PatchSource
    future: asyncio.Future[BatchResult]
    enqueued: float
    taken: int = 0  # patches already put into a batch
    done: int = 0  # patches whose rows are back
    inference_seconds: float = 0.0
    cancelled: bool = False
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return len(self.patches) - self.taken


@dataclass(frozen=True)
class _Slice:
    """Patches ``first .. first + count`` of ``job`` occupy batch rows ``row .. row + count``."""

    job: _Job
    first: int
    count: int
    row: int


class Batcher:
    def __init__(
        self,
        session: ModelSession,
        max_batch_size: int,
        max_queue_delay_seconds: float,
        max_queue_patches: int,
    ) -> None:
        self.session = session
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay_seconds
        self.max_queue_patches = max_queue_patches
        self._jobs: deque[_Job] = deque()
        self._pending = 0  # patches queued, not yet in a batch
        self._has_work = asyncio.Event()
        self._seconds_per_patch = 0.05  # running estimate, for Retry-After
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"infer-{session.name}")
        self._task: asyncio.Task[None] | None = None
        self._depth = metrics.QUEUE_DEPTH.labels(model=session.name)
        self._labels = {"model": session.name, "provider": session.provider}

    @property
    def pending_patches(self) -> int:
        return self._pending

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"batcher-{self.session.name}")

    async def stop(self) -> None:
        """Stop the loop; anything still queued is refused as the service is going away."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(NotReadyError("the service is shutting down"))
        self._jobs.clear()
        self._executor.shutdown(wait=True)

    async def infer(self, patches: PatchSource) -> BatchResult:
        """Queue ``patches`` and wait for their rows; raises :class:`OverloadedError` when full."""
        count = len(patches)
        if self._pending + count > self.max_queue_patches:
            raise OverloadedError(
                f"{self.session.name} has {self._pending} patches queued; retry later",
                retry_after_seconds=self._pending * self._seconds_per_patch,
            )
        loop = asyncio.get_running_loop()
        job = _Job(patches=patches, future=loop.create_future(), enqueued=loop.time())
        self._jobs.append(job)
        self._add_pending(count)
        self._has_work.set()
        try:
            return await job.future
        except asyncio.CancelledError:
            self._drop(job)
            raise

    def _drop(self, job: _Job) -> None:
        """Forget a job's patches that are not in a batch yet; rows of running ones are ignored."""
        job.cancelled = True
        self._add_pending(-job.remaining)
        job.taken = len(job.patches)

    def _add_pending(self, count: int) -> None:
        self._pending += count
        self._depth.set(self._pending)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._drop_finished()
            if not self._jobs:
                self._has_work.clear()
                await self._has_work.wait()
                continue
            deadline = self._jobs[0].enqueued + self.max_queue_delay
            while self._pending < self.max_batch_size and (wait := deadline - loop.time()) > 0:
                self._has_work.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._has_work.wait(), wait)
            slices = self._take()
            if slices:
                await self._execute(slices)

    def _drop_finished(self) -> None:
        """Forget jobs at the front that have nothing left to queue (taken or cancelled)."""
        while self._jobs and self._jobs[0].remaining == 0:
            self._jobs.popleft()

    def _take(self) -> list[_Slice]:
        slices: list[_Slice] = []
        rows = 0
        for job in self._jobs:
            if rows == self.max_batch_size:
                break
            count = min(job.remaining, self.max_batch_size - rows)
            if count:
                slices.append(_Slice(job=job, first=job.taken, count=count, row=rows))
                job.taken += count
                rows += count
        self._add_pending(-rows)
        self._drop_finished()
        return slices

    async def _execute(self, slices: list[_Slice]) -> None:
        loop = asyncio.get_running_loop()
        size = slices[-1].row + slices[-1].count
        try:
            seconds = await loop.run_in_executor(self._executor, self._run_batch, slices, size)
        except Exception as error:  # an inference failure fails this batch's requests only
            log.exception("inference failed for a batch of %d on %s", size, self.session.name)
            for part in slices:
                if not part.job.future.done():
                    part.job.future.set_exception(
                        InferenceFailedError(f"inference failed: {error}")
                    )
                    self._drop(part.job)
            return
        metrics.INFERENCE_DURATION.labels(**self._labels).observe(seconds)
        metrics.BATCH_SIZE.labels(**self._labels).observe(size)
        metrics.PATCHES.labels(model=self.session.name).inc(size)
        self._seconds_per_patch = 0.8 * self._seconds_per_patch + 0.2 * seconds / size
        now = loop.time()
        for part in slices:
            job = part.job
            job.done += part.count
            job.inference_seconds += seconds
            if job.done == len(job.patches) and not job.future.done():
                queue_seconds = now - job.enqueued - job.inference_seconds
                job.future.set_result(
                    BatchResult(job.outputs, max(queue_seconds, 0.0), job.inference_seconds)
                )

    def _run_batch(self, slices: list[_Slice], size: int) -> float:
        """Worker thread: assemble the batch, run it, copy rows back. Returns inference seconds."""
        batch = np.empty((size, slices[0].job.patches.samples), np.float32)
        for part in slices:
            part.job.patches.copy_into(batch[part.row : part.row + part.count], part.first)
        started = time.perf_counter()
        outputs = self.session.run(batch)
        seconds = time.perf_counter() - started
        for part in slices:
            if part.job.cancelled:
                continue
            total = len(part.job.patches)
            for name, values in outputs.items():
                rows = part.job.outputs.get(name)
                if rows is None:
                    rows = part.job.outputs[name] = np.empty(
                        (total, *values.shape[1:]), values.dtype
                    )
                rows[part.first : part.first + part.count] = values[
                    part.row : part.row + part.count
                ]
        return seconds
