"""``POST /v1/tag``: audio in (multipart field ``file`` or the raw body), tags out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from taggram.service.api.auth import require_scope
from taggram.service.api.deps import TaggerDep
from taggram.service.api.disconnect import unless_disconnected
from taggram.service.api.openapi import problems
from taggram.service.api.schemas import MultiTagResponse, TagResponse, tag_response
from taggram.service.api.uploads import (
    InputBudget,
    check_content_length,
    file_uploads,
    media_type,
    multipart_request_body,
    options_fields,
    options_from_form,
    read_form,
    read_raw,
    reject_repeated,
)
from taggram.service.audio.decode import AudioSource
from taggram.service.errors import UnsupportedMediaTypeError
from taggram.service.settings import Settings
from taggram.service.tagging import TagOptions

router = APIRouter(tags=["tagging"], dependencies=[Depends(require_scope("tag"))])

# Raw bodies: any audio/* or video/* type (what a browser's File.type or Python's mimetypes
# give a .mp4, .mov, .webm or .mkv is video/*, and the audio track of a video is tagged), and the
# registered application/ types of accepted containers (RFC 5334's Ogg, RFC 4337's MP4). The
# bytes decide the container either way.
_RAW_TYPES = ("application/octet-stream", "application/ogg", "application/mp4")
_RAW_FAMILIES = ("audio/", "video/")
_AUDIO_BODY = {"schema": {"type": "string", "format": "binary"}}
_REQUEST_BODY = multipart_request_body(
    "file",
    many=False,
    raw_content={name: _AUDIO_BODY for name in ("audio/*", "video/*", *_RAW_TYPES)},
)


@asynccontextmanager
async def _read_audio(
    request: Request, options: TagOptions, settings: Settings
) -> AsyncIterator[tuple[AudioSource, TagOptions]]:
    """The upload (multipart field ``file`` or the raw body) and the options; closed on exit.

    Other form fields are options (given in the query too, they must agree).
    """
    budget = InputBudget.of(settings, settings.max_upload_bytes)
    check_content_length(request.headers, budget.max_bytes)
    given = media_type(request.headers)
    if given == "multipart/form-data":
        fields = len(TagOptions.model_fields) + 1
        several = "one file per request; POST /v1/tag/batch takes several as 'files' fields"
        form = await read_form(request, budget, "file", 1, fields, several, options_fields())
        try:
            (upload,) = file_uploads(form, "file")  # read_form allows one file part
            yield upload.file, options_from_form(form, "file", options)
        finally:
            await form.close()
    elif given in ("", *_RAW_TYPES) or given.startswith(_RAW_FAMILIES):
        spool = await read_raw(request, budget)
        try:
            yield spool.file, options
        finally:
            await spool.close()
    else:
        raise UnsupportedMediaTypeError(
            f"Content-Type {given!r} is not accepted: send audio/*, video/* (the audio track is "
            "tagged), application/octet-stream, application/ogg, application/mp4, or "
            "multipart/form-data with a 'file' field"
        )


@router.post(
    "/v1/tag",
    operation_id="tag",
    response_model=TagResponse | MultiTagResponse,
    summary="Tag an audio file",
    responses=problems(400, 404, 408, 413, 415, 422, 429, 500, 503),
    openapi_extra=_REQUEST_BODY,
)
async def tag(
    request: Request,
    response: Response,
    tagger: TaggerDep,
    options: Annotated[TagOptions, Query()],
) -> TagResponse | MultiTagResponse:
    """Tag audio sent as a multipart upload (field ``file``) or as the raw body. With several
    comma-separated models, the answer is ``{"request_id", "results": [...]}`` in their order."""
    reject_repeated(request.query_params, "query")
    tagger.admit(options.model)  # a busy model refuses before a byte of the body is read
    async with _read_audio(request, options, tagger.settings) as (source, options):
        results = await unless_disconnected(request, tagger.tag_many(source, options))
    # Several models share the decode and their totals end together: the first one's timings.
    response.headers["Server-Timing"] = results[0].timings.server_timing()
    return tag_response(results, request.state.request_id)
