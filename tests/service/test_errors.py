"""The error hierarchy and its RFC 9457 problem details, on a real FastAPI app in process."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI, Query

from taggram.service import errors
from taggram.service.api import create_app
from taggram.service.api.errors import install_error_handlers, status_of
from taggram.service.api.middleware import RequestContextMiddleware
from taggram.service.logs import TEXT_FORMAT, RequestIdFilter
from taggram.service.settings import Settings
from tests.support.server import free_port

CLIENT_ERRORS = [
    errors.EmptyAudioError,
    errors.UnsupportedMediaTypeError,
    errors.PayloadTooLargeError,
    errors.AudioTooLongError,
    errors.UndecodableAudioError,
    errors.InvalidAudioError,
    errors.InvalidOptionsError,
    errors.TooManyPatchesError,
    errors.ModelNotFoundError,
    errors.OverloadedError,
    errors.DeadlineExceededError,
    errors.RequestTimeoutError,
    errors.ClientDisconnectedError,
]


def test_bad_input_errors_are_4xx_with_distinct_codes() -> None:
    assert all(400 <= status_of(error("x")) < 500 for error in CLIENT_ERRORS)
    codes = [error.code for error in errors.TaggramError.__subclasses__()]
    assert len(codes) == len(set(codes))


def test_only_load_timeouts_and_not_ready_are_retryable() -> None:
    retryable = {e.code for e in errors.TaggramError.__subclasses__() if e.retryable}
    assert retryable == {"overloaded", "deadline_exceeded", "request_timeout", "not_ready"}
    assert status_of(errors.InferenceFailedError("x")) == 500


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, routes=app.routes)

    @app.get("/raise/{name}")
    async def raise_named(name: str) -> None:
        raise getattr(errors, name)("described", retry_after_seconds=2.2)

    @app.get("/options")
    async def options(top_k: int = Query(ge=1)) -> int:
        return top_k

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("a bug")

    return app


def _get(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(run())


def test_problem_details_name_type_status_code_and_request_id() -> None:
    response = _get("/raise/OverloadedError", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 429
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Retry-After"] == "3"
    assert response.headers["X-Request-ID"] == "abc-123"
    assert response.json() == {
        "type": "urn:taggram:problem:overloaded",
        "title": "Overloaded",
        "status": 429,
        "detail": "described",
        "instance": "/raise/OverloadedError",
        "code": "overloaded",
        "request_id": "abc-123",
        "retryable": True,
        # The 0.1 envelope, kept on /v1 for older clients.
        "error": {"code": "overloaded", "message": "described", "request_id": "abc-123"},
    }
    # Every code has its own type and a fixed title; the status in the body is the response's.
    for name in ("EmptyAudioError", "ModelNotFoundError", "AuthenticationError"):
        problem = _get(f"/raise/{name}")
        body = problem.json()
        assert body["status"] == problem.status_code
        assert body["type"] == f"urn:taggram:problem:{body['code']}"
        assert body["title"] and body["title"] != body["detail"]
    unauthorized = _get("/raise/AuthenticationError")
    assert unauthorized.status_code == 401
    assert unauthorized.headers["WWW-Authenticate"].startswith("Bearer")


def test_validation_unknown_routes_and_bugs_are_problems_too() -> None:
    invalid = _get("/options?top_k=0")
    assert invalid.status_code == 422
    assert invalid.headers["Content-Type"] == "application/problem+json"
    body = invalid.json()
    assert body["code"] == "invalid_options"
    assert "top_k" in body["detail"]
    assert body["errors"][0]["location"] == ["query", "top_k"]
    missing = _get("/nowhere")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    bug = _get("/bug")
    assert (bug.status_code, bug.json()["code"]) == (500, "internal_error")
    assert "a bug" not in bug.text  # internals are logged, not returned


def test_open_inference_protocol_paths_carry_the_message_as_error() -> None:
    """tritonclient reads a failure's message from the body's ``error`` string."""
    body = _get("/v2/nowhere").json()
    assert body["error"] == body["detail"]
    assert body["code"] == "not_found"


@contextmanager
def _uvicorn(app: FastAPI) -> Iterator[int]:
    """``app`` served by a real uvicorn on 127.0.0.1 (in a thread of this process, so that a
    test can add a route to the real app); yields the port once it listens."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join()


@contextmanager
def _root_log() -> Iterator[io.StringIO]:
    """The root logger's lines, formatted as ``taggram serve`` writes them."""
    handler = logging.StreamHandler(io.StringIO())
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.getLogger().addHandler(handler)
    try:
        yield handler.stream
    finally:
        logging.getLogger().removeHandler(handler)


def test_a_bug_on_a_real_server_is_a_500_with_the_request_id_on_a_connection_kept_open(
    tiny_repository: Path,
) -> None:
    app = create_app(Settings(model_repository=tiny_repository, default_model="tiny"))

    @app.get("/test-only/bug")  # a test-only route on the real app: a real bug, nothing mocked
    async def bug() -> None:
        raise RuntimeError("a bug")

    with _root_log() as lines, _uvicorn(app) as port:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("GET", "/test-only/bug", headers={"X-Request-ID": "bug-request-1"})
        failed = connection.getresponse()
        body = json.loads(failed.read())
        sock = connection.sock
        connection.request("GET", "/healthz")  # on the same connection
        after = connection.getresponse()
        after.read()
        assert connection.sock is sock  # http.client reopens only a connection it saw closed
        connection.close()
    assert failed.status == 500
    assert failed.getheader("Content-Type") == "application/problem+json"
    assert failed.getheader("X-Request-ID") == "bug-request-1"
    assert failed.getheader("Connection") != "close"
    assert (body["code"], body["request_id"]) == ("internal_error", "bug-request-1")
    assert "a bug" not in json.dumps(body)  # internals are logged, not returned
    assert after.status == 200
    log = lines.getvalue()
    assert "[bug-request-1] GET /test-only/bug -> 500 internal_error" in log, log
    assert "RuntimeError: a bug" in log  # the traceback, under the request's line
    assert "Exception in ASGI application" not in log, log
