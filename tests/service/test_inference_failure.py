"""A model failing inside ONNX Runtime, on a real server: the client gets a 500 that names no
internals, the log keeps the reason."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from tests.service.conftest import PATCH, SAMPLE_RATE
from tests.support.server import running_server


def _wav(peak: float) -> bytes:
    buffer = io.BytesIO()
    samples = peak * np.sin(2 * np.pi * 440 * np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE)
    sf.write(buffer, samples.astype(np.float32), SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def _tagged(http: httpx.Client, peak: float) -> httpx.Response:
    """POST /v1/tag of a float WAV tone peaking at ``peak``."""
    return http.post("/v1/tag", content=_wav(peak), headers={"Content-Type": "audio/wav"})


def test_an_inference_failure_answers_500_without_onnx_runtimes_message(
    faulty_repository: Path, tmp_path: Path
) -> None:
    with (
        running_server(
            faulty_repository, tmp_path, env={"TAGGRAM_DEFAULT_MODEL": "tiny"}
        ) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        assert _tagged(http, 0.01).status_code == 200
        loud = _tagged(http, 0.9)
        assert loud.status_code == 500, loud.text
        problem = loud.json()
        assert problem["code"] == "inference_failed"
        for internal in ("ONNXRuntimeError", "Gather", "indices", ".cc:"):
            assert internal not in loud.text, internal
        assert problem["request_id"] in server.log()
    assert "ONNXRuntimeError" in server.log()


def test_nan_outputs_on_ordinary_audio_are_a_500_not_the_audios_fault(
    nan_repository: Path, tmp_path: Path
) -> None:
    """Outputs that are not finite for audio within [-1, 1] are no fault of the audio (only float
    audio far outside the range overflows a network): a logged 500 that says so, not a 422
    calling a peak of 0.5 "far outside [-1, 1]". Far outside it stays the audio's 422, on /v1
    and /v2 alike."""
    with (
        running_server(nan_repository, tmp_path, env={"TAGGRAM_DEFAULT_MODEL": "tiny"}) as server,
        httpx.Client(base_url=server.url, timeout=60) as http,
    ):
        assert _tagged(http, 0.05).status_code == 200
        ordinary = _tagged(http, 0.5)
        assert ordinary.status_code == 500, ordinary.text
        problem = ordinary.json()
        assert (problem["code"], problem["title"]) == ("inference_failed", "Inference failed")
        assert "peak at 0.5, within [-1, 1]" in problem["detail"]
        assert "a fault of the service, not of the audio" in problem["detail"]
        assert "far outside" not in problem["detail"]
        assert problem["request_id"] in server.log()
        loud = _tagged(http, 100.0)
        assert loud.status_code == 422, loud.text
        assert loud.json()["code"] == "invalid_audio"
        assert "peak at 100, far outside [-1, 1]" in loud.json()["detail"]
        for peak, status in ((0.5, 500), (100.0, 400)):
            tensor = {"name": "waveform", "shape": [1, PATCH.samples], "datatype": "FP32",
                      "data": [peak] * PATCH.samples}  # fmt: skip
            v2 = http.post("/v2/models/tiny/infer", json={"inputs": [tensor]})
            assert v2.status_code == status, v2.text
            assert ("far outside" in v2.json()["error"]) == (status == 400), v2.text
    assert "tiny gave NaN or infinite outputs on inputs peaking at 0.5" in server.log()
