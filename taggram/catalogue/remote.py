"""The remote backend: tag through ``POST /v1/tag`` of a running service.

Needs only the light client install (httpx, no server stack): a catalogue machine that talks to a
service carries neither ONNX Runtime nor the decoders.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self

from taggram.catalogue import records
from taggram.catalogue.records import Record
from taggram.catalogue.runner import JobOptions, options_problem
from taggram.catalogue.sources import Track
from taggram.client import (
    AsyncTaggramClient,
    AuthenticationFailedError,
    ConnectionFailedError,
    NotAServiceError,
    RequestRejectedError,
    RetryPolicy,
    ServiceError,
    TaggramClient,
    TaggramClientError,
    read_audio_file,
)
from taggram.filenames import printable


class RemoteBackend:
    """Tags through ``POST /v1/tag`` of a running service (retries are the client's)."""

    def __init__(
        self,
        url: str,
        options: JobOptions,
        retry: RetryPolicy,
        connections: int,
        api_key: str | None = None,
    ) -> None:
        self.options = options
        self.client = AsyncTaggramClient(
            url, retry=retry, max_connections=connections, api_key=api_key
        )

    async def tag(self, track: Track) -> Record:
        """Tag one track; never raises: unreadable files, refusals and an unreachable service become
        error records (retryable when another run may succeed).
        """
        try:
            data = await asyncio.to_thread(read_audio_file, track.path)
        except OSError as error:
            return records.unreadable(track, error)
        try:
            body = await self.client.tag(
                data,
                filename=printable(track.path.name),
                model=self.options.model,
                embeddings=self.options.embeddings,
            )
        except (RequestRejectedError, ServiceError) as error:
            # Overloaded or unavailable through every retry: worth another run. Anything else
            # (a bad file, or a 500 that the same file would cause again) is settled.
            retryable = error.status in self.client.retry.statuses
            return records.failure(
                track, error.code, error.message, retryable=retryable, request_id=error.request_id
            )
        except (ConnectionFailedError, NotAServiceError) as error:
            # Not the file's fault (a proxy answering its own page): worth another run.
            return records.failure(track, error.code, str(error), retryable=True)
        return from_response(track, body, self.options.top_k)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.client.aclose()


def check_served_options(
    url: str, options: JobOptions, retry: RetryPolicy, api_key: str | None = None
) -> tuple[str | None, str | None]:
    """What makes ``options`` impossible for the models the service at ``url`` serves (its
    ``GET /v1/models``), or ``None``, and the service's default model (``None`` when unknown).
    The problem is also ``None`` when the list cannot be had (unreachable, failing), which the
    run then records per track as it always did. A key missing, unknown or without the ``tag``
    scope is a problem: it would fail every track alike, each settled as a permanent failure that
    a rerun with the right key skips; so is a URL no taggram service answers at (``/v1`` on it)."""
    with TaggramClient(url, retry=retry, api_key=api_key) as client:
        try:
            listing = client.models()
        except AuthenticationFailedError as error:
            return f"--api-key (TAGGRAM_API_KEY): the service refused it: {error}", None
        except NotAServiceError as error:  # a URL with /v1 on it: every track would fail alike
            return f"--url (TAGGRAM_URL): {error}", None
        except TaggramClientError:
            return None, None
    models = listing["models"]
    layers = {model["name"]: list(model.get("embedding_outputs", [])) for model in models}
    default = listing["default_model"]
    return options_problem(options, default, layers), default


def from_response(track: Track, body: dict[str, Any], top_k: int) -> Record:
    """A record from a ``/v1/tag`` response (which lists every tag when no top_k is sent)."""
    embedding = body.get("embeddings")
    return records.success(
        track,
        model=body["model"]["name"],
        version=body["model"]["version"],
        duration_s=body["audio"]["duration_seconds"],
        probabilities={item["tag"]: item["probability"] for item in body["tags"]},
        top_k=top_k,
        embedding=(embedding["layer"], embedding["mean"]) if embedding else None,
        warnings=body.get("warnings", []),
        request_id=body.get("request_id"),
    )
