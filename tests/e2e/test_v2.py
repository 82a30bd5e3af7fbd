"""The Open Inference Protocol (KServe V2) with the real Triton client, ``tritonclient[http]``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from benchmarks.custom_creation import example as clip
from tests.e2e.conftest import SecuredServer
from tests.support.paths import MODEL_REPOSITORY, require_repository
from tests.support.proxy import prefix_proxy
from tests.support.server import Server, running_server

MODELS = ("MTT_sample_cnn", "MTT_musicnn")  # what the secured server serves


@pytest.fixture
def v2(secured_server: SecuredServer) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(secured_server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture
def key(secured_server: SecuredServer) -> dict[str, str]:
    # tritonclient adds its own headers to the dict it is given: hand each call a fresh one.
    return {"Authorization": f"Bearer {secured_server.tag_key}"}


def _reference(model: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(
        str(MODEL_REPOSITORY / model / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"waveform": batch}), strict=True))


def test_server_is_live_ready_and_describes_itself(
    v2: triton.InferenceServerClient, key: dict[str, str]
) -> None:
    assert v2.is_server_live(headers=dict(key))
    assert v2.is_server_ready(headers=dict(key))
    metadata = v2.get_server_metadata(headers=dict(key))
    assert metadata["name"] == "taggram"
    assert {"binary_tensor_data", "classification"} <= set(metadata["extensions"])
    for model in MODELS:
        assert v2.is_model_ready(model, headers=dict(key))
    assert not v2.is_server_ready()  # no key: 401
    with pytest.raises(InferenceServerException) as refused:
        v2.get_server_metadata()
    assert refused.value.status() == "401" and "API key" in refused.value.message()


@pytest.mark.parametrize("model", MODELS)
def test_model_metadata_names_the_waveform_tensor(
    v2: triton.InferenceServerClient, key: dict[str, str], model: str
) -> None:
    metadata = v2.get_model_metadata(model, headers=dict(key))
    samples = 59049 if model == "MTT_sample_cnn" else 48128
    assert metadata["inputs"] == [{"name": "waveform", "datatype": "FP32", "shape": [-1, samples]}]
    outputs = {output["name"]: output for output in metadata["outputs"]}
    assert outputs["probabilities"]["shape"] == [-1, 50]
    assert all(output["datatype"] == "FP32" for output in outputs.values())


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_infer_equals_the_onnx_model_run_directly(
    v2: triton.InferenceServerClient, key: dict[str, str], model: str, binary: bool
) -> None:
    metadata = v2.get_model_metadata(model, headers=dict(key))
    samples = metadata["inputs"][0]["shape"][1]
    rng = np.random.default_rng(12)
    batch = (0.2 * rng.standard_normal((3, samples))).astype(np.float32)
    tensor = triton.InferInput("waveform", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    names = [output["name"] for output in metadata["outputs"]]
    wanted = [triton.InferRequestedOutput(name, binary_data=not binary) for name in names]
    result = v2.infer(model, [tensor], outputs=wanted, headers=dict(key), request_id="r1")
    reference = _reference(model, batch)
    assert result.get_response()["model_name"] == model
    assert result.get_response()["id"] == "r1"
    for name in names:
        got = result.as_numpy(name)
        assert got is not None and got.shape == reference[name].shape, name
        np.testing.assert_allclose(got, reference[name], atol=1e-5, rtol=0)
    # No outputs named: all of them, in binary (what tritonclient asks for by default).
    every = v2.infer(model, [tensor], headers=dict(key))
    np.testing.assert_allclose(
        every.as_numpy("probabilities"), reference["probabilities"], atol=1e-5, rtol=0
    )


def _refused(
    v2: triton.InferenceServerClient, key: dict[str, str], model: str, tensor: triton.InferInput
) -> InferenceServerException:
    with pytest.raises(InferenceServerException) as refused:
        v2.infer(model, [tensor], headers=dict(key))
    return refused.value


def test_tensors_that_do_not_fit_are_refused_with_400(
    v2: triton.InferenceServerClient, key: dict[str, str]
) -> None:
    short = triton.InferInput("waveform", [1, 1000], "FP32")
    short.set_data_from_numpy(np.zeros((1, 1000), np.float32))
    error = _refused(v2, key, "MTT_musicnn", short)
    assert error.status() == "400" and "48128" in error.message()
    nan = np.zeros((1, 48128), np.float32)
    nan[0, 7] = np.nan
    bad_values = triton.InferInput("waveform", [1, 48128], "FP32")
    bad_values.set_data_from_numpy(nan, binary_data=True)
    assert _refused(v2, key, "MTT_musicnn", bad_values).status() == "400"
    # Finite but far outside [-1, 1]: the network's outputs overflow to NaN, which JSON lacks.
    loud = triton.InferInput("waveform", [1, 48128], "FP32")
    loud.set_data_from_numpy(np.full((1, 48128), 100.0, np.float32), binary_data=True)
    overflow = _refused(v2, key, "MTT_musicnn", loud)
    assert overflow.status() == "400" and "far outside [-1, 1]" in overflow.message()
    wrong_type = triton.InferInput("waveform", [1, 48128], "FP64")
    wrong_type.set_data_from_numpy(np.zeros((1, 48128), np.float64))
    assert "FP32" in _refused(v2, key, "MTT_musicnn", wrong_type).message()
    wrong_name = triton.InferInput("audio", [1, 48128], "FP32")
    wrong_name.set_data_from_numpy(np.zeros((1, 48128), np.float32))
    assert "waveform" in _refused(v2, key, "MTT_musicnn", wrong_name).message()
    missing = _refused(v2, key, "no_such_model", short)
    assert missing.status() == "404"


def test_a_pinned_version_is_served_and_any_other_is_404(
    v2: triton.InferenceServerClient, key: dict[str, str]
) -> None:
    [version] = v2.get_model_metadata("MTT_sample_cnn", headers=dict(key))["versions"]
    pinned = v2.get_model_metadata("MTT_sample_cnn", model_version=version, headers=dict(key))
    assert pinned["name"] == "MTT_sample_cnn"
    assert v2.is_model_ready("MTT_sample_cnn", model_version=version, headers=dict(key))
    assert not v2.is_model_ready("MTT_sample_cnn", model_version="999", headers=dict(key))
    batch = np.full((1, 59049), 0.01, np.float32)
    tensor = triton.InferInput("waveform", [1, 59049], "FP32")
    tensor.set_data_from_numpy(batch)
    result = v2.infer("MTT_sample_cnn", [tensor], model_version=version, headers=dict(key))
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        _reference("MTT_sample_cnn", batch)["probabilities"],
        atol=1e-5,
        rtol=0,
    )
    with pytest.raises(InferenceServerException) as refused:
        v2.infer("MTT_sample_cnn", [tensor], model_version="999", headers=dict(key))
    assert refused.value.status() == "404"


def test_custom_models_are_not_offered_on_v2(secured_server: SecuredServer) -> None:
    """A custom model classifies whole clips from its base's clip embedding: /v2 has no tensor
    it could take, so it is 404 there (metadata, readiness and inference alike)."""
    files = [
        ("files", (f"{kind}{i}.wav", clip(kind, i))) for kind in ("tone", "noise") for i in (1, 2)
    ]
    labels = [name.split(".")[0].rstrip("12") for _, (name, _) in files]
    admin = {"Authorization": f"Bearer {secured_server.admin_key}"}
    with httpx.Client(base_url=secured_server.url, headers=admin, timeout=300) as http:
        made = http.post(
            "/v1/models",
            data={"name": "v2_hidden", "labels": labels, "features": "MTT_sample_cnn.embedding"},
            files=files,
        )
        assert made.status_code == 201, made.text
        try:
            for path in ("", "/ready", "/versions/x", "/infer"):
                method = http.post if path == "/infer" else http.get
                answer = method(f"/v2/models/v2_hidden{path}")
                assert answer.status_code == 404, (path, answer.text)
                assert "custom model" in answer.json()["error"]
            # An unknown name is answered with what /v2 serves: no custom model among them.
            unknown = http.get("/v2/models/nope").json()["error"]
            assert unknown.startswith("no model named 'nope'; /v2 serves ['"), unknown
            assert "MTT_musicnn" in unknown and "v2_hidden" not in unknown, unknown
        finally:
            assert http.delete("/v1/models/v2_hidden").status_code == 204


def test_json_tensors_and_bodies_are_capped(secured_server: SecuredServer) -> None:
    """Over ``TAGGRAM_MAX_JSON_TENSOR_ELEMENTS`` (1 Mi by default) a JSON tensor gets 413, and so
    does a body over ``TAGGRAM_MAX_UPLOAD_BYTES`` (32 MiB here), as on /v1."""
    headers = {"X-API-Key": secured_server.tag_key}
    url = f"{secured_server.url}/v2/models/MTT_musicnn/infer"
    rows = (1 << 20) // 48128 + 1  # one row more than the cap allows
    big = {"inputs": [{"name": "waveform", "shape": [rows, 48128], "datatype": "FP32",
                       "data": [[0] * 48128] * rows}]}  # fmt: skip
    refused = httpx.post(url, json=big, headers=headers, timeout=60)
    assert (refused.status_code, refused.json()["code"]) == (413, "payload_too_large")
    assert "binary tensor extension" in refused.json()["error"]
    padding = b" " * (33 * (1 << 20))
    flooded = httpx.post(url, content=b'{"inputs": []}' + padding, headers=headers, timeout=60)
    assert (flooded.status_code, flooded.json()["code"]) == (413, "payload_too_large")


def _infer_json(secured_server: SecuredServer, request: dict[str, object]) -> httpx.Response:
    """POST ``request`` as a JSON /v2 inference request to MTT_musicnn with a tagging key."""
    return httpx.post(
        f"{secured_server.url}/v2/models/MTT_musicnn/infer",
        json=request,
        headers={"X-API-Key": secured_server.tag_key},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("outputs", "parameters", "refusal"),
    [
        ([{"name": "probabilities", "parameters": {"binary_data": "false"}}], None, "binary_data"),
        ([{"name": "probabilities", "parameters": {"binary_data": 1}}], None, "binary_data"),
        (None, {"binary_data_output": "false"}, "binary_data_output"),
        ([{"name": "probabilities"}, {"name": "probabilities"}], None, "more than once"),
        ([{"name": "probabilities", "parameters": {"classification": 0}}], None, "classification"),
        (
            [{"name": "probabilities", "parameters": {"classification": 2.5}}],
            None,
            "classification",
        ),
        (
            [{"name": "probabilities", "parameters": {"classification": True}}],
            None,
            "classification",
        ),
    ],
    ids=[
        "string-flag",
        "number-flag",
        "string-default-flag",
        "output-twice",
        "no-classes",
        "fractional-classes",
        "boolean-classes",
    ],
)
def test_output_requests_are_read_strictly(
    secured_server: SecuredServer,
    outputs: list[dict[str, object]] | None,
    parameters: dict[str, object] | None,
    refusal: str,
) -> None:
    """``binary_data`` flags are JSON booleans (a string ``"false"`` was read as true and the
    client got binary it did not ask for) and an output is asked for once, as Triton has it."""
    request: dict[str, object] = {
        "inputs": [{"name": "waveform", "shape": [1, 48128], "datatype": "FP32",
                    "data": [0.0] * 48128}]}  # fmt: skip
    if outputs is not None:
        request["outputs"] = outputs
    if parameters is not None:
        request["parameters"] = parameters
    answer = _infer_json(secured_server, request)
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_tensor"), answer.text
    assert refusal in answer.json()["error"]


@pytest.mark.parametrize(
    "rows",
    [(1 << 20) // 48128 + 1, 2**62, 2**64 - 1, 2**64],
    ids=["over-cap", "huge", "u64", "beyond-u64"],
)
def test_a_shape_its_data_does_not_fill_is_a_400_not_a_413(
    secured_server: SecuredServer, rows: int
) -> None:
    """The cap counts the values sent: one row of data under a shape of many rows is a shape
    that does not fit its data (400, as Triton answers), not a tensor too large to send as JSON
    (413 told the client to use the binary extension); a dimension beyond the protocol's
    unsigned 64 bits is malformed."""
    tensor = {"name": "waveform", "shape": [rows, 48128], "datatype": "FP32", "data": [0] * 48128}
    answer = _infer_json(secured_server, {"inputs": [tensor]})
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_tensor"), answer.text
    assert "binary tensor extension" not in answer.json()["error"]


def test_an_empty_outputs_list_asks_for_every_output(secured_server: SecuredServer) -> None:
    """``"outputs": []`` is read as no ``outputs`` at all, as Triton and KServe read it: every
    output (it answered none, a 200 with nothing in it)."""
    tensor = {"name": "waveform", "shape": [1, 48128], "datatype": "FP32", "data": [0] * 48128}
    answer = _infer_json(secured_server, {"inputs": [tensor], "outputs": []})
    assert answer.status_code == 200, answer.text
    names = [output["name"] for output in answer.json()["outputs"]]
    assert names == ["probabilities", "penultimate", "mean_pool", "max_pool"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_class_count_returns_the_best_tags_as_triton_does(
    secured_server: SecuredServer,
    v2: triton.InferenceServerClient,
    key: dict[str, str],
    binary: bool,
) -> None:
    """tritonclient's ``class_count`` (the classification extension) answers a BYTES tensor
    ``[batch, k]`` of ``"value:index:label"``, best first, the labels the model's tags (none for
    an embedding); it was ignored, and the client got the whole FP32 output instead."""
    batch = (0.2 * np.random.default_rng(3).standard_normal((2, 59049))).astype(np.float32)
    tensor = triton.InferInput("waveform", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    wanted = [
        triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3),
        triton.InferRequestedOutput("embedding", binary_data=binary, class_count=2),
    ]
    result = v2.infer("MTT_sample_cnn", [tensor], outputs=wanted, headers=dict(key))
    assert [output["datatype"] for output in result.get_response()["outputs"]] == ["BYTES"] * 2

    def strings(name: str) -> list[list[str]]:  # binary BYTES come back as bytes, JSON as str
        array = result.as_numpy(name)
        assert array is not None
        return [[v.decode() if isinstance(v, bytes) else v for v in row] for row in array]

    model = httpx.get(f"{secured_server.url}/v1/models/MTT_sample_cnn", headers=dict(key))
    tags = model.json()["tags"]
    reference = _reference("MTT_sample_cnn", batch)
    best = strings("probabilities")
    assert [len(row) for row in best] == [3, 3]
    for items, probabilities in zip(best, reference["probabilities"], strict=True):
        indices = [int(item.split(":")[1]) for item in items]
        assert indices == list(np.argsort(-probabilities, kind="stable")[:3])
        for item, index in zip(items, indices, strict=True):
            value, _, label = item.split(":")
            assert abs(float(value) - probabilities[index]) < 1e-5 and label == tags[index]
    embedding = strings("embedding")
    assert [len(row) for row in embedding] == [2, 2]
    assert all(len(item.split(":")) == 2 for row in embedding for item in row)


def test_what_kserves_client_sends_and_reads_is_served(secured_server: SecuredServer) -> None:
    """KServe's Python client (``kserve.InferenceRESTClient``) reads the health answers' JSON
    bodies (``response.json().get("live")``: an empty body made it raise) and sends
    ``model_name`` in every inference request (refused as an unknown member: no inference at
    all); the URL names the model, as on Triton."""
    headers = {"X-API-Key": secured_server.tag_key}
    with httpx.Client(base_url=secured_server.url, headers=headers, timeout=60) as http:
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get("/v2/health/ready").json() == {"ready": True}
        ready = {"name": "MTT_musicnn", "ready": True}
        assert http.get("/v2/models/MTT_musicnn/ready").json() == ready
        assert http.get("/v2/models/MTT_musicnn/versions/1.0.0/ready").json() == ready
        tensor = {"name": "waveform", "shape": [1, 48128], "datatype": "FP32",
                  "parameters": {"binary_data_size": 48128 * 4}}  # fmt: skip
        header = json.dumps(
            {
                "id": "k-1",
                "model_name": "MTT_musicnn",
                "model_version": "1.0.0",
                "inputs": [tensor],
                "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
            }
        ).encode()
        answer = http.post(
            "/v2/models/MTT_musicnn/infer",
            content=header + np.zeros(48128, "<f4").tobytes(),
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                "Content-Type": "application/octet-stream",
            },
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == "k-1" and answer.json()["outputs"][0]["shape"] == [1, 50]


def test_errors_are_application_json_unless_problem_json_is_asked_for(
    secured_server: SecuredServer,
) -> None:
    """/v2 problems come as ``application/json``, as Triton, KServe and MLServer send errors:
    KServe's client reads the message only from that type (it raised "'400 Bad Request'" with
    an empty message for an application/problem+json body). A client whose Accept names
    application/problem+json gets that; /v1 keeps it always."""
    key = {"X-API-Key": secured_server.tag_key}
    url = f"{secured_server.url}/v2/models/MTT_musicnn/infer"
    for accept, media in [
        ({}, "application/json"),
        ({"Accept": "*/*"}, "application/json"),
        ({"Accept": "application/problem+json, application/json"}, "application/problem+json"),
    ]:
        answer = httpx.post(url, json={"inputs": []}, headers={**key, **accept})
        assert answer.status_code == 400 and answer.headers["Content-Type"] == media, accept
        assert answer.json()["code"] == "invalid_tensor" and isinstance(answer.json()["error"], str)
    legacy = httpx.get(f"{secured_server.url}/v1/models/nope", headers=key)
    assert legacy.headers["Content-Type"] == "application/problem+json"


def test_numbers_beyond_fp32_are_refused_without_a_numpy_warning(
    secured_server: SecuredServer,
) -> None:
    """1e39 is a finite JSON number but no FP32: a 400 saying so, and no RuntimeWarning line in
    the server's output (numpy warned on stderr when the cast overflowed)."""
    tensor = {"name": "waveform", "shape": [1, 48128], "datatype": "FP32", "data": [1e39] * 48128}
    request: dict[str, object] = {"inputs": [tensor]}
    answer = _infer_json(secured_server, request)
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_tensor"), answer.text
    assert "beyond FP32's range" in answer.json()["error"]
    assert "RuntimeWarning" not in secured_server.server.log()


HALF = [0.0] * (48128 // 2)


@pytest.mark.parametrize(
    ("shape", "data", "parameters", "refusal"),
    [
        ([1.0, 48128], [0.0] * 48128, None, "inputs.0.shape.0"),
        ([True, 48128], [0.0] * 48128, None, "inputs.0.shape.0"),
        ([1, 48128], [0.0, True, *[0.0] * 48126], None, "value 1 (row-major) is a boolean"),
        ([1, 48128], [*[0.0] * 48127, None], None, "value 48127 (row-major) is null"),
        ([1, 48128], ["0.5", *[0.0] * 48127], None, "value 0 (row-major) is a string"),
        ([1, 48128], [HALF, HALF], None, "1 arrays of 48128 numbers"),  # the count alone fits
        ([2, 48128], [[0.0] * 48128, 0.0], None, "lengths [48128, not an array]"),
        ([1, 48128], [[[0.0]] * 48128], None, "value 0 (row-major) is an array"),
        ([1, 48128], None, {"binary_data_size": True}, "binary_data_size"),
    ],
    ids=["float-dimension", "boolean-dimension", "boolean-value", "null-value", "string-value",
         "nesting-not-the-shape", "ragged", "too-deep", "boolean-size"],
)  # fmt: skip
def test_sloppy_json_tensors_are_refused_saying_what_is_wrong(
    secured_server: SecuredServer,
    shape: list[object],
    data: list[object] | None,
    parameters: dict[str, object] | None,
    refusal: str,
) -> None:
    """Values, dimensions and nesting as Triton and KServe read them: ``true`` among FP32 data
    was read as 1.0, shape ``[1.0, 48128]`` as ``[1, 48128]``, and data nested other than its
    shape was taken whenever the count matched."""
    tensor = {"name": "waveform", "shape": shape, "datatype": "FP32", "data": data}
    if parameters is not None:
        tensor["parameters"] = parameters
        del tensor["data"]
    answer = _infer_json(secured_server, {"inputs": [tensor]})
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_tensor"), answer.text
    assert refusal in answer.json()["error"], answer.json()["error"]


@pytest.mark.parametrize(
    ("declared", "arrived", "refusal"),
    [
        (100, 100, "of shape [1, 48128] is 192512 bytes (48128 FP32 values), but its "
                   "binary_data_size says 100"),
        (48128 * 4, 100, "declares binary_data_size 192512, but 100 bytes arrived"),
    ],
    ids=["size-not-the-shapes", "body-not-the-size"],
)  # fmt: skip
def test_binary_size_mismatches_say_which_number_is_wrong(
    secured_server: SecuredServer, declared: int, arrived: int, refusal: str
) -> None:
    """A binary_data_size that is not the shape's bytes, and a body that is not the declared
    size, were one message ("got 100 and 100") that did not say which was declared."""
    tensor = {"name": "waveform", "shape": [1, 48128], "datatype": "FP32",
              "parameters": {"binary_data_size": declared}}  # fmt: skip
    header = json.dumps({"inputs": [tensor]}).encode()
    answer = httpx.post(
        f"{secured_server.url}/v2/models/MTT_musicnn/infer",
        content=header + bytes(arrived),
        headers={
            "X-API-Key": secured_server.tag_key,
            "Inference-Header-Content-Length": str(len(header)),
        },
        timeout=60,
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_tensor"), answer.text
    assert refusal in answer.json()["error"], answer.json()["error"]


def test_json_data_may_be_flat_or_nested_as_its_shape(secured_server: SecuredServer) -> None:
    rows = np.random.default_rng(0).uniform(-0.5, 0.5, (2, 48128)).astype(np.float32)
    answers = [
        _infer_json(
            secured_server,
            {
                "inputs": [
                    {"name": "waveform", "shape": [2, 48128], "datatype": "FP32", "data": data}
                ],
                "outputs": [{"name": "probabilities"}],
            },
        )
        for data in (rows.ravel().tolist(), rows.tolist(), rows.astype(int).tolist())
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 200], answers[0].text
    flat, nested = (answer.json()["outputs"][0]["data"] for answer in answers[:2])
    assert flat == nested


@pytest.mark.parametrize("length", [b"\xb2", b"-1", b"x", b"999999"], ids=["superscript-two",
                                    "negative", "word", "past-the-body"])  # fmt: skip
def test_a_bad_inference_header_length_is_a_400(
    secured_server: SecuredServer, length: bytes
) -> None:
    """Inference-Header-Content-Length is a byte count within the body; "²" (a digit to
    str.isdigit, not to int) was a 500. The refusal repeats the value sent."""
    answer = httpx.post(
        f"{secured_server.url}/v2/models/MTT_musicnn/infer",
        content=b'{"inputs": []}',
        headers={
            b"X-API-Key": secured_server.tag_key.encode(),
            b"Inference-Header-Content-Length": length,
        },
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_tensor"), answer.text
    assert "Inference-Header-Content-Length" in answer.json()["error"]
    assert answer.json()["error"].endswith(f"got {length.decode('latin-1')!r}"), answer.text


@pytest.mark.parametrize("folded", [False, True], ids=["two-headers", "one-comma-list"])
def test_two_different_inference_header_lengths_are_a_400(
    secured_server: SecuredServer, folded: bool
) -> None:
    """Two ``Inference-Header-Content-Length`` values that differ leave the split of the body
    ambiguous: the first was used and the request answered 200. Repeats of one value are one,
    also folded into one header as a proxy joins them ("10, 10"), which was a 400."""
    tensor = {"name": "waveform", "shape": [1, 48128], "datatype": "FP32",
              "parameters": {"binary_data_size": 48128 * 4}}  # fmt: skip
    header = json.dumps({"inputs": [tensor]}).encode()

    def lengths(second: int) -> list[tuple[str, str]]:
        values = [str(len(header)), str(second)]
        name = "Inference-Header-Content-Length"
        return [(name, ", ".join(values))] if folded else [(name, value) for value in values]

    answers = [
        httpx.post(
            f"{secured_server.url}/v2/models/MTT_musicnn/infer",
            content=header + np.zeros(48128, "<f4").tobytes(),
            headers=[("X-API-Key", secured_server.tag_key), *lengths(second)],
            timeout=60,
        )
        for second in (len(header) + 4, len(header))
    ]
    differ, same = answers
    assert (differ.status_code, differ.json()["code"]) == (400, "invalid_tensor"), differ.text
    assert differ.json()["error"] == (
        f"Inference-Header-Content-Length carries different values ({len(header)}, "
        f"{len(header) + 4}): send one"
    )
    assert same.status_code == 200, same.text


@pytest.fixture(scope="module")
def prefixed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server for the /taggram prefix behind a proxy (one model, no warm-up: quick to start)."""
    env = {
        "TAGGRAM_ROOT_PATH": "/taggram",
        "TAGGRAM_MODELS": "MTT_sample_cnn",
        "TAGGRAM_WARMUP": "0",
    }
    with running_server(require_repository(), tmp_path_factory.mktemp("logs"), env=env) as server:
        yield server


def test_errors_under_a_path_prefix_carry_the_message_string(prefixed_server: Server) -> None:
    """Behind a proxy with ``TAGGRAM_ROOT_PATH``, /v2 problems carry ``error`` as the message
    string (the path seen by the app starts with the prefix, and they got /v1's envelope
    object, which tritonclient then raised as a dict) and the client works through the prefix."""
    with prefix_proxy(prefixed_server.url, "/taggram") as proxy:
        client = triton.InferenceServerClient(proxy.removeprefix("http://") + "/taggram")
        try:
            assert client.is_server_ready() and client.is_model_ready("MTT_sample_cnn")
            short = triton.InferInput("waveform", [1, 1000], "FP32")
            short.set_data_from_numpy(np.zeros((1, 1000), np.float32))
            with pytest.raises(InferenceServerException) as refused:
                client.infer("MTT_sample_cnn", [short])
            message = refused.value.message()
            assert isinstance(message, str) and "59049" in message, message
        finally:
            client.close()
        missing = httpx.get(f"{proxy}/taggram/v2/models/nope")
        assert missing.status_code == 404 and isinstance(missing.json()["error"], str)
        assert missing.json()["instance"] == "/taggram/v2/models/nope"
        legacy = httpx.get(f"{proxy}/taggram/v1/models/nope")  # /v1 keeps its envelope
        assert legacy.json()["error"]["code"] == "model_not_found"
