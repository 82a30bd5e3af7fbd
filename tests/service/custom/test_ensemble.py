"""Soft voting over members that read different features; stored as plain arrays."""

from __future__ import annotations

import io

import numpy as np
import pytest

from taggram.service.custom import selection
from taggram.service.custom.ensemble import (
    Candidate,
    Ensemble,
    calibrate,
    combine,
    fit_temperature,
)
from taggram.service.custom.heads import HEADS


def _features(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), 5)
    centres = rng.normal(size=(3, 12))
    features = {
        "a.x": centres[labels] + 0.5 * rng.normal(size=(15, 12)),
        "b.y": np.hstack([centres[labels], centres[labels]]) + rng.normal(size=(15, 24)),
    }
    return features, np.eye(3, dtype=bool)[labels]


@pytest.mark.parametrize("multi_label", [False, True])
def test_members_vote_with_their_weights(multi_label: bool) -> None:
    features, Y = _features()
    members = (Candidate("a.x", "logistic"), Candidate("b.y", "prototypes"))
    chosen = selection.Selection(members, "cross-validation", weights=(3.0, 1.0))
    ensemble = selection.fit(features, Y, chosen, multi_label)
    assert ensemble.features == ["a.x", "b.y"]
    heads = [HEADS[m.classifier](multi_label).fit(features[m.feature], Y) for m in members]
    alone = [
        head.predict_proba(features[m.feature]) for head, m in zip(heads, members, strict=True)
    ]
    np.testing.assert_allclose(
        ensemble.predict_proba(features), 0.75 * alone[0] + 0.25 * alone[1], atol=1e-6
    )
    # no weights: an equal vote; the fallback's heads standardise by the one-shot scaling
    equal = selection.fit(features, Y, selection.Selection(members, "fallback"), multi_label)
    one_shot = [
        HEADS[m.classifier](multi_label, scaling=selection.ONE_SHOT_SCALING)
        .fit(features[m.feature], Y)
        .predict_proba(features[m.feature])
        for m in members
    ]
    np.testing.assert_allclose(equal.predict_proba(features), combine(one_shot), atol=1e-6)


def test_arrays_round_trip_without_pickle() -> None:
    features, Y = _features(1)
    members = (Candidate("a.x", "svm"), Candidate("b.y", "knn"), Candidate("a.x", "prototypes"))
    ensemble = selection.fit(features, Y, selection.Selection(members, "fixed"), False)
    buffer = io.BytesIO()
    np.savez(buffer, **ensemble.arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    assert {key.split(".")[0] for key in arrays} == {"0", "1", "2"}
    loaded = Ensemble.from_arrays(members, arrays, multi_label=False)
    np.testing.assert_array_equal(loaded.predict_proba(features), ensemble.predict_proba(features))


@pytest.mark.parametrize("multi_label", [False, True])
def test_temperature_scaling_calibrates_held_out_probabilities(multi_label: bool) -> None:
    """Flat but right probabilities are sharpened (T < 1); confident but often wrong ones are
    softened (T > 1); T = 1 leaves them as they are."""
    Y = np.eye(4, dtype=bool)[np.arange(40) % 4]
    flat = np.where(Y, 0.28, 0.24) if not multi_label else np.where(Y, 0.55, 0.45)
    assert fit_temperature(flat, Y, multi_label) < 1
    rng = np.random.default_rng(2)
    wrong = np.eye(4, dtype=bool)[rng.integers(0, 4, 40)]
    sure = np.where(wrong, 0.97, 0.01) if not multi_label else np.where(wrong, 0.99, 0.01)
    assert fit_temperature(sure, Y, multi_label) > 1
    np.testing.assert_array_equal(calibrate(flat, 1.0, multi_label), flat.astype(np.float32))
    sharpened = calibrate(flat, 0.2, multi_label)
    np.testing.assert_array_equal(sharpened.argmax(axis=1), flat.argmax(axis=1))
    if not multi_label:
        np.testing.assert_allclose(sharpened.sum(axis=1), 1, atol=1e-6)
