"""The OpenAPI document: exact statuses, problem bodies, security, and the served models' limits.

Routes declare their error statuses with :func:`problems`; :func:`build_openapi` then adds what
only the running service knows: the ``Problem`` schema, the security schemes and 401/403 answers
when API keys are on, and the options' real constraints from the loaded models (embedding names as
an enum, the hop's range). ``model`` stays a free string: models may be added at run time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from taggram.repository import ModelMetadata
from taggram.service.api.auth import KeyRing
from taggram.service.api.errors import PROBLEM_JSON, PROTOCOL_JSON
from taggram.service.api.schemas import Problem
from taggram.service.tagging import TagOptions

# Path parameters that name a served model.
_MODEL_PATH_PARAMETERS = ("name", "model_name")
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_DESCRIPTIONS = {
    400: "Malformed request: no audio, a malformed multipart body, or a tensor that does not "
    "fit the model (`empty_body`, `malformed_request`, `invalid_tensor`)",
    401: "Missing or unknown API key, or two different keys (`unauthorized`)",
    403: "The API key's scope does not allow this operation (`forbidden`)",
    404: "No such model (`model_not_found`)",
    408: "The body did not arrive in time: no data for `TAGGRAM_READ_TIMEOUT_SECONDS` or not "
    "complete within `TAGGRAM_BODY_TIMEOUT_SECONDS` (`request_timeout`)",
    413: "Body over `TAGGRAM_MAX_UPLOAD_BYTES`, audio over `TAGGRAM_MAX_DURATION_SECONDS` or "
    "`TAGGRAM_MAX_SAMPLE_RATE` (`payload_too_large`, `audio_too_long`, `sample_rate_too_high`)",
    415: "Content-Type, audio container or Content-Encoding not accepted "
    "(`unsupported_media_type`, `unsupported_format`, `unsupported_content_encoding`)",
    422: "Invalid options, undecodable or invalid audio, too many patches (`invalid_options`, "
    "`undecodable_audio`, `invalid_audio`, `too_many_patches`)",
    429: "The model's queue is full, or the replica is receiving too many uploads "
    "(`overloaded`); retry after `Retry-After` seconds",
    500: "A server fault (`inference_failed`, `internal_error`)",
    503: "Models are loading or the service is draining (`not_ready`)",
}
_HEADERS = {
    429: {
        "Retry-After": {
            "description": "seconds to wait before retrying",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
    401: {
        "WWW-Authenticate": {
            "description": 'the challenge: `Bearer realm="taggram"`',
            "schema": {"type": "string"},
        }
    },
}


def problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    """One ``responses`` entry whose body is the Problem schema as ``application/problem+json``."""
    entry: dict[str, Any] = {
        "description": description or _DESCRIPTIONS.get(status, "Problem"),
        "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
    }
    if status in _HEADERS:
        entry["headers"] = _HEADERS[status]
    return entry


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route: each error status it can return, with the Problem body."""
    return {status: problem_response(status) for status in statuses}


def _hoist(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    return schema


def _drop_default_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI documents a 422 ``HTTPValidationError`` on routes with parameters even when they
    cannot fail validation; routes that can fail declare their own 422 problem."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            answer = responses.get("422", {})
            schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref", "").endswith("/HTTPValidationError"):
                del responses["422"]
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)


def _secure(document: dict[str, Any], enabled: bool) -> None:
    """With keys on: 401 (and 403 where a scope beyond ``tag`` is needed) on every operation
    that names a security scheme. With keys off: no security at all, as the service checks none.
    """
    components = document.setdefault("components", {})
    if not enabled:
        components.pop("securitySchemes", None)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            requirements = operation.get("security")
            if requirements is None:
                continue
            if not enabled:
                del operation["security"]
                continue
            operation["responses"]["401"] = problem_response(401)
            scopes = {
                scope for requirement in requirements for v in requirement.values() for scope in v
            }
            if scopes - {"tag"}:
                operation["responses"]["403"] = problem_response(403)


def _protocol_problems(document: dict[str, Any]) -> None:
    """``/v2`` problems come as ``application/json`` (what Open Inference Protocol clients
    read), or as ``application/problem+json`` to a client whose ``Accept`` names it."""
    for path, operations in document.get("paths", {}).items():
        if not (path == "/v2" or path.startswith("/v2/")):
            continue
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_JSON in content:
                    response["content"] = {PROTOCOL_JSON: content[PROBLEM_JSON], **content}


def option_constraints(models: Iterable[ModelMetadata]) -> dict[str, dict[str, Any]]:
    """JSON-schema updates for the options that every served model accepts.

    ``model``: the served models' names as examples (a free string: models come and go).
    ``embeddings``: the enum of every model's embedding names (one a model lacks is still a 422).
    ``hop``: from one sample to the longest patch span among the models (a hop no model takes
    is outside it), each model's own span listed in the description, as the 422 for a hop
    beyond the chosen model's span names it.
    """
    served = list(models)
    if not served:
        return {}
    names = sorted({name for meta in served for name in meta.embedding_outputs})
    longest_sample = max(1 / meta.sample_rate for meta in served)
    spans: dict[float, list[str]] = {}
    for meta in served:
        spans.setdefault(meta.patch.span_samples / meta.sample_rate, []).append(meta.name)
    listed = "; ".join(f"{span:g} s: {', '.join(sorted(spans[span]))}" for span in sorted(spans))
    return {
        "model": {"examples": sorted(meta.name for meta in served)},
        "model_version": {"examples": sorted({meta.version for meta in served})},
        "embeddings": {"enum": names} if names else {},
        "hop": {
            "minimum": longest_sample,
            "maximum": max(spans),
            "description": "seconds between patch starts, from one sample to one patch of the "
            f"chosen model (default: the patch length); one patch is {listed}",
        },
    }


def _option_schema(schema: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """An option's schema as a query parameter or form field: an absent option is the default,
    so ``anyOf: [{...}, {"type": "null"}]`` (pydantic's ``X | None``) becomes ``{...}``."""
    variants = [v for v in schema.get("anyOf", []) if v.get("type") != "null"]
    if len(variants) == 1:
        extra = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        schema = {**variants[0], **extra}
        if "default" in schema and schema["default"] is None:
            del schema["default"]
    return {**schema, **update}


def _constrain_options(document: dict[str, Any], constraints: dict[str, dict[str, Any]]) -> None:
    """Tag options, in the query or as form fields, with their real constraints."""
    names = set(TagOptions.model_fields)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                name = parameter["name"]
                if parameter["in"] == "path" and name in _MODEL_PATH_PARAMETERS:
                    parameter["schema"].update(constraints.get("model", {}))
                if parameter["in"] == "path" and name == "model_version":
                    parameter["schema"].update(constraints.get("model_version", {}))
                if parameter["in"] == "query" and name in names:
                    parameter["schema"] = _option_schema(
                        parameter["schema"], constraints.get(name, {})
                    )
            content = operation.get("requestBody", {}).get("content", {})
            form = content.get("multipart/form-data", {}).get("schema", {})
            for name, schema in form.get("properties", {}).items():
                if name in names:
                    form["properties"][name] = _option_schema(schema, constraints.get(name, {}))


def build_openapi(
    app: FastAPI,
    keys: KeyRing,
    models: Iterable[ModelMetadata],
    max_batch_files: int,
    extra_schemas: Iterable[type[BaseModel]] = (),
) -> dict[str, Any]:
    """The whole document for this service as configured and loaded; ``extra_schemas`` are
    bodies that routes read themselves (documented by ``$ref`` in their ``openapi_extra``)."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    bodies: list[type[BaseModel]] = [Problem, *extra_schemas]
    for model in bodies:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas[model.__name__] = _hoist(schema, schemas)
    _drop_default_validation_errors(document)
    for operations in document["paths"].values():
        for operation in operations.values():
            form = operation.get("requestBody", {}).get("content", {}).get("multipart/form-data")
            files = (form or {}).get("schema", {}).get("properties", {}).get("files")
            if files is not None and files.get("type") == "array":
                files["maxItems"] = max_batch_files
    _constrain_options(document, option_constraints(models))
    _secure(document, keys.enabled)
    _protocol_problems(document)
    return document
