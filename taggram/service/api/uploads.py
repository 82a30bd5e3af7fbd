"""What ``/v1/tag`` and ``/v1/tag/batch`` share in reading uploads: limits, form options, docs.

Both accept multipart uploads whose extra form fields are options (given in the query too, they
must agree), and both refuse an oversized request from its ``Content-Length`` before reading a
byte of it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.datastructures import FormData
from starlette.requests import Request

from taggram.service.errors import InvalidOptionsError, PayloadTooLargeError
from taggram.service.tagging import TagOptions


def check_content_length(headers: Any, limit: int) -> None:
    """Refuse a request whose declared size is over ``limit`` bytes, before reading it."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"request of {declared} bytes exceeds the limit of {limit}")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, counted while it arrives so an oversized one stops early."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def options_from_form(form: FormData, file_field: str, options: TagOptions) -> TagOptions:
    """Merge the form's non-file fields into ``options`` (the query's).

    An option may be given in either place; given in both, the values must agree, so that no
    value the request carries is silently ignored.
    """
    fields = {key: value for key, value in form.items() if key != file_field}
    if not fields:
        return options
    try:
        from_form = TagOptions.model_validate(fields)
    except ValidationError as error:
        raise InvalidOptionsError(str(error)) from error
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
