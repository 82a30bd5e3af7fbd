"""Start training from an exported model: a ``sample_cnn`` initialised from its own ONNX file.

The exporter folds each batch norm into the layer before it (a convolution or dense layer gains
a bias), so the ONNX file holds no batch-norm parameters. To train on, each batch norm is given
back: statistics (mean ``mu``, variance ``var``) of the unfolded layer's output on real audio
become its running statistics, and its scale ``sqrt(var + eps)`` and shift ``mu + bias`` undo
the normalisation, so the module computes what the ONNX graph computes (in eval mode exactly, in
training mode up to the batch's own statistics). A module with more inputs to its dense layer
(``aggregate`` > 1) gets zero weights for the extra levels, so it too starts as the exported model.

A *wider* module (more channels in any block, more dense units) also starts as the exported
model, by function-preserving widening (Net2Net's aim, Chen et al. 2016, with zero rather than
split outgoing weights): the exported weights fill the first channels, each new channel keeps its
random incoming weights (its batch norm plainly normalises), and every weight *from* a new channel
to an old one is zero. The new channels change nothing until training moves those weights, which
their non-zero activations let it do from the first step.
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
    """Set ``norm`` so that norm(output) == output + bias on this batch's statistics, for the
    first ``len(bias)`` channels; any further (new) channels keep scale 1 and shift 0, so they
    are plainly normalised.
    """
    dims = [0, 2] if output.dim() == 3 else [0]
    mean = output.mean(dim=dims)
    variance = output.var(dim=dims, unbiased=False)
    assert norm.running_mean is not None and norm.running_var is not None
    norm.running_mean.copy_(mean)
    norm.running_var.copy_(variance)
    old = len(bias)
    norm.weight.data[:old] = torch.sqrt(variance[:old] + norm.eps)
    norm.bias.data[:old] = mean[:old] + torch.tensor(bias, dtype=torch.float32)


def _embed(target: torch.Tensor, exported: np.ndarray, path: Path) -> None:
    """Copy ``exported`` [out, in, ...] into the first rows and columns of ``target``; zero the
    rest of those rows (inputs from new channels), keep the further rows (new channels' inputs).
    Raises ``ValueError`` if ``target`` is smaller in any dimension.
    """
    if len(exported.shape) != target.dim() or any(
        e > t for e, t in zip(exported.shape, target.shape, strict=True)
    ):
        raise ValueError(f"{path}: weight {exported.shape} does not fit {tuple(target.shape)}")
    rows, columns = exported.shape[:2]
    target[:rows] = 0.0
    target[:rows, :columns] = torch.tensor(exported)


def _pooled_columns(
    widths: list[int], columns: int, levels: list[torch.Tensor], path: Path
) -> list[tuple[int, int, int]]:
    """For each level the exported back-end pools (the last k of its blocks, whose ``widths``
    are its channels, found from the dense layer's ``columns``), in order: (exported channels,
    first column of that level in the module's pooled features, the module's channels there).
    Raises ``ValueError`` if the module pools fewer levels.
    """
    count = next((k for k in range(1, len(widths) + 1) if 2 * sum(widths[-k:]) == columns), 0)
    if not 1 <= count <= len(levels):
        raise ValueError(f"{path}: its back-end pools more levels than the module's")
    starts = np.cumsum([0] + [2 * level.shape[1] for level in levels])
    return [
        (widths[-count + j], int(starts[len(levels) - count + j]), levels[-count + j].shape[1])
        for j in range(count)
    ]


@torch.no_grad()
def initialise_from_onnx(module: SampleCNN, path: Path, calibration: torch.Tensor) -> None:
    """Load the weights of the exported ``sample_cnn`` at ``path`` into ``module``, which has the
    same blocks, each as wide or wider (module docstring).

    ``calibration``: float32 [batch, samples] real audio (a few dozen patches) whose statistics
    become the batch norms' running statistics. Raises ``ValueError`` if the layers differ in
    number, kernel or tags, or the module is narrower anywhere.
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
            _embed(layer.weight, weight, path)
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
    if module.output.weight.shape[0] != output_weight.shape[0]:
        raise ValueError(f"{path}: {output_weight.shape[0]} tags, the module has another number")
    linear = cast(nn.Linear, module.dense[0])
    norm = cast(nn.BatchNorm1d, module.dense[1])
    units = dense_weight.shape[0]
    if linear.weight.shape[0] < units:
        raise ValueError(f"{path}: dense {dense_weight.shape} for {tuple(linear.weight.shape)}")
    linear.weight[:units] = 0.0
    blocks = [weight.shape[0] for weight, _ in layers[1 : len(convolutions)]]
    read = 0  # columns of the exported dense layer copied so far
    for exported, at, width in _pooled_columns(blocks, dense_weight.shape[1], levels, path):
        # each level pools [mean of its channels, max of its channels]
        for start in (at, at + width):
            linear.weight[:units, start : start + exported] = torch.tensor(
                dense_weight[:, read : read + exported]
            )
            read += exported
    linear.bias.zero_()
    _unfold(norm, linear(pooled), dense_bias)
    _embed(module.output.weight, output_weight, path)  # new dense units: zero weights to tags
    module.output.bias.copy_(torch.tensor(output_bias))
