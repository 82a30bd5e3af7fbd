"""A tiny but real ONNX model honouring the repository contract, so unit tests run anywhere.

It is not a tagger: it averages 256-sample frames of each patch and applies fixed random linear
maps, which makes every output row a deterministic function of exactly one patch; that is what
the batching and patching tests need to check that rows come back to the right request.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taggram.repository import (
    COMPLETE_MARKER,
    ModelMetadata,
    PatchSpec,
    TensorSpec,
    write_model,
)

SAMPLE_RATE = 16000
PATCH = PatchSpec(samples=48128, hop_samples=47872, context_samples=256)
N_TAGS, EMBEDDING = 8, 4


def _tiny_onnx(fails_when_loud: bool = False, nan_when_loud: bool = False) -> bytes:
    """The tiny model; ``fails_when_loud``: ONNX Runtime fails on a batch whose peak sample
    reaches 0.1 (a Gather past its one element), which silence (the warm-up) never does;
    ``nan_when_loud``: its probabilities are NaN for a batch whose peak sample passes 0.1 (the
    square root of a negative number), a network gone wrong on ordinary audio."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    rng = np.random.default_rng(0)
    frames = PATCH.samples // 256
    weights = rng.normal(size=(frames, N_TAGS)).astype(np.float32) * 40
    project = rng.normal(size=(frames, EMBEDDING)).astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["waveform", "shape"], ["framed"]),
        helper.make_node("ReduceMean", ["framed", "axis"], ["means"], keepdims=0),
        helper.make_node("MatMul", ["means", "weights"], ["logits"]),
        helper.make_node("MatMul", ["means", "project"], ["embedding"]),
    ]
    initializers = [
        helper.make_tensor("shape", onnx.TensorProto.INT64, [3], [-1, frames, 256]),
        helper.make_tensor("axis", onnx.TensorProto.INT64, [1], [2]),
        onnx.numpy_helper.from_array(weights, "weights"),
        onnx.numpy_helper.from_array(project, "project"),
    ]
    if fails_when_loud:
        nodes += [
            helper.make_node("ReduceMax", ["waveform"], ["peak"], keepdims=0),
            helper.make_node("Mul", ["peak", "ten"], ["tenfold"]),
            helper.make_node("Cast", ["tenfold"], ["index"], to=onnx.TensorProto.INT64),
            helper.make_node("Gather", ["one", "index"], ["factor"]),
            helper.make_node("Mul", ["logits", "factor"], ["scaled"]),
        ]
        initializers += [
            helper.make_tensor("ten", onnx.TensorProto.FLOAT, [], [10.0]),
            helper.make_tensor("one", onnx.TensorProto.FLOAT, [1], [1.0]),
        ]
    if nan_when_loud:
        nodes += [
            helper.make_node("ReduceMax", ["waveform"], ["peak"], keepdims=0),
            helper.make_node("Sub", ["tenth", "peak"], ["headroom"]),
            helper.make_node("Sqrt", ["headroom"], ["root"]),  # NaN once the peak passes 0.1
            helper.make_node("Mul", ["root", "zero"], ["nothing"]),  # 0, or NaN
            helper.make_node("Add", ["logits", "nothing"], ["scaled"]),
        ]
        initializers += [
            helper.make_tensor("tenth", onnx.TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("zero", onnx.TensorProto.FLOAT, [], [0.0]),
        ]
    # the probabilities come last: the fault's nodes, when there, feed them
    logits = "scaled" if fails_when_loud or nan_when_loud else "logits"
    nodes.append(helper.make_node("Sigmoid", [logits], ["probabilities"]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info(
                "waveform", onnx.TensorProto.FLOAT, ["batch", PATCH.samples]
            )
        ],
        [
            helper.make_tensor_value_info(
                "probabilities", onnx.TensorProto.FLOAT, ["batch", N_TAGS]
            ),
            helper.make_tensor_value_info(
                "embedding", onnx.TensorProto.FLOAT, ["batch", EMBEDDING]
            ),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def tiny_metadata(name: str = "tiny") -> ModelMetadata:
    return ModelMetadata(
        name=name,
        version="test",
        description="test fixture",
        architecture="linear",
        kind="waveform",
        tags=[f"tag{i}" for i in range(N_TAGS)],
        sample_rate=SAMPLE_RATE,
        patch=PATCH,
        inputs=[TensorSpec(name="waveform", shape=["batch", PATCH.samples], description="audio")],
        outputs=[
            TensorSpec(name="probabilities", shape=["batch", N_TAGS], description="sigmoid"),
            TensorSpec(name="embedding", shape=["batch", EMBEDDING], description="projection"),
        ],
        embedding_outputs=["embedding"],
        source="tests",
        license="ISC",
        onnx_sha256="",
    )


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with one tiny model, ``tiny``."""
    root = tmp_path_factory.mktemp("repository")
    write_model(root, tiny_metadata(), _tiny_onnx())
    (root / COMPLETE_MARKER).touch()
    return root


@pytest.fixture(scope="session")
def faulty_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with one tiny model, ``tiny``, that fails on loud audio."""
    root = tmp_path_factory.mktemp("faulty_repository")
    write_model(root, tiny_metadata(), _tiny_onnx(fails_when_loud=True))
    (root / COMPLETE_MARKER).touch()
    return root


@pytest.fixture(scope="session")
def nan_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with one tiny model, ``tiny``, whose probabilities are NaN for audio
    peaking above 0.1."""
    root = tmp_path_factory.mktemp("nan_repository")
    write_model(root, tiny_metadata(), _tiny_onnx(nan_when_loud=True))
    (root / COMPLETE_MARKER).touch()
    return root
