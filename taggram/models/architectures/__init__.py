"""Architecture registry: name → constructor of a module mapping a waveform batch to a dict.

Every registered module takes ``waveform`` [batch, samples] and returns ``{"logits": ...}`` plus
its named embeddings, which ``taggram.models.export`` turns into ONNX outputs.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from taggram.models.architectures.frontend import SpectrogramTagger
from taggram.models.architectures.musicnn import Musicnn
from taggram.models.architectures.vgg import Vgg
from taggram.models.architectures.waveform import SampleCNN

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "musicnn": lambda n_tags, **kwargs: SpectrogramTagger(Musicnn(n_tags, **kwargs)),
    "vgg": lambda n_tags, **kwargs: SpectrogramTagger(Vgg(n_tags, **kwargs)),
    "sample_cnn": SampleCNN,
}


def build(architecture: str, n_tags: int, **kwargs: object) -> nn.Module:
    """Instantiate a registered architecture (untrained)."""
    if architecture not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {architecture!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](n_tags, **kwargs)
