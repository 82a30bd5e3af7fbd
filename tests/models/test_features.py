"""The feature extractors of custom taggers: MFCC statistics are the textbook ones on musicnn's
log-mel, the random CNNs are deterministic, and each ONNX file computes what its module does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import scipy.fft
import torch

from taggram.models.architectures import frontend as fe
from taggram.models.features import (
    FEATURE_MODELS,
    N_MFCC,
    RandomSampleCNN,
    RandomVGG,
    build_feature_models,
    randomize,
)
from taggram.repository import load_repository


def _waveform(batch: int, samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)


def test_mfcc_statistics_are_the_dct_of_musicnns_log_mel() -> None:
    make, _ = FEATURE_MODELS["mfcc"]
    waveform = _waveform(2, fe.PATCH_SAMPLES)
    with torch.no_grad():
        statistics = make()(torch.from_numpy(waveform))["statistics"].numpy()
        log_mel = fe.LogMelFrontend()(torch.from_numpy(waveform)).numpy().astype(np.float64)
    mfcc = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=2)[:, :, :N_MFCC]
    expected = np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)], axis=1)
    np.testing.assert_allclose(statistics, expected, rtol=1e-4, atol=1e-4)


def test_random_weights_are_fixed_by_the_seed() -> None:
    for make in (RandomVGG, RandomSampleCNN):
        first, second = randomize(make()), randomize(make())
        for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = randomize(RandomVGG(), seed=1)
    assert not torch.equal(other.convs[0].weight, randomize(RandomVGG()).convs[0].weight)


def test_exported_extractors_match_their_modules(tmp_path: Path) -> None:
    build_feature_models(tmp_path)
    entries = load_repository(tmp_path)
    assert sorted(entries) == sorted(FEATURE_MODELS)
    for name, (make, _) in FEATURE_MODELS.items():
        meta = entries[name].metadata
        assert meta.tags == [] and meta.probabilities_output is None
        (output,) = meta.embedding_outputs
        session = ort.InferenceSession(
            str(entries[name].onnx_path), providers=["CPUExecutionProvider"]
        )
        waveform = _waveform(3, meta.patch.samples, seed=1)
        (values,) = session.run(None, {"waveform": waveform})
        with torch.no_grad():
            expected = make()(torch.from_numpy(waveform))[output].numpy()
        assert values.shape == (3, meta.outputs[0].shape[1])
        np.testing.assert_allclose(values, expected, rtol=1e-3, atol=1e-4)
