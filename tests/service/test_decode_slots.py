"""Decode slots: at most TAGGRAM_DECODE_SLOTS uploads decode at once, and waiting for a slot
counts against the queue budget (429 before the body) and deadline (429 deadline_exceeded), on
a real server with real audio (the tiny model, so that decoding is the work that queues)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from taggram.service.audio.decode import DecodedAudio, DecodeLimits, decode
from taggram.service.audio.slots import DecodeSlots
from taggram.service.settings import Settings, available_cores
from tests.service.test_limits import _metric, head_only
from tests.support.server import Server, running_server

LIMITS = DecodeLimits(1 << 30, 900.0, 192_000)


def flac(seconds: int) -> bytes:
    """A 48 kHz FLAC tone: 0.4 s of decoding and resampling per 300 s on one idle core."""
    t = np.arange(seconds * 48_000) / 48_000
    out = io.BytesIO()
    sf.write(out, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 48_000, format="FLAC")
    return out.getvalue()


@pytest.fixture(scope="module")
def long_flac() -> bytes:
    return flac(300)


def test_the_default_is_the_usable_cores() -> None:
    """Python's default executor gave min(32, cores + 4) threads, counting a node's cores in a
    container with a CPU limit of 2."""
    assert Settings().decode_slots == available_cores()


def test_no_more_decodes_run_at_once_than_slots(long_flac: bytes) -> None:
    running, most = 0, 0
    lock = threading.Lock()

    def counted() -> DecodedAudio:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return decode(io.BytesIO(long_flac), 16_000, LIMITS)
        finally:
            with lock:
                running -= 1

    async def five() -> list[DecodedAudio]:
        slots = DecodeSlots(2)
        try:
            return await asyncio.gather(*(slots.run("tiny", counted) for _ in range(5)))
        finally:
            slots.close()

    decoded = asyncio.run(five())
    assert [audio.duration_seconds for audio in decoded] == [300.0] * 5
    assert most == 2


def test_a_decode_cancelled_twice_still_waits_for_its_thread() -> None:
    """The promise that lets a route close the upload once the call ends: a custom model's
    examples were cancelled by gather, then again by its clean-up, and the second cancel ended
    the wait while the thread still read the example (ValueError: seek of closed file)."""
    release, finished = threading.Event(), threading.Event()

    def slow() -> None:
        release.wait(10)
        finished.set()

    async def cancel_twice() -> bool:
        slots = DecodeSlots(1)
        try:
            task = asyncio.ensure_future(slots.run("tiny", slow))
            await asyncio.sleep(0.1)  # the thread is running
            task.cancel()
            await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.sleep(0.05)
            ended_early = task.done()
            release.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return ended_early
        finally:
            slots.close()

    assert asyncio.run(cancel_twice()) is False
    assert finished.is_set()


def _gauge(server: Server, name: str) -> float:
    """A metric without labels (``_metric`` reads labelled ones)."""
    text = httpx.get(f"{server.url}/metrics").text
    (value,) = re.findall(rf"^{name} ([0-9.e+]+)$", text, flags=re.M)
    return float(value)


def _post(server: Server, body: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/tag", content=body, headers={"Content-Type": "audio/flac"}, timeout=120
    )


@pytest.fixture
def one_slot(tiny_repository: Path, tmp_path: Path) -> Iterator[Server]:
    env = {
        "TAGGRAM_DEFAULT_MODEL": "tiny",
        "TAGGRAM_DECODE_SLOTS": "1",
        "TAGGRAM_MAX_BATCH_SIZE": "64",  # few batches: the tiny model's queue stays short
        "TAGGRAM_QUEUE_DEADLINE_SECONDS": "0.2",
        "TAGGRAM_DRAIN_GRACE_SECONDS": "0",
    }
    with running_server(tiny_repository, tmp_path, env=env) as started:
        yield started


def test_uploads_waiting_past_the_deadline_for_a_slot_are_refused(
    one_slot: Server, long_flac: bytes
) -> None:
    """Four uploads at once on one slot: the first decodes, those still waiting 0.2 s later get
    429 deadline_exceeded with Retry-After (they decoded side by side before, unbounded)."""
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _post(one_slot, long_flac), range(4)))
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses[0] == 200 and statuses[-1] == 429, [a.text for a in answers]
    for late in (answer for answer in answers if answer.status_code == 429):
        assert late.json()["code"] == "deadline_exceeded", late.text
        assert "decode slots" in late.json()["detail"]
        assert int(late.headers["Retry-After"]) >= 1
    refused = _metric(one_slot, "taggram_refused_total", model="tiny", stage="decode_deadline")
    assert refused == statuses.count(429)
    assert _gauge(one_slot, "taggram_decodes_waiting") == 0
    assert _gauge(one_slot, "taggram_decodes_running") == 0


def test_a_full_decode_queue_refuses_before_the_body(
    tiny_repository: Path, tmp_path: Path, long_flac: bytes
) -> None:
    """With one slot busy and decodes measured at about 0.4 s each, a new upload would wait
    past a 0.1 s budget: refused from its headers, before a byte of the body is read."""
    env = {
        "TAGGRAM_DEFAULT_MODEL": "tiny",
        "TAGGRAM_DECODE_SLOTS": "1",
        "TAGGRAM_QUEUE_BUDGET_SECONDS": "0.1",
        "TAGGRAM_DRAIN_GRACE_SECONDS": "0",
    }
    with running_server(tiny_repository, tmp_path, env=env) as server:
        assert _post(server, long_flac).status_code == 200  # measures a decode's time
        busy: list[httpx.Response] = []
        longest = flac(900)  # holds its slot for longer than the checks below take
        first = threading.Thread(target=lambda: busy.append(_post(server, longest)))
        first.start()
        deadline = time.monotonic() + 60
        while _gauge(server, "taggram_decodes_running") == 0:
            assert first.is_alive() and time.monotonic() < deadline, busy
        status, headers, body = head_only(
            server,
            b"POST /v1/tag?model=made_up HTTP/1.1\r\nHost: x\r\nContent-Type: audio/flac\r\n"
            b"Content-Length: 10000000\r\n\r\n",
        )
        first.join(120)
        assert status == 429, body
        assert json.loads(body)["code"] == "overloaded"
        assert "to decode" in json.loads(body)["detail"]
        assert int(headers["retry-after"]) >= 1
        assert busy[0].status_code == 200, busy[0].text
        # Counted under a loaded network: a model name from the request would mint a series.
        refused = _metric(server, "taggram_refused_total", model="tiny", stage="before_body")
        assert refused == 1
        assert "made_up" not in httpx.get(f"{server.url}/metrics").text


def test_a_v2_tensor_is_read_on_a_decode_slot(one_slot: Server) -> None:
    """Parsing a JSON tensor (80 ms for 1 Mi values) ran on the event loop, stalling every other
    request; it takes a decode slot like an upload, and waits for one within the deadline."""
    busy: list[httpx.Response] = []
    first = threading.Thread(target=lambda: busy.append(_post(one_slot, flac(900))))
    first.start()
    deadline = time.monotonic() + 60
    while _gauge(one_slot, "taggram_decodes_running") == 0:
        assert first.is_alive() and time.monotonic() < deadline, busy
    tensor = {"name": "waveform", "shape": [1, 48128], "datatype": "FP32", "data": [0.0] * 48128}
    late = httpx.post(f"{one_slot.url}/v2/models/tiny/infer", json={"inputs": [tensor]})
    first.join(120)
    assert (late.status_code, late.json()["code"]) == (429, "deadline_exceeded"), late.text
    assert "decode slots" in late.json()["detail"]
    assert busy[0].status_code == 200, busy[0].text
    served = httpx.post(f"{one_slot.url}/v2/models/tiny/infer", json={"inputs": [tensor]})
    assert served.status_code == 200, served.text
