"""A real ``taggram serve`` shared by the deployment checks that need live ``/metrics`` output."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import soundfile as sf

from tests.support.paths import require_repository
from tests.support.server import Server, running_server


def _tone_wav(seconds: float = 4.0, rate: int = 22050) -> bytes:
    """A short stereo WAV at a non-model rate, so decoding, resampling and batching all run."""
    t = np.arange(int(seconds * rate)) / rate
    left = 0.3 * np.sin(2 * np.pi * 440.0 * t)
    right = 0.3 * np.sin(2 * np.pi * 660.0 * t)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([left, right], axis=1).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


@pytest.fixture(scope="package")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that has tagged one file and refused one bad upload, so most series have samples."""
    repository = require_repository()
    # No load balancer to wait for: stop at once when the tests are done.
    env = {"TAGGRAM_DRAIN_GRACE_SECONDS": "0"}
    with running_server(repository, tmp_path_factory.mktemp("deploy-server"), env) as server:
        files = {"file": ("tone.wav", _tone_wav(), "audio/wav")}
        tagged = httpx.post(f"{server.url}/v1/tag", files=files, timeout=120.0)
        assert tagged.status_code == 200, tagged.text
        refused = httpx.post(f"{server.url}/v1/tag", content=b"not audio", timeout=30.0)
        assert refused.status_code >= 400, refused.text
        yield server


@pytest.fixture
def live_metrics(live_server: Server) -> str:
    """The text exposition ``GET /metrics`` answers right now."""
    response = httpx.get(f"{live_server.url}/metrics", timeout=10.0)
    response.raise_for_status()
    return response.text
