"""Parity with the original musicnn 0.1.0 (TensorFlow) outputs stored in ../shared/audio/reference.

Two levels, for all four models: the network alone, fed the exact log-mel batches the original
computed; and the whole ONNX model (front-end included) in onnxruntime, fed 16 kHz waveforms
loaded exactly as the original loads them.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import librosa
import numpy as np
import onnxruntime as ort
import pytest
import torch

from taggram.models.architectures import build
from taggram.models.architectures.frontend import LogMelFrontend
from taggram.models.importers.musicnn import load_network
from taggram.models.wheel import MusicnnWheel
from taggram.repository import ModelMetadata, PatchSpec, load_repository
from tests.models.conftest import MODELS
from tests.support.paths import REFERENCE, require_repository, require_shared

NETWORK_TAGGRAM_TOLERANCE = 1e-4
EMBEDDING_RELATIVE_TOLERANCE = 1e-3
WAVEFORM_TAGGRAM_TOLERANCE = 1e-3
# Reference embedding key(s) for each of our embedding outputs.
REFERENCE_EMBEDDINGS = {
    "penultimate": "perpatch_penultimate",  # feat_penultimate repeats patch 0 (upstream bug)
    "mean_pool": "feat_mean_pool",
    "max_pool": "feat_max_pool",
    "pool5": "feat_pool5",
}


def _reference_runs(model: str) -> list[Path]:
    """Every stored reference json of ``model`` (real clips and synthetic signals)."""
    require_shared()
    runs = sorted(REFERENCE.glob(f"*.{model}.json")) + sorted(
        (REFERENCE / "synthetic").glob(f"*.{model}.json")
    )
    if not runs:
        pytest.skip(f"{REFERENCE} holds no reference outputs for {model}")
    return runs


def _relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    reference = reference.reshape(ours.shape)
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.mark.parametrize("model", MODELS)
def test_network_matches_original_on_its_logmel(wheel: MusicnnWheel, model: str) -> None:
    runs = [r for r in _reference_runs(model) if r.with_name(f"{_stem(r)}.logmel.npz").is_file()]
    assert runs, "the reference stores log-mel batches for some files"
    tagger = build(model.split("_")[1], len(wheel.labels(model.split("_")[0])))
    network = tagger.get_submodule("network")
    load_network(network, wheel.checkpoint(model))
    for run in runs:
        logmel = np.load(run.with_name(f"{_stem(run)}.logmel.npz"))["logmel_batch"]
        reference = np.load(run.with_suffix(".npz"))
        with torch.no_grad():
            outputs = {k: v.numpy() for k, v in network(torch.from_numpy(logmel)).items()}
        taggram = torch.sigmoid(torch.from_numpy(outputs.pop("logits"))).numpy()
        assert np.abs(taggram - reference["taggram"]).max() <= NETWORK_TAGGRAM_TOLERANCE, run.name
        for name, value in outputs.items():
            error = _relative_error(value, reference[REFERENCE_EMBEDDINGS[name]])
            assert error <= EMBEDDING_RELATIVE_TOLERANCE, f"{run.name} {name}: {error}"


def _stem(run: Path) -> str:
    return run.name.split(".")[0]


@functools.cache
def load_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode as musicnn does: librosa's soxr_hq resampling, mean of channels (cached: 4 models)."""
    signal, _ = librosa.load(path, sr=sample_rate)
    return signal


def patch_batch(signal: np.ndarray, patch: PatchSpec, count: int) -> np.ndarray:
    """The first ``count`` patches of ``signal`` by the repository's patching rule."""
    padded = np.concatenate([np.zeros(patch.context_samples, np.float32), signal])
    needed = (count - 1) * patch.hop_samples + patch.samples
    padded = np.pad(padded, (0, max(0, needed - len(padded))))
    return np.stack([padded[k * patch.hop_samples :][: patch.samples] for k in range(count)])


@pytest.mark.parametrize("model", MODELS)
def test_onnx_model_matches_original_from_waveform(model: str) -> None:
    runs = _reference_runs(model)
    entry = load_repository(require_repository())[model]
    metadata: ModelMetadata = entry.metadata
    session = ort.InferenceSession(str(entry.onnx_path), providers=["CPUExecutionProvider"])
    for run in runs:
        facts = json.loads(run.read_text())
        signal = load_audio((run.parent / facts["audio_relpath"]).resolve(), metadata.sample_rate)
        reference = np.load(run.with_suffix(".npz"))["taggram"]
        # The original drops the trailing partial patch; compare the patches it scored.
        batch = patch_batch(signal, metadata.patch, len(reference))
        (taggram,) = session.run([metadata.probabilities_output], {metadata.input_name: batch})
        assert np.abs(taggram - reference).max() <= WAVEFORM_TAGGRAM_TOLERANCE, run.name


def test_frontend_matches_librosa_and_the_float16_quirk() -> None:
    """The in-graph front-end equals librosa's centred mel spectrogram plus musicnn's log step."""
    rng = np.random.default_rng(0)
    seconds = np.arange(4 * 16000) / 16000
    signal = 0.1 * rng.standard_normal(seconds.size) + 0.5 * np.sin(2 * np.pi * 440 * seconds)
    signal = signal.astype(np.float32)
    mel = librosa.feature.melspectrogram(y=signal, sr=16000, n_fft=512, hop_length=256, n_mels=96)
    patch = torch.from_numpy(
        patch_batch(signal, PatchSpec(samples=48128, hop_samples=47872, context_samples=256), 1)
    )
    for rounding, expected in (
        (False, np.log10(10000 * mel.T + 1)),
        (True, np.log10(10000 * mel.T.astype(np.float16).astype(np.float32) + 1)),
    ):
        with torch.no_grad():
            ours = LogMelFrontend(float16_rounding=rounding)(patch)[0].numpy()
        difference = np.abs(ours - expected[:187])
        # Without rounding only float32 DFT error remains; with it, rare ties flip a float16 ulp.
        assert difference.max() <= (1e-3 if rounding else 1e-4)
        assert np.median(difference) <= 1e-6
