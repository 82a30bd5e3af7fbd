"""Fair batching on a real model: a short request is not stuck behind long tracks' patches.

Its own server (one model, a budget that admits the long tracks) so that the order is the
batcher's doing; the figures (how long the short request took) are printed, not asserted: speed
belongs to ``benchmarks/load.py``.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.support.paths import require_repository
from tests.support.server import Server, running_server

ENV = {
    "TAGGRAM_MODELS": "MTT_musicnn",
    "TAGGRAM_QUEUE_BUDGET_SECONDS": "600",
    "TAGGRAM_DRAIN_GRACE_SECONDS": "0",
}


def _noise_wav(seconds: float, seed: int) -> bytes:
    audio = np.random.default_rng(seed).normal(0, 0.1, int(seconds * 16000)).astype(np.float32)
    out = io.BytesIO()
    sf.write(out, audio, 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repository = require_repository()
    with running_server(repository, tmp_path_factory.mktemp("logs"), env=ENV) as started:
        yield started


def _queued(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(r'taggram_queue_depth\{model="MTT_musicnn"\} ([0-9.e+]+)', text)
    return float(found.group(1)) if found else 0.0


def test_a_short_request_finishes_before_the_long_ones_queued_before_it(server: Server) -> None:
    finished: list[str] = []
    lock = threading.Lock()

    def post(name: str, body: bytes, **params: float) -> None:
        response = httpx.post(
            f"{server.url}/v1/tag",
            params=params,
            content=body,
            headers={"Content-Type": "audio/wav"},
            timeout=600,
        )
        assert response.status_code == 200, response.text
        with lock:
            finished.append(name)

    # Three 60 s tracks at a 0.5 s hop: 117 patches each, about 350 queued on the model.
    longs = [
        threading.Thread(target=post, args=(f"long{i}", _noise_wav(60, i)), kwargs={"hop": 0.5})
        for i in range(3)
    ]
    for thread in longs:
        thread.start()
    deadline = time.monotonic() + 120
    while _queued(server) < 300:
        assert time.monotonic() < deadline, "the long tracks never queued"
        time.sleep(0.02)
    started = time.perf_counter()
    post("short", _noise_wav(2, 9))
    short_seconds = time.perf_counter() - started
    left = _queued(server)
    for thread in longs:
        thread.join(600)
    print(f"short request: {short_seconds:.2f} s with {left:.0f} patches still queued")
    assert finished[0] == "short", finished
    assert left > 0
