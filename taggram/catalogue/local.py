"""``--local``: tag in-process with the service's own pipeline, no server needed.

:class:`~taggram.service.tagging.Tagger` is exactly what ``POST /v1/tag`` calls (decode, patch,
dynamic batching, ONNX Runtime, clip averaging), so local and remote runs give the same numbers. All
cores are used: ONNX Runtime's intra-op threads default to every available core, decoding runs in
worker threads, and the runner's concurrent tracks keep the batcher's batches full.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import TracebackType
from typing import Self

from taggram.catalogue import records
from taggram.catalogue.records import Record
from taggram.catalogue.runner import JobOptions
from taggram.catalogue.sources import Track
from taggram.client import RetryPolicy
from taggram.service.custom.registry import stored_records
from taggram.service.errors import TaggramError
from taggram.service.settings import Settings
from taggram.service.tagging import Tagger, TagOptions, TagResult

log = logging.getLogger(__name__)


class LocalBackend:
    """Tags tracks in-process with :class:`~taggram.service.tagging.Tagger` (no server).

    A full batch queue is waited out with the retry policy's backoff, as the HTTP client does on
    429; every other failure becomes an error record.
    """

    def __init__(self, settings: Settings, options: JobOptions, retry: RetryPolicy) -> None:
        self.options = options
        self.retry = retry
        self.tagger = Tagger(settings)
        self.tag_options = TagOptions(model=options.model, embeddings=options.embeddings)

    def embedding_outputs(self) -> dict[str, list[str]]:
        """Each loaded model's embedding layers, by model name, and none for each custom tagger
        of the folder (``taggram models create --local``: tags only)."""
        layers = {name: list(meta.embedding_outputs) for name, meta in self.tagger.models.items()}
        custom = stored_records(self.tagger.settings.custom_models)
        return layers | {name: [] for name in custom if name not in layers}

    async def _tag(self, path: Path) -> TagResult:
        """Retry what the pipeline calls ``retryable`` (a full queue), as the HTTP client retries
        429, waiting what the error asks for; after the policy's last attempt the error stands."""
        for attempt in range(self.retry.attempts - 1):
            try:
                return await self.tagger.tag(path, self.tag_options)
            except TaggramError as error:
                if not error.retryable:
                    raise
                wait = error.retry_after_seconds
                await asyncio.sleep(self.retry.delay(attempt, None if wait is None else str(wait)))
        return await self.tagger.tag(path, self.tag_options)

    async def tag(self, track: Track) -> Record:
        """Tag one track; never raises: unreadable files and refusals become error records."""
        try:
            result = await self._tag(track.path)
        except OSError as error:
            return records.unreadable(track, error)
        except TaggramError as error:
            return records.failure(track, error.code, error.message, retryable=error.retryable)
        except Exception as error:  # a pipeline bug on one file must not end a long run
            log.exception("tagging %s failed", track.path)
            return records.failure(track, "internal_error", repr(error), retryable=False)
        embedding = None
        if result.embedding_name is not None and result.embedding_mean is not None:
            embedding = (result.embedding_name, result.embedding_mean.tolist())
        return records.success(
            track,
            model=result.model.name,
            version=result.model.version,
            duration_s=result.duration_seconds,
            probabilities=dict(result.tags),
            top_k=self.options.top_k,
            embedding=embedding,
            warnings=result.warnings,
        )

    async def __aenter__(self) -> Self:
        await self.tagger.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.tagger.stop()
