"""The one place that knows HTTP for failures: error codes to statuses, headers and problem details.

Every error answer is an RFC 9457 problem (``Content-Type: application/problem+json``)::

    {"type": "urn:taggram:problem:overloaded", "title": "Overloaded", "status": 429,
     "detail": "MTT_musicnn has 2040 patches queued; retry later", "instance": "/v1/tag",
     "code": "overloaded", "request_id": "3f2a...", "retryable": true}

``code`` is machine-readable and stable (:class:`~taggram.service.errors.TaggramError` ``code``),
the status comes from :data:`STATUS`, ``Retry-After`` from the error's ``retry_after_seconds`` and
``WWW-Authenticate`` accompanies every 401. On ``/v2`` the problem also carries ``error`` (the
message), which is where Open Inference Protocol clients such as ``tritonclient`` read it, and is
served as ``application/json`` unless the request's ``Accept`` names ``application/problem+json``:
Triton, KServe and MLServer answer errors as ``application/json``, and KServe's client reads the
message only from that type. On ``/v1`` ``error`` repeats the 0.1 envelope (``{"code",
"message", "request_id"}``) so that older clients keep working.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taggram.service import errors, metrics
from taggram.service.api.paths import app_path, is_under, root_path
from taggram.service.api.schemas import FieldProblem, LegacyError, Problem
from taggram.service.errors import TaggramError

log = logging.getLogger(__name__)

# A request's header value quoted in a detail is cut here: headers may be 64 KiB long.
SHOWN_CHARS = 100


def shown(value: str) -> str:
    """``value`` (from the request, e.g. a header) quoted for a problem's detail, cut to
    :data:`SHOWN_CHARS` characters."""
    return repr(value if len(value) <= SHOWN_CHARS else value[:SHOWN_CHARS] + "…")


def dotted(location: Iterable[Any]) -> str:
    """A field's location for a problem's detail, its parts joined by dots: ``query.kind``,
    ``inputs.0.shape``. A name that is empty or holds a dot or a space is quoted with
    :func:`shown`, so that ``?=`` reads ``query.'': Extra inputs ...``."""
    quoted = re.compile(r"^$|[.\s]")
    return ".".join(
        shown(part) if isinstance(part, str) and quoted.search(part) else str(part)
        for part in location
    )


PROBLEM_JSON = "application/problem+json"
# What /v2 problems are served as unless the client asks for PROBLEM_JSON.
PROTOCOL_JSON = "application/json"
PROBLEM_TYPE = "urn:taggram:problem:"
# The challenge sent with every 401 (RFC 6750); X-API-Key is accepted as well.
WWW_AUTHENTICATE = 'Bearer realm="taggram"'

_HTTP_CODES = {
    400: "malformed_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}

# The HTTP status of each core error code; a code not listed is a server fault (500).
STATUS: dict[str, int] = {
    errors.EmptyAudioError.code: 400,
    errors.InvalidTensorError.code: 400,
    errors.AuthenticationError.code: 401,
    errors.PermissionDeniedError.code: 403,
    errors.ModelNotFoundError.code: 404,
    errors.PayloadTooLargeError.code: 413,
    errors.AudioTooLongError.code: 413,
    errors.RequestTimeoutError.code: 408,
    errors.SampleRateTooHighError.code: 413,
    errors.UnsupportedMediaTypeError.code: 415,
    errors.UnsupportedFormatError.code: 415,
    errors.UnsupportedContentEncodingError.code: 415,
    errors.UndecodableAudioError.code: 422,
    errors.InvalidAudioError.code: 422,
    errors.InvalidOptionsError.code: 422,
    errors.TooManyPatchesError.code: 422,
    errors.ModelExistsError.code: 409,
    errors.ModelReadOnlyError.code: 409,
    errors.TooManyModelsError.code: 409,
    errors.InvalidExamplesError.code: 422,
    errors.TooManyExamplesError.code: 413,
    errors.OverloadedError.code: 429,
    errors.DeadlineExceededError.code: 429,
    errors.ClientDisconnectedError.code: 499,  # nginx's convention: nobody reads the answer
    errors.NotReadyError.code: 503,
}

# A title per problem type (RFC 9457: the same for every occurrence of the type).
TITLES: dict[str, str] = {
    "empty_body": "No audio in the request",
    "invalid_tensor": "Tensor does not fit the model",
    "unauthorized": "Missing, unknown or conflicting API key",
    "forbidden": "API key lacks the scope",
    "model_not_found": "No such model",
    "payload_too_large": "Request body too large",
    "audio_too_long": "Audio too long",
    "sample_rate_too_high": "Sample rate too high",
    "unsupported_media_type": "Unsupported media type",
    "unsupported_format": "Unsupported audio format",
    "unsupported_content_encoding": "Unsupported content encoding",
    "undecodable_audio": "Not decodable audio",
    "invalid_audio": "Audio cannot be tagged",
    "invalid_options": "Invalid options",
    "too_many_patches": "Too many patches",
    "model_exists": "Model name taken",
    "model_read_only": "Model is read-only",
    "too_many_models": "Too many custom models",
    "invalid_examples": "Examples cannot make a model",
    "too_many_examples": "Too many examples",
    "storage_failed": "Custom models cannot be stored",
    "overloaded": "Overloaded",
    "client_disconnected": "Client disconnected",
    "not_ready": "Not ready",
    "malformed_request": "Malformed request",
    "cors_refused": "CORS preflight refused",
    "headers_too_large": "Request headers too large",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "inference_failed": "Inference failed",
    "internal_error": "Internal server error",
}


# How many problems or names a detail lists before "and N more": a request with thousands of
# unknown query parameters got a detail (and an `errors` list) naming every one of them.
LISTED = 10


def listed(items: Sequence[str], separator: str = ", ", total: int | None = None) -> str:
    """The first :data:`LISTED` of ``items`` joined by ``separator``, then ``and N more`` for
    the rest of ``total`` (``len(items)`` unless given: items already cut to the first few)."""
    shown = list(items[:LISTED])
    more = (len(items) if total is None else total) - len(shown)
    return separator.join(shown + ([f"and {more} more"] if more > 0 else []))


def status_of(error: TaggramError) -> int:
    """The HTTP status that answers ``error``."""
    return STATUS.get(error.code, 500)


def headers_of(error: TaggramError) -> dict[str, str]:
    """``Retry-After`` in whole seconds (at least 1) when the error says when to retry;
    ``WWW-Authenticate`` on a 401."""
    headers = {}
    if error.retry_after_seconds is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_seconds)))
    if status_of(error) == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return headers


def count_error(code: str) -> None:
    """Count one refusal or failure in ``taggram_errors_total`` under the body's ``code``."""
    metrics.ERRORS.labels(code=code).inc()


def title_of(code: str, status: int) -> str:
    """The problem ``title`` for a code: the project's own, else the HTTP status phrase."""
    if code in TITLES:
        return TITLES[code]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ProblemResponse(JSONResponse):
    """A JSON response served as ``application/problem+json`` (RFC 9457), unless told otherwise
    (``application/json`` on ``/v2``: :func:`problem_response`)."""

    media_type = PROBLEM_JSON


def problem_response(
    request: Request,
    status: int,
    code: str,
    detail: str,
    *,
    retryable: bool = False,
    headers: Mapping[str, str] | None = None,
    field_errors: list[FieldProblem] | None = None,
) -> ProblemResponse:
    """The ``application/problem+json`` answer; counts the error in ``taggram_errors_total``."""
    body, media_type = problem_body(
        status,
        code,
        detail,
        instance=request.url.path,
        request_id=getattr(request.state, "request_id", None),
        v2=is_under(request.scope, "/v2"),
        accept=request.headers.get("accept", ""),
        retryable=retryable,
        field_errors=field_errors,
    )
    return ProblemResponse(body, status_code=status, headers=headers, media_type=media_type)


def problem_body(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str,
    request_id: str | None,
    v2: bool,
    accept: str = "",
    retryable: bool = False,
    field_errors: list[FieldProblem] | None = None,
) -> tuple[dict[str, Any], str]:
    """The problem of a request for ``instance`` (its path) as JSON-ready members, and the media
    type to serve it as (``application/json`` on ``/v2``, ``v2``, unless ``accept`` names
    ``application/problem+json``); counts the error in ``taggram_errors_total``."""
    count_error(code)
    media_type = PROBLEM_JSON
    if v2:
        error: str | LegacyError = detail
        if PROBLEM_JSON not in accept.lower():
            media_type = PROTOCOL_JSON
    else:
        error = LegacyError(code=code, message=detail, request_id=request_id)
    problem = Problem(
        type=PROBLEM_TYPE + code,
        title=title_of(code, status),
        status=status,
        detail=detail,
        instance=instance,
        code=code,
        request_id=request_id,
        retryable=retryable,
        errors=field_errors,
        error=error,
    )
    return problem.model_dump(mode="json", exclude_none=True), media_type


def _log_fault(
    request: Request, status: int, code: str, detail: str, error: Exception | None = None
) -> None:
    key_id = getattr(request.state, "key_id", None)
    log.error(
        "%s %s -> %d %s: %s (key %s)",
        request.method,
        request.url.path,
        status,
        code,
        detail,
        key_id or "-",
        exc_info=error,
    )


async def _taggram_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, TaggramError)
    status = status_of(error)
    if status >= 500 and status != 503:
        _log_fault(request, status, error.code, error.message)
    elif isinstance(error, errors.ClientDisconnectedError):
        log.debug("%s: %s", error.code, error.message)  # the client's doing: no alert, no trace
    return problem_response(
        request,
        status,
        error.code,
        error.message,
        retryable=error.retryable,
        headers=headers_of(error),
    )


def _location(parts: Iterable[Any]) -> list[str | int]:
    return [part if isinstance(part, int) else str(part) for part in parts]


async def _validation_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    # The first few only, as the detail lists them (thousands of unknown query parameters).
    fields = [
        FieldProblem(location=_location(item["loc"]), message=item["msg"])
        for item in problems[:LISTED]
    ]
    detail = listed(
        [f"{dotted(field.location)}: {field.message}" for field in fields],
        "; ",
        total=len(problems),
    )
    code = errors.InvalidOptionsError.code
    if is_under(request.scope, "/v2"):
        # The Open Inference Protocol answers a malformed inference request with 400.
        return problem_response(
            request, 400, errors.InvalidTensorError.code, detail, field_errors=fields
        )
    return problem_response(request, 422, code, detail, field_errors=fields)


def _methods_at(request: Request, path: str) -> set[str]:
    """Every method some route of ``path`` answers (Starlette's 405 names only the first
    matching route's, and ``/v1/models/{name}`` has a GET route and a DELETE route), ``HEAD``
    among them wherever ``GET`` is (``HeadMiddleware`` answers it); empty for no route."""
    scope = {**request.scope, "path": path}
    methods: set[str] = set()
    pending = list(request.app.router.routes)
    while pending:
        route = pending.pop()
        # FastAPI keeps an included router as one entry that wraps the router (no prefixes here).
        included = getattr(route, "original_router", None)
        if included is not None:
            pending += included.routes
        elif isinstance(route, Route) and route.methods:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                methods |= route.methods
    if "GET" in methods:
        methods.add("HEAD")
    return methods


def _trailing_slash_hint(scope: Scope) -> str:
    """The 404 detail of a known path asked for with a trailing slash: the path within the app,
    and under a root path the path through the proxy too.

    Uvicorn puts the root path (``TAGGRAM_ROOT_PATH``) in front of every request's ``path``,
    whether it came through the proxy that strips the prefix (``/taggram/v1/tag/`` sent,
    ``/v1/tag/`` received) or straight to the pod from inside the cluster (``/v1/tag/`` sent and
    received): the two arrive alike, so the hint names the path for both. It named the prefixed
    one alone, which 404s for an in-cluster caller.
    """
    asked = app_path(scope)
    meant = asked.rstrip("/")
    root = root_path(scope)
    if not root:
        return f"no route {asked}; did you mean {meant} (without the trailing slash)?"
    return (
        f"no route {asked}; did you mean {meant} (without the trailing slash; "
        f"{root}{meant} through a proxy that serves the service under {root})?"
    )


async def _http_error(request: Request, error: Exception) -> ProblemResponse:
    assert isinstance(error, HTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    headers = dict(error.headers or {})
    detail = str(error.detail)
    path = request.scope["path"]
    # Starlette's own details are the status's phrase ("Not Found"), which names nothing.
    generic = error.status_code in (404, 405) and detail == HTTPStatus(error.status_code).phrase
    if error.status_code == 405 and (allowed := _methods_at(request, path)):
        headers["Allow"] = ", ".join(sorted(allowed))
        if generic:
            detail = (
                f"{request.method} is not allowed on {app_path(request.scope)}, "
                f"which takes {headers['Allow']}"
            )
    elif error.status_code == 404 and path.endswith("/") and _methods_at(request, path.rstrip("/")):
        # Starlette's redirect is off (create_app): its empty 307 printed nothing for
        # `curl -F file=@song.mp3 .../v1/tag/`, and a client that follows it sends the upload twice.
        detail = _trailing_slash_hint(request.scope)
    elif error.status_code == 404 and generic:
        detail = f"no route {app_path(request.scope)}; /openapi.json lists the API's paths"
    return problem_response(request, error.status_code, code, detail, headers=headers)


async def _unexpected_error(request: Request, error: Exception) -> ProblemResponse:
    _log_fault(request, 500, "internal_error", f"unexpected {type(error).__name__}", error)
    return problem_response(request, 500, "internal_error", "internal server error")


class UnexpectedErrorMiddleware:
    """Answers a bug (an exception no handler took) with a problem+json 500 and keeps it there.

    Starlette hands an ``Exception`` handler to its outermost middleware, which answers and then
    re-raises to the server: the answer missed every middleware of the app (no ``X-Request-ID``),
    its log line came after the request's context was gone (no request id), and uvicorn logged
    "Exception in ASGI application" and dropped the keep-alive connection. Installed inside the
    request-context middleware, this answers within the request's context and ends the
    exception. A bug after the response has started cannot be answered: it is re-raised, and
    the server closes the connection, the only way left to tell the client.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except Exception as error:
            if started:
                raise
            response = await _unexpected_error(Request(scope, receive), error)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every failure of ``app`` (core errors, request validation, HTTP errors, bugs)
    with a problem body. Call it before adding the request-context middleware, which must wrap
    :class:`UnexpectedErrorMiddleware`.
    """
    app.add_exception_handler(TaggramError, _taggram_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(UnexpectedErrorMiddleware)
    # The last resort for a bug in a middleware outside the request context.
    app.add_exception_handler(Exception, _unexpected_error)
