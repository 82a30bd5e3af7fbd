"""Per-network inference statistics since the process started, read from the metrics.

What Triton's statistics extension reports for a model (``GET /v2/models/stats``), computed from
the Prometheus collectors the batcher records into (:mod:`taggram.service.metrics`), so the two
never disagree and nothing is counted twice. Every request that reaches a network's batcher
counts, ``/v1`` uploads (their patches) and ``/v2`` tensors (their rows) alike; a custom model's
requests count under its base network, which runs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from taggram.service import metrics


@dataclass(frozen=True)
class Duration:
    """How many times something happened and the seconds it took in all."""

    count: int
    seconds: float


@dataclass(frozen=True)
class NetworkStatistics:
    """One network's cumulative statistics.

    ``inference_count``: patches (batch rows) inferred; ``execution_count``: batches run.
    ``success`` and ``fail``: requests handed to the batcher and their time there, from queued
    to rows back or to the failure (refused after decoding, past the deadline, inference failed,
    client gone, shutting down). ``queue``: the successful requests' time waiting for batch
    slots. Per batch: ``compute_input``, copying its patches in; ``compute_infer``, its time in
    ONNX Runtime; ``compute_output``, copying its output rows back to their requests.
    ``last_inference``: when the last batch finished, seconds since the epoch (``None`` before
    the first).
    """

    name: str
    inference_count: int
    execution_count: int
    success: Duration
    fail: Duration
    queue: Duration
    compute_input: Duration
    compute_infer: Duration
    compute_output: Duration
    last_inference: float | None


def network_statistics(name: str) -> NetworkStatistics:
    """The statistics of network ``name`` (all zero for one that has served nothing)."""

    def requests(outcome: str) -> Duration:
        histogram = metrics.NETWORK_REQUEST_DURATION
        prefix = "taggram_network_request_duration_seconds"
        return Duration(
            int(metrics.total(histogram, f"{prefix}_count", model=name, outcome=outcome)),
            metrics.total(histogram, f"{prefix}_sum", model=name, outcome=outcome),
        )

    def copied(direction: str) -> float:
        counter = metrics.BATCH_COPY_SECONDS
        sample = "taggram_batch_copy_seconds_total"
        return metrics.total(counter, sample, model=name, direction=direction)

    batches = metrics.INFERENCE_DURATION  # labelled by provider too: summed over it
    executions = int(metrics.total(batches, "taggram_inference_duration_seconds_count", model=name))
    success = requests("success")
    queued = metrics.total(
        metrics.NETWORK_QUEUE_SECONDS, "taggram_network_queue_seconds_total", model=name
    )
    last = metrics.total(
        metrics.LAST_INFERENCE, "taggram_last_inference_timestamp_seconds", model=name
    )
    return NetworkStatistics(
        name=name,
        inference_count=int(metrics.total(metrics.PATCHES, "taggram_patches_total", model=name)),
        execution_count=executions,
        success=success,
        fail=requests("fail"),
        # Each successful request waited in the queue once (as Triton counts it).
        queue=Duration(success.count, queued),
        compute_input=Duration(executions, copied("in")),
        compute_infer=Duration(
            executions,
            metrics.total(batches, "taggram_inference_duration_seconds_sum", model=name),
        ),
        compute_output=Duration(executions, copied("out")),
        last_inference=last or None,
    )
