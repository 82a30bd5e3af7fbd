"""ONNX Runtime sessions: one per model, on the best installed provider, warmed up before use.

``onnxruntime`` (CPU wheel) and ``onnxruntime-gpu`` (pip extra ``gpu``) install the same module;
the CUDA provider is used when that build and a GPU are present, CPU otherwise.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort

from taggram.repository import ModelEntry, ModelMetadata

log = logging.getLogger(__name__)

_PREFERRED = ("CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(requested: list[str]) -> list[str]:
    """The requested providers (must be installed), or CUDA-then-CPU among those installed."""
    available = ort.get_available_providers()
    if requested:
        missing = [name for name in requested if name not in available]
        if missing:
            raise ValueError(f"providers {missing} are not installed; available: {available}")
        return requested
    return [name for name in _PREFERRED if name in available]


def provider_label(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda``: the short name used in metric labels and responses."""
    return provider.removesuffix("ExecutionProvider").lower()


class ModelSession:
    """One model's inference session; :meth:`run` is blocking and meant for a worker thread."""

    def __init__(
        self,
        entry: ModelEntry,
        providers: list[str],
        intra_op_threads: int,
        inter_op_threads: int,
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Decoding threads share the cores: idle inference threads should sleep, not spin.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.metadata: ModelMetadata = entry.metadata
        self._session = ort.InferenceSession(
            str(entry.onnx_path), sess_options=options, providers=providers
        )
        self.provider = provider_label(self._session.get_providers()[0])
        self.output_names: list[str] = [output.name for output in self._session.get_outputs()]

    @property
    def name(self) -> str:
        return self.metadata.name

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for a ``[batch, samples]`` float32 batch, keyed by output name."""
        outputs = self._session.run(None, {self.metadata.input_name: batch})
        return dict(zip(self.output_names, outputs, strict=True))

    def warm_up(self, batch_sizes: list[int]) -> None:
        """Run each batch shape once so the first requests do not pay for allocation."""
        for size in batch_sizes:
            self.run(np.zeros((size, self.metadata.patch.samples), np.float32))
        log.info("warmed up %s on %s for batch sizes %s", self.name, self.provider, batch_sizes)
