"""The service's one error hierarchy: each error knows its HTTP status and machine-readable code.

Code below the API raises these; ``service.api.errors`` turns them (and FastAPI's own request
validation errors) into one JSON envelope, so no bad input ever surfaces as a 500.
"""

from __future__ import annotations

from typing import ClassVar


class TaggramError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` a stable machine-readable name."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class EmptyAudioError(TaggramError):
    status, code = 400, "empty_body"


class UnsupportedMediaTypeError(TaggramError):
    status, code = 415, "unsupported_media_type"


class PayloadTooLargeError(TaggramError):
    status, code = 413, "payload_too_large"


class AudioTooLongError(TaggramError):
    """The header declares more audio than ``max_duration_seconds``: refused before decoding."""

    status, code = 413, "audio_too_long"


class UndecodableAudioError(TaggramError):
    """The body has an accepted media type but is not audio any decoder understands."""

    status, code = 422, "undecodable_audio"


class InvalidAudioError(TaggramError):
    """The audio decodes but cannot be tagged (e.g. NaN or infinite samples)."""

    status, code = 422, "invalid_audio"


class InvalidOptionsError(TaggramError):
    status, code = 422, "invalid_options"


class TooManyPatchesError(TaggramError):
    """The options would cut more patches than the queue can ever hold."""

    status, code = 422, "too_many_patches"


class ModelNotFoundError(TaggramError):
    status, code = 404, "model_not_found"


class OverloadedError(TaggramError):
    """The model's queue is full; the client should retry after ``Retry-After`` seconds."""

    status, code = 429, "overloaded"


class NotReadyError(TaggramError):
    status, code = 503, "not_ready"


class InferenceFailedError(TaggramError):
    """ONNX Runtime failed on a batch: a server fault, reported to that batch's requests only."""

    status, code = 500, "inference_failed"


class ClientDisconnectedError(TaggramError):
    """The client went away mid-request; nobody reads this answer (nginx's 499 convention)."""

    status, code = 499, "client_disconnected"
