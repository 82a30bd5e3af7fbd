"""The service's one typed settings object, read from ``TAGGRAM_*`` environment variables.

``taggram serve`` exposes every field as a command-line option that overrides the environment;
the README's "Settings" table lists them all.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from taggram.repository import DEFAULT_REPOSITORY, ModelEntry, RepositoryError

LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["text", "json"]


CGROUP = Path("/sys/fs/cgroup")


def available_cores(cgroup: Path = CGROUP) -> int:
    """CPU cores this process may use: its CPU set (affinity), capped by a container's CPU limit
    rounded up (the CFS quota of ``cgroup``: a Kubernetes ``limits.cpu``, ``docker --cpus``),
    which the CPU set alone does not show: a 2-CPU pod on a 64-core node sees 64 cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    limit = cpu_limit(cgroup)
    return max(1, min(cores or 1, math.ceil(limit) if limit else cores or 1))


def cpu_limit(cgroup: Path = CGROUP) -> float | None:
    """The CPU limit in cores (``1.5``) from cgroup v2's ``cpu.max`` or v1's
    ``cpu/cpu.cfs_quota_us`` and ``cpu.cfs_period_us`` under ``cgroup``; ``None`` without one
    (no quota, or files that are missing or unreadable)."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()
        return int(quota) / int(period) if quota != "max" else None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


class SettingsError(ValueError):
    """A setting that passes its field's checks but that the service cannot start with: a
    malformed API key, an unreadable keys file, an ONNX Runtime provider that is not installed.
    Raised before the port opens, so that ``taggram serve`` says it in one line (exit 2)."""


class Settings(BaseSettings):
    """Every knob of the service; each field is the env var ``TAGGRAM_<FIELD NAME>``."""

    # Every float must be finite: an infinite timeout or budget is a typo, not a policy.
    model_config = SettingsConfigDict(
        env_prefix="TAGGRAM_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on")
    model_repository: Path = Field(
        DEFAULT_REPOSITORY, description="folder built by `taggram build-models`"
    )
    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated models to load (empty: every model in the repository)",
    )
    default_model: str = Field(
        "MTT_musicnn",
        description="model used when a request names none; unset, the first of --models that "
        "tags when they leave MTT_musicnn out",
    )
    max_batch_size: int = Field(
        8, ge=1, description="most patches per inference batch (on a CPU; see --gpu-max-batch-size)"
    )
    max_queue_delay_ms: float = Field(
        5.0, ge=0, le=60_000, description="longest wait for more patches before a partial batch"
    )
    max_queue_patches: int = Field(
        2048, ge=1, description="hard bound on patches queued per model (memory); over it: 429"
    )
    max_request_patches: int = Field(
        1024,
        ge=1,
        description="most patches one request (one file) may cut, capped at --max-queue-patches; "
        "more is refused with 422",
    )
    queue_budget_seconds: float = Field(
        10.0,
        gt=0,
        le=86_400,
        description="new requests get 429 when the queued work served before them "
        "(measured cost per patch) passes this",
    )
    queue_deadline_seconds: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="an upload that waits longer than this for a decode slot, or queued "
        "patches as long for a batch slot, are refused (429 deadline_exceeded)",
    )
    max_upload_bytes: int = Field(256 * 1024 * 1024, ge=1, description="largest accepted upload")
    max_batch_files: int = Field(32, ge=1, description="most files in one /v1/tag/batch request")
    batch_files_in_flight: int = Field(
        4,
        ge=1,
        description="files of one /v1/tag/batch request tagged at once (keeps the batcher fed "
        "without one batch request filling the shared queue)",
    )
    max_batch_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="largest accepted /v1/tag/batch request body"
    )
    max_body_bytes_in_flight: int = Field(
        2 * 1024 * 1024 * 1024,
        ge=1,
        description="most request-body bytes held at once by all requests together (spooled to "
        "the temporary folder past 1 MiB each); a body that would pass it gets 429 overloaded. "
        "At least --max-upload-bytes and --max-batch-bytes",
    )
    read_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=86_400,
        description="a request body that sends nothing this long, or a request whose line and "
        "headers are not complete this long after their first byte, gets 408 and its connection "
        "closed",
    )
    body_timeout_seconds: float = Field(
        300.0,
        gt=0,
        le=86_400,
        description="a request body not complete this long after the request began gets 408",
    )
    max_duration_seconds: float = Field(
        900.0, gt=0, le=86_400, description="longest accepted audio, counted on the decoded samples"
    )
    max_sample_rate: int = Field(
        192_000, ge=8000, description="highest native sample rate decoded (Hz); above it, 413"
    )
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated ONNX Runtime providers (empty: CUDA if available, else CPU)",
    )
    inference_workers: int = Field(
        default_factory=lambda: min(2, available_cores()),
        ge=1,
        description="batches a model infers at once on the CPU, each on its own threads "
        "(default: 2, or 1 on a single core; always 1 on a GPU provider or with I/O binding)",
    )
    decode_slots: int = Field(
        default_factory=available_cores,
        ge=1,
        description="uploads decoded at once, each holding its decoded audio (64 kB per second "
        "at 16 kHz); more wait for a slot within the queue budget and deadline (default: the "
        "usable cores, the CPU set capped by the container's CPU limit)",
    )
    intra_op_threads: int | None = Field(
        None,
        ge=1,
        description="ONNX Runtime threads per batch (empty: the usable cores, the CPU set capped "
        "by the container's CPU limit, divided among the inference workers, at least 1)",
    )
    inter_op_threads: int = Field(1, ge=1, description="ONNX Runtime inter-op threads")
    gpu_max_batch_size: int = Field(
        64,
        ge=1,
        description="most patches per inference batch for a model on a GPU (CUDA) provider, "
        "instead of --max-batch-size",
    )
    io_binding: Literal["auto", "on", "off"] = Field(
        "auto",
        description="ONNX Runtime I/O binding through reusable page-locked host buffers: auto "
        "(on a GPU provider only), on, off",
    )
    release_memory_when_idle: bool = Field(
        True,
        description="return ONNX Runtime's arena memory once a model has been idle for 2 s "
        "(false: keep every model's peak resident; see docs/deploy.md)",
    )
    warmup: bool = Field(True, description="run every model at start-up before reporting ready")
    drain_grace_seconds: float = Field(
        5.0,
        ge=0,
        le=3600,
        description="after SIGTERM: /readyz is 503 but requests are still served this long",
    )
    log_level: LogLevel = Field("info", description="uvicorn and service log level")
    log_format: LogFormat = Field(
        "text", description="log lines as text or as one JSON object each (with the request id)"
    )
    root_path: str = Field(
        "",
        description="path prefix the service is reached under behind a proxy that strips it "
        "(e.g. /taggram): the web page, /docs and the OpenAPI schema use it in their links",
    )
    keep_alive_seconds: int = Field(
        5,
        ge=1,
        le=3600,
        description="how long an idle keep-alive connection (or a new one before its first "
        "request) stays open; behind a load balancer "
        "longer than its idle timeout (ingress-nginx, AWS ALB: 60 s), or it may send a request on "
        "a connection the service is closing and answer 502",
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1,::1",
        min_length=1,
        description="comma-separated addresses or networks (10.0.0.0/8) of the proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed, so that the access log names the "
        "real client; * for any (only where nothing else reaches the port)",
    )
    custom_models: Path = Field(
        Path("custom_models"),
        description="writable folder of the custom models created through POST /v1/models "
        "(created if missing; share it between replicas on a ReadWriteMany volume)",
    )
    custom_models_poll_seconds: float = Field(
        5.0, gt=0, description="how often a replica rescans the custom-models folder"
    )
    max_custom_models: int = Field(100, ge=0, description="most custom models in the folder")
    max_custom_examples: int = Field(
        200, ge=2, description="most example files in one POST /v1/models request"
    )
    max_custom_classes: int = Field(50, ge=2, description="most classes (tags) of a custom model")
    max_custom_example_seconds: float = Field(
        30.0, gt=0, description="longest accepted example of a custom model"
    )

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="comma-separated API keys, each `key` (scope tag) or `key:admin`; "
        "any key turns authentication on for /v1 and /v2",
    )
    api_keys_file: Path | None = Field(
        None,
        description="file of API keys, one `key[:scope]` a line (`#` comments), e.g. a "
        "mounted Kubernetes Secret; read at start-up, added to TAGGRAM_API_KEYS",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated origins allowed to call the API from a browser "
        "(`*` for any); empty: CORS off",
    )
    max_json_tensor_elements: int = Field(
        1 << 20,
        ge=1,
        description="most tensor elements of a JSON /v2 inference request (binary tensors "
        "are bounded by --max-upload-bytes)",
    )

    @property
    def threads_per_batch(self) -> int:
        """ONNX Runtime intra-op threads for each batch: ``intra_op_threads``, or the cores
        divided among the ``inference_workers`` (at least 1)."""
        return self.intra_op_threads or max(1, available_cores() // self.inference_workers)

    @model_validator(mode="after")
    def _default_among_models(self) -> Self:
        """The default model must be served: left unset, it becomes the first of ``models``
        when they leave the built-in default out (the Tagger, which reads the repository, passes
        over feature extractors to the first that tags); set explicitly to a model outside them,
        the settings are refused (every request without ``model`` would get a 404)."""
        if not self.models or self.default_model in self.models:
            return self
        if "default_model" in self.model_fields_set:
            raise ValueError(
                f"default_model {self.default_model!r} (TAGGRAM_DEFAULT_MODEL) is not among the "
                f"models loaded, {', '.join(self.models)} (TAGGRAM_MODELS): add it to them, or "
                "leave default_model unset to use the first of them that tags"
            )
        # Frozen once validated: this is the one place the value is chosen.
        object.__setattr__(self, "default_model", self.models[0])
        return self

    @model_validator(mode="after")
    def _largest_body_fits_in_flight(self) -> Self:
        """One body at its limit must fit the budget of all bodies, or it is refused forever."""
        largest = max(self.max_upload_bytes, self.max_batch_bytes)
        if self.max_body_bytes_in_flight < largest:
            raise ValueError(
                f"max_body_bytes_in_flight {self.max_body_bytes_in_flight} "
                "(TAGGRAM_MAX_BODY_BYTES_IN_FLIGHT) is below the largest body a route accepts, "
                f"{largest} (TAGGRAM_MAX_UPLOAD_BYTES, TAGGRAM_MAX_BATCH_BYTES): raise it, or "
                "lower those"
            )
        return self

    @field_validator("root_path")
    @classmethod
    def _prefix(cls, value: str) -> str:
        """``""`` or ``/a/b``: one leading slash, none trailing (``/`` alone means no prefix)."""
        value = value.strip().rstrip("/")
        if value and not value.startswith("/"):
            raise ValueError(f"root_path must start with '/', got {value!r}")
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        """Each ``*`` or ``scheme://host[:port]``, as a browser's ``Origin`` header spells it
        (lower case, no path), since an origin is matched exactly: a trailing ``/`` (a URL copied
        from the address bar) or capitals are dropped, a path or a missing scheme refused. Either
        way the browser's requests were refused without a word."""
        origins = []
        for origin in value:
            if origin == "*":
                origins.append(origin)
                continue
            parts = urlsplit(origin.rstrip("/"))
            if not parts.scheme or not parts.netloc or parts.path or parts.query or parts.fragment:
                raise ValueError(
                    f"{origin!r} is not an origin: give scheme://host[:port] (no path), "
                    "e.g. https://app.example.com, or * for any"
                )
            origins.append(f"{parts.scheme}://{parts.netloc}".lower())
        return origins

    @field_validator("models", "providers", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def problems(error: ValidationError, *, options: Collection[str] = ()) -> list[str]:
    """One line per invalid setting: ``TAGGRAM_FIELD: what is wrong``, or ``--field: ...`` for a
    field in ``options`` (given on the command line, where the option wins), in a validator's own
    words where it gave them; a check of several settings together is its words alone.

    The line names what the user wrote: ``max_batch_size: ...`` was neither the variable set in
    a ConfigMap nor the option typed."""
    lines = []
    for problem in error.errors():
        cause = problem.get("ctx", {}).get("error")  # a validator's own words
        names = [
            f"--{part}".replace("_", "-") if part in options else f"TAGGRAM_{part}".upper()
            for part in map(str, problem["loc"])
        ]
        lines.append("".join(f"{name}: " for name in names) + str(cause or problem["msg"]))
    return lines


def misspelt_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """``TAGGRAM_*`` variables of ``environ`` that are no setting but nearly spell one, each with
    that setting's variable (``TAGGRAM_MAX_UPLOAD_BYTE``: ``TAGGRAM_MAX_UPLOAD_BYTES``).

    Unknown variables are ignored (the client's ``TAGGRAM_URL`` may share the environment), so
    a typo in a ConfigMap silently left the default in force, and the client's
    ``TAGGRAM_API_KEY`` set on a server left authentication off."""
    settings = [f"TAGGRAM_{name.upper()}" for name in Settings.model_fields]
    found = {}
    for name in environ:
        upper = name.upper()
        if upper.startswith("TAGGRAM_") and upper not in settings:
            close = difflib.get_close_matches(upper, settings, n=1, cutoff=0.85)
            if close:
                found[name] = close[0]
    return found


def environment_settings(**values: Any) -> Settings:
    """Settings from the ``TAGGRAM_*`` environment, ``values`` overriding it (the in-process
    commands: ``taggram tag``, ``catalogue --local``, ``models ... --local``).

    Raises:
        SettingsError: a variable's value is invalid (``TAGGRAM_MAX_BATCH_SIZE=abc``), its
            problems in one line; it was pydantic's multi-line report in a traceback.
    """
    try:
        return Settings(**values)
    except ValidationError as error:
        raise SettingsError("; ".join(problems(error))) from error


def served_entries(settings: Settings, entries: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
    """The repository models a service with ``settings`` loads: those of ``TAGGRAM_MODELS`` in
    its order, or, unset, every model of ``entries`` (the whole repository, name -> entry).

    One check for the service's start-up (the Tagger) and ``taggram models list --local``, which
    left a name the repository lacks out of its list without a word while the service refused to
    start. Here, beside the settings, so that the listing need not import the pipeline (ONNX
    Runtime and the decoders: seconds on a small machine).

    Raises:
        RepositoryError: ``TAGGRAM_MODELS`` names models the repository lacks, or the default
            model is not in it; the message names the setting and what the repository has.
    """
    wanted = settings.models or list(entries)
    repository = settings.model_repository
    # Which setting named it, and what the repository has: a name mistyped (`mtt_musicnn`)
    # or a model left out of a build was one line to guess from.
    has = f"it has {', '.join(sorted(entries))}"
    missing = [name for name in dict.fromkeys(wanted) if name not in entries]
    if missing:
        raise RepositoryError(f"models {missing} are not in {repository} (TAGGRAM_MODELS); {has}")
    default = settings.default_model
    if default not in entries:
        raise RepositoryError(
            f"default model {default!r} is not in {repository} (TAGGRAM_DEFAULT_MODEL); {has}"
        )
    return {name: entries[name] for name in wanted}


def in_process_settings(repository: Path, model: str | None, *, warmup: bool = True) -> Settings:
    """Settings for tagging in-process (``taggram tag``, ``catalogue --local``): ``TAGGRAM_*``
    variables apply, only the model the run uses is loaded, and the queue budget and deadline are
    lifted, since they protect a server's other clients and in-process every file is the run's
    own (the queue's patch bound still holds memory). A ``model`` that the repository lacks but
    the custom-models folder holds (``taggram models create --local``) loads the networks its
    members read: the caller tags with ``model`` by name, and the default model is left unset,
    so that the Tagger passes over a network that is a feature extractor (``mfcc`` read before
    ``MTT_musicnn``) to the first that tags, as it does for ``TAGGRAM_MODELS``.
    Raises :class:`SettingsError` as :func:`environment_settings`."""
    base = environment_settings(model_repository=repository)
    models = [model or base.default_model]
    if model is not None and not (repository / model).is_dir():
        from taggram.service.custom.registry import record_networks, stored_records

        record = stored_records(base.custom_models).get(model)
        if record is not None:
            models = record_networks(record)
    values = dict(base) | {
        "models": models,
        "default_model": models[0],
        "warmup": warmup and base.warmup,
        "queue_budget_seconds": 86_400.0,
        "queue_deadline_seconds": 86_400.0,
    }
    # Not model_copy(update=...), which counts default_model as set: the Tagger refuses a
    # feature extractor set explicitly as the default beside models that tag.
    return Settings.model_construct(base.model_fields_set - {"default_model"}, **values)
