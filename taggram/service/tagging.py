"""The tagging pipeline behind every entry point: decode → patch → batch → assemble.

:class:`Tagger` is what the HTTP routes call, and what in-process users (batch routes, offline
catalogue tagging) use without HTTP::

    async with Tagger(Settings(model_repository=Path("model_repository"))) as tagger:
        result = await tagger.tag(Path("song.mp3"), TagOptions(top_k=5))
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from taggram.repository import ModelEntry, ModelMetadata, RepositoryError, load_repository
from taggram.service import metrics
from taggram.service.audio.decode import AudioInfo, AudioSource, DecodeLimits, decode
from taggram.service.audio.patching import (
    Patches,
    PatchPlan,
    TensorPatches,
    clip_average,
    hop_samples,
    plan_patches,
)
from taggram.service.errors import (
    InvalidOptionsError,
    ModelNotFoundError,
    NotReadyError,
    TooManyPatchesError,
)
from taggram.service.inference.batcher import DEFAULT_SECONDS_PER_PATCH, Batcher
from taggram.service.inference.session import ModelSession, choose_providers
from taggram.service.settings import Settings
from taggram.service.timing import StageTimes

log = logging.getLogger(__name__)


class TagOptions(BaseModel):
    """What a caller may ask for besides the audio; ``None`` means the default."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str | None = Field(
        None, max_length=200, description="model name (default: the service's default)"
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
    # Finite and bounded before any arithmetic: hop=inf used to overflow into a 500.
    hop: float | None = Field(
        None,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="seconds between patch starts, from one sample to one patch "
        "(default: the patch length)",
    )


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


def rank_tags(
    names: list[str], probabilities: np.ndarray, top_k: int | None, threshold: float | None
) -> list[tuple[str, float]]:
    """Tags sorted by probability (best first), keeping the top ``k`` at or above ``threshold``."""
    order = np.argsort(-probabilities, kind="stable")
    ranked = [(names[i], float(probabilities[i])) for i in order]
    if threshold is not None:
        ranked = [pair for pair in ranked if pair[1] >= threshold]
    return ranked[:top_k] if top_k is not None else ranked


@dataclass(frozen=True)
class _Prepared:
    audio: AudioInfo
    duration_seconds: float
    plan: PatchPlan
    patches: Patches


class Tagger:
    """Loads the repository's models and tags audio with them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.entries = self._select(load_repository(settings.model_repository))
        self._batchers: dict[str, Batcher] = {}
        self._limits = DecodeLimits(
            settings.max_upload_bytes, settings.max_duration_seconds, settings.max_sample_rate
        )

    def _select(self, entries: dict[str, ModelEntry]) -> dict[str, ModelEntry]:
        wanted = self.settings.models or list(entries)
        missing = [name for name in [*wanted, self.settings.default_model] if name not in entries]
        if missing:
            raise RepositoryError(f"models {missing} are not in {self.settings.model_repository}")
        return {name: entries[name] for name in wanted}

    @property
    def models(self) -> dict[str, ModelMetadata]:
        return {name: entry.metadata for name, entry in self.entries.items()}

    def model(self, name: str | None) -> ModelMetadata:
        name = name or self.settings.default_model
        if name not in self.entries:
            raise ModelNotFoundError(f"no model named {name!r}; available: {sorted(self.entries)}")
        return self.entries[name].metadata

    def _load_sessions(self) -> list[tuple[ModelSession, float]]:
        """Each model's session and its measured seconds per patch (a default without warm-up)."""
        providers = choose_providers(self.settings.providers)
        sessions = []
        for entry in self.entries.values():
            session = ModelSession(
                entry,
                providers,
                self.settings.intra_op_threads,
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
        """Create and warm every session (in a thread), then start one batcher per model."""
        for session, cost in await asyncio.to_thread(self._load_sessions):
            batcher = Batcher(
                session,
                session.max_batch_size,
                self.settings.max_queue_delay_ms / 1000,
                self.settings.max_queue_patches,
                queue_budget_seconds=self.settings.queue_budget_seconds,
                deadline_seconds=self.settings.queue_deadline_seconds,
                seconds_per_patch=cost,
            )
            batcher.start()
            self._batchers[session.name] = batcher
            metrics.MODEL_INFO.labels(
                model=session.name, version=session.metadata.version, provider=session.provider
            ).set(1)

    async def stop(self) -> None:
        batchers, self._batchers = self._batchers, {}
        for batcher in batchers.values():
            await batcher.stop()

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

    def is_loaded(self, name: str) -> bool:
        """Whether the model's session is warm and its batcher running."""
        return name in self._batchers

    async def infer(self, name: str, patches: np.ndarray) -> dict[str, np.ndarray]:
        """Run ready-made model inputs through the model's batcher (the ``/v2`` path).

        ``patches``: float32 ``[batch, samples]``, ``samples`` the model's patch length, finite.
        Returns every model output, ``[batch, ...]``. Raises :class:`ModelNotFoundError`,
        :class:`TooManyPatchesError` (more rows than one request may queue),
        :class:`OverloadedError` and :class:`NotReadyError` like :meth:`tag`.
        """
        meta = self.model(name)
        batcher = self._batcher(meta)
        limit = self.request_patch_limit
        if len(patches) > limit:
            raise TooManyPatchesError(f"{len(patches)} patches is more than the limit of {limit}")
        result = await batcher.infer(TensorPatches(patches))
        return result.outputs

    @property
    def request_patch_limit(self) -> int:
        """Most patches one request may queue: the per-request cap, within the queue's bound."""
        return min(self.settings.max_request_patches, self.settings.max_queue_patches)

    def admit(self, model: str | None) -> None:
        """Refuse (429) before any body is read when even a one-patch request on ``model`` would
        wait longer than the queue budget; unknown models and loading are left to :meth:`tag`."""
        batcher = self._batchers.get(model or self.settings.default_model)
        if batcher is not None:
            batcher.admit(1, "before_body")

    def _prepare(self, source: AudioSource | Path, meta: ModelMetadata, hop: int) -> _Prepared:
        """Blocking part before inference (runs in a worker thread): decode and cut patches."""
        opened = source.open("rb") if isinstance(source, Path) else nullcontext(source)
        with opened as handle:
            decoded = decode(handle, meta.sample_rate, self._limits)
        plan = plan_patches(len(decoded.waveform), meta.patch, hop, self.request_patch_limit)
        return _Prepared(
            audio=decoded.info,
            duration_seconds=decoded.duration_seconds,
            plan=plan,
            patches=Patches(decoded.waveform, meta.patch, plan),
        )

    def check(self, options: TagOptions) -> tuple[ModelMetadata, int]:
        """The model ``options`` name and their hop in samples, once the options are known to
        suit that model; raises :class:`ModelNotFoundError` or :class:`InvalidOptionsError`."""
        meta = self.model(options.model)
        if options.embeddings is not None and options.embeddings not in meta.embedding_outputs:
            raise InvalidOptionsError(
                f"{meta.name} has no embedding {options.embeddings!r}; "
                f"choose one of {meta.embedding_outputs}"
            )
        return meta, hop_samples(meta.patch, meta.sample_rate, options.hop)

    async def tag(self, source: AudioSource | Path, options: TagOptions) -> TagResult:
        """Tag one audio file (bytes, an open binary file, or a path)."""
        started = time.perf_counter()
        meta, hop = self.check(options)
        batcher = self._batcher(meta)
        prepared = await asyncio.to_thread(self._prepare, source, meta, hop)
        decoded_at = time.perf_counter()
        batch = await batcher.infer(prepared.patches)
        rows = batch.outputs[meta.probabilities_output]
        probabilities = clip_average(rows, prepared.plan)
        embeddings = batch.outputs[options.embeddings] if options.embeddings else None
        timings = StageTimes(
            decode=decoded_at - started,
            queue=batch.queue_seconds,
            inference=batch.inference_seconds,
            total=time.perf_counter() - started,
        )
        timings.observe(meta.name)
        metrics.AUDIO_SECONDS.labels(model=meta.name).inc(prepared.duration_seconds)
        rate = meta.sample_rate
        return TagResult(
            model=meta,
            audio=prepared.audio,
            duration_seconds=prepared.duration_seconds,
            provider=batcher.session.provider,
            tags=rank_tags(meta.tags, probabilities, options.top_k, options.threshold),
            probabilities=probabilities,
            patch_starts=prepared.plan.starts / rate,
            patch_ends=prepared.plan.ends / rate,
            taggram=rows if options.taggram else None,
            embedding_name=options.embeddings,
            embeddings=embeddings,
            embedding_mean=None if embeddings is None else clip_average(embeddings, prepared.plan),
            timings=timings,
        )
