"""The VGG-like baseline of musicnn 0.1.0 (``vgg`` in its models.py), ported layer by layer.

Five 3×3 convolutions (ReLU, then batch norm), each followed by max pooling; the pooled
[batch, 128, 2, 1] map (``pool5``, flattened time-major to 256 values) feeds the output layer.
"""

from __future__ import annotations

import torch
from torch import nn

from taggram.models.architectures.layers import batch_norm

# (kernel, stride) of the five max-poolings, as in the original (TF 'valid' pooling).
POOLS = (((4, 1), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((2, 2), (2, 2)), ((4, 4), (4, 4)))


class Vgg(nn.Module):
    """Log-mel [batch, 187, 96] → {"logits", "pool5"}; the dense layer fixes the input length."""

    def __init__(self, n_tags: int, filters: int = 128) -> None:
        super().__init__()
        self.input_bn = batch_norm(1, 2)
        # 3×3 'same' convolutions at stride 1 pad symmetrically, so torch's padding=1 matches TF.
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else filters, filters, 3, padding=1) for i in range(len(POOLS))
        )
        self.bns = nn.ModuleList(batch_norm(filters, 2) for _ in POOLS)
        self.pools = nn.ModuleList(nn.MaxPool2d(kernel, stride) for kernel, stride in POOLS)
        self.output = nn.Linear(2 * filters, n_tags)

    def forward(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, frames, 96]`` log-mel -> ``logits`` ``[batch, tags]`` and
        ``pool5`` ``[batch, 256]`` (the last max-pool, time-major)."""
        x = self.input_bn(logmel.unsqueeze(1))
        for conv, bn, pool in zip(self.convs, self.bns, self.pools, strict=True):
            x = pool(bn(torch.relu(conv(x))))
        # TF flattens NHWC [batch, 2, 1, 128]: time-major, channels fastest.
        pool5 = x.permute(0, 2, 3, 1).flatten(1)
        return {"logits": self.output(pool5), "pool5": pool5}
