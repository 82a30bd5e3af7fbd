"""``POST /v1/tag/batch``: several files in one multipart request, one result or error per file.

Each file goes through the same :class:`~taggram.service.tagging.Tagger` as ``/v1/tag`` with the
same options, so the batcher packs their patches together with everyone else's. A file that fails
(undecodable, too long, ...) gets its own error entry and never fails the others; only a problem
with the request itself (no files, too many, bad options, unknown model) fails it as a whole.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.datastructures import FormData, UploadFile

from taggram.service.api.auth import require_scope
from taggram.service.api.deps import TaggerDep
from taggram.service.api.disconnect import unless_disconnected
from taggram.service.api.errors import count_error, status_of
from taggram.service.api.openapi import problems
from taggram.service.api.schemas import BatchResponse, FileError, FileOutcome, tag_response
from taggram.service.api.uploads import (
    InputBudget,
    file_uploads,
    multipart_request_body,
    options_fields,
    options_from_form,
    read_form,
    reject_repeated,
    require_multipart,
    upload_name,
)
from taggram.service.errors import TaggramError
from taggram.service.tagging import Tagger, TagOptions

log = logging.getLogger(__name__)
router = APIRouter(tags=["tagging"], dependencies=[Depends(require_scope("tag"))])

FIELD = "files"


_REQUEST_BODY = multipart_request_body(FIELD, many=True)


def _uploads(form: FormData, options: TagOptions) -> tuple[list[UploadFile], TagOptions]:
    """The uploads of field ``files``, and the options (from the query and the form fields)."""
    return file_uploads(form, FIELD), options_from_form(form, FIELD, options)


async def _tag_one(
    tagger: Tagger,
    upload: UploadFile,
    options: TagOptions,
    request_id: str,
    slots: asyncio.Semaphore,
) -> FileOutcome:
    filename = upload_name(upload)
    async with slots:
        try:
            results = await tagger.tag_many(upload.file, options)
        except TaggramError as error:
            count_error(error.code)
            failure = FileError(code=error.code, message=error.message, status=status_of(error))
            return FileOutcome(filename=filename, error=failure)
        except Exception:  # one file's unexpected failure must not fail the whole batch
            log.exception("tagging %r in a batch failed", filename)
            count_error("internal_error")
            failure = FileError(code="internal_error", message="internal error", status=500)
            return FileOutcome(filename=filename, error=failure)
    return FileOutcome(filename=filename, result=tag_response(results, request_id))


async def _tag_all(
    tagger: Tagger, uploads: list[UploadFile], options: TagOptions, request_id: str, in_flight: int
) -> list[FileOutcome]:
    """Every upload's outcome, in order. Cancelled (the client went away), it returns only once
    every file's work has stopped: a file still decoding reads its upload, which the route
    closes next. (``asyncio.gather`` ended at the first cancelled file, the others' decodes
    still running, and left its cancellation unretrieved: two ERROR lines per hang-up.)"""
    slots = asyncio.Semaphore(in_flight)
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_tag_one(tagger, upload, options, request_id, slots))
            for upload in uploads
        ]
    return [task.result() for task in tasks]


@router.post(
    "/v1/tag/batch",
    operation_id="tag_batch",
    response_model=BatchResponse,
    summary="Tag several audio files in one request",
    responses=problems(400, 404, 408, 413, 415, 422, 429, 500, 503),
    openapi_extra=_REQUEST_BODY,
)
async def tag_batch(
    request: Request, tagger: TaggerDep, options: Annotated[TagOptions, Query()]
) -> BatchResponse:
    """Tag every upload of the repeated multipart field ``files``; results keep their order."""
    settings = tagger.settings
    reject_repeated(request.query_params, "query")
    tagger.admit(options.model)  # a busy model refuses before a byte of the body is read
    require_multipart(request.headers, f"{FIELD!r} fields")
    # The whole body counts against one total; each file also against the per-file limit
    # (checked when it is decoded). More than max_batch_files files is refused by the parser
    # itself (400, "Too many files").
    budget = InputBudget.of(settings, settings.max_batch_bytes)
    most = settings.max_batch_files
    options_count = len(TagOptions.model_fields)
    split = "TAGGRAM_MAX_BATCH_FILES: split the files among several requests"
    form = await read_form(request, budget, FIELD, most, options_count, split, options_fields())
    try:
        uploads, options = _uploads(form, options)
        tagger.check(options)  # an unknown model or bad options fail the request, not each file
        request_id: str = request.state.request_id
        outcomes = await unless_disconnected(
            request,
            _tag_all(tagger, uploads, options, request_id, settings.batch_files_in_flight),
        )
    finally:
        await form.close()
    return BatchResponse(request_id=request_id, results=list(outcomes))
