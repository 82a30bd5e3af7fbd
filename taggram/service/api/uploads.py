"""Reading request bodies under one input budget, for raw, multipart and batch uploads alike.

Every byte of a body goes through :func:`body_chunks`, which counts it as it arrives: the moment
the total passes the route's limit the request is answered 413 (the middleware then closes the
connection, so a chunked upload is cut off near the limit instead of read to its end). A body
that sends nothing for ``read_timeout_seconds``, or is not complete ``body_timeout_seconds`` after
the request began, is answered 408; a client that hangs up mid-body is ``client_disconnected``
(499), not a server error. Raw bodies are spooled to a temporary file (in memory up to
:data:`SPOOL_MEMORY_BYTES`, on disk beyond), multipart file fields likewise by Starlette's
parser: there is never a second copy of the body in memory.

Both upload routes accept multipart uploads whose extra form fields are options (given in the
query too, they must agree), and every body is refused from its ``Content-Length`` before a byte
of it is read when that already says it is too large.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from tempfile import SpooledTemporaryFile
from typing import Any, BinaryIO, cast

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, Headers, QueryParams, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect, Request

from taggram.service.errors import (
    ClientDisconnectedError,
    EmptyAudioError,
    InvalidOptionsError,
    PayloadTooLargeError,
    RequestTimeoutError,
    UnsupportedMediaTypeError,
)
from taggram.service.settings import Settings
from taggram.service.tagging import TagOptions

# Bytes of a raw body kept in memory before the spool moves to a temporary file on disk
# (Starlette's multipart parser uses the same figure for file fields).
SPOOL_MEMORY_BYTES = 1024 * 1024
# The request's start (``time.monotonic()``), set by the middleware: the body deadline's origin.
STARTED_STATE = "started_monotonic"


@dataclass(frozen=True)
class InputBudget:
    """What one request body may cost: bytes, seconds of silence, seconds in all."""

    max_bytes: int
    read_timeout_seconds: float
    body_timeout_seconds: float

    @classmethod
    def of(cls, settings: Settings, max_bytes: int) -> InputBudget:
        """The budget of one body: ``max_bytes`` and the settings' read and whole-body timeouts."""
        return cls(max_bytes, settings.read_timeout_seconds, settings.body_timeout_seconds)


# RFC 9110's media type: ``type "/" subtype``, each a token; parameters may follow a ";".
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")


def media_type(headers: Headers) -> str:
    """The request's ``Content-Type`` without its parameters, lower case (``""`` when absent).

    Only an absent header means "no type" (read by the raw upload as
    ``application/octet-stream``): a header that is present must name one.

    Raises:
        UnsupportedMediaTypeError: the header is present but names no media type (blank,
            ``;;;``, ``; charset=utf-8``, ``audio/``, a list ``audio/mpeg, text/plain``), or is
            given twice with different values; either way the client meant something the route
            cannot know, so guessing octet-stream or the first value would hide the mistake.
    """
    values = headers.getlist("content-type")
    if not values:
        return ""
    if len(set(values)) > 1:
        raise UnsupportedMediaTypeError(
            f"Content-Type is given {len(values)} times with different values {values}: "
            "give it once"
        )
    given = values[0].split(";")[0].strip()
    if not _MEDIA_TYPE.fullmatch(given):
        raise UnsupportedMediaTypeError(
            f"Content-Type {values[0]!r} is not a media type: give one as type/subtype "
            "(audio/mpeg, multipart/form-data; boundary=...)"
        )
    return given.lower()


def require_multipart(headers: Headers, fields: str) -> None:
    """Refuse (415 :class:`UnsupportedMediaTypeError`) a body that is not multipart/form-data;
    ``fields`` says which form fields to send."""
    given = media_type(headers)
    if given != "multipart/form-data":
        raise UnsupportedMediaTypeError(
            f"Content-Type {given!r} is not accepted: send multipart/form-data with {fields}"
        )


def check_content_length(headers: Any, limit: int) -> None:
    """Refuse a request whose declared size is over ``limit`` bytes, before reading it."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request of {declared} bytes exceeds the limit of {limit}")


async def body_chunks(request: Request, budget: InputBudget) -> AsyncGenerator[bytes, None]:
    """The body's chunks as they arrive, counted against ``budget``.

    Raises :class:`PayloadTooLargeError` as soon as the total passes ``budget.max_bytes``,
    :class:`RequestTimeoutError` when the client stalls or runs past the body deadline, and
    :class:`ClientDisconnectedError` when it hangs up.
    """
    check_content_length(request.headers, budget.max_bytes)
    started = getattr(request.state, STARTED_STATE, None) or time.monotonic()
    deadline = started + budget.body_timeout_seconds
    stream = request.stream()
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RequestTimeoutError(
                f"the body was not complete within {budget.body_timeout_seconds:g} s"
            )
        try:
            async with asyncio.timeout(min(budget.read_timeout_seconds, left)):
                chunk = await anext(stream)
        except StopAsyncIteration:
            return
        except TimeoutError:
            if budget.read_timeout_seconds < left:
                raise RequestTimeoutError(
                    f"no body data for {budget.read_timeout_seconds:g} s"
                ) from None
            raise RequestTimeoutError(
                f"the body was not complete within {budget.body_timeout_seconds:g} s"
            ) from None
        except ClientDisconnect:
            message = "the client disconnected while sending the body"
            raise ClientDisconnectedError(message) from None
        size += len(chunk)
        if size > budget.max_bytes:
            raise PayloadTooLargeError(
                f"request body exceeds the limit of {budget.max_bytes} bytes"
            )
        if chunk:
            yield chunk


async def read_body(request: Request, budget: InputBudget) -> bytes:
    """The whole body in memory (a JSON tensor request, not audio), under ``budget``."""
    return b"".join([chunk async for chunk in body_chunks(request, budget)])


async def read_raw(request: Request, budget: InputBudget) -> UploadFile:
    """The raw body in a spooled temporary file, positioned at its start; the caller closes it."""
    file = cast(BinaryIO, SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES))  # noqa: SIM115
    spool = UploadFile(file)
    try:
        async for chunk in body_chunks(request, budget):
            await spool.write(chunk)  # in a worker thread once the spool is on disk
        await spool.seek(0)
    except BaseException:
        await spool.close()
        raise
    return spool


def _text_not_a_file(field: str) -> EmptyAudioError:
    """The error for audio sent as a text field (``curl -F file=<song.mp3``), its hint in the
    route's own field (``files`` in a batch)."""
    return EmptyAudioError(
        f"the multipart field {field!r} is text, not a file; "
        f"send the audio as a file part (curl -F {field}=@song.mp3)"
    )


class _ClosedMultiPartParser(MultiPartParser):
    """Starlette's parser, noting whether the body reached its closing boundary (``--B--``).

    Without it a body cut short (a client or proxy that stopped mid-upload, a hand-made body)
    parses as the parts complete before the cut, the cut one dropped without a word: a batch
    answered 200 for fewer files than were sent.
    """

    closed = False
    part = ""  # the field name of the latest part, the one a limit refuses

    def on_headers_finished(self) -> None:
        """A part's headers were read: note its field name, even when it passes a limit."""
        try:
            super().on_headers_finished()
        finally:
            self.part = self._current_part.field_name

    def on_end(self) -> None:
        """The closing boundary was read."""
        super().on_end()
        self.closed = True


async def read_form(
    request: Request,
    budget: InputBudget,
    file_field: str,
    max_files: int,
    max_fields: int,
    too_many_files: str,
    too_many_fields: str,
) -> FormData:
    """Parse a multipart body under ``budget``; the caller closes the returned form.

    A malformed body (or too many files or fields, or one that ends before its closing
    boundary) is a 400, as Starlette's own parser answers, with a hint where its words give none
    (a text field over its size limit; a file part past ``max_files``: ``too_many_files`` when it
    is a ``file_field`` part, else an option sent as a file; a text field past ``max_fields``:
    ``too_many_fields``, the text fields the route reads).

    Raises:
        EmptyAudioError: ``file_field`` is a text field past Starlette's size limit (audio sent
            as text, as :func:`file_uploads` refuses a smaller one).
        HTTPException: any other malformed body (400).
    """
    parser = _ClosedMultiPartParser(
        request.headers, body_chunks(request, budget), max_files=max_files, max_fields=max_fields
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        detail = error.message
        if detail.startswith("Part exceeded maximum size") and parser.part == file_field:
            # Starlette bounds text fields only: audio sent as text, the same mistake as a
            # smaller one that file_uploads() finds, so the same error
            raise _text_not_a_file(file_field) from error
        if detail.startswith("Part exceeded maximum size"):  # a 3 MB description
            detail += f" (the text field {parser.part!r} is longer than that)"
        elif detail.startswith("Too many files") and parser.part == file_field:
            detail += f" ({too_many_files})"
        elif detail.startswith("Too many files"):  # curl -F top_k=@k.txt
            detail += (
                f" ({parser.part!r} is a file part: options are text fields, curl -F top_k=5, "
                "never file parts)"
            )
        elif detail.startswith("Too many fields"):  # the count alone: not which are read
            detail = (
                f"too many text fields: the form is read up to {max_fields}, and "
                f"{parser.part!r} is past them ({too_many_fields})"
            )
        raise HTTPException(status_code=400, detail=detail) from error
    if not parser.closed:
        await form.close()
        raise HTTPException(
            status_code=400,
            detail="the multipart body ends before its closing boundary: it was cut short, "
            "so its last part is incomplete or missing",
        )
    return form


# The only escapes of a file name in WHATWG's multipart/form-data encoding, which browsers, curl
# and httpx follow: '"' as %22, CR as %0D, LF as %0A. A % is not escaped, so a name that holds
# "%22" itself reads back with '"': the encoding's own ambiguity, as for any server.
_NAME_ESCAPES = {"%22": '"', "%0D": "\r", "%0A": "\n"}
_NAME_ESCAPE = re.compile("|".join(_NAME_ESCAPES))


def upload_name(upload: UploadFile) -> str:
    """The upload's file name as the client's file had it (``12" single.mp3`` arrives as
    ``12%22 single.mp3``), or ``""`` when the part gave none."""
    return _NAME_ESCAPE.sub(lambda found: _NAME_ESCAPES[found.group(0)], upload.filename or "")


def file_uploads(form: FormData, field: str) -> list[UploadFile]:
    """The file parts named ``field``, in order.

    Raises:
        EmptyAudioError: there is none, or one is a text field (``curl -F file=<song.mp3``, a
            form without ``enctype="multipart/form-data"``'s file input), whose bytes would
            otherwise be dropped without a word.
    """
    items = form.getlist(field)
    if any(not isinstance(item, UploadFile) for item in items):
        raise _text_not_a_file(field)
    if not items:
        raise EmptyAudioError(f"the multipart upload has no file field named {field!r}")
    return cast(list[UploadFile], items)


def reject_repeated(values: QueryParams | FormData, where: str, skip: str = "") -> None:
    """Refuse an option given more than once (``?top_k=3&top_k=5``): one would be ignored
    silently. Raises :class:`RequestValidationError` located at ``[where, name]`` (422
    ``invalid_options``), as any invalid option is; ``skip`` names the repeatable file field."""
    counts = Counter(key for key, _ in values.multi_items() if key != skip)
    repeated = [
        {
            "type": "repeated_option",
            "loc": (where, name),
            "msg": f"given {count} times: give it once",
            "input": values.getlist(name),
        }
        for name, count in counts.items()
        if count > 1
    ]
    if repeated:
        raise RequestValidationError(repeated)


def options_fields() -> str:
    """The hint of a tagging form past its field limit: what its text fields are."""
    return f"options are text fields, each given once: {', '.join(TagOptions.model_fields)}"


def options_from_form(form: FormData, file_field: str, options: TagOptions) -> TagOptions:
    """Merge the form's non-file fields into ``options`` (the query's).

    An option may be given in either place; given in both, the values must agree, so that no
    value the request carries is silently ignored. Invalid form fields raise
    :class:`RequestValidationError` located at ``["form", name]``, so that they are answered as
    the query's are (422 ``invalid_options`` listing every field's problem).
    """
    reject_repeated(form, "form", skip=file_field)
    fields = {key: value for key, value in form.items() if key != file_field}
    if not fields:
        return options
    stray = sorted(key for key, value in fields.items() if isinstance(value, UploadFile))
    if stray:  # a batch sent `file` parts, or an option sent as a file (curl -F top_k=@k.txt)
        raise InvalidOptionsError(
            f"file parts {stray} are not read: the audio goes in {file_field!r} fields, and "
            "options are text fields (curl -F top_k=5)"
        )
    try:
        from_form = TagOptions.model_validate(fields)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        located = [{**problem, "loc": ("form", *problem["loc"])} for problem in problems]
        raise RequestValidationError(located) from error
    query, form_values = options.model_dump(exclude_unset=True), from_form.model_dump()
    clashes = sorted(
        name for name in query.keys() & fields.keys() if query[name] != form_values[name]
    )
    if clashes:
        raise InvalidOptionsError(
            f"options {clashes} are given in the query and the form with different values"
        )
    return TagOptions.model_validate({**from_form.model_dump(exclude_unset=True), **query})


def multipart_request_body(
    file_field: str, many: bool, raw_content: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of an upload route (FastAPI cannot infer it from ``Request``)."""
    binary = {"type": "string", "format": "binary"}
    schema = {"type": "array", "items": binary, "minItems": 1} if many else binary
    # The options may come as form fields too; nothing else is accepted.
    options = TagOptions.model_json_schema()["properties"]
    content: dict[str, Any] = {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [file_field],
                "properties": {file_field: schema, **options},
                "additionalProperties": False,
            }
        },
        **(raw_content or {}),
    }
    return {"requestBody": {"required": True, "content": content}}
