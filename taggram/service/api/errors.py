"""The one place that knows HTTP for failures: error codes to statuses, headers and the envelope.

``{"error": {"code": ..., "message": ..., "request_id": ...}}``: the code is machine-readable and
stable (:class:`~taggram.service.errors.TaggramError` ``code``), the status comes from
:data:`STATUS`, and ``Retry-After`` from the error's ``retry_after_seconds``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from taggram.service import errors, metrics
from taggram.service.errors import TaggramError

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}

# The HTTP status of each core error code; a code not listed is a server fault (500).
STATUS: dict[str, int] = {
    errors.EmptyAudioError.code: 400,
    errors.ModelNotFoundError.code: 404,
    errors.PayloadTooLargeError.code: 413,
    errors.AudioTooLongError.code: 413,
    errors.SampleRateTooHighError.code: 413,
    errors.UnsupportedMediaTypeError.code: 415,
    errors.UnsupportedFormatError.code: 415,
    errors.UnsupportedContentEncodingError.code: 415,
    errors.UndecodableAudioError.code: 422,
    errors.InvalidAudioError.code: 422,
    errors.InvalidOptionsError.code: 422,
    errors.TooManyPatchesError.code: 422,
    errors.OverloadedError.code: 429,
    errors.ClientDisconnectedError.code: 499,  # nginx's convention: nobody reads the answer
    errors.NotReadyError.code: 503,
}


def status_of(error: TaggramError) -> int:
    """The HTTP status that answers ``error``."""
    return STATUS.get(error.code, 500)


def headers_of(error: TaggramError) -> dict[str, str]:
    """``Retry-After`` in whole seconds (at least 1) when the error says when to retry."""
    if error.retry_after_seconds is None:
        return {}
    return {"Retry-After": str(max(1, math.ceil(error.retry_after_seconds)))}


def count_error(code: str) -> None:
    """Count one refusal or failure in ``taggram_errors_total`` under the body's ``code``."""
    metrics.ERRORS.labels(code=code).inc()


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: Any = None,
) -> JSONResponse:
    count_error(code)
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "request_id": getattr(request.state, "request_id", None),
    }
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def _taggram_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, TaggramError)
    status = status_of(error)
    if status >= 500:
        log.error("%s: %s", error.code, error.message)
    return error_response(request, status, error.code, error.message, headers_of(error))


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    details = [{"location": list(item["loc"]), "message": item["msg"]} for item in error.errors()]
    message = "; ".join(f"{'.'.join(map(str, d['location']))}: {d['message']}" for d in details)
    return error_response(request, 422, "invalid_options", message, details=details)


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    return error_response(request, error.status_code, code, str(error.detail), error.headers)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=error)
    return error_response(request, 500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TaggramError, _taggram_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
