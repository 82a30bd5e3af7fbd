"""Decode slots: at most ``slots`` uploads decode at once, each on its own worker thread.

A decode holds its upload's decoded audio (64 kB per second at 16 kHz: 58 MB for a 15-minute
track) and the decoder's and resampler's buffers. Handed to ``asyncio.to_thread``, decodes ran on
Python's default executor, ``min(32, os.cpu_count() + 4)`` threads, where a container counts the
node's cores and not its CPU limit: a 2-CPU pod on a 64-core node decoded 32 uploads at once,
each at a sixteenth of the speed, holding 32 decodes' memory. :class:`DecodeSlots` runs them on
``slots`` threads (``TAGGRAM_DECODE_SLOTS``, by default the usable cores); further uploads wait,
in arrival order, and waiting counts against the batch queue's budgets:

- admission: a request is refused with :class:`OverloadedError` (429, before its body is read
  and again before it decodes) when the decodes ahead of it, at the measured seconds one decode
  holds its slot, would keep it waiting longer than ``budget_seconds``;
- deadline: an upload that waits longer than ``deadline_seconds`` for a slot is refused with
  :class:`DeadlineExceededError` (429) instead of being decoded late.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from taggram.service import metrics
from taggram.service.errors import DeadlineExceededError, OverloadedError

P = ParamSpec("P")
T = TypeVar("T")

# Weight of the newest decode in the running estimate of the seconds a decode holds its slot.
_COST_SMOOTHING = 0.2


class DecodeSlots:
    """Runs blocking decodes ``slots`` at a time, refusing what would wait past the budgets.

    ``budget_seconds`` and ``deadline_seconds`` are the queue budget and deadline
    (``TAGGRAM_QUEUE_BUDGET_SECONDS``, ``TAGGRAM_QUEUE_DEADLINE_SECONDS``); ``math.inf`` waits
    as long as it takes (in-process tagging, where every file is the run's own).
    """

    def __init__(
        self,
        slots: int,
        *,
        budget_seconds: float = math.inf,
        deadline_seconds: float = math.inf,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.slots = slots
        self.budget = budget_seconds
        self.deadline = deadline_seconds
        self._executor = ThreadPoolExecutor(slots, thread_name_prefix="decode")
        self._free = asyncio.Semaphore(slots)
        self._waiting = 0
        self._running = 0
        # Measured from the first decode on; until then nothing is refused by estimate (the
        # deadline still holds).
        self.seconds_per_decode = 0.0

    @property
    def running(self) -> int:
        """Decodes holding a slot now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Uploads waiting for a slot now."""
        return self._waiting

    def expected_wait(self) -> float:
        """Seconds a new upload would wait for a slot: the decodes ahead of it beyond the free
        slots, at the measured seconds per decode, ``slots`` of them at once."""
        ahead = self._running + self._waiting - self.slots + 1
        return max(0, ahead) * self.seconds_per_decode / self.slots

    def admit(self, model: str, stage: str) -> None:
        """Raise :class:`OverloadedError` if a new upload would wait past the budget for a slot.

        ``model`` and ``stage`` (``before_body``, ``before_decode``) label the refusal in
        ``taggram_refused_total``.
        """
        wait = self.expected_wait()
        if wait > self.budget:
            metrics.REFUSED.labels(model=model, code=OverloadedError.code, stage=stage).inc()
            raise OverloadedError(
                f"{self._running + self._waiting} uploads are decoding or waiting to: this one "
                f"would wait about {wait:.1f} s to decode, more than the budget of "
                f"{self.budget:g} s",
                retry_after_seconds=wait - self.budget,
            )

    async def run(
        self, model: str, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``function(*args, **kwargs)`` on a decode thread once a slot is free.

        A cancelled call (its client went away) gives up its place in the wait, or, once
        running, waits for its thread to finish before it re-raises, however often it is
        cancelled meanwhile: the thread reads the request's upload, which the route closes
        once the call is over.

        Raises:
            OverloadedError: the expected wait passes the budget (nothing runs).
            DeadlineExceededError: no slot came free within the deadline (nothing runs).
        """
        self.admit(model, "before_decode")
        self._waiting += 1
        metrics.DECODES_WAITING.inc()
        started = time.perf_counter()
        try:
            async with asyncio.timeout(None if math.isinf(self.deadline) else self.deadline):
                await self._free.acquire()
        except TimeoutError:
            metrics.REFUSED.labels(
                model=model, code=DeadlineExceededError.code, stage="decode_deadline"
            ).inc()
            raise DeadlineExceededError(
                f"waited {time.perf_counter() - started:.1f} s for one of the {self.slots} "
                f"decode slots, more than the deadline of {self.deadline:g} s",
                retry_after_seconds=self.expected_wait(),
            ) from None
        finally:
            self._waiting -= 1
            metrics.DECODES_WAITING.dec()
        self._running += 1
        metrics.DECODES_RUNNING.inc()
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(
                self._executor, functools.partial(function, *args, **kwargs)
            )
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                # Cancelled again meanwhile (a caller cancelling its tasks after gather has
                # cancelled them), it still waits: the route closes the upload once we return.
                while not work.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([work])
                if not work.cancelled():
                    work.exception()  # the client is gone: its decode's error is nobody's to log
                raise
        finally:
            self._running -= 1
            metrics.DECODES_RUNNING.dec()
            self._free.release()
            seconds = time.perf_counter() - started
            smoothing = _COST_SMOOTHING if self.seconds_per_decode else 1.0  # the first: as is
            self.seconds_per_decode += smoothing * (seconds - self.seconds_per_decode)

    def close(self) -> None:
        """Stop the decode threads once the decodes running now have finished."""
        self._executor.shutdown(wait=True)
