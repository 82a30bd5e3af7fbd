"""Layers shared by the musicnn and VGG ports: TensorFlow's defaults, made explicit."""

from __future__ import annotations

import torch
from torch import nn

# tf.compat.v1.layers.batch_normalization's default epsilon (torch's default is 1e-5).
BN_EPS = 1e-3


def batch_norm(channels: int, dims: int) -> nn.Module:
    """A batch norm with TensorFlow's epsilon over ``channels`` of a 1-D or 2-D feature map."""
    return (
        nn.BatchNorm2d(channels, eps=BN_EPS) if dims == 2 else nn.BatchNorm1d(channels, eps=BN_EPS)
    )


def same_padding(kernel: int) -> tuple[int, int]:
    """TensorFlow 'same' padding for stride 1: the odd extra zero goes at the end."""
    total = kernel - 1
    return total // 2, total - total // 2


class TimeConvBlock(nn.Module):
    """Convolution → ReLU → batch norm (musicnn's order), zero-padded along time (dim 2) only.

    musicnn pads time 'same' (explicitly for width 7, by TF for 128/64/32) and never pads the
    frequency axis, so one block serves the timbral, temporal (2-D) and mid-end (1-D) layers.
    """

    def __init__(self, conv: nn.Conv1d | nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        self.bn = batch_norm(conv.out_channels, 2 if isinstance(conv, nn.Conv2d) else 1)
        before, after = same_padding(conv.kernel_size[0])
        # F.pad lists the last dimension first; dim 2 is time in both layouts.
        self.padding = (0, 0, before, after) if isinstance(conv, nn.Conv2d) else (before, after)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, channels, frames]`` -> ``[batch, channels_out, frames]`` (same padding)."""
        padded = nn.functional.pad(x, self.padding)
        return self.bn(torch.relu(self.conv(padded)))
