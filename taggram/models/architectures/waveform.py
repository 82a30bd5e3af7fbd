"""Sample-level CNN (Lee et al., 2017) with a musicnn-style back-end: a waveform tagger.

The front-end reads raw samples with a strided width-3 convolution (a learnt "frame" of 3 samples,
Pons et al. 2018's waveform front-end), then blocks of width-3 convolution, batch norm, ReLU and
max-pool 3, so each block triples the receptive field. With the defaults a 59049-sample (3^10)
patch, 3.7 s at 16 kHz, leaves 9 frames after seven blocks; the back-end pools them over time
(mean and max, concatenated, as musicnn does) into a dense layer whose output is the ``embedding``.
Channels stay narrow where the time resolution is high (32 where Lee et al. use 128: the stem and
first block run at 5333 frames per second and dominate the cost), so that training fits an hour on
two CPU cores and a patch costs less in onnxruntime than a musicnn patch (docs/training.md).

``aggregate`` > 1 feeds the back-end with the pooled outputs of the last ``aggregate`` blocks
(multi-level feature aggregation, Lee et al. 2017 and Kim et al. 2018), not only the last one's.
"""

from __future__ import annotations

import torch
from torch import nn

PATCH_SAMPLES = 3**10
DEFAULT_CHANNELS = (32, 32, 64, 64, 128, 128, 256)


def _conv_bn_relu(channels_in: int, channels_out: int, stride: int) -> list[nn.Module]:
    padding = 0 if stride == 3 else 1
    return [
        nn.Conv1d(channels_in, channels_out, 3, stride=stride, padding=padding, bias=False),
        nn.BatchNorm1d(channels_out),
        nn.ReLU(inplace=True),
    ]


class SampleCNN(nn.Module):
    """Waveform [batch, samples] → {"logits" [batch, n_tags], "embedding" [batch, dense_units]}."""

    def __init__(
        self,
        n_tags: int,
        stem_channels: int = 32,
        channels: tuple[int, ...] = DEFAULT_CHANNELS,
        dense_units: int = 256,
        dropout: float = 0.5,
        aggregate: int = 1,
    ) -> None:
        super().__init__()
        if not 1 <= aggregate <= len(channels):
            raise ValueError(f"aggregate must be between 1 and {len(channels)}, got {aggregate}")
        layers = _conv_bn_relu(1, stem_channels, stride=3)
        previous = stem_channels
        # indices (in self.frontend) of the block outputs the back-end pools
        self.taps: list[int] = []
        for width in channels:
            layers += [*_conv_bn_relu(previous, width, stride=1), nn.MaxPool1d(3)]
            self.taps.append(len(layers) - 1)
            previous = width
        self.taps = self.taps[-aggregate:]
        self.frontend = nn.Sequential(*layers)
        pooled = 2 * sum(channels[-aggregate:])
        self.dense = nn.Sequential(
            nn.Linear(pooled, dense_units),
            nn.BatchNorm1d(dense_units),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(dense_units, n_tags)

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, samples]`` float32 16 kHz waveform -> ``logits`` ``[batch, tags]`` and the
        back-end embedding.
        """
        features = waveform.unsqueeze(1)
        levels = []
        for index, layer in enumerate(self.frontend):
            features = layer(features)  # [batch, channels, frames]
            if index in self.taps:
                levels.append(features)
        # mean and max over time per level: [batch, 2 * channels of the tapped levels]
        pooled = torch.cat([p for f in levels for p in (f.mean(dim=2), f.amax(dim=2))], dim=1)
        embedding = self.dense(pooled)
        return {"logits": self.output(self.dropout(embedding)), "embedding": embedding}
