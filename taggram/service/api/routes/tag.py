"""``POST /v1/tag``: audio in (multipart field ``file`` or the raw body), tags out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.datastructures import UploadFile

from taggram.service.api.auth import require_scope
from taggram.service.api.deps import TaggerDep
from taggram.service.api.disconnect import unless_disconnected
from taggram.service.api.openapi import problems
from taggram.service.api.schemas import TagResponse
from taggram.service.api.uploads import (
    check_content_length,
    multipart_request_body,
    options_from_form,
    read_body,
)
from taggram.service.audio.decode import AudioSource
from taggram.service.errors import (
    EmptyAudioError,
    UnsupportedMediaTypeError,
)
from taggram.service.tagging import TagOptions

router = APIRouter(tags=["tagging"], dependencies=[Depends(require_scope("tag"))])

_RAW_TYPES = ("application/octet-stream",)
_AUDIO_BODY = {"schema": {"type": "string", "format": "binary"}}
_REQUEST_BODY = multipart_request_body(
    "file",
    many=False,
    raw_content={"audio/*": _AUDIO_BODY, "application/octet-stream": _AUDIO_BODY},
)


async def _read_upload(request: Request, options: TagOptions) -> tuple[AudioSource, TagOptions]:
    """The multipart ``file`` field; other form fields are options (the query's must agree)."""
    form = await request.form(max_files=1, max_fields=len(TagOptions.model_fields) + 1)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise EmptyAudioError("the multipart upload has no file field named 'file'")
    return upload.file, options_from_form(form, "file", options)


async def _read_audio(
    request: Request, options: TagOptions, limit: int
) -> tuple[AudioSource, TagOptions]:
    check_content_length(request.headers, limit)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _read_upload(request, options)
    if media_type in ("", *_RAW_TYPES) or media_type.startswith("audio/"):
        return await read_body(request, limit), options
    raise UnsupportedMediaTypeError(
        f"Content-Type {media_type!r} is not accepted: send audio/*, "
        "application/octet-stream, or multipart/form-data with a 'file' field"
    )


@router.post(
    "/v1/tag",
    operation_id="tag",
    response_model=TagResponse,
    summary="Tag an audio file",
    responses=problems(400, 404, 413, 415, 422, 429, 500, 503),
    openapi_extra=_REQUEST_BODY,
)
async def tag(
    request: Request,
    response: Response,
    tagger: TaggerDep,
    options: Annotated[TagOptions, Query()],
) -> TagResponse:
    """Tag audio sent as a multipart upload (field ``file``) or as the raw body."""
    source, options = await _read_audio(request, options, tagger.settings.max_upload_bytes)
    result = await unless_disconnected(request, tagger.tag(source, options))
    response.headers["Server-Timing"] = result.timings.server_timing()
    return TagResponse.from_result(result, request.state.request_id)
