"""Start training from an exported model: a ``sample_cnn`` initialised from its own ONNX file.

The exporter folds each batch norm into the layer before it (a convolution or dense layer gains
a bias), so the ONNX file holds no batch-norm parameters. To train on, each batch norm is given
back: statistics (mean ``mu``, variance ``var``) of the unfolded layer's output on real audio
become its running statistics, and its scale ``sqrt(var + eps)`` and shift ``mu + bias`` undo
the normalisation, so the module computes what the ONNX graph computes (in eval mode exactly, in
training mode up to the batch's own statistics). A module with more inputs to its dense layer
(``aggregate`` > 1) gets zero weights for the extra levels, so it too starts as the exported model.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from taggram.models.architectures.waveform import SampleCNN


def _folded_layers(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of every Conv and Gemm node of the graph, in graph order."""
    model = onnx.load(str(path))
    tensors = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm"):
            weight = tensors[node.input[1]]
            bias = tensors[node.input[2]] if len(node.input) > 2 else np.zeros(weight.shape[0])
            layers.append((weight, bias))
    return layers


def _unfold(norm: nn.BatchNorm1d, output: torch.Tensor, bias: np.ndarray) -> None:
    """Set ``norm`` so that norm(output) == output + bias on this batch's statistics."""
    dims = [0, 2] if output.dim() == 3 else [0]
    mean = output.mean(dim=dims)
    variance = output.var(dim=dims, unbiased=False)
    assert norm.running_mean is not None and norm.running_var is not None
    norm.running_mean.copy_(mean)
    norm.running_var.copy_(variance)
    norm.weight.data.copy_(torch.sqrt(variance + norm.eps))
    norm.bias.data.copy_(mean + torch.tensor(bias, dtype=torch.float32))


@torch.no_grad()
def initialise_from_onnx(module: SampleCNN, path: Path, calibration: torch.Tensor) -> None:
    """Load the weights of the exported ``sample_cnn`` at ``path`` into ``module`` (same widths).

    ``calibration``: float32 [batch, samples] real audio (a few dozen patches) whose statistics
    become the batch norms' running statistics. Raises ``ValueError`` if the shapes differ.
    """
    layers = _folded_layers(path)
    convolutions = [m for m in module.frontend if isinstance(m, nn.Conv1d)]
    if len(layers) != len(convolutions) + 2:
        raise ValueError(f"{path}: {len(layers)} Conv/Gemm layers, the module has more or fewer")
    module.eval()
    features = calibration.unsqueeze(1)
    pending: tuple[nn.BatchNorm1d, np.ndarray] | None = None
    conv_layers = iter(layers[: len(convolutions)])
    levels = []
    for index, layer in enumerate(module.frontend):
        if isinstance(layer, nn.Conv1d):
            weight, bias = next(conv_layers)
            if tuple(weight.shape) != tuple(layer.weight.shape):
                raise ValueError(f"{path}: weight {weight.shape} for {tuple(layer.weight.shape)}")
            layer.weight.copy_(torch.tensor(weight))
            features = layer(features)
            pending = (cast(nn.BatchNorm1d, module.frontend[index + 1]), bias)
            continue
        if pending is not None:
            _unfold(pending[0], features, pending[1])
            pending = None
        features = layer(features)
        if index in module.taps:
            levels.append(features)
    pooled = torch.cat([p for f in levels for p in (f.mean(dim=2), f.amax(dim=2))], dim=1)
    (dense_weight, dense_bias), (output_weight, output_bias) = layers[-2:]
    linear = cast(nn.Linear, module.dense[0])
    norm = cast(nn.BatchNorm1d, module.dense[1])
    if linear.weight.shape[0] != dense_weight.shape[0] or pooled.shape[1] < dense_weight.shape[1]:
        raise ValueError(f"{path}: dense {dense_weight.shape} for {tuple(linear.weight.shape)}")
    linear.weight.zero_()
    linear.weight[:, -dense_weight.shape[1] :] = torch.tensor(dense_weight)  # last level
    linear.bias.zero_()
    _unfold(norm, linear(pooled), dense_bias)
    module.output.weight.copy_(torch.tensor(output_weight))
    module.output.bias.copy_(torch.tensor(output_bias))
