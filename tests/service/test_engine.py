"""The ONNX Runtime session wrapper: providers, outputs by name, warm-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taggram.repository import load_repository
from taggram.service.inference.session import ModelSession, choose_providers, provider_label


def test_providers_prefer_cuda_then_cpu_among_installed() -> None:
    chosen = choose_providers([])
    assert chosen[-1] == "CPUExecutionProvider"
    assert set(chosen) <= {"CUDAExecutionProvider", "CPUExecutionProvider"}
    assert provider_label("CUDAExecutionProvider") == "cuda"
    with pytest.raises(ValueError, match="not installed"):
        choose_providers(["NoSuchExecutionProvider"])


def test_session_returns_every_output_by_name(tiny_repository: Path) -> None:
    entry = load_repository(tiny_repository)["tiny"]
    session = ModelSession(entry, ["CPUExecutionProvider"], intra_op_threads=1, inter_op_threads=1)
    session.warm_up([1, 3])
    outputs = session.run(np.zeros((3, entry.metadata.patch.samples), np.float32))
    assert session.provider == "cpu"
    assert outputs["probabilities"].shape == (3, len(entry.metadata.tags))
    assert outputs["embedding"].shape == (3, 4)
