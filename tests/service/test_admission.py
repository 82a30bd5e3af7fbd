"""Admission through a real server (tiny model): 429 before a byte of the body is read when the
model is busy, 429 ``deadline_exceeded`` for queued work that waits too long, both in /metrics."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taggram.repository import load_repository
from tests.service.test_limits import _metric, head_only, wav
from tests.support.server import Server, running_server

ENV = {
    "TAGGRAM_DEFAULT_MODEL": "tiny",
    # Batches never fill (64 rows) and wait 2 s for more: queued patches stay queued, so any
    # queued work is over the tiny budget and every request passes the 0.5 s deadline.
    "TAGGRAM_MAX_BATCH_SIZE": "64",
    "TAGGRAM_MAX_QUEUE_DELAY_MS": "2000",
    "TAGGRAM_QUEUE_BUDGET_SECONDS": "0.000001",
    "TAGGRAM_QUEUE_DEADLINE_SECONDS": "0.5",
    "TAGGRAM_DRAIN_GRACE_SECONDS": "0",
}


@pytest.fixture(scope="module")
def server(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tiny_repository, tmp_path_factory.mktemp("logs"), env=ENV) as started:
        yield started


def _queue_an_upload(
    server: Server, path: str = "/v1/tag", **request: Any
) -> tuple[threading.Thread, list[httpx.Response]]:
    """Start a request (a 30 s upload to /v1/tag unless ``request`` gives httpx's arguments for
    another ``path``) in a thread and wait until its patches are queued; the thread appends
    its answer to the list."""
    request = request or {"content": wav(30), "headers": {"Content-Type": "audio/wav"}}
    queued: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: queued.append(httpx.post(f"{server.url}{path}", timeout=60, **request))
    )
    first.start()
    while _metric(server, "taggram_queue_depth", model="tiny") == 0:
        assert first.is_alive(), queued
    return first, queued


def test_busy_model_refuses_before_the_body_and_late_work_is_refused(server: Server) -> None:
    first, queued = _queue_an_upload(server)
    # Headers only: a body of 10 MB is announced and never sent; the answer must not wait for it.
    status, headers, body = head_only(
        server,
        b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
        b"Content-Length: 10000000\r\n\r\n",
    )
    assert status == 429, body
    assert json.loads(body)["error"]["code"] == "overloaded"
    assert int(headers["retry-after"]) >= 1
    assert headers["connection"] == "close"
    first.join(60)
    late = queued[0]
    assert late.status_code == 429, late.text
    assert late.json()["error"]["code"] == "deadline_exceeded"
    assert "retry-after" in late.headers
    refused = {
        stage: _metric(server, "taggram_refused_total", model="tiny", stage=stage)
        for stage in ("before_body", "deadline")
    }
    assert refused == {"before_body": 1, "deadline": 1}
    assert _metric(server, "taggram_refused_patches_total", code="deadline_exceeded") == 11
    assert _metric(server, "taggram_refused_duration_seconds_count", status="429") == 2


def test_a_busy_model_refuses_a_v2_request_before_its_body(
    server: Server, tiny_repository: Path
) -> None:
    """/v2 read the whole tensor, then refused it: a busy replica now says so from the headers,
    as /v1 does, and the client's body is never sent. The body's ``priority`` is not known
    there, so busy means work that even the highest level waits for: level-1 rows queued
    (default-level work, a /v1 upload, may not keep a level-1 request out)."""
    samples = load_repository(tiny_repository)["tiny"].metadata.patch.samples
    tensor = {"name": "waveform", "shape": [2, samples], "datatype": "FP32",
              "data": [0.0] * (2 * samples)}  # fmt: skip
    body = {"inputs": [tensor], "parameters": {"priority": 1}}
    first, _ = _queue_an_upload(server, "/v2/models/tiny/infer", json=body)
    status, headers, body = head_only(
        server,
        b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\nContent-Length: 10000000\r\n\r\n",
    )
    first.join(60)
    assert status == 429, body
    assert json.loads(body)["code"] == "overloaded"
    assert int(headers["retry-after"]) >= 1
