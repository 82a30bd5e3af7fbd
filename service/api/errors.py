"""One place that turns every failure into the JSON error envelope.

``{"error": {"code": ..., "message": ..., "request_id": ...}}``: the code is machine-readable and
stable, the status comes from the :class:`~service.errors.TaggramError` subclass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service import metrics
from service.errors import TaggramError

log = logging.getLogger(__name__)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    details: Any = None,
) -> JSONResponse:
    metrics.ERRORS.labels(kind=code).inc()
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
    if error.status >= 500:
        log.error("%s: %s", error.code, error.message)
    return error_response(request, error.status, error.code, error.message, error.headers)


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
