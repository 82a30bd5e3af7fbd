"""The dynamic batcher: packs patches from concurrent requests into full inference batches, fairly.

One :class:`Batcher` per model is the only owner of that model's queue. Requests hand it their
patches and await a future; a single loop task fills each batch of up to ``max_batch_size``
patches round-robin across the requests waiting (one patch from each in turn, and requests left
out of a full batch go first next time), so a short request is served within about one batch
time however many patches long tracks have queued. The loop waits at most ``max_queue_delay`` for
a batch to fill, runs ONNX Runtime in a worker thread, and writes each output row back into the
owning request's buffers on the event loop: a request's state (buffers, counts, cancellation) is
touched by the loop alone, never by a worker thread. (Two batches of one request may run at once;
when both their threads wrote back, each could create the request's buffers, and the rows of the
one whose buffer was replaced were lost, leaving ``np.empty`` garbage in the answer: NaN, or
finite and wrong.) On a CPU it keeps up to ``workers`` batches in flight at once, each on
its own thread (and its own ONNX Runtime threads): independent batches keep every core busy while
requests decode beside them, where one batch over several threads stalls at each operator's
barrier whenever another thread takes a core (benchmarks/http_benchmark.py, docs/performance.md).
With fewer patches queued than a full batch per free worker, the queue is split evenly among the
free workers, so a lone request still uses every core.

Admission is by expected wait, not queue length: the batcher keeps a measured cost per patch (in
seconds, from full batches) and refuses a request with :class:`OverloadedError` (429) when the
work that round-robin would serve before it finishes (every other request's remaining patches, up
to its own count) passes ``queue_budget_seconds``. A request's own compute never counts against
it, so a 900 s track is admitted on an idle service. The queue is also bounded in patches
(``max_queue_patches``), a hard memory bound. A request whose patches wait longer than
``deadline_seconds`` for a batch slot is refused with :class:`DeadlineExceededError` instead of
being served late. A request cancelled while waiting (its client disconnected) has its remaining
patches dropped before inference. A model idle for :data:`IDLE_RELEASE_SECONDS` gives its
inference memory back (:meth:`ModelSession.release_memory`).

Priority, as Triton's dynamic batcher gives it (``dynamic_batching { priority_levels,
default_priority_level }`` and the request's ``priority``): :data:`PRIORITY_LEVELS` levels, 1 the
highest, a request without one at :data:`DEFAULT_PRIORITY_LEVEL`. Each batch is filled from the
highest level with rows queued first, round-robin among that level's requests as above, and only
the rows it leaves go to the next level, so a high-priority request does not wait behind a
lower one's patches (bar promoted ones, below), and fairness between requests holds within each
level. Strict priority alone
would let a steady stream of high-priority work hold lower levels back until their deadline
refuses them, although they were admitted; Triton leaves that to per-level timeouts. Here a
request whose rows have waited half its deadline for a batch slot (:data:`PROMOTE_AFTER`, from
the same origin as the deadline) is served as if at the highest level until it gets one, so every
admitted request keeps moving and reaches a slot well before its deadline while the highest level
itself keeps up (admission bounds that). Admission counts the work a request's level will really
wait for: every higher-level request's remaining patches, and its own level's round-robin share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from taggram.service import metrics
from taggram.service.audio.patching import PatchSource
from taggram.service.errors import (
    DeadlineExceededError,
    InferenceFailedError,
    NotReadyError,
    OverloadedError,
    TaggramError,
)
from taggram.service.inference.session import ModelSession

log = logging.getLogger(__name__)

# Cost per patch assumed until the first full batch is measured (the session's warm-up usually
# provides a measured one), seconds.
DEFAULT_SECONDS_PER_PATCH = 0.05
# Weight of the newest full batch in the running cost estimate.
_COST_SMOOTHING = 0.2
# A model idle this long gives its inference memory back (ModelSession.release_memory): long
# enough that steady traffic with gaps between requests keeps the memory warm, seconds.
IDLE_RELEASE_SECONDS = 2.0
# Triton's dynamic_batching.priority_levels and default_priority_level: level 1 is served first.
# Two levels, requests without a priority (every /v1 upload) at the lower: a /v2 client may move
# its rows ahead of the default traffic, and nothing queues behind it.
PRIORITY_LEVELS = 2
DEFAULT_PRIORITY_LEVEL = 2
# Rows that have waited this fraction of their deadline for a batch slot are served as if at
# level 1 (see the module's docstring): early enough that one round-robin turn among the highest
# level (bounded by admission) fits before the deadline.
PROMOTE_AFTER = 0.5


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
    waiting_since: float  # when it last got a batch slot (or was queued): the deadline's origin
    deadline: float  # the longest wait for a batch slot: the batcher's, or the request's if less
    priority: int  # 1 (the highest) .. PRIORITY_LEVELS
    taken: int = 0  # patches already put into a batch
    done: int = 0  # patches whose rows are back
    inference_seconds: float = 0.0  # wall time while any of its batches ran (counted once)
    batches_running: int = 0
    running_since: float = 0.0  # when the first of its running batches started
    cancelled: bool = False
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def remaining(self) -> int:
        return len(self.patches) - self.taken

    def level(self, now: float) -> int:
        """Its priority now: 1 once its rows have waited :data:`PROMOTE_AFTER` of its deadline
        for a batch slot (never, with no deadline), else its own."""
        promoted = now - self.waiting_since >= PROMOTE_AFTER * self.deadline
        return 1 if promoted else self.priority


@dataclass(frozen=True)
class _BatchTiming:
    """Seconds one batch spent being assembled and in ONNX Runtime (its worker thread's part)."""

    copy_in: float
    inference: float


@dataclass(frozen=True)
class _Slice:
    """Patches ``first .. first + count`` of ``job`` occupy batch rows ``row .. row + count``."""

    job: _Job
    first: int
    count: int
    row: int


def share_rows(remaining: list[int], rows: int) -> list[int]:
    """Round-robin shares of ``rows`` batch rows among queued requests, in queue order.

    Each request gets one row in turn until the batch is full or every request is exhausted, so
    shares differ by at most one and no request gets more than it has left. Returns one count per
    entry of ``remaining`` (zero for those left out of a full batch).
    """
    counts = [0] * len(remaining)
    active = [i for i, left in enumerate(remaining) if left > 0]
    while rows > 0 and active:
        still = []
        for i in active:
            if rows == 0:
                break
            counts[i] += 1
            rows -= 1
            if counts[i] < remaining[i]:
                still.append(i)
        active = still
    return counts


def share_rows_by_level(remaining: list[int], levels: list[int], rows: int) -> list[int]:
    """:func:`share_rows` level by level: the requests at the highest level (the smallest
    number in ``levels``, one per entry of ``remaining``) share ``rows`` round-robin in queue
    order, the rows they leave go to the next level, and so on. Returns one count per entry."""
    counts = [0] * len(remaining)
    for level in sorted(set(levels)):
        if rows == 0:
            break
        members = [i for i, own in enumerate(levels) if own == level]
        shares = share_rows([remaining[i] for i in members], rows)
        for i, count in zip(members, shares, strict=True):
            counts[i] = count
        rows -= sum(shares)
    return counts


def batch_size(pending: int, max_batch_size: int, free_workers: int) -> int:
    """Rows of the next batch: a full batch, or the queue split evenly among the free workers
    when it holds less than a full batch for each (so a lone request uses every worker)."""
    return max(1, min(max_batch_size, math.ceil(pending / max(free_workers, 1))))


class Batcher:
    """The one owner of a model's queue: fills batches fairly across waiting requests, admits
    by expected wait, runs each batch in a worker thread and hands rows back.
    """

    def __init__(
        self,
        session: ModelSession,
        max_batch_size: int,
        max_queue_delay_seconds: float,
        max_queue_patches: int,
        *,
        queue_budget_seconds: float = math.inf,
        deadline_seconds: float = math.inf,
        seconds_per_patch: float = DEFAULT_SECONDS_PER_PATCH,
        workers: int = 1,
    ) -> None:
        self.session = session
        self.max_batch_size = max_batch_size
        self.max_queue_delay = max_queue_delay_seconds
        self.max_queue_patches = max_queue_patches
        self.queue_budget = queue_budget_seconds
        self.deadline = deadline_seconds
        self.priority_levels = PRIORITY_LEVELS
        self.default_priority_level = DEFAULT_PRIORITY_LEVEL
        self._jobs: deque[_Job] = deque()
        self._pending = 0  # patches queued, not yet in a batch
        self._running = 0  # patches in the batches being inferred
        self.workers = workers
        self._in_flight: set[asyncio.Task[None]] = set()
        self._memory_in_use = False  # batches ran since the session last released its memory
        self._has_work = asyncio.Event()
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"infer-{session.name}")
        self._task: asyncio.Task[None] | None = None
        self._depth = metrics.QUEUE_DEPTH.labels(model=session.name)
        self._cost = metrics.SECONDS_PER_PATCH.labels(model=session.name)
        self._labels = {"model": session.name, "provider": session.provider}
        # Every request's outcome, recorded here alone (taggram.service.statistics reads them).
        self._succeeded = metrics.NETWORK_REQUEST_DURATION.labels(
            model=session.name, outcome="success"
        )
        self._failed = metrics.NETWORK_REQUEST_DURATION.labels(model=session.name, outcome="fail")
        self._queued = metrics.NETWORK_QUEUE_SECONDS.labels(model=session.name)
        self._last_inference = metrics.LAST_INFERENCE.labels(model=session.name)
        self._copied_in = metrics.BATCH_COPY_SECONDS.labels(model=session.name, direction="in")
        self._copied_out = metrics.BATCH_COPY_SECONDS.labels(model=session.name, direction="out")
        self.seconds_per_patch = seconds_per_patch

    @property
    def pending_patches(self) -> int:
        """Patches queued and not yet in a batch."""
        return self._pending

    @property
    def seconds_per_patch(self) -> float:
        """The measured inference time of one patch in a full batch on one worker, seconds
        (running average); the model serves ``workers`` such batches at once."""
        return self._seconds_per_patch

    @seconds_per_patch.setter
    def seconds_per_patch(self, value: float) -> None:
        self._seconds_per_patch = value
        self._cost.set(value)

    def start(self) -> None:
        """Start the batching loop on the running event loop."""
        self._task = asyncio.create_task(self._loop(), name=f"batcher-{self.session.name}")

    async def stop(self) -> None:
        """Stop the loop; anything still queued is refused as the service is going away."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._in_flight):
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(NotReadyError("the service is shutting down"))
        self._jobs.clear()
        self._executor.shutdown(wait=True)

    def level(self, priority: int | None) -> int:
        """The level a request's ``priority`` asks for: ``None`` or 0 (Triton's "default") is
        :attr:`default_priority_level`. Raises :class:`ValueError` outside ``0 ..
        priority_levels`` (the API refuses such a request before it gets here)."""
        if not priority:
            return self.default_priority_level
        if not 1 <= priority <= self.priority_levels:
            raise ValueError(f"priority {priority} is not in 0 .. {self.priority_levels}")
        return priority

    def expected_wait(self, count: int, priority: int | None = None) -> float:
        """Seconds of other requests' inference served before a new ``count``-patch request at
        ``priority`` (see :meth:`level`) ends.

        Every higher-level request's remaining patches are served first, and round-robin serves
        each request of the same level up to ``count`` of its patches before the new one's
        last, plus the batches already running, on ``workers`` batches at once; the new
        request's own patches and lower levels are not counted (rows promoted for having waited
        half their deadline may still come first: this is an estimate).
        """
        level = self.level(priority)
        ahead = sum(
            job.remaining if job.priority < level else min(job.remaining, count)
            for job in self._jobs
            if not job.cancelled and job.priority <= level
        )
        return (ahead + self._running) * self._seconds_per_patch / self.workers

    def admit(self, count: int, stage: str, priority: int | None = None) -> None:
        """Raise :class:`OverloadedError` if a ``count``-patch request at ``priority`` (see
        :meth:`level`) should not be queued now.

        ``stage`` labels the refusal in the metrics (``before_body``, ``after_decode``).
        """
        wait = self.expected_wait(count, priority)
        if wait > self.queue_budget:
            self._refuse(OverloadedError.code, stage, count)
            raise OverloadedError(
                f"{self.session.name} is busy: about {wait:.1f} s of queued work would run "
                f"before this request, more than the budget of {self.queue_budget:g} s",
                retry_after_seconds=wait - self.queue_budget,
            )
        if self._pending + count > self.max_queue_patches:
            self._refuse(OverloadedError.code, stage, count)
            raise OverloadedError(
                f"{self.session.name} has {self._pending} patches queued; retry later",
                retry_after_seconds=self._pending * self._seconds_per_patch / self.workers,
            )

    def _refuse(self, code: str, stage: str, patches: int) -> None:
        metrics.REFUSED.labels(model=self.session.name, code=code, stage=stage).inc()
        metrics.REFUSED_PATCHES.labels(model=self.session.name, code=code).inc(patches)

    async def infer(
        self,
        patches: PatchSource,
        *,
        deadline_seconds: float | None = None,
        priority: int | None = None,
    ) -> BatchResult:
        """Queue ``patches`` and wait for their rows.

        ``deadline_seconds``: this request's longest wait for a batch slot, when shorter than
        the batcher's ``deadline_seconds`` (a /v2 request's ``timeout``). ``priority``: its
        level, 1 the highest (a /v2 request's ``priority``); ``None`` or 0 for the default.

        Raises :class:`OverloadedError` when the expected wait or the queue is over its bound,
        :class:`DeadlineExceededError` when the patches wait too long for a batch slot. Each
        request is counted once, as a success or a failure (refused, late, failed, cancelled),
        with its time here, in ``taggram_network_request_duration_seconds``.
        """
        loop = asyncio.get_running_loop()
        # Every time here is perf_counter's, never loop.time(): under uvloop that counts whole
        # milliseconds, and these times are reported beside the workers' own.
        started = time.perf_counter()
        try:
            deadline = min(
                self.deadline, math.inf if deadline_seconds is None else deadline_seconds
            )
            result = await self._queue(patches, loop, deadline, self.level(priority))
        except BaseException:  # cancellation (the client went away) included
            self._failed.observe(time.perf_counter() - started)
            raise
        self._succeeded.observe(time.perf_counter() - started)
        self._queued.inc(result.queue_seconds)
        return result

    async def _queue(
        self, patches: PatchSource, loop: asyncio.AbstractEventLoop, deadline: float, level: int
    ) -> BatchResult:
        count = len(patches)
        self.admit(count, "after_decode", level)
        now = time.perf_counter()
        job = _Job(
            patches=patches,
            future=loop.create_future(),
            enqueued=now,
            waiting_since=now,
            deadline=deadline,
            priority=level,
        )
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

    def _fail(self, job: _Job, error: TaggramError) -> None:
        if not job.future.done():
            job.future.set_exception(error)
        self._drop(job)

    def _add_pending(self, count: int) -> None:
        self._pending += count
        self._depth.set(self._pending)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._forget_taken()
            if not self._jobs:
                self._has_work.clear()
                if self._memory_in_use and not self._in_flight:
                    try:
                        async with asyncio.timeout(IDLE_RELEASE_SECONDS):  # see below: no wait_for
                            await self._has_work.wait()
                    except TimeoutError:
                        await loop.run_in_executor(self._executor, self.session.release_memory)
                        self._memory_in_use = False
                        if self.session.release_memory_when_idle:
                            metrics.MEMORY_RELEASES.labels(model=self.session.name).inc()
                    continue
                await self._has_work.wait()  # a request, or a batch finishing
                continue
            if len(self._in_flight) >= self.workers:
                self._has_work.clear()
                await self._has_work.wait()
                continue
            deadline = min(job.waiting_since for job in self._jobs) + self.max_queue_delay
            while (
                self._pending < self.max_batch_size and (wait := deadline - time.perf_counter()) > 0
            ):
                self._has_work.clear()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that lands as the wait ends (gh-86296), and stop() then hangs.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._has_work.wait()
            self._expire(time.perf_counter())
            free = self.workers - len(self._in_flight)
            slices = self._take(
                time.perf_counter(), batch_size(self._pending, self.max_batch_size, free)
            )
            if slices:
                task = asyncio.create_task(self._execute(slices))
                self._in_flight.add(task)
                task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._has_work.set()

    def _expire(self, now: float) -> None:
        """Refuse queued requests that have waited longer than their deadline for a batch slot."""
        for job in self._jobs:
            waited = now - job.waiting_since
            if job.remaining and waited > job.deadline:
                whose = "the request's timeout" if job.deadline < self.deadline else "the deadline"
                self._refuse(DeadlineExceededError.code, "deadline", job.remaining)
                self._fail(
                    job,
                    DeadlineExceededError(
                        f"{self.session.name}: patches waited {waited:.3g} s for a batch slot, "
                        f"more than {whose} of {job.deadline:g} s",
                        retry_after_seconds=self.expected_wait(1, job.priority),
                    ),
                )

    def _forget_taken(self) -> None:
        """Forget jobs with nothing left to queue (all taken, or cancelled)."""
        if any(job.remaining == 0 for job in self._jobs):
            self._jobs = deque(job for job in self._jobs if job.remaining)

    def _take(self, now: float, size: int) -> list[_Slice]:
        """Fill one batch of up to ``size`` rows, the highest level first and round-robin within
        each (:func:`share_rows_by_level`); requests served move behind those left out this
        time."""
        jobs = list(self._jobs)
        levels = [job.level(now) for job in jobs]
        counts = share_rows_by_level([job.remaining for job in jobs], levels, size)
        slices: list[_Slice] = []
        rows = 0
        for job, count in zip(jobs, counts, strict=True):
            if count:
                slices.append(_Slice(job=job, first=job.taken, count=count, row=rows))
                job.taken += count
                job.waiting_since = now
                rows += count
        served = [job for job, count in zip(jobs, counts, strict=True) if count and job.remaining]
        left_out = [
            job for job, count in zip(jobs, counts, strict=True) if not count and job.remaining
        ]
        self._jobs = deque([*left_out, *served])
        self._add_pending(-rows)
        return slices

    async def _execute(self, slices: list[_Slice]) -> None:
        loop = asyncio.get_running_loop()
        size = slices[-1].row + slices[-1].count
        self._running += size
        self._memory_in_use = True
        started = time.perf_counter()
        for part in slices:
            if not part.job.batches_running:
                part.job.running_since = started
            part.job.batches_running += 1
        try:
            outputs, timing = await loop.run_in_executor(
                self._executor, self._run_batch, slices, size
            )
            copying = time.perf_counter()
            self._scatter(slices, outputs)  # inside the try: rows that do not fit fail the batch
            copy_out = time.perf_counter() - copying
        except asyncio.CancelledError:  # stop(): the service is going away
            for part in slices:
                self._fail(part.job, NotReadyError("the service is shutting down"))
            raise
        except Exception as error:  # an inference failure fails this batch's requests only
            log.exception("inference failed for a batch of %d on %s", size, self.session.name)
            # ONNX Runtime's message (node names, its source files) stays in the log above.
            failed = f"inference failed on {self.session.name}: {type(error).__name__}"
            for part in slices:
                self._fail(part.job, InferenceFailedError(failed))
            return
        finally:
            self._running -= size
        self._copied_out.inc(copy_out)
        seconds = timing.inference
        metrics.INFERENCE_DURATION.labels(**self._labels).observe(seconds)
        self._copied_in.inc(timing.copy_in)
        metrics.BATCH_SIZE.labels(**self._labels).observe(size)
        metrics.PATCHES.labels(model=self.session.name).inc(size)
        self._last_inference.set_to_current_time()
        if size == self.max_batch_size:
            # Partial batches cost more per patch; under load (when the estimate matters for
            # admission) batches are full, so only full ones update it.
            smoothing = _COST_SMOOTHING
            self.seconds_per_patch = (
                1 - smoothing
            ) * self._seconds_per_patch + smoothing * seconds / size
        now = time.perf_counter()
        for part in slices:
            job = part.job
            job.done += part.count
            job.batches_running -= 1
            if not job.batches_running:
                # Two workers running two of its batches at once take the time once: stage
                # times (decode, queue, inference) then add up to the request's own.
                job.inference_seconds += now - job.running_since
            if job.done == len(job.patches) and not job.future.done():
                queue_seconds = now - job.enqueued - job.inference_seconds
                job.future.set_result(
                    BatchResult(job.outputs, max(queue_seconds, 0.0), job.inference_seconds)
                )

    def _run_batch(
        self, slices: list[_Slice], size: int
    ) -> tuple[dict[str, np.ndarray], _BatchTiming]:
        """Worker thread: assemble the batch and run it; its outputs and the seconds of each.

        It reads the requests' patches (never written once queued) and nothing else of theirs:
        the rows go back on the event loop (:meth:`_scatter`)."""
        started = time.perf_counter()
        batch = np.empty((size, slices[0].job.patches.samples), np.float32)
        for part in slices:
            part.job.patches.copy_into(batch[part.row : part.row + part.count], part.first)
        assembled = time.perf_counter()
        outputs = self.session.run(batch)
        return outputs, _BatchTiming(assembled - started, time.perf_counter() - assembled)

    @staticmethod
    def _scatter(slices: list[_Slice], outputs: dict[str, np.ndarray]) -> None:
        """Event loop: copy each slice's rows of ``outputs`` into its request's buffers (made
        at the request's first batch back); a cancelled request's rows are dropped."""
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
