"""musicnn's log-mel front-end as plain torch ops, so it exports into the ONNX graph.

It reproduces ``librosa.feature.melspectrogram(y, sr=16000, n_fft=512, hop_length=256, n_mels=96)``
followed by musicnn's ``log10(10000 * mel.astype(float16) + 1)``, computed per patch: the STFT is
an un-centred strided convolution with fixed (Hann-windowed) DFT kernels, because each patch already
carries ``context_samples`` of left context (see ``taggram.repository.PatchSpec``), which makes its
187 frames exactly the frames of librosa's centred STFT over the whole clip.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import torch
from torch import nn

from taggram.repository import PatchSpec

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
FRAMES = 187  # librosa.time_to_frames(3 s) + 1, musicnn's patch length
CONTEXT_SAMPLES = N_FFT // 2  # left half-window that centring would add
PATCH_SAMPLES = (FRAMES - 1) * HOP + N_FFT  # 48128: exactly FRAMES un-centred frames
HOP_SAMPLES = FRAMES * HOP  # 47872: patches tile the clip without overlap, as in musicnn
LOG_SCALE = 10000.0
# The repository's description of that patch, shared by the converter, trainer and exporter.
PATCH = PatchSpec(
    samples=PATCH_SAMPLES,
    hop_samples=HOP_SAMPLES,
    context_samples=CONTEXT_SAMPLES,
    frames=FRAMES,
    hop_frames=FRAMES,
)

# Every pre-processing detail, copied into each model's metadata.
DSP_PARAMETERS: dict[str, object] = {
    "sample_rate": SAMPLE_RATE,
    "mono": "mean of channels (librosa.load)",
    "resampling": "soxr 'HQ' (librosa 0.11 default res_type='soxr_hq'), only if rate differs",
    "stft": {
        "n_fft": N_FFT,
        "hop_length": HOP,
        "window": "periodic Hann, 512",
        "center": "librosa centre=True with zero padding, realised by 256 samples of left "
        "context per patch (zeros before the clip start) and zeros past the clip end",
        "power": 2.0,
    },
    "mel": {
        "n_mels": N_MELS,
        "fmin": 0.0,
        "fmax": SAMPLE_RATE / 2,
        "scale": "Slaney (htk=False)",
        "norm": "Slaney area normalisation",
        "source": "librosa.filters.mel(sr=16000, n_fft=512, n_mels=96), float32 constant",
    },
    "float16_rounding": "mel power cast to float16 and back before the log (musicnn quirk, kept)",
    "log": "log10(1 + 10000 * mel), float32",
    "frames_per_patch": FRAMES,
    "layout": "log-mel [batch, 187 frames, 96 bands] fed to the network",
}


def _dft_kernels() -> torch.Tensor:
    """Real and imaginary DFT rows times the periodic Hann window: [2 * 257, 1, 512]."""
    n = np.arange(N_FFT)
    bins = np.arange(N_FFT // 2 + 1)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * math.pi * n / N_FFT)
    # (k * n) mod N keeps the angle small, so float64 cos/sin stay exact to the last bit.
    angle = 2 * math.pi * ((bins * n) % N_FFT) / N_FFT
    kernels = np.concatenate([np.cos(angle) * window, -np.sin(angle) * window])
    return torch.from_numpy(kernels.astype(np.float32)).unsqueeze(1)


class LogMelFrontend(nn.Module):
    """Waveform patches [batch, 48128] → musicnn log-mel [batch, 187, 96]."""

    def __init__(self, float16_rounding: bool = True) -> None:
        super().__init__()
        self.float16_rounding = float16_rounding
        self.dft: torch.Tensor
        self.mel: torch.Tensor
        self.register_buffer("dft", _dft_kernels(), persistent=False)
        mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)
        self.register_buffer("mel", torch.from_numpy(mel.astype(np.float32)), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` float32 waveform at 16 kHz -> ``[batch, frames, 96]`` log-mel."""
        spectrum = nn.functional.conv1d(waveform.unsqueeze(1), self.dft, stride=HOP)
        real, imag = spectrum.chunk(2, dim=1)
        power = real * real + imag * imag  # [batch, 257, frames]
        mel = torch.matmul(self.mel, power)  # [batch, 96, frames]
        if self.float16_rounding:
            mel = mel.to(torch.float16).to(torch.float32)
        return torch.log10(1.0 + LOG_SCALE * mel).transpose(1, 2)


class SpectrogramTagger(nn.Module):
    """The log-mel front-end followed by a network taking [batch, frames, mels]."""

    def __init__(self, network: nn.Module, float16_rounding: bool = True) -> None:
        super().__init__()
        self.frontend = LogMelFrontend(float16_rounding)
        self.network = network

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[batch, samples]`` float32 16 kHz waveform -> the back-end's outputs (``logits`` and
        embeddings, each ``[batch, ...]``).
        """
        result: dict[str, torch.Tensor] = self.network(self.frontend(waveform))
        return result
