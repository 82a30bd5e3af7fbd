"""Every Prometheus collector of the service, in one place (names match the Grafana dashboard).

All live in prometheus_client's default registry; ``GET /metrics`` renders it. The service runs
one process per replica (the batcher must own its queue), so no multiprocess mode is needed.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.registry import Collector

# The ``*_created`` series double the exposition and no dashboard or alert reads them.
disable_created_metrics()

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# A whole request may take longer than any of its stages: a slow client's body alone may take
# the body timeout (300 s by default), and a 15-minute track's work about 90 s on 2 busy cores.
# Without these buckets such requests all fell in +Inf and latency quantiles stopped at 60 s.
_REQUEST_BUCKETS = (*_LATENCY_BUCKETS, 120.0, 300.0, 600.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

REQUESTS = Counter(
    "taggram_requests_total", "HTTP requests answered", ["route", "method", "status"]
)
REQUEST_DURATION = Histogram(
    "taggram_request_duration_seconds",
    "HTTP request duration, from first byte received to response sent",
    ["route"],
    buckets=_REQUEST_BUCKETS,
)
REQUESTS_IN_FLIGHT = Gauge("taggram_requests_in_flight", "HTTP requests being handled")
BODY_IN_FLIGHT_BYTES = Gauge(
    "taggram_body_in_flight_bytes",
    "request body bytes received and held (spooled) by the requests in flight",
)
DECODE_DURATION = Histogram(
    "taggram_decode_duration_seconds",
    "decoding, downmixing and resampling one upload",
    buckets=_LATENCY_BUCKETS,
)
DECODES_RUNNING = Gauge(
    "taggram_decodes_running", "uploads decoding now, at most TAGGRAM_DECODE_SLOTS"
)
DECODES_WAITING = Gauge(
    "taggram_decodes_waiting",
    "uploads waiting for one of the TAGGRAM_DECODE_SLOTS to decode in",
)
QUEUE_WAIT = Histogram(
    "taggram_queue_wait_seconds",
    "time one request's patches waited in the batch queue (not being inferred)",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
INFERENCE_DURATION = Histogram(
    "taggram_inference_duration_seconds",
    "one batch through ONNX Runtime",
    ["model", "provider"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "taggram_batch_size",
    "patches per inference batch",
    ["model", "provider"],
    buckets=_BATCH_BUCKETS,
)
PATCHES = Counter("taggram_patches_total", "patches inferred", ["model"])
# Per network (the batcher's model), for every request that reaches its batcher, /v1 and /v2
# alike: what the Open Inference Protocol's statistics extension reports (api/routes/triton.py).
NETWORK_REQUEST_DURATION = Histogram(
    "taggram_network_request_duration_seconds",
    "one request's patches in a network's batcher, from queued to their rows back (outcome "
    "success) or to the request's refusal, deadline, failure or cancellation (outcome fail)",
    ["model", "outcome"],
    buckets=_REQUEST_BUCKETS,
)
NETWORK_QUEUE_SECONDS = Counter(
    "taggram_network_queue_seconds_total",
    "seconds the successful requests' patches waited in a network's batch queue, not being "
    "inferred (per network and for /v2 too, where taggram_queue_wait_seconds is per /v1 result)",
    ["model"],
)
BATCH_COPY_SECONDS = Counter(
    "taggram_batch_copy_seconds_total",
    "seconds spent copying patches into a network's inference batches (direction in) and its "
    "output rows back to their requests (direction out), beside the batches' inference time",
    ["model", "direction"],
)
LAST_INFERENCE = Gauge(
    "taggram_last_inference_timestamp_seconds",
    "when a network's last inference batch finished, seconds since the epoch",
    ["model"],
)
AUDIO_SECONDS = Counter("taggram_audio_seconds_total", "seconds of audio tagged", ["model"])
QUEUE_DEPTH = Gauge("taggram_queue_depth", "patches waiting in the batch queue", ["model"])
ERRORS = Counter(
    "taggram_errors_total",
    "refusals and failures (whole requests and files of /v1/tag/batch), by the error body's code",
    ["code"],
)
MODEL_INFO = Gauge(
    "taggram_model_info", "loaded models (value 1)", ["model", "version", "provider"]
)
API_KEY_REQUESTS = Counter(
    "taggram_api_key_requests_total",
    "authenticated requests, by API key id (12 hex digits of the key's SHA-256, never the key)",
    ["key_id"],
)
AUTH_FAILURES = Counter(
    "taggram_auth_failures_total",
    "requests refused by authentication: missing or unknown key, a credential of another "
    "scheme than Bearer, or two different keys (401), or scope (403)",
    ["reason"],
)
SECONDS_PER_PATCH = Gauge(
    "taggram_seconds_per_patch",
    "measured inference cost of one patch in a full batch (admission's estimate), seconds",
    ["model"],
)
REFUSED = Counter(
    "taggram_refused_total",
    "requests refused for load: code overloaded or deadline_exceeded; stage before_body, "
    "before_decode or decode_deadline (waiting for a decode slot), after_decode or deadline "
    "(the batch queue)",
    ["model", "code", "stage"],
)
REFUSED_PATCHES = Counter(
    "taggram_refused_patches_total",
    "patches of refused requests that were never inferred",
    ["model", "code"],
)
REFUSED_DURATION = Histogram(
    "taggram_refused_duration_seconds",
    "time spent on a request before refusing it (408, 413, 429), by status",
    ["status"],
    buckets=_REQUEST_BUCKETS,
)
REFUSED_BODY_BYTES = Counter(
    "taggram_refused_body_bytes_total",
    "request body bytes received for requests then refused (408, 413, 429), by status",
    ["status"],
)
MEMORY_RELEASES = Counter(
    "taggram_memory_releases_total",
    "times an idle model gave its inference memory back (TAGGRAM_RELEASE_MEMORY_WHEN_IDLE)",
    ["model"],
)


def forget_model(name: str) -> None:
    """Drop the per-request series of a model no longer served (a deleted custom model).

    Custom models come and go under names clients choose, so without this, creating and
    deleting models would grow the exposition by a histogram per name for the process's life.
    The batcher's series are labelled by base model, which never goes away. No error when the
    model has no series."""
    QUEUE_WAIT.remove(name)
    AUDIO_SECONDS.remove(name)


def total(collector: Collector, sample: str, **labels: str) -> float:
    """The sum of ``collector``'s samples named ``sample`` (``taggram_patches_total``,
    ``..._count``, ``..._sum``) whose labels include ``labels``; 0.0 when none has been
    recorded."""
    wanted = labels.items()
    return sum(
        point.value
        for family in collector.collect()
        for point in family.samples
        if point.name == sample and wanted <= point.labels.items()
    )
