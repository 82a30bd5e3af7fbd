"""The service's one error hierarchy, free of HTTP.

Each error carries a stable machine-readable ``code``, whether retrying the same request later may
succeed (``retryable``) and, for overload, how long to wait (``retry_after_seconds``). The core
raises these; ``taggram.service.api.errors`` alone maps codes to HTTP statuses and headers, and the
in-process catalogue decides retries from ``retryable``.
"""

from __future__ import annotations

from typing import ClassVar

# When to retry a request refused while models load or the service drains, seconds: about a
# model's warm-up; a draining replica's load balancer sends the retry to another replica.
NOT_READY_RETRY_SECONDS = 5.0


class TaggramError(Exception):
    """Base class: ``code`` names the failure; ``retryable`` says a later retry may succeed."""

    code: ClassVar[str] = "internal_error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_seconds = retry_after_seconds


class EmptyAudioError(TaggramError):
    """No audio in the request: an empty body, or a multipart upload without its file field."""

    code = "empty_body"


class UnsupportedMediaTypeError(TaggramError):
    """A ``Content-Type`` the API does not take (not audio, octet-stream or multipart)."""

    code = "unsupported_media_type"


class PayloadTooLargeError(TaggramError):
    """The body is larger than ``max_upload_bytes`` (refused while it is read)."""

    code = "payload_too_large"


class UnsupportedContentEncodingError(TaggramError):
    """The body is compressed with a coding other than gzip, deflate or identity."""

    code = "unsupported_content_encoding"


class AudioTooLongError(TaggramError):
    """More audio than ``max_duration_seconds``: refused from a trustworthy header before
    decoding, or as soon as the decoded audio passes the limit."""

    code = "audio_too_long"


class SampleRateTooHighError(TaggramError):
    """The audio's native sample rate is above ``max_sample_rate`` (decoding cost grows with it)."""

    code = "sample_rate_too_high"


class UnsupportedFormatError(TaggramError):
    """The bytes are no container of the allow-list (``taggram.formats``)."""

    code = "unsupported_format"


class UndecodableAudioError(TaggramError):
    """An accepted container from which no audio decodes (broken, or no audio stream)."""

    code = "undecodable_audio"


class InvalidAudioError(TaggramError):
    """The audio decodes but cannot be tagged (e.g. NaN or infinite samples)."""

    code = "invalid_audio"


class InvalidOptionsError(TaggramError):
    """An option out of range, of the wrong type or unknown, or an embedding the model lacks."""

    code = "invalid_options"


class TooManyPatchesError(TaggramError):
    """The options would cut more patches than the queue can ever hold."""

    code = "too_many_patches"


class ModelNotFoundError(TaggramError):
    """The request names a model the service does not serve."""

    code = "model_not_found"


class ModelExistsError(TaggramError):
    """A model of that name exists already (repository or custom): delete it or pick another."""

    code = "model_exists"


class ModelReadOnlyError(TaggramError):
    """The model comes from the built repository, which the service manages: only custom models
    can be deleted, and no model is loaded or unloaded on request (``/v2/repository``)."""

    code = "model_read_only"


class TooManyModelsError(TaggramError):
    """The custom-models folder holds ``max_custom_models`` already: delete one first."""

    code = "too_many_models"


class InvalidExamplesError(TaggramError):
    """The examples of a custom model cannot make one: labels missing or unmatched, a single
    class, a declared class without an example, too many classes, a bad name."""

    code = "invalid_examples"


class TooManyExamplesError(TaggramError):
    """More examples in one creation request than ``max_custom_examples``."""

    code = "too_many_examples"


class StorageError(TaggramError):
    """The custom-models folder cannot be written (missing volume, read-only, full): a server
    fault, answered 500 with the reason."""

    code = "storage_failed"


class OverloadedError(TaggramError):
    """The model's queue is full; retry after ``retry_after_seconds``."""

    code = "overloaded"
    retryable = True


class DeadlineExceededError(TaggramError):
    """Queued patches waited longer than the queue deadline: refused rather than served late."""

    code = "deadline_exceeded"
    retryable = True


class RequestTimeoutError(TaggramError):
    """The client sent the body too slowly: nothing for the read timeout, or past the deadline."""

    code = "request_timeout"
    retryable = True


class NotReadyError(TaggramError):
    """Models are loading, or the service is shutting down: another replica or a retry helps.

    It says when to retry (``Retry-After``): :data:`NOT_READY_RETRY_SECONDS` unless the raiser
    knows better; without one, clients fell back to their own backoff, which starts well below
    a model's loading time and spent their tries before the models were warm."""

    code = "not_ready"
    retryable = True

    def __init__(
        self, message: str, *, retry_after_seconds: float | None = NOT_READY_RETRY_SECONDS
    ) -> None:
        super().__init__(message, retry_after_seconds=retry_after_seconds)


class InvalidTensorError(TaggramError):
    """An Open Inference Protocol tensor does not fit the model (name, datatype, shape, data)."""

    code = "invalid_tensor"


class AuthenticationError(TaggramError):
    """No API key, or one the service does not know, while keys are required."""

    code = "unauthorized"


class PermissionDeniedError(TaggramError):
    """A known API key whose scope does not allow the operation (e.g. ``tag`` on an admin route)."""

    code = "forbidden"


class InferenceFailedError(TaggramError):
    """ONNX Runtime failed on a batch: a server fault, reported to that batch's requests only."""

    code = "inference_failed"


class ClientDisconnectedError(TaggramError):
    """The client went away mid-request; nobody reads this answer."""

    code = "client_disconnected"
