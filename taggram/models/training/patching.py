"""The patch each architecture reads, as the repository's PatchSpec (trainer and exporter agree)."""

from __future__ import annotations

from taggram.models.architectures import frontend as fe
from taggram.models.architectures import waveform
from taggram.repository import PatchSpec

# Waveform models need no left context: patches tile the clip without overlap.
WAVEFORM_PATCH = PatchSpec(samples=waveform.PATCH_SAMPLES, hop_samples=waveform.PATCH_SAMPLES)
WAVEFORM_ARCHITECTURES = frozenset({"sample_cnn"})


def patch_spec(architecture: str) -> PatchSpec:
    """The patch an architecture reads: waveform models tile without context, spectrogram models
    use the musicnn patch (3 s with 256 samples of left context).
    """
    return WAVEFORM_PATCH if architecture in WAVEFORM_ARCHITECTURES else fe.PATCH
