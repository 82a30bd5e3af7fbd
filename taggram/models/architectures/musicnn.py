"""musicnn (Pons & Serra, 2019): a port of ``build_musicnn`` in musicnn 0.1.0's models.py.

Front-end: musically motivated timbral (7×38, 7×67) and temporal (128/64/32×1) convolutions, each
max-pooled over frequency; mid-end: three dense-connected 1-D convolutions; back-end: max and mean
over time, batch norm, a 200-unit dense layer (the ``penultimate`` embedding) and the output layer.
"""

from __future__ import annotations

import torch
from torch import nn

from taggram.models.architectures.layers import TimeConvBlock, batch_norm


class Musicnn(nn.Module):
    """Log-mel [batch, frames, mels] → {"logits", "penultimate", "mean_pool", "max_pool"}."""

    def __init__(
        self,
        n_tags: int,
        n_mels: int = 96,
        frontend_filters: float = 1.6,
        midend_filters: int = 64,
        backend_units: int = 200,
    ) -> None:
        super().__init__()
        timbral = int(frontend_filters * 128)
        temporal = int(frontend_filters * 32)
        self.input_bn = batch_norm(1, 2)
        self.timbral = nn.ModuleList(
            TimeConvBlock(nn.Conv2d(1, timbral, (7, int(share * n_mels)))) for share in (0.4, 0.7)
        )
        self.temporal = nn.ModuleList(
            TimeConvBlock(nn.Conv2d(1, temporal, (width, 1))) for width in (128, 64, 32)
        )
        frontend_channels = 2 * timbral + 3 * temporal
        self.midend = nn.ModuleList(
            TimeConvBlock(nn.Conv1d(channels, midend_filters, 7))
            for channels in (frontend_channels, midend_filters, midend_filters)
        )
        pooled = frontend_channels + 3 * midend_filters
        self.pool_bn = batch_norm(2 * pooled, 1)
        self.penultimate = nn.Linear(2 * pooled, backend_units)
        self.penultimate_bn = batch_norm(backend_units, 1)
        self.output = nn.Linear(backend_units, n_tags)

    def forward(self, logmel: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, frames, 96]`` log-mel -> ``logits`` ``[batch, tags]`` and the embeddings
        ``penultimate`` ``[batch, 200]``, ``mean_pool`` and ``max_pool`` ``[batch, 753]``.
        """
        x = self.input_bn(logmel.unsqueeze(1))  # [batch, 1, time, mels]
        # Each front-end map is max-pooled over all of frequency: [batch, channels, time].
        frontend = torch.cat([block(x).amax(dim=3) for block in (*self.timbral, *self.temporal)], 1)
        features = [frontend]
        hidden = self.midend[0](frontend)
        features.append(hidden)
        for block in self.midend[1:]:
            hidden = block(hidden) + hidden  # residual connections of conv layers 2 and 3
            features.append(hidden)
        midend = torch.cat(features, 1)  # [batch, 753, time]
        max_pool, mean_pool = midend.amax(dim=2), midend.mean(dim=2)
        # TF concatenates [max, mean] on a trailing axis then flattens: channel-interleaved.
        pooled = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.penultimate_bn(torch.relu(self.penultimate(self.pool_bn(pooled))))
        return {
            "logits": self.output(penultimate),
            "penultimate": penultimate,
            "mean_pool": mean_pool,
            "max_pool": max_pool,
        }
