"""The tagging pipeline behind every entry point: decode → patch → batch → assemble.

:class:`Tagger` is what the HTTP routes call, and what in-process users (batch routes, offline
catalogue tagging) use without HTTP::

    async with Tagger(Settings(model_repository=Path("model_repository"))) as tagger:
        result = await tagger.tag(Path("song.mp3"), TagOptions(top_k=5))

Several models in one request (``TagOptions(model="MTT_musicnn,my_instruments")``,
:meth:`Tagger.tag_many`): the audio is decoded once per sample rate, each base network runs once
(a custom model reads an embedding of its base, so ``MTT_musicnn`` and a custom model built on
``MTT_musicnn.penultimate`` share one run), and one result per model comes back in request order.

Custom models (``taggram.service.custom``) are served beside the repository's: created through
:meth:`Tagger.create_custom`, deleted through :meth:`Tagger.delete_custom`, and picked up from the
shared custom-models folder every ``custom_models_poll_seconds``.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from taggram.audio_files import open_audio_file
from taggram.repository import ModelEntry, ModelMetadata, RepositoryError, load_repository
from taggram.service import metrics
from taggram.service.audio.decode import (
    AudioInfo,
    AudioSource,
    DecodedAudio,
    DecodeLimits,
    decode,
)
from taggram.service.audio.levels import FLOAT_PEAK
from taggram.service.audio.patching import (
    Patches,
    PatchPlan,
    TensorPatches,
    clip_average,
    covering,
    hop_samples,
    padding_warning,
    plan_patches,
)
from taggram.service.audio.slots import DecodeSlots
from taggram.service.custom import creation, storage
from taggram.service.custom.features import split as split_feature
from taggram.service.custom.registry import CustomModel, CustomModels, build
from taggram.service.errors import (
    InferenceFailedError,
    InvalidAudioError,
    InvalidOptionsError,
    InvalidTensorError,
    ModelNotFoundError,
    ModelReadOnlyError,
    NotReadyError,
    PayloadTooLargeError,
    TaggramError,
    TooManyPatchesError,
)
from taggram.service.inference.batcher import DEFAULT_SECONDS_PER_PATCH, Batcher, BatchResult
from taggram.service.inference.session import ModelSession, choose_providers
from taggram.service.settings import Settings, served_entries
from taggram.service.timing import StageTimes

log = logging.getLogger(__name__)


class TagOptions(BaseModel):
    """What a caller may ask for besides the audio; ``None`` means the default."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str | None = Field(
        None,
        max_length=200,
        description="model name, or several comma-separated (one result each, the audio "
        "decoded once); default: the service's default model",
    )
    top_k: int | None = Field(None, ge=1, le=100_000, description="return only the k best tags")
    threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="return only tags with at least this probability",
    )
    taggram: bool = Field(False, description="include per-patch probabilities")
    embeddings: str | None = Field(
        None,
        max_length=200,
        description="embedding layer to return (see the model's embedding_outputs)",
    )
    # Finite before any arithmetic (hop=inf used to overflow into a 500); its range depends on
    # the model, checked in seconds by patching.hop_samples before anything is decoded.
    hop: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="seconds between patch starts, from one sample to one patch of the chosen "
        "model (default: the patch length)",
    )

    @field_validator("model")
    @classmethod
    def _no_empty_name(cls, value: str | None) -> str | None:
        """``model=``, ``model=,`` and ``model=A,,B`` name an empty model: refused, not read as
        the default (leave the option out for that)."""
        if value is not None and not all(part.strip() for part in value.split(",")):
            raise PydanticCustomError(
                "empty_model_name",
                "{value} names an empty model: give model names separated by commas, or leave "
                "the option out for the default model",
                {"value": repr(value)},
            )
        return value

    def model_names(self, default: str) -> list[str]:
        """The models asked for, in order (``default`` when none)."""
        return model_names(self.model, default)


def model_names(model: str | None, default: str) -> list[str]:
    """``"a, b"`` → ``["a", "b"]``; ``[default]`` when ``model`` names none."""
    names = [part.strip() for part in (model or "").split(",") if part.strip()]
    return names or [default]


@dataclass(frozen=True)
class TagResult:
    """Everything one tagging produced; numpy arrays, ready for JSON or Parquet."""

    model: ModelMetadata
    audio: AudioInfo
    duration_seconds: float  # decoded at the model's rate
    provider: str
    tags: list[tuple[str, float]]  # (tag, clip probability), best first, filtered by options
    probabilities: np.ndarray  # [n_tags] clip-level, in model.tags order
    patch_starts: np.ndarray  # [n_patches] seconds
    patch_ends: np.ndarray  # [n_patches] seconds
    taggram: np.ndarray | None  # [n_patches, n_tags]
    embedding_name: str | None
    embeddings: np.ndarray | None  # [n_patches, dim]
    embedding_mean: np.ndarray | None  # [dim], coverage-weighted like the probabilities
    timings: StageTimes
    # The decoder's warnings, then this model's own (audio shorter than one of its patches).
    warnings: tuple[str, ...]


def rank_tags(
    names: list[str], probabilities: np.ndarray, top_k: int | None, threshold: float | None
) -> list[tuple[str, float]]:
    """Tags sorted by probability (best first), keeping the top ``k`` at or above ``threshold``."""
    order = np.argsort(-probabilities, kind="stable")
    ranked = [(names[i], float(probabilities[i])) for i in order]
    if threshold is not None:
        ranked = [pair for pair in ranked if pair[1] >= threshold]
    return ranked[:top_k] if top_k is not None else ranked


def _not_finite(outputs: dict[str, np.ndarray]) -> list[str]:
    """The names of ``outputs`` holding NaN or infinite values."""
    return [name for name, values in outputs.items() if not np.isfinite(values).all()]


@contextmanager
def _audio_file(path: Path, max_bytes: int) -> Iterator[BinaryIO]:
    """``path`` opened for decoding in-process, as the client reads it to upload
    (:func:`~taggram.audio_files.open_audio_file`, which refuses a device): a regular file as it
    is; a pipe (``taggram tag <(curl ...)``, ``/dev/stdin``), which cannot seek, read into memory
    up to ``max_bytes``.

    Raises:
        OSError: ``path`` cannot be read, or is a device (``EINVAL``).
        PayloadTooLargeError: a pipe holds more than ``max_bytes``.
    """
    with open_audio_file(path) as handle:
        if handle.seekable():
            yield handle
            return
        data = handle.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise PayloadTooLargeError(f"{path} holds more than the limit of {max_bytes} bytes")
        yield io.BytesIO(data)


def _non_finite_error(
    name: str,
    broken: list[str],
    outputs: dict[str, np.ndarray],
    peak: float,
    refused: InvalidAudioError | InvalidTensorError,
) -> TaggramError:
    """The error for model ``name``'s NaN or infinite ``broken`` outputs on inputs peaking at
    ``peak``: the input's fault (``refused``, which says so) only when the peak is
    above :data:`FLOAT_PEAK`, float audio never normalised, which overflows the network (from
    10-15 on a pure tone, about 100 on noise); at or below it (any decoded recording, lossy
    overshoot included) the network has no reason to overflow, so it is the service's fault:
    logged with the rows concerned, and answered as a failed inference (500), never blamed on
    the audio."""
    if peak > FLOAT_PEAK:
        return refused
    rows = {
        output: int((~np.isfinite(outputs[output])).reshape(len(outputs[output]), -1).any(1).sum())
        for output in broken
    }
    log.error(
        "%s gave NaN or infinite outputs on inputs peaking at %.3g: rows not finite per output "
        "%s of %d",
        name,
        peak,
        rows,
        len(outputs[broken[0]]),
    )
    return InferenceFailedError(
        f"{name} gave NaN or infinite {broken} for inputs whose samples peak at {peak:.3g}, "
        f"{'within' if peak <= 1 else 'near'} [-1, 1], which the network takes without "
        "overflow: a fault of the service, not of the audio"
    )


@dataclass(frozen=True)
class _Prepared:
    audio: AudioInfo
    duration_seconds: float
    plan: PatchPlan
    patches: Patches


@dataclass(frozen=True)
class _Target:
    """One requested model: its metadata, the network whose patches its rows follow, its
    members if custom, and every network it needs (``base`` first)."""

    metadata: ModelMetadata
    base: ModelMetadata
    custom: CustomModel | None = None
    extra: tuple[ModelMetadata, ...] = ()  # further networks an ensemble's members read

    @property
    def bases(self) -> tuple[ModelMetadata, ...]:
        """Every network that runs for this model, ``base`` first."""
        return (self.base, *self.extra)


class Tagger:
    """Loads the repository's models and tags audio with them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        repository = load_repository(settings.model_repository)
        # Every repository name, loaded here or not: another replica (or a restart with other
        # TAGGRAM_MODELS) may load it, so no custom model may take it.
        self.repository_names = frozenset(repository)
        self.entries = served_entries(settings, repository)
        # Frozen settings: a copy carries the default chosen among the models loaded.
        default = self._default_model(repository)
        self.settings = settings.model_copy(update={"default_model": default})
        # Chosen here, not when the sessions load: a provider that is not installed is refused
        # before the server opens its port.
        self.providers = choose_providers(settings.providers)
        self._batchers: dict[str, Batcher] = {}
        self._limits = DecodeLimits(
            settings.max_upload_bytes, settings.max_duration_seconds, settings.max_sample_rate
        )
        self.decodes = DecodeSlots(
            settings.decode_slots,
            budget_seconds=settings.queue_budget_seconds,
            deadline_seconds=settings.queue_deadline_seconds,
        )
        self.custom = CustomModels(settings.custom_models)
        self._poller: asyncio.Task[None] | None = None
        self._creating = asyncio.Lock()  # one creation at a time: it is CPU-heavy
        # Serialises folder rescans with this replica's own additions and deletions, so a scan
        # that started before a creation's write cannot drop the model it just registered.
        self._registry = asyncio.Lock()
        # Set by stop(): the loading thread, which cancelling start() cannot interrupt, stops
        # after the session it is creating instead of loading and warming every other model.
        self._stopping = threading.Event()

    def _default_model(self, entries: dict[str, ModelEntry]) -> str:
        """The model a request without ``model`` gets: ``TAGGRAM_DEFAULT_MODEL``, or unset, the
        first of the loaded models that tags (``TAGGRAM_MODELS=mfcc,MTT_vgg``: ``MTT_vgg``).

        A feature extractor answers only with embeddings=: as the default beside models that
        tag, every request without model= was a 422 from a service that had started normally,
        and unset, the settings' choice (the first of ``TAGGRAM_MODELS``) refused to start. A
        service of feature extractors alone keeps one as its default (embeddings= requests).
        ``entries``: the whole repository. Raises :class:`RepositoryError` for a feature
        extractor set explicitly beside models that tag.
        """
        default = self.settings.default_model
        taggers = [
            name
            for name, entry in self.entries.items()
            if entry.metadata.probabilities_output is not None
        ]
        if not taggers or entries[default].metadata.probabilities_output is not None:
            return default
        if "default_model" not in self.settings.model_fields_set:
            return taggers[0]
        raise RepositoryError(
            f"default model {default!r} (TAGGRAM_DEFAULT_MODEL) is a feature extractor: it gives "
            "no tags, so every request without model= would be refused; set "
            f"TAGGRAM_DEFAULT_MODEL to one of the models that tag: {', '.join(taggers)}"
        )

    @property
    def models(self) -> dict[str, ModelMetadata]:
        """Every model served: the repository's, then the custom ones."""
        served = {name: entry.metadata for name, entry in self.entries.items()}
        served.update({name: model.metadata for name, model in self.custom.models.items()})
        return served

    def model(self, name: str) -> ModelMetadata:
        """The metadata of the one model named exactly ``name`` (a path's ``{name}``).

        Not the ``model`` option's list: read as one, ``/v1/models/A,B`` answered A's
        metadata, and a blank or ``,`` name the default model's, for a model that does not
        exist. Raises :class:`ModelNotFoundError`."""
        return self._target(name).metadata

    def _target(self, name: str) -> _Target:
        if name in self.entries:
            meta = self.entries[name].metadata
            return _Target(metadata=meta, base=meta)
        custom = self.custom.get(name)
        if custom is None and name in self.custom.unserved:
            raise ModelNotFoundError(
                f"the custom model {name!r} is in the custom-models folder but not served here: "
                f"{self.custom.unserved[name]}"
            )
        if custom is None:
            raise ModelNotFoundError(f"no model named {name!r}; available: {sorted(self.models)}")
        bases = [self.entries[name].metadata for name in custom.bases if name != custom.base]
        return _Target(custom.metadata, self.entries[custom.base].metadata, custom, tuple(bases))

    def _targets(self, model: str | None) -> list[_Target]:
        names = model_names(model, self.settings.default_model)
        if len(set(names)) < len(names):
            raise InvalidOptionsError(f"model names repeat in {model!r}")
        return [self._target(name) for name in names]

    def _load_sessions(self) -> list[tuple[ModelSession, float]]:
        """Each model's session and its measured seconds per patch (a default without warm-up)."""
        sessions = []
        for entry in self.entries.values():
            if self._stopping.is_set():
                break
            session = ModelSession(
                entry,
                self.providers,
                self.settings.threads_per_batch,
                self.settings.inter_op_threads,
                io_binding=self.settings.io_binding,
                max_batch_size=self.settings.max_batch_size,
                gpu_max_batch_size=self.settings.gpu_max_batch_size,
                release_memory_when_idle=self.settings.release_memory_when_idle,
            )
            cost = DEFAULT_SECONDS_PER_PATCH
            if self.settings.warmup:
                cost = session.warm_up(sorted({1, session.max_batch_size}))
            sessions.append((session, cost))
        return sessions

    async def start(self) -> None:
        """Create and warm every session (in a thread), start one batcher per model, load the
        custom models and start polling their folder."""
        for session, cost in await asyncio.to_thread(self._load_sessions):
            batcher = Batcher(
                session,
                session.max_batch_size,
                self.settings.max_queue_delay_ms / 1000,
                self.settings.max_queue_patches,
                queue_budget_seconds=self.settings.queue_budget_seconds,
                deadline_seconds=self.settings.queue_deadline_seconds,
                seconds_per_patch=cost,
                # A GPU runs one large batch at a time, and I/O binding's host buffers serve one
                # batch at a time on any provider (TAGGRAM_IO_BINDING=on on a CPU: two workers
                # overwrote each other's inputs and outputs there, and answered wrong rows).
                workers=(
                    self.settings.inference_workers
                    if session.provider == "cpu" and not session.binds_io
                    else 1
                ),
            )
            batcher.start()
            self._batchers[session.name] = batcher
            metrics.MODEL_INFO.labels(
                model=session.name, version=session.metadata.version, provider=session.provider
            ).set(1)
        await self.refresh_custom()
        self._poller = asyncio.create_task(self._poll(), name="custom-models-poll")

    async def refresh_custom(self) -> None:
        """Sync the custom models with their folder (models other replicas created or deleted)."""
        bases = {name: entry.metadata for name, entry in self.entries.items()}
        async with self._registry:
            current, unserved = await asyncio.to_thread(self.custom.scan, bases)
            for gone in self.custom.models.keys() - current.keys():
                metrics.forget_model(gone)
            self.custom.models, self.custom.unserved = current, unserved

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.custom_models_poll_seconds)
            try:
                await self.refresh_custom()
            except Exception:  # an unreadable folder must not stop polling or serving
                log.exception("rescanning %s failed", self.settings.custom_models)

    async def stop(self) -> None:
        """Stop loading models, polling custom models and the batchers; queued work is
        refused."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.cancel()
            with suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        batchers, self._batchers = self._batchers, {}
        for batcher in batchers.values():
            await batcher.stop()
        await asyncio.to_thread(self.decodes.close)

    async def __aenter__(self) -> Tagger:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _batcher(self, meta: ModelMetadata) -> Batcher:
        if meta.name not in self._batchers:
            raise NotReadyError("models are still loading")
        return self._batchers[meta.name]

    def batcher(self, name: str) -> Batcher:
        """The batcher of model ``name`` (its batch size, queue delay, workers and session).

        Raises :class:`ModelNotFoundError` for an unknown model, :class:`NotReadyError` while it
        loads or for a custom model (it has no batcher: its base network's serves it)."""
        return self._batcher(self.model(name))

    def is_loaded(self, name: str) -> bool:
        """Whether the model's session is warm and its batcher running."""
        return name in self._batchers

    async def infer(
        self,
        name: str,
        patches: np.ndarray,
        *,
        deadline_seconds: float | None = None,
        priority: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Run ready-made model inputs through the model's batcher (the ``/v2`` path).

        ``patches``: float32 ``[batch, samples]``, ``samples`` the model's patch length, finite.
        ``deadline_seconds``: the longest the patches may wait for a batch slot, when shorter
        than ``TAGGRAM_QUEUE_DEADLINE_SECONDS`` (:class:`DeadlineExceededError` past it).
        ``priority``: the batcher's level for them, 1 the highest, ``None`` or 0 the default
        (:meth:`Batcher.level`; one outside its levels is a :class:`ValueError`).
        Returns every model output, ``[batch, ...]``. Raises :class:`ModelNotFoundError`,
        :class:`TooManyPatchesError` (more rows than one request may queue),
        :class:`OverloadedError` and :class:`NotReadyError` like :meth:`tag`.
        """
        meta = self.model(name)
        if meta.kind == "custom":
            raise InvalidOptionsError(f"{name} is a custom model: it takes audio, at /v1/tag")
        batcher = self._batcher(meta)
        limit = self.request_patch_limit
        if len(patches) > limit:
            raise TooManyPatchesError(f"{len(patches)} patches is more than the limit of {limit}")
        result = await batcher.infer(
            TensorPatches(patches), deadline_seconds=deadline_seconds, priority=priority
        )
        broken = _not_finite(result.outputs)
        if broken:
            # Finite inputs far outside [-1, 1] overflow the network; JSON cannot carry NaN.
            peak = float(np.abs(patches).max())
            raise _non_finite_error(
                name, broken, result.outputs, peak,
                InvalidTensorError(
                    f"{name} gives NaN or infinite {broken} for these inputs: the waveform's "
                    f"values (peak {peak:.3g}) are far outside [-1, 1]"
                ),
            )  # fmt: skip
        return result.outputs

    @property
    def request_patch_limit(self) -> int:
        """Most patches one request may queue: the per-request cap, within the queue's bound."""
        return min(self.settings.max_request_patches, self.settings.max_queue_patches)

    def admit(self, model: str | None, priority: int | None = None) -> None:
        """Refuse (429) before any body is read when its decode would wait for a slot, or even
        a one-patch request on ``model`` (each of several comma-separated, a custom model's
        base network) at ``priority`` (:meth:`Batcher.level`; ``None``: the default level) would
        wait in the batch queue, longer than the queue budget; unknown models and loading are
        left to :meth:`tag`."""
        batchers = []
        for name in model_names(model, self.settings.default_model):
            custom = self.custom.get(name)
            bases = custom.bases if custom is not None else [name]
            batchers += [self._batchers[base] for base in bases if base in self._batchers]
        # Labelled by a loaded network: a name from the request would let clients mint series.
        label = batchers[0].session.name if batchers else self.settings.default_model
        self.decodes.admit(label, "before_body")
        for batcher in batchers:
            batcher.admit(1, "before_body", priority)

    def _prepare(
        self,
        source: AudioSource | Path,
        metas: list[ModelMetadata],
        hop_seconds: float | None,
        limits: DecodeLimits,
    ) -> dict[str, _Prepared]:
        """Blocking part before inference (runs in a worker thread): decode once per sample
        rate, then cut each model's patches."""
        if isinstance(source, Path):
            with _audio_file(source, limits.max_bytes) as handle:
                return self._prepare(handle, metas, hop_seconds, limits)
        decoded: dict[int, DecodedAudio] = {}
        prepared = {}
        for meta in metas:
            rate = meta.sample_rate
            if rate not in decoded:
                decoded[rate] = self._decode(source, rate, limits, first=not decoded)
            audio = decoded[rate]
            hop = hop_samples(meta.patch, rate, hop_seconds, meta.name)
            plan = plan_patches(len(audio.waveform), meta.patch, hop, self.request_patch_limit)
            prepared[meta.name] = _Prepared(
                audio=audio.info,
                duration_seconds=audio.duration_seconds,
                plan=plan,
                patches=Patches(audio.waveform, meta.patch, plan),
            )
        return prepared

    @staticmethod
    def _decode(source: AudioSource, rate: int, limits: DecodeLimits, first: bool) -> DecodedAudio:
        if not first and not isinstance(source, bytes | bytearray | memoryview):
            source.seek(0)  # a second sample rate reads the upload again
        return decode(source, rate, limits)

    async def _run(self, prepared: dict[str, _Prepared]) -> dict[str, BatchResult]:
        """Each base network once; if one fails or the caller goes away, the others' queued
        patches are dropped (cancelled jobs leave their batcher's queue)."""
        batchers = {name: self._batcher(self.entries[name].metadata) for name in prepared}
        tasks = {
            name: asyncio.ensure_future(batchers[name].infer(item.patches))
            for name, item in prepared.items()
        }
        try:
            results = await asyncio.gather(*tasks.values())
        finally:
            for task in tasks.values():
                task.cancel()
        for name, result in zip(tasks, results, strict=True):
            broken = _not_finite(result.outputs)
            if broken:
                # Float audio (WAV, AIFF, CAF) may hold samples far outside [-1, 1] that
                # overflow the network (musicnn from a peak of 10-15 on a pure tone): say so,
                # never answer NaN scores (null in JSON) as if they were tags.
                peak = prepared[name].patches.peak()
                raise _non_finite_error(
                    name, broken, result.outputs, peak,
                    InvalidAudioError(
                        f"{name} gives NaN or infinite {broken} for this audio: its samples "
                        f"peak at {peak:.3g}, far outside [-1, 1] (float audio that is not "
                        "normalised?)"
                    ),
                )  # fmt: skip
        return dict(zip(tasks, results, strict=True))

    async def tag(self, source: AudioSource | Path, options: TagOptions) -> TagResult:
        """Tag one audio file (bytes, an open binary file, or a path) with one model."""
        if len(options.model_names(self.settings.default_model)) != 1:
            raise InvalidOptionsError("this call takes one model; use tag_many for several")
        return (await self.tag_many(source, options))[0]

    def check(self, options: TagOptions) -> list[_Target]:
        """The models ``options`` name, once the options are known to suit each of them;
        raises :class:`ModelNotFoundError` or :class:`InvalidOptionsError` (an embedding a
        model lacks, a feature extractor asked for no embedding, a hop out of range, a repeated
        name) before anything is decoded."""
        targets = self._targets(options.model)
        for target in targets:
            embeddings = target.metadata.embedding_outputs
            if options.embeddings is not None and options.embeddings not in embeddings:
                choices = (
                    f"choose one of {embeddings}" if embeddings else "it returns no embeddings"
                )
                raise InvalidOptionsError(
                    f"{target.metadata.name} has no embedding {options.embeddings!r}; {choices}"
                )
            if target.metadata.probabilities_output is None and options.embeddings is None:
                # a feature extractor answers embeddings only: without one the result is empty
                raise InvalidOptionsError(
                    f"{target.metadata.name} is a feature extractor: it gives no tags, only "
                    f"embeddings; ask for one with embeddings= (one of {embeddings})"
                )
            for base in target.bases:
                hop_samples(base.patch, base.sample_rate, options.hop, base.name)
        return targets

    async def tag_many(self, source: AudioSource | Path, options: TagOptions) -> list[TagResult]:
        """Tag one audio file with every model of ``options.model``; results in that order."""
        started = time.perf_counter()
        targets = self.check(options)
        bases = list({base.name: base for t in targets for base in t.bases}.values())
        prepared = await self.decodes.run(
            bases[0].name, self._prepare, source, bases, options.hop, self._limits
        )
        decoded_at = time.perf_counter()
        batches = await self._run(prepared)
        total = time.perf_counter() - started
        return [
            self._result(
                target,
                prepared,
                batches,
                options,
                StageTimes(
                    decode=decoded_at - started,
                    queue=batches[target.base.name].queue_seconds,
                    inference=batches[target.base.name].inference_seconds,
                    total=total,
                ),
            )
            for target in targets
        ]

    def _result(
        self,
        target: _Target,
        prepared_all: dict[str, _Prepared],
        batches: dict[str, BatchResult],
        options: TagOptions,
        timings: StageTimes,
    ) -> TagResult:
        meta = target.metadata
        prepared, batch = prepared_all[target.base.name], batches[target.base.name]
        if target.custom is not None:
            rows, probabilities = self._custom_probabilities(target.custom, prepared_all, batches)
        elif meta.probabilities_output is None:  # a feature extractor: embeddings only
            rows = np.zeros((len(prepared.plan), 0), np.float32)
            probabilities = np.zeros(0, np.float32)
        else:
            rows = batch.outputs[meta.probabilities_output]
            probabilities = clip_average(rows, prepared.plan)
        embeddings = batch.outputs[options.embeddings] if options.embeddings else None
        timings.observe(meta.name)
        metrics.AUDIO_SECONDS.labels(model=meta.name).inc(prepared.duration_seconds)
        rate = meta.sample_rate
        base = target.base
        padded = padding_warning(prepared.plan, base.patch, base.sample_rate, base.name)
        return TagResult(
            model=meta,
            audio=prepared.audio,
            duration_seconds=prepared.duration_seconds,
            provider=self._batchers[target.base.name].session.provider,
            tags=rank_tags(meta.tags, probabilities, options.top_k, options.threshold),
            probabilities=probabilities,
            patch_starts=prepared.plan.starts / rate,
            patch_ends=prepared.plan.ends / rate,
            taggram=rows if options.taggram else None,
            embedding_name=options.embeddings,
            embeddings=embeddings,
            embedding_mean=None if embeddings is None else clip_average(embeddings, prepared.plan),
            timings=timings,
            warnings=(*prepared.audio.warnings, padded) if padded else prepared.audio.warnings,
        )

    def _custom_probabilities(
        self,
        custom: CustomModel,
        prepared: dict[str, _Prepared],
        batches: dict[str, BatchResult],
    ) -> tuple[np.ndarray, np.ndarray]:
        """A custom model's per-patch rows [patches, classes] (on the patches of its first
        member's network) and clip probabilities [classes], both float32.

        The members were fitted on clip-level features: the clip's tags come from each
        feature's clip (coverage-weighted) embedding, each patch's from the rows of the patch
        covering its centre in that feature's network (the same patch when networks cut
        alike)."""
        own = prepared[custom.base]
        own_rate = self.entries[custom.base].metadata.sample_rate
        rows, clip = {}, {}
        for feature in custom.ensemble.features:
            base, output = split_feature(feature)
            values, plan = batches[base].outputs[output], prepared[base].plan
            clip[feature] = clip_average(values, plan)[None]
            rate = self.entries[base].metadata.sample_rate
            rows[feature] = values[covering(own.plan, own_rate, plan, rate)]
        return custom.predict(rows), custom.predict(clip)[0]

    async def embed(
        self, source: AudioSource, bases: Sequence[str], max_seconds: float | None = None
    ) -> creation.Embedded:
        """Clip-level embeddings of one file from each of ``bases``, ``{base: {output: [dim]}}``
        (every embedding output, coverage-weighted over the patches), with its decoding
        warnings and, for each base whose one patch it is shorter than, that base's
        :func:`padding_warning`. Used to build custom models; ``max_seconds`` caps the audio's
        duration (default: the service's limit)."""
        limits = replace(
            self._limits, max_duration_seconds=max_seconds or self._limits.max_duration_seconds
        )
        metas = [self.entries[name].metadata for name in bases]
        prepared = await self.decodes.run(bases[0], self._prepare, source, metas, None, limits)
        batches = await self._run(prepared)
        embeddings = {
            name: {
                output: clip_average(batches[name].outputs[output], prepared[name].plan)
                for output in self.entries[name].metadata.embedding_outputs
            }
            for name in bases
        }
        # Silence padded into a short example's one patch is part of its embedding too.
        padded = {
            meta.name: text
            for meta in metas
            if (
                text := padding_warning(
                    prepared[meta.name].plan, meta.patch, meta.sample_rate, meta.name
                )
            )
        }
        return creation.Embedded(embeddings, tuple(prepared[bases[0]].audio.warnings), padded)

    async def create_custom(self, request: creation.CreateRequest) -> creation.CreatedModel:
        """Create, store and start serving a custom model (see ``taggram.service.custom``);
        returns its record with the examples' warnings (see :func:`creation.create`).

        Raises :class:`~taggram.service.errors.ModelExistsError` (the name is taken),
        ``TooManyModelsError``, ``TooManyExamplesError``, ``InvalidExamplesError``,
        ``InvalidOptionsError`` (unknown features or classifier), and any decoding error of an
        example, its message naming the file."""
        await self.refresh_custom()  # another replica may have taken the name meanwhile
        storage.check_free(request.name, self.repository_names, " in the model repository")
        plan = creation.plan(request, self.settings, self.models, len(self.custom))
        bases = {name: entry.metadata for name, entry in self.entries.items()}

        async def embed(source: AudioSource, names: Sequence[str]) -> creation.Embedded:
            return await self.embed(source, names, self.settings.max_custom_example_seconds)

        async with self._creating:
            plan = creation.plan(request, self.settings, self.models, len(self.custom))
            record, ensemble, warnings = await creation.create(plan, embed, bases, self.settings)
        async with self._registry:
            self.custom.add(build(record, ensemble.arrays(), bases[record.base]))
        return creation.CreatedModel(**record.model_dump(), warnings=warnings)

    async def delete_custom(self, name: str) -> None:
        """Delete a custom model from the folder and stop serving it.

        Raises :class:`ModelReadOnlyError` for a repository model and
        :class:`ModelNotFoundError` for an unknown one."""
        if name in self.entries:
            raise ModelReadOnlyError(
                f"{name} comes from the model repository; only custom models can be deleted"
            )
        async with self._registry:
            try:
                await asyncio.to_thread(storage.remove, self.settings.custom_models, name)
            finally:
                self.custom.discard(name)
                metrics.forget_model(name)
