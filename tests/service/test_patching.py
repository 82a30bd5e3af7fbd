"""Patching: the original's patches reproduced, the tail covered, each second counted once."""

from __future__ import annotations

import json

import numpy as np
import pytest

from taggram.repository import PatchSpec
from taggram.service.audio.patching import (
    Patches,
    clip_average,
    covering,
    hop_samples,
    plan_patches,
)
from taggram.service.errors import InvalidOptionsError, TooManyPatchesError
from tests.support.paths import REFERENCE, require_shared

MUSICNN = PatchSpec(samples=48128, hop_samples=47872, context_samples=256, frames=187)
SPAN = MUSICNN.span_samples


def _coverage_counts(plan_starts: np.ndarray, plan_ends: np.ndarray, n: int) -> np.ndarray:
    covered = np.zeros(n, int)
    for start, end in zip(plan_starts, plan_ends, strict=True):
        covered[start:end] += 1
    return covered


def test_exact_multiple_has_no_tail() -> None:
    plan = plan_patches(3 * SPAN, MUSICNN, SPAN, 100)
    assert plan.starts.tolist() == [0, SPAN, 2 * SPAN]
    np.testing.assert_allclose(plan.weights, [1 / 3] * 3)


def test_tail_gets_an_end_aligned_patch_weighted_by_its_new_audio() -> None:
    n = 2 * SPAN + 1000
    plan = plan_patches(n, MUSICNN, SPAN, 100)
    assert plan.starts.tolist() == [0, SPAN, n - SPAN]
    assert plan.ends.tolist() == [SPAN, 2 * SPAN, n]
    np.testing.assert_allclose(plan.weights * n, [SPAN, SPAN, 1000])


def test_short_clip_is_one_padded_patch() -> None:
    waveform = np.ones(1000, np.float32)
    plan = plan_patches(len(waveform), MUSICNN, SPAN, 100)
    assert plan.starts.tolist() == [0] and plan.weights.tolist() == [1.0]
    patch = Patches(waveform, MUSICNN, plan)[0]
    assert len(patch) == MUSICNN.samples
    assert not patch[:256].any() and patch[256:1256].all() and not patch[1256:].any()


@pytest.mark.parametrize("hop", [SPAN, SPAN // 2, 10_000, 12_345])
@pytest.mark.parametrize("n", [SPAN - 1, SPAN, SPAN + 1, 5 * SPAN + 777, 480_000])
def test_every_sample_is_covered_and_counted_once(n: int, hop: int) -> None:
    plan = plan_patches(n, MUSICNN, hop, 10_000)
    assert (_coverage_counts(plan.starts, plan.ends, n) >= 1).all()
    assert plan.ends.max() == n and plan.starts.min() == 0
    # Weight = audio a patch adds beyond earlier patches: the weights add up to the clip once.
    new_audio = np.diff(np.concatenate(([0], plan.ends)))
    np.testing.assert_allclose(plan.weights * n, new_audio)
    assert np.isclose(plan.weights.sum(), 1.0)


def test_patch_inputs_carry_the_context_before_their_span() -> None:
    waveform = np.arange(3 * SPAN + 500, dtype=np.float32)
    plan = plan_patches(len(waveform), MUSICNN, SPAN, 100)
    patches = Patches(waveform, MUSICNN, plan)
    assert not patches[0][:256].any()
    for index, start in enumerate(plan.starts):
        if start >= 256:
            np.testing.assert_array_equal(patches[index], waveform[start - 256 : start + SPAN])
    # The end-aligned tail patch ends exactly at the last sample: no padding.
    assert patches[len(patches) - 1][-1] == waveform[-1]
    batch = np.empty((2, MUSICNN.samples), np.float32)
    patches.copy_into(batch, 1)
    np.testing.assert_array_equal(batch[1], patches[2])


def test_default_hop_reproduces_the_original_patch_count() -> None:
    """musicnn's extractor kept the whole 187-frame patches: exactly our regular patches."""
    require_shared()
    for path in sorted(REFERENCE.glob("clip_*.MTT_musicnn.json")):
        facts = json.loads(path.read_text())
        n = int(np.ceil(facts["native_frames"] * 16000 / facts["native_sample_rate"]))
        plan = plan_patches(n, MUSICNN, SPAN, 1000)
        regular = int((plan.starts % SPAN == 0).sum())
        assert regular == facts["n_patches"], path.name


def test_clip_average_weights_rows() -> None:
    plan = plan_patches(2 * SPAN + SPAN // 2, MUSICNN, SPAN, 10)
    rows = np.array([[1.0], [1.0], [0.0]], np.float32)
    np.testing.assert_allclose(clip_average(rows, plan), [0.8], rtol=1e-6)


def test_hop_and_patch_count_limits() -> None:
    assert hop_samples(MUSICNN, 16000, None) == SPAN
    assert hop_samples(MUSICNN, 16000, 1.5) == 24000
    with pytest.raises(InvalidOptionsError):
        hop_samples(MUSICNN, 16000, 3.5)
    with pytest.raises(TooManyPatchesError):
        plan_patches(100 * SPAN, MUSICNN, SPAN, 50)


@pytest.mark.parametrize("n", [1, 1000, SPAN - 1, SPAN, SPAN + 1, 5 * SPAN + 777])
@pytest.mark.parametrize("hop", [SPAN, SPAN // 3])
def test_patches_are_slices_of_the_zero_padded_signal(n: int, hop: int) -> None:
    waveform = np.random.default_rng(n).normal(size=n).astype(np.float32)
    plan = plan_patches(n, MUSICNN, hop, 10_000)
    padded = np.concatenate(
        (np.zeros(MUSICNN.context_samples, np.float32), waveform, np.zeros(SPAN, np.float32))
    )
    expected = np.stack([padded[start : start + MUSICNN.samples] for start in plan.starts])
    patches = Patches(waveform, MUSICNN, plan)
    batch = np.full((len(patches), MUSICNN.samples), np.nan, np.float32)
    patches.copy_into(batch, 0)
    np.testing.assert_array_equal(batch, expected)
    for index in range(len(patches)):
        np.testing.assert_array_equal(patches[index], expected[index])


def test_covering_lays_one_networks_patches_on_anothers() -> None:
    """musicnn-like 3 s patches against sample-CNN-like 3.69 s ones on 10 s of audio: each
    patch maps to the other network's patch with the nearest centre; a plan maps to itself."""
    musicnn = PatchSpec(samples=48128, hop_samples=47872, context_samples=256)
    sample_cnn = PatchSpec(samples=59049, hop_samples=59049, context_samples=0)
    n = 160_000
    a = plan_patches(n, musicnn, musicnn.hop_samples, 100)
    b = plan_patches(n, sample_cnn, sample_cnn.hop_samples, 100)
    np.testing.assert_array_equal(covering(a, 16000, a, 16000), np.arange(len(a)))
    fine = plan_patches(n, musicnn, 4000, 1000)  # overlapping patches too
    np.testing.assert_array_equal(covering(fine, 16000, fine, 16000), np.arange(len(fine)))
    mapped = covering(a, 16000, b, 16000)
    centres_a = (a.starts + a.ends) / 2
    centres_b = (b.starts + b.ends) / 2
    for i, j in enumerate(mapped):
        assert abs(centres_b[j] - centres_a[i]) == np.min(np.abs(centres_b - centres_a[i]))
    # The same patches in seconds at half the sample rate: times, not sample indices, compare.
    halved = PatchSpec(samples=24064, hop_samples=23936, context_samples=128)
    half = plan_patches(n // 2, halved, halved.hop_samples, 100)
    np.testing.assert_array_equal(covering(half, 8000, a, 16000), np.arange(len(a)))
