"""Triton's model configuration, statistics and model repository extensions of /v2, with the real
Triton client (``tritonclient[http]``), behind a proxy under ``TAGGRAM_ROOT_PATH``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from benchmarks.custom_creation import example as clip
from tests.e2e.conftest import SecuredServer
from tests.support.paths import require_repository
from tests.support.proxy import prefix_proxy
from tests.support.server import running_server

MODEL = "MTT_sample_cnn"
SAMPLES = 59049
PREFIX = "/taggram"
# One worker and a batch of 4 make the batches a request forms exact: 6 rows run as 4 + 2.
ENV = {
    "TAGGRAM_ROOT_PATH": PREFIX,
    "TAGGRAM_MODELS": MODEL,
    "TAGGRAM_WARMUP": "0",
    "TAGGRAM_MAX_BATCH_SIZE": "4",
    "TAGGRAM_MAX_QUEUE_DELAY_MS": "7",
    "TAGGRAM_INFERENCE_WORKERS": "1",
}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (``http://127.0.0.1:port/taggram``) of a one-model server behind a proxy."""
    logs = tmp_path_factory.mktemp("logs")
    with (
        running_server(require_repository(), logs, env=ENV) as server,
        prefix_proxy(server.url, PREFIX) as proxy,
    ):
        yield proxy + PREFIX


@pytest.fixture
def v2(base_url: str) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(base_url.removeprefix("http://"))
    yield client
    client.close()


def _refusal(call: Any, *args: Any, **kwargs: Any) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as refused:
        call(*args, **kwargs)
    return refused.value


def test_the_extensions_are_listed(v2: triton.InferenceServerClient) -> None:
    extensions = set(v2.get_server_metadata()["extensions"])
    assert {"model_configuration", "statistics", "model_repository"} <= extensions


def test_model_config_gives_the_tensors_and_the_batchers_settings(
    v2: triton.InferenceServerClient,
) -> None:
    """Tensors without the batch axis, the batch size and queue delay the server runs with."""
    config = v2.get_model_config(MODEL)
    assert config["name"] == MODEL and config["platform"] == "onnxruntime_onnx"
    assert config["max_batch_size"] == 4
    assert config["dynamic_batching"] == {
        "max_queue_delay_microseconds": 7000,
        "priority_levels": 2,
        "default_priority_level": 2,
    }
    assert config["input"] == [{"name": "waveform", "data_type": "TYPE_FP32", "dims": [SAMPLES]}]
    outputs = {output["name"]: output for output in config["output"]}
    assert outputs["probabilities"] == {
        "name": "probabilities",
        "data_type": "TYPE_FP32",
        "dims": [50],
    }
    assert config["instance_group"][0]["count"] == 1
    [version] = v2.get_model_metadata(MODEL)["versions"]
    assert v2.get_model_config(MODEL, model_version=version) == config
    assert _refusal(v2.get_model_config, MODEL, model_version="999").status() == "404"
    missing = _refusal(v2.get_model_config, "MTT_musicnn")  # in the repository, not served
    assert missing.status() == "404" and "MTT_musicnn" in missing.message()


def _stats(v2: triton.InferenceServerClient) -> dict[str, Any]:
    [stat] = v2.get_inference_statistics(MODEL)["model_stats"]
    assert stat["name"] == MODEL
    return dict(stat)


def test_statistics_count_what_the_batcher_ran(
    v2: triton.InferenceServerClient, base_url: str
) -> None:
    """Six rows in one request on a batch size of 4: 6 inferences, 2 executions, 1 success;
    then a /v1 upload counts its patches the same way (the batcher serves both)."""
    before = _stats(v2)
    rows = np.zeros((6, SAMPLES), np.float32)
    tensor = triton.InferInput("waveform", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    v2.infer(MODEL, [tensor])
    after = _stats(v2)

    def moved(stat: str, field: str = "count") -> int:
        return int(after["inference_stats"][stat][field] - before["inference_stats"][stat][field])

    assert after["inference_count"] - before["inference_count"] == 6
    assert after["execution_count"] - before["execution_count"] == 2
    assert (moved("success"), moved("queue"), moved("fail")) == (1, 1, 0)
    # Per batch, in the counts perf_analyzer requires to agree (it aborts otherwise).
    computed = ("compute_input", "compute_infer", "compute_output")
    assert [moved(stat) for stat in computed] == [2, 2, 2]
    assert all(moved(stat, "ns") > 0 for stat in computed)
    assert moved("success", "ns") >= moved("queue", "ns") + moved("compute_infer", "ns")
    assert abs(after["last_inference"] / 1000 - time.time()) < 60
    tagged = httpx.post(
        f"{base_url}/v1/tag",
        content=clip("tone", 1),
        headers={"Content-Type": "audio/wav"},
        timeout=60,
    )
    assert tagged.status_code == 200, tagged.text
    final = _stats(v2)
    assert final["inference_count"] - after["inference_count"] == tagged.json()["patches"]
    assert (
        final["inference_stats"]["success"]["count"]
        == after["inference_stats"]["success"]["count"] + 1
    )
    every = v2.get_inference_statistics()["model_stats"]
    assert [stat["name"] for stat in every] == [MODEL]
    assert every[0]["inference_count"] == final["inference_count"]
    version = final["version"]
    pinned = v2.get_inference_statistics(MODEL, model_version=version)["model_stats"]
    assert pinned[0]["inference_count"] == final["inference_count"]
    assert _refusal(v2.get_inference_statistics, MODEL, model_version="9").status() == "404"
    assert _refusal(v2.get_inference_statistics, "no_such_model").status() == "404"


def test_the_repository_index_lists_the_served_models(
    v2: triton.InferenceServerClient, base_url: str
) -> None:
    [version] = v2.get_model_metadata(MODEL)["versions"]
    expected = [{"name": MODEL, "version": version, "state": "READY", "reason": ""}]
    assert v2.get_model_repository_index() == expected  # an empty body
    index = f"{base_url}/v2/repository/index"
    assert httpx.post(index, json={"ready": True}).json() == expected
    for bad in ({"ready": "yes"}, {"ready": True, "other": 1}, [1]):
        refused = httpx.post(index, json=bad)
        assert refused.status_code == 400, (bad, refused.text)
        assert isinstance(refused.json()["error"], str)


def test_a_malformed_repository_index_request_is_no_tensor_problem(base_url: str) -> None:
    """A body that is not ``{"ready": bool}`` carries no tensor: it was a 400 ``invalid_tensor``
    titled "Tensor does not fit the model". It is the 400 of any malformed request, naming
    what is wrong."""
    index = f"{base_url}/v2/repository/index"
    for bad in (b"{", b'{"ready": "yes"}', b"[1]"):
        refused = httpx.post(index, content=bad, headers={"Content-Type": "application/json"})
        problem = refused.json()
        assert refused.status_code == 400, (bad, refused.text)
        assert (problem["code"], problem["title"]) == ("malformed_request", "Malformed request")
        assert problem["error"].startswith("not a repository index request: "), problem


def test_loading_and_unloading_are_refused_saying_why(v2: triton.InferenceServerClient) -> None:
    """The service manages its repository: a 409 whose message says so (a 404 said nothing)."""
    for call in (v2.load_model, v2.unload_model):
        refused = _refusal(call, MODEL)
        assert refused.status() == "409", refused.message()
        assert "managed by the service" in refused.message()


def test_the_extensions_need_a_key_when_keys_are_on(secured_server: SecuredServer) -> None:
    client = triton.InferenceServerClient(secured_server.url.removeprefix("http://"))
    key = {"Authorization": f"Bearer {secured_server.tag_key}"}
    try:
        for call in (
            lambda **headers: client.get_model_config("MTT_musicnn", **headers),
            lambda **headers: client.get_inference_statistics(**headers),
            lambda **headers: client.get_model_repository_index(**headers),
        ):
            assert _refusal(call).status() == "401"
            assert call(headers=dict(key))
        names = [stat["name"] for stat in client.get_inference_statistics(headers=dict(key))[
            "model_stats"]]  # fmt: skip
        assert names == ["MTT_musicnn", "MTT_sample_cnn"]  # custom models are not on /v2
    finally:
        client.close()


def test_a_requests_timeout_bounds_its_wait_for_a_batch_slot(
    v2: triton.InferenceServerClient, base_url: str
) -> None:
    """Triton's ``timeout`` parameter (microseconds) was ignored. One row waits the queue delay
    (7 ms) for its batch to fill: a 1 µs timeout refuses it there (429 ``deadline_exceeded``,
    counted as a failure), a 60 s one is served, 0 means none, and anything but a whole number
    >= 0 is a 400."""
    row = triton.InferInput("waveform", [1, SAMPLES], "FP32")
    row.set_data_from_numpy(np.zeros((1, SAMPLES), np.float32), binary_data=True)
    before = _stats(v2)
    late = _refusal(v2.infer, MODEL, [row], timeout=1)
    assert late.status() == "429" and "the request's timeout of 1e-06 s" in late.message()
    failed = _stats(v2)["inference_stats"]["fail"]["count"]
    assert failed == before["inference_stats"]["fail"]["count"] + 1
    for timeout in (60_000_000, 0):
        served = v2.infer(MODEL, [row], timeout=timeout)
        assert served.as_numpy("probabilities").shape == (1, 50)  # type: ignore[union-attr]
    tensor = {"name": "waveform", "shape": [1, SAMPLES], "datatype": "FP32",
              "data": [0.0] * SAMPLES}  # fmt: skip
    for bad in ("5", -1, 1.5, True):
        answer = httpx.post(
            f"{base_url}/v2/models/{MODEL}/infer",
            json={"inputs": [tensor], "parameters": {"timeout": bad}},
            timeout=60,
        )
        assert answer.status_code == 400 and "'timeout'" in answer.json()["error"], bad


def test_a_requests_priority_picks_a_level_and_is_read_strictly(
    v2: triton.InferenceServerClient, base_url: str
) -> None:
    """Triton's ``priority`` parameter was ignored. The server lists the schedule policy
    extension; levels 1 and 2 (the model configuration's ``priority_levels``) and 0 (the
    default) are served, anything else is a 400 naming the parameter. Which level goes first is
    the batcher's test (tests/service/test_batching.py)."""
    assert "schedule_policy" in v2.get_server_metadata()["extensions"]
    row = triton.InferInput("waveform", [1, SAMPLES], "FP32")
    row.set_data_from_numpy(np.zeros((1, SAMPLES), np.float32), binary_data=True)
    for priority in (1, 2, 0):
        served = v2.infer(MODEL, [row], priority=priority)
        assert served.as_numpy("probabilities").shape == (1, 50)  # type: ignore[union-attr]
    tensor = {"name": "waveform", "shape": [1, SAMPLES], "datatype": "FP32",
              "data": [0.0] * SAMPLES}  # fmt: skip
    for bad in (3, -1, 2**64, "1", 1.0, True):
        answer = httpx.post(
            f"{base_url}/v2/models/{MODEL}/infer",
            json={"inputs": [tensor], "parameters": {"priority": bad}},
            timeout=60,
        )
        assert answer.status_code == 400, bad
        assert "'priority'" in answer.json()["error"] and "from 1" in answer.json()["error"], bad
