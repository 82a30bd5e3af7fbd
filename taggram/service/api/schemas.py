"""Response bodies of the HTTP API (they also document it in the OpenAPI schema at /docs)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from taggram.repository import ModelMetadata
from taggram.service.tagging import TagResult


class ModelRef(BaseModel):
    """The model that answered: name, version and the ONNX Runtime provider it ran on."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    version: str
    provider: str = Field(description="ONNX Runtime provider that ran it: cpu, cuda, ...")


class AudioSummary(BaseModel):
    """The upload as sent (its own rate and channels) and its decoded duration in seconds."""

    duration_seconds: float = Field(description="decoded duration")
    sample_rate: int = Field(description="the file's own sample rate")
    channels: int = Field(description="the file's channel count (averaged to mono)")
    format: str = Field(
        description="container/codec as decoded, e.g. MP3/mp3, MP4/aac, WAV/pcm_s16le, Ogg/opus"
    )


class TagScore(BaseModel):
    """One tag and its clip-level probability (0-1)."""

    tag: str
    probability: float


class PatchRow(BaseModel):
    """One patch: the span of audio it scores (seconds) and its values."""

    start_seconds: float
    end_seconds: float
    values: list[float]


class Taggram(BaseModel):
    """Tag probabilities per patch (tags by time); ``tags`` orders each row's ``values``."""

    tags: list[str] = Field(description="the order of each patch's values")
    patches: list[PatchRow]


class Embeddings(BaseModel):
    """One embedding layer per patch and its clip mean."""

    layer: str
    mean: list[float] = Field(description="coverage-weighted mean over patches, like the tags")
    patches: list[PatchRow]


class Timings(BaseModel):
    """Per-stage durations of the request in milliseconds (also in ``Server-Timing``)."""

    decode_ms: float = Field(description="reading, decoding, resampling and cutting patches")
    queue_ms: float = Field(description="patches waiting for a batch slot")
    inference_ms: float = Field(description="ONNX Runtime batches this request took part in")
    total_ms: float


class TagResponse(BaseModel):
    """The answer of ``POST /v1/tag`` for one model."""

    model_config = ConfigDict(protected_namespaces=())

    request_id: str
    model: ModelRef
    audio: AudioSummary
    patches: int = Field(description="number of patches the audio was cut into")
    tags: list[TagScore] = Field(description="clip-level probabilities, best first")
    taggram: Taggram | None = None
    embeddings: Embeddings | None = None
    timings: Timings
    warnings: list[str] = Field(
        default_factory=list,
        description="what went wrong although audio was tagged, e.g. a stream that stops "
        "early (where and why) or audio shorter than one patch (zero-padded): empty when all "
        "went well",
    )

    @classmethod
    def from_result(cls, result: TagResult, request_id: str) -> TagResponse:
        """The response body for ``result`` (one model's tagging of one upload)."""
        starts, ends = result.patch_starts.tolist(), result.patch_ends.tolist()

        def rows(values: list[list[float]]) -> list[PatchRow]:
            return [
                PatchRow(start_seconds=s, end_seconds=e, values=v)
                for s, e, v in zip(starts, ends, values, strict=True)
            ]

        taggram = None
        if result.taggram is not None:
            taggram = Taggram(tags=result.model.tags, patches=rows(result.taggram.tolist()))
        embeddings = None
        if (
            result.embedding_name is not None
            and result.embeddings is not None
            and result.embedding_mean is not None
        ):
            embeddings = Embeddings(
                layer=result.embedding_name,
                mean=result.embedding_mean.tolist(),
                patches=rows(result.embeddings.tolist()),
            )
        return cls(
            request_id=request_id,
            model=ModelRef(
                name=result.model.name, version=result.model.version, provider=result.provider
            ),
            audio=AudioSummary(
                duration_seconds=result.duration_seconds,
                sample_rate=result.audio.sample_rate,
                channels=result.audio.channels,
                format=result.audio.format,
            ),
            patches=len(starts),
            tags=[TagScore(tag=tag, probability=p) for tag, p in result.tags],
            taggram=taggram,
            embeddings=embeddings,
            timings=Timings(**result.timings.milliseconds()),
            warnings=list(result.warnings),
        )


class MultiTagResponse(BaseModel):
    """The answer when a request names several models: one result each, in request order."""

    request_id: str
    results: list[TagResponse]


def tag_response(results: list[TagResult], request_id: str) -> TagResponse | MultiTagResponse:
    """One model: its :class:`TagResponse` unchanged; several: a ``results`` array."""
    responses = [TagResponse.from_result(result, request_id) for result in results]
    if len(responses) == 1:
        return responses[0]
    return MultiTagResponse(request_id=request_id, results=responses)


class FileError(BaseModel):
    """Why one file of a batch failed: the error body's code and message, and the HTTP status
    the same file would get from ``/v1/tag``."""

    code: str
    message: str
    status: int


class FileOutcome(BaseModel):
    """One file of a batch, in upload order: its ``result`` or its ``error``."""

    filename: str
    result: TagResponse | MultiTagResponse | None = None
    error: FileError | None = None


class BatchResponse(BaseModel):
    """The answer of ``POST /v1/tag/batch``: one outcome per file, in upload order."""

    request_id: str
    results: list[FileOutcome]


class ModelList(BaseModel):
    """The answer of ``GET /v1/models``."""

    default_model: str
    models: list[ModelMetadata]


class Health(BaseModel):
    """``/healthz`` and ``/readyz``: ``ok``, ``starting``, ``ready``, ``draining`` or ``failed``."""

    status: str


class FieldProblem(BaseModel):
    """One invalid request field."""

    location: list[str | int] = Field(description='where: e.g. ["query", "top_k"]')
    message: str


class LegacyError(BaseModel):
    """The envelope of taggram 0.1 (``{"error": {...}}``), kept on /v1 for older clients."""

    code: str
    message: str
    request_id: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem details object (``application/problem+json``).

    ``code`` (stable, machine-readable) and ``request_id`` (also the ``X-Request-ID`` header) are
    extension members; ``error`` is the Open Inference Protocol's message on /v2 and the
    deprecated 0.1 envelope on /v1.
    """

    type: str = Field(description="URI naming the problem type: urn:taggram:problem:<code>")
    title: str = Field(description="short summary of the problem type")
    status: int = Field(ge=100, le=599, description="the HTTP status code")
    detail: str = Field(description="what went wrong with this request")
    instance: str = Field(description="the request path")
    code: str = Field(description="stable machine-readable error code, e.g. overloaded")
    request_id: str | None = Field(None, description="this request's id (X-Request-ID)")
    retryable: bool = Field(description="whether the same request may succeed later")
    errors: list[FieldProblem] | None = Field(None, description="each invalid field (422)")
    error: str | LegacyError | None = Field(
        None, description="/v2: the message (KServe V2); /v1: the 0.1 envelope (deprecated)"
    )
