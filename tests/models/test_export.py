"""The ONNX exporter and the built repository: contract, checker, dynamic batch, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from taggram.models.build import PUBLISHED, build_musicnn
from taggram.models.export import export_to_repository
from taggram.models.wheel import MusicnnWheel
from taggram.repository import (
    ModelMetadata,
    PatchSpec,
    TensorSpec,
    load_repository,
    sha256_file,
)
from tests.models.conftest import MODELS
from tests.support.onnx_parity import assert_onnx_matches_module
from tests.support.paths import require_repository


class TinyTagger(nn.Module):
    """A minimal waveform architecture: enough to exercise the generic exporter quickly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 16, stride=8)
        self.output = nn.Linear(8, 3)

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = torch.relu(self.conv(waveform.unsqueeze(1))).mean(dim=2)
        return {"logits": self.output(embedding), "embedding": embedding}


def tiny_metadata() -> ModelMetadata:
    return ModelMetadata(
        name="tiny",
        version="0.0.1",
        description="test model",
        architecture="tiny",
        kind="waveform",
        tags=["a", "b", "c"],
        sample_rate=16000,
        patch=PatchSpec(samples=1024, hop_samples=1024),
        inputs=[TensorSpec(name="waveform", shape=["batch", 1024], description="audio")],
        outputs=[
            TensorSpec(name="probabilities", shape=["batch", 3], description="sigmoid"),
            TensorSpec(name="embedding", shape=["batch", 8], description="mean of conv"),
        ],
        embedding_outputs=["embedding"],
        source="tests",
        license="ISC",
        onnx_sha256="",
    )


def test_export_writes_a_loadable_model_matching_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TinyTagger()
    folder = export_to_repository(module, tiny_metadata(), tmp_path)
    entry = load_repository(tmp_path)["tiny"]
    assert entry.onnx_path == folder / "model.onnx"
    assert entry.metadata.parameters == sum(p.numel() for p in module.parameters())
    assert entry.metadata.flops_per_patch and entry.metadata.flops_per_patch > 0
    assert entry.metadata.onnx_bytes == entry.onnx_path.stat().st_size
    waveform = np.random.default_rng(0).standard_normal((4, 1024)).astype(np.float32)
    assert_onnx_matches_module(entry.onnx_path, module, waveform, atol=1e-6, embedding_atol=1e-6)


def test_export_is_deterministic(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = TinyTagger()
    first = export_to_repository(module, tiny_metadata(), tmp_path / "first")
    second = export_to_repository(module, tiny_metadata(), tmp_path / "second")
    assert sha256_file(first / "model.onnx") == sha256_file(second / "model.onnx")
    assert (first / "metadata.json").read_text() == (second / "metadata.json").read_text()


def test_repository_holds_the_four_taggers_with_complete_metadata() -> None:
    entries = load_repository(require_repository())  # also verifies every sha256
    assert set(MODELS) <= set(entries)
    for name in MODELS:
        metadata = entries[name].metadata
        assert len(metadata.tags) == 50 and len(set(metadata.tags)) == 50
        assert metadata.sample_rate == 16000
        assert metadata.patch.samples == 48128 and metadata.patch.span_samples == 47872
        assert metadata.quality and metadata.quality.roc_auc and metadata.quality.pr_auc
        assert metadata.license == "ISC" and metadata.parameters and metadata.flops_per_patch
        expected = ["penultimate", "mean_pool", "max_pool"] if "musicnn" in name else ["pool5"]
        assert metadata.embedding_outputs == expected


@pytest.mark.parametrize("name", MODELS)
def test_onnx_passes_checker_and_batches_dynamically(name: str) -> None:
    entry = load_repository(require_repository())[name]
    onnx.checker.check_model(onnx.load(entry.onnx_path), full_check=True)
    session = ort.InferenceSession(str(entry.onnx_path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [s.name for s in entry.metadata.outputs]
    batch = np.random.default_rng(1).uniform(-0.5, 0.5, (5, 48128)).astype(np.float32)
    together = session.run(None, {"waveform": batch})
    for row in range(5):
        alone = session.run(None, {"waveform": batch[row : row + 1]})
        for joint, single in zip(together, alone, strict=True):
            np.testing.assert_allclose(joint[row : row + 1], single, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_rebuilding_a_tagger_gives_identical_onnx_bytes(
    wheel: MusicnnWheel, tmp_path: Path
) -> None:
    """`taggram build-models` is deterministic: a fresh build hashes like the built repository."""
    built = load_repository(require_repository())
    tagger = next(t for t in PUBLISHED if t.name == "MTT_vgg")
    folder = build_musicnn(tagger, wheel, tmp_path)
    assert sha256_file(folder / "model.onnx") == built["MTT_vgg"].metadata.onnx_sha256
