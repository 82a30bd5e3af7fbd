"""What ``/v1/tag`` and ``/v1/tag/batch`` share in reading uploads: limits, form options, docs.

Both accept multipart uploads whose extra form fields are options (query values win), and both
refuse an oversized request from its ``Content-Length`` before reading a byte of it.
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
    """Merge the form's non-file fields into ``options``; query values (already set) win."""
    fields = {key: value for key, value in form.items() if key != file_field}
    if not fields:
        return options
    try:
        return TagOptions.model_validate({**fields, **options.model_dump(exclude_unset=True)})
    except ValidationError as error:
        raise InvalidOptionsError(str(error)) from error


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
