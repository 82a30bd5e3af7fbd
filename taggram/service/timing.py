"""Per-request stage timings: measured once, reported in the body, ``Server-Timing`` and metrics."""

from __future__ import annotations

from dataclasses import dataclass

from taggram.service import metrics


@dataclass(frozen=True)
class StageTimes:
    """Seconds one request spent decoding, waiting in the batch queue, in inference, and in total.

    The API reports them in milliseconds (``api.schemas.Timings``) and as ``Server-Timing``.
    """

    decode: float
    queue: float
    inference: float
    total: float

    def milliseconds(self) -> dict[str, float]:
        """The stages in milliseconds, keyed as the response's ``timings``."""
        return {
            "decode_ms": round(self.decode * 1000, 3),
            "queue_ms": round(self.queue * 1000, 3),
            "inference_ms": round(self.inference * 1000, 3),
            "total_ms": round(self.total * 1000, 3),
        }

    def server_timing(self) -> str:
        """The ``Server-Timing`` header value (durations in milliseconds)."""
        stages = {
            "decode": self.decode,
            "queue": self.queue,
            "inference": self.inference,
            "total": self.total,
        }
        return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in stages.items())

    def observe(self, model: str) -> None:
        """Record the per-request stages in the histograms (inference is recorded per batch)."""
        metrics.DECODE_DURATION.observe(self.decode)
        metrics.QUEUE_WAIT.labels(model=model).observe(self.queue)
