"""The client reads RFC 9457 problems (and taggram 0.1's envelope) into its typed errors.

The e2e tests see a real server's problems and keys (tests/e2e/test_auth.py); here the bodies
are fixed, to cover both formats and the status classes without starting a server.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from taggram.client import (
    AsyncTaggramClient,
    AuthenticationFailedError,
    RequestRejectedError,
    RetryPolicy,
    ServiceError,
    TaggramClient,
    auth_headers,
)

PROBLEM = {
    "type": "urn:taggram:problem:undecodable_audio",
    "title": "Not decodable audio",
    "status": 422,
    "detail": "not a supported audio file",
    "instance": "/v1/tag",
    "code": "undecodable_audio",
    "request_id": "r-1",
    "retryable": False,
}
ENVELOPE = {"error": {"code": "undecodable_audio", "message": "not audio", "request_id": "r-2"}}


def _client(status: int, body: Any, media_type: str) -> TaggramClient:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer the-key"
        return httpx.Response(status, json=body, headers={"Content-Type": media_type})

    http = httpx.Client(
        base_url="http://taggram",
        transport=httpx.MockTransport(answer),
        headers=auth_headers("the-key"),
    )
    return TaggramClient("http://taggram", http=http, retry=RetryPolicy(attempts=1))


@pytest.mark.parametrize(
    ("body", "media_type", "message", "request_id"),
    [
        (PROBLEM, "application/problem+json", "not a supported audio file", "r-1"),
        (ENVELOPE, "application/json", "not audio", "r-2"),
    ],
)
def test_problems_and_the_old_envelope_become_typed_errors(
    body: dict[str, Any], media_type: str, message: str, request_id: str
) -> None:
    with _client(422, body, media_type) as client, pytest.raises(RequestRejectedError) as error:
        client.models()
    assert (error.value.status, error.value.code) == (422, "undecodable_audio")
    assert (error.value.message, error.value.request_id) == (message, request_id)
    assert error.value.body == body


def test_statuses_choose_the_error_class() -> None:
    unauthorized = {**PROBLEM, "status": 401, "code": "unauthorized", "detail": "key"}
    with (
        _client(401, unauthorized, "application/problem+json") as client,
        pytest.raises(AuthenticationFailedError),
    ):
        client.models()
    failed = {**PROBLEM, "status": 500, "code": "internal_error", "detail": "bug"}
    with (
        _client(500, failed, "application/problem+json") as client,
        pytest.raises(ServiceError) as error,
    ):
        client.models()
    assert error.value.code == "internal_error"


def test_a_batch_of_no_files_is_refused_before_anything_is_sent() -> None:
    """It sent a request without a body, answered 415 "Content-Type '' is not accepted"."""

    def answer(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"nothing should be sent: {request.url}")

    transport = httpx.MockTransport(answer)
    with (
        TaggramClient("http://service", http=httpx.Client(transport=transport)) as client,
        pytest.raises(ValueError, match="at least one file"),
    ):
        client.tag_batch([])

    async def batch_of_none() -> None:
        http = httpx.AsyncClient(transport=transport)
        async with AsyncTaggramClient("http://service", http=http) as client:
            await client.tag_batch([])

    with pytest.raises(ValueError, match="at least one file"):
        asyncio.run(batch_of_none())
