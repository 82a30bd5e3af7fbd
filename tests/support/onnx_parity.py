"""Shared by the exporter and trainer tests: the ONNX file computes what the module does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch


def assert_onnx_matches_module(
    onnx_path: Path,
    module: torch.nn.Module,
    waveform: np.ndarray,
    atol: float,
    embedding_atol: float,
) -> None:
    """``probabilities`` (sigmoid of logits) and ``embedding`` equal the module's outputs."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    probabilities, embedding = session.run(None, {"waveform": waveform})
    with torch.no_grad():
        expected = module(torch.from_numpy(waveform))
    np.testing.assert_allclose(probabilities, torch.sigmoid(expected["logits"]), atol=atol)
    np.testing.assert_allclose(embedding, expected["embedding"], atol=embedding_atol)
