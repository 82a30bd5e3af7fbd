"""A model failing inside ONNX Runtime, on a real server: the client gets a 500 that names no
internals, the log keeps the reason."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from tests.service.conftest import SAMPLE_RATE
from tests.support.server import running_server


def _wav(peak: float) -> bytes:
    buffer = io.BytesIO()
    samples = peak * np.sin(2 * np.pi * 440 * np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE)
    sf.write(buffer, samples.astype(np.float32), SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def test_an_inference_failure_answers_500_without_onnx_runtimes_message(
    faulty_repository: Path, tmp_path: Path
) -> None:
    with (
        running_server(
            faulty_repository, tmp_path, env={"TAGGRAM_DEFAULT_MODEL": "tiny"}
        ) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        quiet = http.post("/v1/tag", content=_wav(0.01), headers={"Content-Type": "audio/wav"})
        assert quiet.status_code == 200, quiet.text
        loud = http.post("/v1/tag", content=_wav(0.9), headers={"Content-Type": "audio/wav"})
        assert loud.status_code == 500, loud.text
        problem = loud.json()
        assert problem["code"] == "inference_failed"
        for internal in ("ONNXRuntimeError", "Gather", "indices", ".cc:"):
            assert internal not in loud.text, internal
        assert problem["request_id"] in server.log()
    assert "ONNXRuntimeError" in server.log()
