"""The Open Inference Protocol (KServe V2) over HTTP, beside ``/v1``.

What Triton, KServe and MLServer clients (``tritonclient.http``) expect: server and model
metadata, liveness and readiness, and ``POST /v2/models/{name}/infer`` running ready-made model
inputs. Every served model whose input is a float32 ``[batch, samples]`` waveform appears here
(custom models, which classify whole clips, do not: 404);
its input tensor must be FP32 of shape ``[batch, patch samples]`` (else 400), sent as JSON
``data`` (at most ``TAGGRAM_MAX_JSON_TENSOR_ELEMENTS`` elements) or with the binary tensor
extension (``Inference-Header-Content-Length`` header: the JSON header, then raw little-endian
bytes). Rows go through the same batcher, byte limit and admission (429) as ``/v1/tag``; outputs
come back as JSON or, when asked (``binary_data``), as binary, or as their best classes with the
classification extension (:mod:`taggram.service.api.classification`). Triton's schedule policy
extension: the request's ``timeout`` parameter (microseconds) bounds its rows' wait for a batch
slot (429 past it), and its ``priority`` (1 the highest, 0 or absent the default level; the
levels are the model configuration's ``dynamic_batching.priority_levels`` and
``default_priority_level``) picks the batcher's level for its rows: higher levels fill each batch
first (:mod:`taggram.service.inference.batcher`). A ``priority`` outside ``0 .. priority_levels``
is a 400 naming it, as a bad ``timeout`` is, where Triton quietly serves it at the default level:
a typo should not silently lose the client the level it asked for. Triton's other extensions are
in :mod:`taggram.service.api.routes.triton`.

Spec: https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from importlib.metadata import version
from itertools import chain
from typing import Annotated, Any, NamedTuple

import numpy as np
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from taggram.repository import ModelMetadata
from taggram.service.api import classification
from taggram.service.api.auth import require_scope
from taggram.service.api.deps import LifecycleDep, TaggerDep
from taggram.service.api.disconnect import unless_disconnected
from taggram.service.api.errors import dotted, shown
from taggram.service.api.openapi import problems
from taggram.service.api.uploads import InputBudget, read_body
from taggram.service.errors import (
    InvalidTensorError,
    ModelNotFoundError,
    NotReadyError,
    PayloadTooLargeError,
)
from taggram.service.inference.batcher import Batcher
from taggram.service.tagging import Tagger


def protocol_router() -> APIRouter:
    """A router of /v2 routes: the prefix, the documentation's tag and the ``tag`` scope; this
    module's, and one for Triton's extensions (:mod:`taggram.service.api.routes.triton`)."""
    return APIRouter(
        prefix="/v2",
        tags=["open inference protocol"],
        dependencies=[Depends(require_scope("tag"))],
    )


router = protocol_router()

HEADER_LENGTH = "Inference-Header-Content-Length"
# Triton's model_configuration, model_repository and statistics are served by routes/triton.py;
# schedule_policy is the request's timeout and priority parameters.
EXTENSIONS = [
    "binary_tensor_data",
    classification.PARAMETER,
    "model_configuration",
    "model_repository",
    "schedule_policy",
    "statistics",
]
DATATYPE = "FP32"
PLATFORM = "onnxruntime_onnx"
# Room for the JSON around the numbers, and the most characters one FP32 number may take in JSON.
_JSON_OVERHEAD_BYTES = 64 * 1024
_JSON_BYTES_PER_ELEMENT = 32
# Triton's highest priority level (the protocol's, whatever the model's count of levels).
_HIGHEST_PRIORITY = 1

ModelName = Annotated[str, Path(description="a served model, as listed by GET /v1/models")]
Parameters = dict[str, str | int | float | bool]


class ServerMetadata(BaseModel):
    """``GET /v2``: the server's name, version and protocol extensions."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """One input or output tensor of a model: name, datatype and shape."""

    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the batch axis")


class ServerLive(BaseModel):
    """``GET /v2/health/live``: the Open Inference Protocol's ``$live_server_response``."""

    live: bool


class ServerReady(BaseModel):
    """``GET /v2/health/ready``: the Open Inference Protocol's ``$ready_server_response``."""

    ready: bool


class ModelReady(BaseModel):
    """``GET /v2/models/{name}/ready``: the Open Inference Protocol's ``$ready_model_response``."""

    name: str
    ready: bool


class ModelMetadataV2(BaseModel):
    """``GET /v2/models/{name}``: the model's versions, platform and tensors."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    """One input tensor of an inference request: ``FP32`` ``[batch, samples]`` waveform patches
    at the model's sample rate, as JSON ``data`` or through the binary tensor extension.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    # Strict: JSON 1.0 and true are no dimensions (lax validation read them as 1). The protocol's
    # dimensions are unsigned 64-bit integers: a larger one is malformed, not a large tensor.
    shape: list[Annotated[StrictInt, Field(ge=0, le=2**64 - 1)]]
    datatype: str
    parameters: Parameters | None = None
    data: list[Any] | None = Field(None, description="row-major values, flat or nested")


class RequestOutput(BaseModel):
    """One output asked for by name (all outputs when the request names none, or an empty
    list, as Triton and KServe read it); ``parameters`` may hold ``binary_data`` (a boolean) and
    ``classification`` (a count of best classes)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: Parameters | None = None


class InferenceRequest(BaseModel):
    """``POST /v2/models/{name}/infer``: the Open Inference Protocol request body. The URL
    names the model: ``model_name`` and ``model_version`` in the body (KServe's client sends
    them, Triton's examples show them) are taken and not used, as Triton does."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    parameters: Parameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """One output tensor of the response, ``FP32`` ``[batch, ...]``, or ``BYTES``
    ``[batch, k]`` for an output asked for with ``classification``."""

    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None
    data: list[float] | list[str] | None = None


class InferenceResponse(BaseModel):
    """The Open Inference Protocol response body."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


def has_waveform_input(meta: ModelMetadata) -> bool:
    """Whether the model takes one float32 ``[batch, samples]`` input (all taggram models do)."""
    if len(meta.inputs) != 1:
        return False
    spec = meta.inputs[0]
    return spec.dtype == "float32" and len(spec.shape) == 2 and spec.shape[1] == meta.patch.samples


def served_model(tagger: Tagger, name: str) -> ModelMetadata:
    """The metadata of ``name`` if /v2 serves it. Raises :class:`ModelNotFoundError` for an
    unknown model, a custom one, or one without a waveform input."""
    if name not in tagger.models and name not in tagger.custom.unserved:
        # /v1's error lists custom models too, which /v2 refuses: list what /v2 serves.
        served = sorted(
            n for n, entry in tagger.entries.items() if has_waveform_input(entry.metadata)
        )
        raise ModelNotFoundError(f"no model named {name!r}; /v2 serves {served}")
    meta = tagger.model(name)
    if meta.kind == "custom":  # its metadata names its base's input, but it classifies clips
        raise ModelNotFoundError(
            f"{name} is a custom model: it tags whole audio files at /v1/tag, not tensors on /v2"
        )
    if not has_waveform_input(meta):
        raise ModelNotFoundError(f"model {name!r} has no waveform input and is not served on /v2")
    return meta


def _shape(shape: list[int | str]) -> list[int]:
    return [dim if isinstance(dim, int) else -1 for dim in shape]


@router.get(
    "",
    operation_id="v2_server_metadata",
    response_model=ServerMetadata,
    summary="Server metadata",
    responses=problems(),
)
async def server_metadata() -> ServerMetadata:
    """Open Inference Protocol server metadata."""
    return ServerMetadata(name="taggram", version=version("taggram"), extensions=EXTENSIONS)


# The health answers carry the protocol's JSON bodies ({"live": true}, {"ready": true}): the
# status alone is what Triton's clients and Kubernetes probes read, but KServe's client parses
# the body, and an empty one (the first protocol draft's "should be empty") made it raise.


@router.get(
    "/health/live",
    operation_id="v2_server_live",
    response_model=ServerLive,
    summary="Liveness: 200 while the process answers",
)
async def server_live() -> ServerLive:
    """200 ``{"live": true}`` while the process answers."""
    return ServerLive(live=True)


@router.get(
    "/health/ready",
    operation_id="v2_server_ready",
    response_model=ServerReady,
    summary="Readiness: 200 once every model is loaded and warm, 503 otherwise",
    responses=problems(503),
)
async def server_ready(lifecycle: LifecycleDep) -> ServerReady:
    """200 ``{"ready": true}`` when every model is loaded and the service is not draining,
    else 503."""
    if not lifecycle.accepting_traffic:
        raise NotReadyError(f"the service is {lifecycle.status}")
    return ServerReady(ready=True)


@router.get(
    "/models/{model_name}",
    operation_id="v2_model_metadata",
    response_model=ModelMetadataV2,
    summary="A model's tensors",
    responses=problems(404, 503),
)
async def model_metadata(model_name: ModelName, tagger: TaggerDep) -> ModelMetadataV2:
    """The model's input (``FP32`` ``[-1, patch samples]`` waveform) and output tensors."""
    meta = served_model(tagger, model_name)

    def tensors(specs: list[Any]) -> list[TensorMetadata]:
        return [
            TensorMetadata(name=spec.name, datatype=DATATYPE, shape=_shape(spec.shape))
            for spec in specs
        ]

    return ModelMetadataV2(
        name=meta.name,
        versions=[meta.version],
        platform=PLATFORM,
        inputs=tensors(meta.inputs),
        outputs=tensors(meta.outputs),
    )


@router.get(
    "/models/{model_name}/ready",
    operation_id="v2_model_ready",
    response_model=ModelReady,
    summary="Whether a model is loaded and can infer",
    responses=problems(404, 503),
)
async def model_ready(model_name: ModelName, tagger: TaggerDep) -> ModelReady:
    """200 ``{"name", "ready": true}`` when the model is loaded, else 503."""
    meta = served_model(tagger, model_name)
    if not tagger.is_loaded(meta.name):
        raise NotReadyError(f"{meta.name} is still loading")
    return ModelReady(name=meta.name, ready=True)


def _split(body: bytes, header_lengths: list[str], json_limit: int) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data after it; ``header_lengths``: every
    ``Inference-Header-Content-Length`` the request carries (none: all of the body is JSON),
    each one value or a comma-separated list of them. Raises :class:`InvalidTensorError` for
    values that differ or one that is not a byte count within the body,
    :class:`PayloadTooLargeError` for a JSON part over ``json_limit`` bytes."""
    # A proxy may fold repeated headers into one, "10, 10" (RFC 9110 5.3): a list is read as
    # the headers it joins. Two that differ leave the split ambiguous: reading the first
    # answered 200 for a body a proxy or another server may read with the second. Repeats of
    # one value are the same length (as RFC 9110 8.6 lets a recipient take a Content-Length of
    # identical values, "42, 42").
    values = [value.strip() for header in header_lengths for value in header.split(",")]
    if len(set(values)) > 1:
        raise InvalidTensorError(
            f"{HEADER_LENGTH} carries different values ({', '.join(values)}): send one"
        )
    header_length = values[0] if values else None
    if header_length is None:
        json_part, binary = body, b""
    else:
        # ASCII digits only: str.isdigit() also takes "²", which int() then refuses (a 500).
        count = header_length.isascii() and header_length.isdigit()
        if not count or int(header_length) > len(body):
            raise InvalidTensorError(
                f"{HEADER_LENGTH} must be a byte count within the body of {len(body)} bytes, "
                f"got {shown(header_length)}"
            )
        json_part, binary = body[: int(header_length)], body[int(header_length) :]
    if len(json_part) > json_limit:
        raise PayloadTooLargeError(
            f"the JSON part of {len(json_part)} bytes exceeds {json_limit}; send large tensors "
            "with the binary tensor extension"
        )
    return json_part, binary


def body_problems(error: ValidationError, what: str) -> str:
    """Why a JSON body is not ``what``: each problem's location and message."""
    problems_ = "; ".join(
        f"{dotted(item['loc']) or 'body'}: {item['msg']}" for item in error.errors()
    )
    return f"not {what}: {problems_}"


def invalid_body(error: ValidationError, what: str) -> InvalidTensorError:
    """The 400 for a /v2 inference body that is not ``what`` (:func:`body_problems`)."""
    return InvalidTensorError(body_problems(error, what))


def _parse(json_part: bytes) -> InferenceRequest:
    try:
        return InferenceRequest.model_validate_json(json_part)
    except ValidationError as error:
        raise invalid_body(error, "an inference request") from error


def _read(
    json_part: bytes, binary: bytes, meta: ModelMetadata, max_elements: int
) -> tuple[InferenceRequest, np.ndarray]:
    """The request and its ``[batch, samples]`` float32 input, its outputs checked too (unknown
    outputs are refused before any work is queued). Raises :class:`InvalidTensorError`."""
    request = _parse(json_part)
    patches = _input(request, binary, meta, max_elements)
    _wanted(request, meta)
    return request, patches


def _input(
    request: InferenceRequest, binary: bytes, meta: ModelMetadata, max_elements: int
) -> np.ndarray:
    """The ``[batch, samples]`` float32 input, checked against the model."""
    samples = meta.patch.samples
    if len(request.inputs) != 1 or request.inputs[0].name != meta.input_name:
        names = [tensor.name for tensor in request.inputs]
        raise InvalidTensorError(f"{meta.name} takes one input {meta.input_name!r}, got {names}")
    tensor = request.inputs[0]
    if tensor.datatype != DATATYPE:
        raise InvalidTensorError(f"input {tensor.name!r} must be {DATATYPE}, got {tensor.datatype}")
    if len(tensor.shape) != 2 or tensor.shape[1] != samples or tensor.shape[0] < 1:
        raise InvalidTensorError(
            f"input {tensor.name!r} must have shape [batch >= 1, {samples}], got {tensor.shape}"
        )
    count = math.prod(tensor.shape)
    size = (tensor.parameters or {}).get("binary_data_size")
    if size is not None:
        if tensor.data is not None:
            raise InvalidTensorError("give an input either as data or as binary_data_size")
        # An integer: true or 4.0 would pass the comparison below (True == 1, 4.0 == 4).
        if type(size) is not int or size != count * 4:
            raise InvalidTensorError(
                f"input {tensor.name!r} of shape {tensor.shape} is {count * 4} bytes "
                f"({count} FP32 values), but its binary_data_size says {size!r}"
            )
        if len(binary) != size:
            raise InvalidTensorError(
                f"input {tensor.name!r} declares binary_data_size {size}, but {len(binary)} "
                "bytes arrived after the JSON header"
            )
        values = np.frombuffer(binary, dtype="<f4").astype(np.float32)
    else:
        if binary:
            raise InvalidTensorError("binary data after the JSON header but no binary_data_size")
        if tensor.data is None:
            raise InvalidTensorError(f"input {tensor.name!r} has neither data nor binary data")
        # The values sent, not the shape claimed, are what is too large: a shape the data does
        # not fill ([2**62, 48128] over a few numbers) is a 400 from json_values, as Triton's.
        given = _given(tensor.data)
        if given > max_elements:
            raise PayloadTooLargeError(
                f"a JSON tensor of {given} elements exceeds the limit of {max_elements}; "
                "use the binary tensor extension"
            )
        values = json_values(tensor.data, tensor.shape[0], samples)
    if not np.isfinite(values).all():
        raise InvalidTensorError(
            "input data holds NaN or infinite values, or numbers beyond FP32's range (3.4e38)"
        )
    return values.reshape(tensor.shape[0], samples)


# What a JSON value that is no number is called in a refusal, by its Python type after parsing.
_JSON_NAMES = {bool: "a boolean", str: "a string", type(None): "null", list: "an array",
               dict: "an object"}  # fmt: skip


def _given(data: list[Any]) -> int:
    """How many values JSON ``data`` holds, flat or nested one level (each array of a nested
    tensor counted by its length, deeper nesting refused later by :func:`json_values`)."""
    if data and type(data[0]) is list:
        return sum(len(row) if type(row) is list else 1 for row in data)
    return len(data)


def json_values(data: list[Any], rows: int, samples: int) -> np.ndarray:
    """The float32 ``[rows * samples]`` values of a JSON tensor's ``data``: row-major, flat
    (``[v, v, ...]``) or nested as its shape (``[[v, ...], ...]``, ``rows`` arrays of
    ``samples``), every value a JSON number, as Triton and KServe take them.

    Raises:
        InvalidTensorError: a value that is no number (``true`` was read as 1.0, ``null`` and
            strings failed in numpy), nesting that is not the shape (the element count alone
            was checked), or a count that is not ``rows * samples``.
    """
    count = rows * samples
    if data and type(data[0]) is list:
        lengths = [len(row) if type(row) is list else -1 for row in data]
        if len(data) != rows or any(length != samples for length in lengths):
            raise InvalidTensorError(
                f"nested input data must be {rows} arrays of {samples} numbers (shape "
                f"[{rows}, {samples}]), got {len(data)} items of lengths "
                f"{_summary([length if length >= 0 else 'not an array' for length in lengths])}"
            )
        elements: Iterable[Any] = chain.from_iterable(data)
    else:
        if len(data) != count:
            raise InvalidTensorError(
                f"input data must be {count} numbers (shape [{rows}, {samples}]), row-major or "
                f"nested as the shape; got {len(data)}"
            )
        elements = data
    # One pass in C over the types (about 10 ms per Mi values, where parsing them takes 65):
    # a Python loop asking each value would cost twice that.
    if not set(map(type, elements)) <= {float, int}:
        flat = list(chain.from_iterable(data)) if elements is not data else data
        index, bad = next((i, v) for i, v in enumerate(flat) if type(v) not in (float, int))
        what = _JSON_NAMES.get(type(bad), type(bad).__name__)
        raise InvalidTensorError(
            f"input data must be numbers (FP32); value {index} (row-major) is {what}: "
            f"{json.dumps(bad)[:40]}"
        )
    try:
        # JSON numbers beyond FP32's range become infinities (refused by the caller) without
        # numpy's "overflow" warning, a stray line on stderr outside the service's log format.
        with np.errstate(over="ignore"):
            return np.asarray(data, dtype=np.float32).reshape(count)
    except OverflowError as error:  # an integer beyond float64 (a 400-digit literal)
        raise InvalidTensorError(
            f"input data holds a number beyond FP32's range: {error}"
        ) from error


def _summary(items: list[Any], shown: int = 4) -> str:
    """``[a, b, c, d, ...]``: the first few of ``items``, for a message."""
    more = ", ..." if len(items) > shown else ""
    return "[" + ", ".join(map(str, items[:shown])) + more + "]"


def _flag(parameters: Parameters | None, key: str, default: bool) -> bool:
    """A boolean request parameter; a string such as ``"false"`` is refused, not read as true."""
    value = (parameters or {}).get(key, default)
    if not isinstance(value, bool):
        raise InvalidTensorError(f"parameter {key!r} must be true or false, got {value!r}")
    return value


class Wanted(NamedTuple):
    """One output to answer: its name, whether as binary, and how many best classes instead
    of its values (``None``: the values)."""

    name: str
    binary: bool
    classes: int | None


def _classes(parameters: Parameters | None) -> int | None:
    """The ``classification`` parameter: a count of classes (an integer >= 1), or ``None``."""
    value = (parameters or {}).get(classification.PARAMETER)
    if value is not None and (type(value) is not int or value < 1):
        raise InvalidTensorError(
            f"parameter {classification.PARAMETER!r} must be a whole number of classes >= 1, "
            f"got {value!r}"
        )
    return value


def _timeout_seconds(parameters: Parameters | None) -> float | None:
    """The request's ``timeout`` parameter (Triton's: microseconds, a whole number >= 0, 0 for
    none) in seconds: the longest its rows may wait for a batch slot. ``None`` when absent or 0.
    Raises :class:`InvalidTensorError` for anything else."""
    value = (parameters or {}).get("timeout")
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise InvalidTensorError(
            f"parameter 'timeout' must be a whole number of microseconds >= 0, got {value!r}"
        )
    return value / 1_000_000 if value else None


def _priority(parameters: Parameters | None, batcher: Batcher) -> int | None:
    """The request's ``priority`` parameter (Triton's: 1 the highest level, 0 for the default):
    ``None`` when absent or 0. Raises :class:`InvalidTensorError` for anything but a whole
    number in ``0 .. batcher.priority_levels``."""
    value = (parameters or {}).get("priority")
    if value is None:
        return None
    try:
        if type(value) is not int:  # not a bool or a float either
            raise ValueError(f"priority {value!r} is not a whole number")
        batcher.level(value)  # the batcher's levels are the range
    except ValueError as error:
        raise InvalidTensorError(
            f"parameter 'priority' must be a whole number from 1 (the highest level) to "
            f"{batcher.priority_levels}, or 0 for the default level "
            f"({batcher.default_priority_level}); got {value!r}"
        ) from error
    return value or None


def _wanted(request: InferenceRequest, meta: ModelMetadata) -> list[Wanted]:
    """Each requested output, all by default (no ``outputs``, or an empty list: a client that
    always sends the member got no output at all)."""
    default_binary = _flag(request.parameters, "binary_data_output", False)
    names = [spec.name for spec in meta.outputs]
    if not request.outputs:
        return [Wanted(name, default_binary, None) for name in names]
    asked = [out.name for out in request.outputs]
    unknown = [name for name in asked if name not in names]
    if unknown:
        raise InvalidTensorError(f"{meta.name} has no outputs {unknown}; it has {names}")
    # Triton refuses an output asked for twice; answering it twice would fill the response twice.
    repeated = sorted({name for name in asked if asked.count(name) > 1})
    if repeated:
        raise InvalidTensorError(f"outputs {repeated} are asked for more than once")
    return [
        Wanted(
            out.name,
            _flag(out.parameters, "binary_data", default_binary),
            _classes(out.parameters),
        )
        for out in request.outputs
    ]


def _output(
    wanted: Wanted, meta: ModelMetadata, values: np.ndarray
) -> tuple[ResponseOutput, bytes]:
    """One output of the response and, when it goes as binary, its bytes (else ``b""``)."""
    data: list[float] | list[str] | None = None
    if wanted.classes is None:
        values = np.ascontiguousarray(values, dtype="<f4")
        output = ResponseOutput(name=wanted.name, datatype=DATATYPE, shape=list(values.shape))
        blob = values.tobytes() if wanted.binary else b""
        if not wanted.binary:
            data = values.ravel().tolist()
    else:
        labels = meta.tags if wanted.name == meta.probabilities_output else None
        best = classification.classify(values, wanted.classes, labels)
        output = ResponseOutput(
            name=wanted.name, datatype=classification.DATATYPE, shape=[len(best), len(best[0])]
        )
        blob = classification.to_bytes(best) if wanted.binary else b""
        if not wanted.binary:
            data = [item for row in best for item in row]
    if wanted.binary:
        output.parameters = {"binary_data_size": len(blob)}
    output.data = data
    return output, blob


def _answer(
    request: InferenceRequest, meta: ModelMetadata, outputs: dict[str, np.ndarray]
) -> Response:
    described, blobs = [], []
    for wanted in _wanted(request, meta):
        output, blob = _output(wanted, meta, outputs[wanted.name])
        described.append(output)
        if wanted.binary:
            blobs.append(blob)
    answer = InferenceResponse(
        model_name=meta.name, model_version=meta.version, id=request.id, outputs=described
    )
    if not blobs:
        return JSONResponse(answer.model_dump(mode="json", exclude_none=True))
    header = json.dumps(answer.model_dump(mode="json", exclude_none=True)).encode()
    return Response(
        header + b"".join(blobs),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


_INFER_BODY = {
    "requestBody": {
        "required": True,
        "description": "An inference request. With the binary tensor extension the body is "
        f"the JSON request, then the raw tensor bytes; the `{HEADER_LENGTH}` header gives the "
        "JSON's length and each input's `parameters.binary_data_size` its bytes.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
            # What binary requests are sent as (KServe's client; Triton's examples).
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "parameters": [
        {
            "name": HEADER_LENGTH,
            "in": "header",
            "required": False,
            "description": "with binary tensors: the length in bytes of the JSON request that "
            "starts the body",
            "schema": {"type": "integer", "minimum": 0},
        }
    ],
}


_INFER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the outputs; with binary outputs, the JSON response then the bytes "
        f"(`{HEADER_LENGTH}` gives the JSON's length)",
        "content": {"application/octet-stream": {"schema": {"type": "string"}}},
    },
    **problems(400, 404, 408, 413, 415, 429, 500, 503),
}


@router.post(
    "/models/{model_name}/infer",
    operation_id="v2_model_infer",
    response_model=InferenceResponse,
    summary="Run ready-made model inputs (FP32 [batch, patch samples])",
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_BODY,
)
async def model_infer(model_name: ModelName, request: Request, tagger: TaggerDep) -> Response:
    """Run a batch of waveform patches through the model (same batcher, limits and admission
    as ``/v1``); JSON or binary tensor extension in and out. 400 for a tensor of the wrong
    datatype or shape.
    """
    meta = served_model(tagger, model_name)
    # A busy model refuses before a byte of the body is read, as /v1; the body's priority is
    # not known yet, so only what even the highest level would wait too long for.
    tagger.admit(meta.name, _HIGHEST_PRIORITY)
    settings = tagger.settings
    body = await read_body(request, InputBudget.of(settings, settings.max_upload_bytes))
    json_limit = settings.max_json_tensor_elements * _JSON_BYTES_PER_ELEMENT + _JSON_OVERHEAD_BYTES
    json_part, binary = _split(body, request.headers.getlist(HEADER_LENGTH), json_limit)
    # Parsing is the /v2 request's decoding (80 ms for a JSON tensor of 1 Mi values, which
    # stalled every other request on the event loop): on a decode slot, within its budgets.
    infer_request, patches = await tagger.decodes.run(
        meta.name, _read, json_part, binary, meta, settings.max_json_tensor_elements
    )
    deadline = _timeout_seconds(infer_request.parameters)
    priority = _priority(infer_request.parameters, tagger.batcher(meta.name))
    outputs = await unless_disconnected(
        request, tagger.infer(meta.name, patches, deadline_seconds=deadline, priority=priority)
    )
    return _answer(infer_request, meta, outputs)


# The same operations for one version of a model (what clients that pin a version call): a
# taggram model serves the one version its metadata names; any other is 404.
ModelVersion = Annotated[str, Path(description="the model's version, as its metadata gives it")]
_VERSIONED = "/models/{model_name}/versions/{model_version}"


def served_version(tagger: Tagger, name: str, model_version: str) -> ModelMetadata:
    """As :func:`served_model`, for the one version the model serves (any other: 404)."""
    meta = served_model(tagger, name)
    if model_version != meta.version:
        raise ModelNotFoundError(
            f"{meta.name} has no version {model_version!r}; it serves {meta.version!r}"
        )
    return meta


@router.get(
    _VERSIONED,
    operation_id="v2_model_version_metadata",
    response_model=ModelMetadataV2,
    summary="A model's tensors, for one version",
    responses=problems(404, 503),
)
async def model_version_metadata(
    model_name: ModelName, model_version: ModelVersion, tagger: TaggerDep
) -> ModelMetadataV2:
    """As :func:`model_metadata`, for the model's current version only (404 otherwise)."""
    served_version(tagger, model_name, model_version)
    return await model_metadata(model_name, tagger)


@router.get(
    f"{_VERSIONED}/ready",
    operation_id="v2_model_version_ready",
    response_model=ModelReady,
    summary="Whether one version of a model is loaded and can infer",
    responses=problems(404, 503),
)
async def model_version_ready(
    model_name: ModelName, model_version: ModelVersion, tagger: TaggerDep
) -> ModelReady:
    """As :func:`model_ready`, for the model's current version only (404 otherwise)."""
    served_version(tagger, model_name, model_version)
    return await model_ready(model_name, tagger)


@router.post(
    f"{_VERSIONED}/infer",
    operation_id="v2_model_version_infer",
    response_model=InferenceResponse,
    summary="Run ready-made model inputs on one version of a model",
    responses=_INFER_RESPONSES,
    openapi_extra=_INFER_BODY,
)
async def model_version_infer(
    model_name: ModelName, model_version: ModelVersion, request: Request, tagger: TaggerDep
) -> Response:
    """As :func:`model_infer`, for the model's current version only (404 otherwise)."""
    served_version(tagger, model_name, model_version)
    return await model_infer(model_name, request, tagger)
