"""Triton's HTTP extensions of the Open Inference Protocol: model configuration, statistics and
the model repository index, what ``tritonclient.http``'s ``get_model_config``,
``get_inference_statistics`` and ``get_model_repository_index`` (and perf_analyzer and
model_analyzer on them) ask for.

The models are those ``/v2`` serves (:func:`~taggram.service.api.routes.v2.served_model`: the
repository's, not custom ones), each with the one version its metadata names. The repository is
the service's own (``TAGGRAM_MODELS``, custom models through ``/v1/models``): its index is read
here, but loading and unloading are refused (409 ``model_read_only``).

Specs: https://github.com/triton-inference-server/server/tree/main/docs/protocol
(``extension_model_configuration.md``, ``extension_statistics.md``,
``extension_model_repository.md``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError
from starlette.exceptions import HTTPException

from taggram.repository import ModelMetadata, TensorSpec
from taggram.service.api.deps import TaggerDep
from taggram.service.api.openapi import problems
from taggram.service.api.routes.v2 import (
    PLATFORM,
    ModelName,
    ModelVersion,
    body_problems,
    protocol_router,
    served_model,
    served_version,
)
from taggram.service.api.uploads import InputBudget, read_body
from taggram.service.errors import ModelNotFoundError, ModelReadOnlyError
from taggram.service.statistics import Duration, NetworkStatistics, network_statistics
from taggram.service.tagging import Tagger

router = protocol_router()

_DATA_TYPE = "TYPE_FP32"  # the model configuration's name for the protocol's FP32
_NANOSECONDS = 1_000_000_000
# An index request is {"ready": true} at most; a larger body is no index request.
_INDEX_BODY_BYTES = 4096


class ConfigTensor(BaseModel):
    """One input or output of a model configuration: ``dims`` leave out the batch axis."""

    name: str
    data_type: str
    dims: list[int] = Field(description="-1 for a dimension of any size")


class DynamicBatching(BaseModel):
    """How long the batcher waits for a batch to fill (``TAGGRAM_MAX_QUEUE_DELAY_MS``), and its
    priority levels (a request's ``priority``, 1 the highest; without one, the default level)."""

    max_queue_delay_microseconds: int
    priority_levels: int
    default_priority_level: int


class InstanceGroup(BaseModel):
    """Where batches run: ``count`` at once (``TAGGRAM_INFERENCE_WORKERS`` on a CPU, 1 on a GPU)."""

    name: str
    kind: str = Field(description="KIND_CPU or KIND_GPU")
    count: int


class ModelConfig(BaseModel):
    """``GET /v2/models/{name}/config``: the model's configuration as Triton's
    ``model_config.proto`` gives it in JSON."""

    name: str
    platform: str
    backend: str
    max_batch_size: int = Field(description="the most patches one batch holds")
    input: list[ConfigTensor]
    output: list[ConfigTensor]
    dynamic_batching: DynamicBatching
    instance_group: list[InstanceGroup]


class DurationStat(BaseModel):
    """A count and the total time it took, in nanoseconds."""

    count: int
    ns: int


class InferenceStats(BaseModel):
    """A model's request statistics (:class:`~taggram.service.statistics.NetworkStatistics`);
    there is no response cache: ``cache_hit`` and ``cache_miss`` are zero."""

    success: DurationStat
    fail: DurationStat
    queue: DurationStat
    compute_input: DurationStat
    compute_infer: DurationStat
    compute_output: DurationStat
    cache_hit: DurationStat
    cache_miss: DurationStat


class ModelStat(BaseModel):
    """One model's statistics since the server started."""

    name: str
    version: str
    last_inference: int = Field(description="milliseconds since the epoch; 0 before the first")
    inference_count: int = Field(description="patches (batch rows) inferred")
    execution_count: int = Field(description="batches run")
    inference_stats: InferenceStats
    batch_stats: list[dict[str, Any]] = Field(description="not kept: always empty")


class ModelStatistics(BaseModel):
    """``GET /v2/models[/{name}[/versions/{version}]]/stats``."""

    model_stats: list[ModelStat]


class RepositoryIndexRequest(BaseModel):
    """``POST /v2/repository/index``: an empty body, or ``{"ready": true}`` for only the models
    ready to infer."""

    model_config = ConfigDict(extra="forbid")

    ready: StrictBool = False


class RepositoryModel(BaseModel):
    """One model of the repository index."""

    name: str
    version: str
    state: str = Field(description="READY, or LOADING while the models load")
    reason: str


def _config_tensors(specs: list[TensorSpec]) -> list[ConfigTensor]:
    return [
        ConfigTensor(
            name=spec.name,
            data_type=_DATA_TYPE,
            dims=[dim if isinstance(dim, int) else -1 for dim in spec.shape[1:]],
        )
        for spec in specs
    ]


def _config(tagger: Tagger, meta: ModelMetadata) -> ModelConfig:
    batcher = tagger.batcher(meta.name)  # NotReadyError (503) while the model loads
    provider = batcher.session.provider
    return ModelConfig(
        name=meta.name,
        platform=PLATFORM,
        backend="onnxruntime",
        max_batch_size=batcher.max_batch_size,
        input=_config_tensors(meta.inputs),
        output=_config_tensors(meta.outputs),
        dynamic_batching=DynamicBatching(
            max_queue_delay_microseconds=round(batcher.max_queue_delay * 1_000_000),
            priority_levels=batcher.priority_levels,
            default_priority_level=batcher.default_priority_level,
        ),
        instance_group=[
            InstanceGroup(
                name=f"{meta.name}_{provider}",
                kind="KIND_CPU" if provider == "cpu" else "KIND_GPU",
                count=batcher.workers,
            )
        ],
    )


@router.get(
    "/models/{model_name}/config",
    operation_id="v2_model_config",
    response_model=ModelConfig,
    summary="A model's configuration (Triton's model configuration extension)",
    responses=problems(404, 503),
)
async def model_config(model_name: ModelName, tagger: TaggerDep) -> ModelConfig:
    """The model's tensors without the batch axis, its batch size, queue delay, priority levels
    and workers."""
    return _config(tagger, served_model(tagger, model_name))


@router.get(
    "/models/{model_name}/versions/{model_version}/config",
    operation_id="v2_model_version_config",
    response_model=ModelConfig,
    summary="A model's configuration, for one version",
    responses=problems(404, 503),
)
async def model_version_config(
    model_name: ModelName, model_version: ModelVersion, tagger: TaggerDep
) -> ModelConfig:
    """As :func:`model_config`, for the model's current version only (404 otherwise)."""
    return _config(tagger, served_version(tagger, model_name, model_version))


def _duration(duration: Duration) -> DurationStat:
    return DurationStat(count=duration.count, ns=round(duration.seconds * _NANOSECONDS))


def _stat(meta: ModelMetadata) -> ModelStat:
    counts: NetworkStatistics = network_statistics(meta.name)
    none = DurationStat(count=0, ns=0)
    return ModelStat(
        name=meta.name,
        version=meta.version,
        last_inference=round((counts.last_inference or 0) * 1000),
        inference_count=counts.inference_count,
        execution_count=counts.execution_count,
        inference_stats=InferenceStats(
            success=_duration(counts.success),
            fail=_duration(counts.fail),
            queue=_duration(counts.queue),
            compute_input=_duration(counts.compute_input),
            compute_infer=_duration(counts.compute_infer),
            compute_output=_duration(counts.compute_output),
            cache_hit=none,
            cache_miss=none,
        ),
        batch_stats=[],
    )


def _served(tagger: Tagger) -> list[ModelMetadata]:
    """Every model /v2 serves (the repository's with a waveform input), by name."""
    served = []
    for name in sorted(tagger.entries):
        try:
            served.append(served_model(tagger, name))
        except ModelNotFoundError:  # no waveform input: not served on /v2
            continue
    return served


@router.get(
    "/models/stats",
    operation_id="v2_models_statistics",
    response_model=ModelStatistics,
    summary="Every model's inference statistics (Triton's statistics extension)",
    responses=problems(503),
)
async def models_statistics(tagger: TaggerDep) -> ModelStatistics:
    """Counts and times since the server started, for every model served on ``/v2``: every
    request through its batcher counts (``/v1`` uploads too), ``inference_count`` in patches."""
    return ModelStatistics(model_stats=[_stat(meta) for meta in _served(tagger)])


@router.get(
    "/models/{model_name}/stats",
    operation_id="v2_model_statistics",
    response_model=ModelStatistics,
    summary="A model's inference statistics",
    responses=problems(404, 503),
)
async def model_statistics(model_name: ModelName, tagger: TaggerDep) -> ModelStatistics:
    """As :func:`models_statistics`, for one model."""
    return ModelStatistics(model_stats=[_stat(served_model(tagger, model_name))])


@router.get(
    "/models/{model_name}/versions/{model_version}/stats",
    operation_id="v2_model_version_statistics",
    response_model=ModelStatistics,
    summary="A model's inference statistics, for one version",
    responses=problems(404, 503),
)
async def model_version_statistics(
    model_name: ModelName, model_version: ModelVersion, tagger: TaggerDep
) -> ModelStatistics:
    """As :func:`models_statistics`, for the model's current version only (404 otherwise)."""
    return ModelStatistics(model_stats=[_stat(served_version(tagger, model_name, model_version))])


_INDEX_BODY = {
    "requestBody": {
        "required": False,
        "description": 'empty (what tritonclient sends), or `{"ready": true}` for only the '
        "models ready to infer",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RepositoryIndexRequest"}}
        },
    }
}


@router.post(
    "/repository/index",
    operation_id="v2_repository_index",
    response_model=list[RepositoryModel],
    summary="The models served (Triton's model repository extension)",
    responses=problems(400, 408, 413, 415, 503),
    openapi_extra=_INDEX_BODY,
)
async def repository_index(request: Request, tagger: TaggerDep) -> list[RepositoryModel]:
    """Every model served on ``/v2``, ``READY`` once loaded and warm (``LOADING`` before)."""
    body = await read_body(request, InputBudget.of(tagger.settings, _INDEX_BODY_BYTES))
    try:
        asked = RepositoryIndexRequest.model_validate_json(body or b"{}")
    except ValidationError as error:
        # 400 malformed_request, as a malformed multipart body is answered (api/errors.py):
        # invalid_tensor ("Tensor does not fit the model") misled, for a body without a tensor.
        detail = body_problems(error, "a repository index request")
        raise HTTPException(status_code=400, detail=detail) from error
    index = []
    for meta in _served(tagger):
        ready = tagger.is_loaded(meta.name)
        if asked.ready and not ready:
            continue
        index.append(
            RepositoryModel(
                name=meta.name,
                version=meta.version,
                state="READY" if ready else "LOADING",
                reason="" if ready else "the models are loading and warming up",
            )
        )
    return index


_MANAGED = (
    "the model repository is managed by the service: it serves the repository's models named "
    "by TAGGRAM_MODELS, loaded at start-up, and custom models created and deleted at /v1/models"
)


@router.post(
    "/repository/models/{model_name}/load",
    operation_id="v2_repository_model_load",
    summary="Not offered: the service loads its models itself (409)",
    responses=problems(409),
)
async def repository_model_load(model_name: Annotated[str, Path()]) -> None:
    """Always 409 ``model_read_only``: models are loaded at start-up, not on request."""
    raise ModelReadOnlyError(f"{model_name} cannot be loaded on request: {_MANAGED}")


@router.post(
    "/repository/models/{model_name}/unload",
    operation_id="v2_repository_model_unload",
    summary="Not offered: the service unloads no model on request (409)",
    responses=problems(409),
)
async def repository_model_unload(model_name: Annotated[str, Path()]) -> None:
    """Always 409 ``model_read_only``: models stay loaded while the service runs."""
    raise ModelReadOnlyError(f"{model_name} cannot be unloaded on request: {_MANAGED}")
