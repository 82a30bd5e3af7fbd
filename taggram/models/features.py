"""Feature extractors for custom taggers: MFCC statistics and randomly weighted CNNs, as ONNX.

They are models of the repository like the taggers (same waveform input, same patches), but
without tags: their only outputs are embeddings, which ``POST /v1/models`` classifies.

* ``mfcc``: musicnn's log-mel front-end (the exact one of the taggers), a DCT-II (orthonormal,
  as ``scipy.fft.dct(norm="ortho")``) to 20 coefficients per frame, then the mean and the standard
  deviation of each coefficient over the patch's 187 frames: ``statistics`` [batch, 40]. The
  classic baseline of Pons, Serrà & Serra (ICASSP 2019).
* ``random_vgg``: a VGG-like CNN (five 3x3 conv + ReLU + 2x2 max-pool layers) on the same
  log-mel patch, with fixed random weights; every layer's feature maps are averaged and maxed
  over time and frequency and concatenated: ``features`` [batch, 2 * 480].
* ``random_sample_cnn``: a sample-level waveform CNN (a stride-3 stem, then width-3 conv + ReLU +
  max-pool 3 blocks, Lee et al. 2017) on 59049-sample patches, random weights, every block's
  maps averaged and maxed over time: ``features`` [batch, 2 * 544].

The random CNNs follow Pons & Serra, "Randomly weighted CNNs for (music) audio classification",
ICASSP 2019: untrained networks whose pooled activations, fed to a linear classifier, already
separate many audio classes. Weights are He-normal from a fixed seed, biases zero, so a build is
deterministic (same code, same bytes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from taggram.models.architectures import frontend as fe
from taggram.models.export import export_to_repository
from taggram.repository import ModelMetadata, PatchSpec, TensorSpec

VERSION = "1.0.0"
SEED = 20190512  # any fixed value: the weights must be the same at every build
N_MFCC = 20
VGG_CHANNELS = (32, 64, 128, 128, 128)
SAMPLE_CNN_CHANNELS = (32, 32, 64, 64, 128, 128, 128)
SAMPLE_CNN_PATCH = PatchSpec(samples=3**10, hop_samples=3**10, context_samples=0)
SOURCE = (
    "built by taggram (taggram.models.features): Pons & Serra, 'Randomly weighted CNNs for "
    "(music) audio classification', ICASSP 2019; Pons, Serrà & Serra, 'Training neural audio "
    "classifiers with few data', ICASSP 2019"
)


def dct_matrix(n_input: int, n_output: int) -> np.ndarray:
    """Orthonormal DCT-II rows [n_output, n_input], as ``scipy.fft.dct(x, norm="ortho")``."""
    k = np.arange(n_output)[:, None]
    n = np.arange(n_input)[None, :]
    matrix = np.cos(math.pi * k * (2 * n + 1) / (2 * n_input)) * math.sqrt(2 / n_input)
    matrix[0] /= math.sqrt(2)
    return matrix.astype(np.float32)


class MFCCStatistics(nn.Module):
    """Waveform patches [batch, 48128] → {"statistics": [batch, 2 * N_MFCC]} (means, then stds)."""

    def __init__(self) -> None:
        super().__init__()
        self.frontend = fe.LogMelFrontend()
        self.dct: torch.Tensor
        self.register_buffer("dct", torch.from_numpy(dct_matrix(fe.N_MELS, N_MFCC).T))

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, samples]`` 16 kHz waveform -> ``statistics`` ``[batch, 2 * N_MFCC]``: the mean
        and standard deviation over the patch's frames of the MFCCs of musicnn's log-mel.
        """
        mfcc = torch.matmul(self.frontend(waveform), self.dct)  # [batch, frames, N_MFCC]
        mean = mfcc.mean(dim=1)
        std = (mfcc - mean.unsqueeze(1)).square().mean(dim=1).sqrt()
        return {"statistics": torch.cat([mean, std], dim=1)}


def _pooled(maps: torch.Tensor) -> list[torch.Tensor]:
    """Mean and max of [batch, channels, ...] maps over every axis after the channels."""
    flat = maps.flatten(2)
    return [flat.mean(dim=2), flat.amax(dim=2)]


class RandomVGG(nn.Module):
    """Log-mel VGG-like CNN with random weights → {"features": [batch, 2 * sum(channels)]}."""

    def __init__(self, channels: tuple[int, ...] = VGG_CHANNELS) -> None:
        super().__init__()
        self.frontend = fe.LogMelFrontend()
        widths = (1, *channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, padding=1) for i in range(len(channels))
        )
        self.pool = nn.MaxPool2d(2)

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, samples]`` 16 kHz waveform -> ``features`` ``[batch, 2 * sum(channels)]``:
        the mean and max of each random convolution layer's maps over time and frequency.
        """
        maps = self.frontend(waveform).unsqueeze(1)  # [batch, 1, frames, mels]
        pooled: list[torch.Tensor] = []
        for conv in self.convs:
            maps = torch.relu(conv(maps))
            pooled += _pooled(maps)
            maps = self.pool(maps)
        return {"features": torch.cat(pooled, dim=1)}


class RandomSampleCNN(nn.Module):
    """Sample-level CNN with random weights: [batch, 59049] → {"features": [batch, 2 * sum]}."""

    def __init__(self, channels: tuple[int, ...] = SAMPLE_CNN_CHANNELS) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, channels[0], 3, stride=3)
        widths = (channels[0], *channels)
        self.convs = nn.ModuleList(
            nn.Conv1d(widths[i], widths[i + 1], 3, padding=1) for i in range(len(channels))
        )
        self.pool = nn.MaxPool1d(3)

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, 59049]`` 16 kHz waveform -> ``features`` ``[batch, 2 * sum(channels)]``:
        the mean and max over time of each random sample-level block's maps.
        """
        maps = torch.relu(self.stem(waveform.unsqueeze(1)))
        pooled: list[torch.Tensor] = []
        for conv in self.convs:
            maps = self.pool(torch.relu(conv(maps)))
            pooled += _pooled(maps)
        return {"features": torch.cat(pooled, dim=1)}


def randomize(module: nn.Module, seed: int = SEED) -> nn.Module:
    """He-normal weights from ``seed``, zero biases: variance-preserving through the ReLUs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Conv1d | nn.Conv2d):
                fan_in = layer.weight[0].numel()
                layer.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
                if layer.bias is not None:
                    layer.bias.zero_()
    return module


def _metadata(
    name: str,
    description: str,
    architecture: str,
    kind: str,
    patch: PatchSpec,
    output: str,
    size: int,
    output_description: str,
    dsp: dict[str, object],
) -> ModelMetadata:
    return ModelMetadata.model_validate(
        {
            "name": name,
            "version": VERSION,
            "description": description,
            "architecture": architecture,
            "kind": kind,
            "tags": [],
            "sample_rate": fe.SAMPLE_RATE,
            "patch": patch,
            "inputs": [
                TensorSpec(
                    name="waveform",
                    shape=["batch", patch.samples],
                    description=f"mono {fe.SAMPLE_RATE} Hz float32 audio, "
                    f"{patch.context_samples} samples of left context then the samples scored",
                )
            ],
            "outputs": [
                TensorSpec(name=output, shape=["batch", size], description=output_description)
            ],
            "probabilities_output": None,
            "embedding_outputs": [output],
            "dsp": dsp,
            "training": {"weights": f"none: fixed random He-normal weights, seed {SEED}"}
            if architecture.startswith("random")
            else {"weights": "none: a fixed transform"},
            "source": SOURCE,
            "license": "ISC",
            "onnx_sha256": "",
        }
    )


def mfcc_metadata() -> ModelMetadata:
    """Repository metadata of the MFCC-statistics feature extractor (no tags)."""
    return _metadata(
        "mfcc",
        f"MFCC statistics: {N_MFCC} MFCCs of musicnn's log-mel, mean and std over the patch",
        "mfcc",
        "spectrogram",
        fe.PATCH,
        "statistics",
        2 * N_MFCC,
        f"means of the {N_MFCC} MFCCs over the patch's {fe.FRAMES} frames, then their "
        "standard deviations",
        {**fe.DSP_PARAMETERS, "mfcc": f"orthonormal DCT-II of the log-mel, first {N_MFCC}"},
    )


def random_vgg_metadata() -> ModelMetadata:
    """Repository metadata of the random-weight VGG feature extractor (no tags)."""
    return _metadata(
        "random_vgg",
        "VGG-like CNN with random weights on musicnn's log-mel (Pons & Serra 2019)",
        "random_vgg",
        "spectrogram",
        fe.PATCH,
        "features",
        2 * sum(VGG_CHANNELS),
        f"each of the {len(VGG_CHANNELS)} layers' ReLU maps ({VGG_CHANNELS} channels) averaged "
        "then maxed over time and frequency, layer after layer",
        {**fe.DSP_PARAMETERS, "network": f"3x3 conv, ReLU, 2x2 max-pool; channels {VGG_CHANNELS}"},
    )


def random_sample_cnn_metadata() -> ModelMetadata:
    """Repository metadata of the random-weight sample-level CNN feature extractor (no tags)."""
    return _metadata(
        "random_sample_cnn",
        "sample-level waveform CNN with random weights (Pons & Serra 2019)",
        "random_sample_cnn",
        "waveform",
        SAMPLE_CNN_PATCH,
        "features",
        2 * sum(SAMPLE_CNN_CHANNELS),
        f"each of the {len(SAMPLE_CNN_CHANNELS)} blocks' maps (after ReLU and max-pool 3; "
        f"{SAMPLE_CNN_CHANNELS} channels) averaged then maxed over time, block after block",
        {
            "sample_rate": fe.SAMPLE_RATE,
            "network": "stride-3 width-3 stem, then width-3 conv, ReLU, max-pool 3 blocks; "
            f"channels {SAMPLE_CNN_CHANNELS}",
        },
    )


FEATURE_MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], ModelMetadata]]] = {
    "mfcc": (MFCCStatistics, mfcc_metadata),
    "random_vgg": (lambda: randomize(RandomVGG()), random_vgg_metadata),
    "random_sample_cnn": (lambda: randomize(RandomSampleCNN()), random_sample_cnn_metadata),
}


def build_feature_models(root: Path) -> list[Path]:
    """Export every feature extractor into the repository at ``root``."""
    return [
        export_to_repository(make(), metadata(), root) for make, metadata in FEATURE_MODELS.values()
    ]
