"""``/v1/models``: list and describe the served models; create and delete custom ones.

``POST /v1/models`` (multipart) teaches the service a new tagger from labelled examples
(``taggram.service.custom``); ``DELETE /v1/models/{name}`` removes one. Reading needs the ``tag``
scope, creating and deleting the ``admin`` scope, when API keys are on (``api.auth``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from taggram.repository import ModelMetadata
from taggram.service.api.auth import require_scope
from taggram.service.api.deps import TaggerDep, no_query_parameters
from taggram.service.api.disconnect import unless_disconnected
from taggram.service.api.errors import listed
from taggram.service.api.openapi import problems
from taggram.service.api.paths import root_path
from taggram.service.api.schemas import ModelList
from taggram.service.api.uploads import (
    InputBudget,
    check_content_length,
    read_form,
    require_multipart,
    upload_name,
)
from taggram.service.custom.creation import (
    LABEL_SEPARATOR,
    MAX_DESCRIPTION_CHARS,
    MAX_TAG_CHARS,
    CreatedModel,
    CreateRequest,
    Example,
    json_array,
)
from taggram.service.errors import InvalidExamplesError, TooManyExamplesError

router = APIRouter(tags=["models"], dependencies=[Depends(require_scope("tag"))])
# Form fields besides the repeated files, labels and classes.
_SINGLE_FIELDS = ("name", "features", "classifier", "description")


# Creating and deleting change what every replica serves: the admin scope, when keys are on.
_ADMIN = [Depends(require_scope("admin"))]
# The reading routes and DELETE take no query parameters: one is refused, not ignored.
_NO_QUERY = [Depends(no_query_parameters)]

_TEXT = {"type": "string"}
_CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "files", "labels"],
                    "properties": {
                        "name": {
                            **_TEXT,
                            "pattern": "^[A-Za-z0-9_-]{1,64}$",
                            "description": "the new model's name (not an existing model's)",
                        },
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "the examples, any supported audio format",
                        },
                        "labels": {
                            "type": "array",
                            "items": _TEXT,
                            "description": "one per file, same order; several tags separated "
                            f"by {LABEL_SEPARATOR!r} make a multi-label model; each tag at most "
                            f"{MAX_TAG_CHARS} characters",
                        },
                        "classes": {
                            "type": "array",
                            "items": {**_TEXT, "maxLength": MAX_TAG_CHARS},
                            "description": "optional: the classes, each needing an example",
                        },
                        "features": {
                            **_TEXT,
                            "default": "auto",
                            "description": "auto, or comma-separated `model.output` features "
                            "or model names",
                        },
                        "classifier": {
                            **_TEXT,
                            "default": "auto",
                            "description": "auto, prototypes, logistic, svm or knn "
                            "(or several, comma-separated)",
                        },
                        "description": {**_TEXT, "maxLength": MAX_DESCRIPTION_CHARS},
                    },
                }
            }
        },
    }
}


@router.get(
    "/v1/models",
    operation_id="list_models",
    response_model=ModelList,
    summary="List the served models",
    dependencies=_NO_QUERY,
    responses=problems(422, 503),
)
async def list_models(tagger: TaggerDep) -> ModelList:
    """Every served model's metadata (repository and custom models) and the default model."""
    return ModelList(
        default_model=tagger.settings.default_model, models=list(tagger.models.values())
    )


@router.get(
    "/v1/models/{name}",
    operation_id="get_model",
    response_model=ModelMetadata,
    summary="One model's metadata",
    dependencies=_NO_QUERY,
    responses=problems(404, 422, 503),
)
async def get_model(name: str, tagger: TaggerDep) -> ModelMetadata:
    """One model's metadata; 404 ``model_not_found`` for an unknown name."""
    return tagger.model(name)


async def _read_form(request: Request, max_examples: int, max_classes: int) -> FormData:
    """The multipart body, counted while it arrives (``TAGGRAM_MAX_BATCH_BYTES`` in all, the
    batch route's budget: examples are a batch of files)."""
    require_multipart(request.headers, "'name', 'files' and 'labels' fields")
    settings = request.app.state.tagger.settings
    budget = InputBudget.of(settings, settings.max_batch_bytes)
    check_content_length(request.headers, budget.max_bytes)
    # A label per example, the classes, the single fields; the rest is slack, so that a field
    # given twice or unknown is refused by name (InvalidExamplesError), not by count.
    max_fields = max_examples + max_classes + 8
    fields = (
        f"one 'labels' field per file, at most {max_classes} 'classes' fields "
        f"(TAGGRAM_MAX_CUSTOM_CLASSES), and {listed(_SINGLE_FIELDS)} once each"
    )
    try:
        limit = "TAGGRAM_MAX_CUSTOM_EXAMPLES"
        return await read_form(request, budget, "files", max_examples, max_fields, limit, fields)
    except HTTPException as error:
        if str(error.detail).startswith("Too many files"):
            raise TooManyExamplesError(
                f"more examples than the limit of {max_examples} per request"
            ) from error
        raise


def _text(form: FormData, field: str) -> str | None:
    given = len(form.getlist(field))
    if given > 1:  # as a repeated /v1/tag option: which one was meant is not ours to guess
        raise InvalidExamplesError(f"form field {field!r} is given {given} times: give it once")
    value = form.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidExamplesError(f"form field {field!r} must be text, not a file")
    return value


def _creation(form: FormData) -> CreateRequest:
    unknown = sorted(set(form.keys()) - {*_SINGLE_FIELDS, "files", "labels", "classes"})
    if unknown:
        raise InvalidExamplesError(f"unknown form fields: {listed(unknown)}")
    name = _text(form, "name")
    if name is None:
        raise InvalidExamplesError("the form has no 'name' field")
    if not name:
        raise InvalidExamplesError("the form's 'name' field is empty: give the model a name")
    uploads = form.getlist("files")
    labels = form.getlist("labels")
    if not all(isinstance(item, UploadFile) for item in uploads):
        raise InvalidExamplesError("every 'files' field must be a file upload")
    if not all(isinstance(item, str) for item in labels):
        raise InvalidExamplesError("every 'labels' field must be text")
    if len(labels) != len(uploads):
        arrays = [str(label) for label in labels if json_array(str(label)) is not None]
        why = ""
        if arrays:  # labels=["rock","pop"]: a client's list encoded as JSON in one field
            shown = arrays[0] if len(arrays[0]) <= 60 else arrays[0][:57] + "..."
            why = f" (the label {shown!r} is a JSON array: a field of its own for each item)"
        raise InvalidExamplesError(
            f"{len(uploads)} files but {len(labels)} labels: send one 'labels' field per file" + why
        )
    classes = [str(item).strip() for item in form.getlist("classes") if str(item).strip()]
    examples = [
        Example(
            filename=upload_name(upload) or f"file {i + 1}", source=upload.file, label=str(label)
        )
        for i, (upload, label) in enumerate(zip(uploads, labels, strict=True))
        if isinstance(upload, UploadFile)
    ]
    return CreateRequest(
        name=name,
        examples=examples,
        features=_text(form, "features"),
        classifier=_text(form, "classifier"),
        description=_text(form, "description") or "",
        classes=classes or None,
    )


@router.post(
    "/v1/models",
    operation_id="create_model",
    status_code=201,
    response_model=CreatedModel,
    summary="Create a custom tagger from labelled examples",
    dependencies=_ADMIN,
    responses=problems(400, 408, 409, 413, 415, 422, 429, 500, 503),
    openapi_extra=_CREATE_BODY,
)
async def create_model(request: Request, response: Response, tagger: TaggerDep) -> CreatedModel:
    """Fit a classifier on embeddings of the examples (features and classifier chosen by
    cross-validation unless given) and serve it as model ``name``."""
    if request.query_params:
        # Fields are read from the form alone: a `?features=...` was ignored, the model made
        # with features the caller had not asked for.
        raise InvalidExamplesError(
            "send the fields in the multipart form, not the query string: "
            f"{listed(sorted(set(request.query_params.keys())))}"
        )
    settings = tagger.settings
    limit = settings.max_custom_examples
    form = await _read_form(request, limit, settings.max_custom_classes)
    try:
        record = await unless_disconnected(request, tagger.create_custom(_creation(form)))
    finally:
        await form.close()  # the spooled example files
    # Under the root path: behind a proxy serving /taggram, /v1/... leads out of the service.
    response.headers["Location"] = f"{root_path(request.scope)}/v1/models/{record.name}"
    return record


@router.delete(
    "/v1/models/{name}",
    operation_id="delete_model",
    status_code=204,
    response_class=Response,
    summary="Delete a custom model",
    dependencies=[*_ADMIN, *_NO_QUERY],
    responses=problems(404, 409, 422, 500, 503),
)
async def delete_model(name: str, tagger: TaggerDep) -> Response:
    """Delete a custom model (204); repository models cannot be deleted (409)."""
    await tagger.delete_custom(name)
    return Response(status_code=204)
