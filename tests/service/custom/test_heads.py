"""Heads: numpy predictions from stored arrays equal scikit-learn's and survive a round trip."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import LinearSVC

from taggram.service.custom.heads import (
    HEADS,
    SVM_C,
    Head,
    KnnHead,
    LogisticHead,
    SVMHead,
    shrunk_to_mean_variance,
)


def _data(n_per_class: int, classes: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = rng.normal(size=(classes, dim)) * 3
    features = centres[labels] + rng.normal(size=(len(labels), dim)) * rng.uniform(0.1, 10, dim)
    return features.astype(np.float32), np.eye(classes, dtype=bool)[labels]


def _standardised(X: np.ndarray) -> np.ndarray:
    X = X.astype(np.float64)
    return (X - X.mean(axis=0)) / X.std(axis=0)


@pytest.mark.parametrize("classes", [2, 4])
def test_logistic_matches_scikit_learn(classes: int) -> None:
    X, Y = _data(6, classes, 50)
    head = LogisticHead(multi_label=False).fit(X, Y)
    reference = LogisticRegression(C=1.0, max_iter=10000, tol=1e-10)
    reference.fit(_standardised(X), Y.argmax(axis=1))
    np.testing.assert_allclose(
        head.predict_proba(X), reference.predict_proba(_standardised(X)), atol=2e-3
    )


def test_svm_margins_are_scikit_learns_squashed() -> None:
    X, Y = _data(6, 3, 20)
    head = SVMHead(multi_label=False).fit(X, Y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = LinearSVC(C=SVM_C, max_iter=1000, random_state=0).fit(
            _standardised(X), Y.argmax(axis=1)
        )
    margins = reference.decision_function(_standardised(X))
    expected = np.exp(margins) / np.exp(margins).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(head.predict_proba(X), expected, atol=1e-5)


def test_knn_votes_like_scikit_learn_with_cosine() -> None:
    X, Y = _data(5, 3, 16)
    queries = _data(4, 3, 16, seed=1)[0]
    head = KnnHead(multi_label=False).fit(X, Y)
    assert head.k == 5
    reference = KNeighborsClassifier(n_neighbors=5, metric="cosine").fit(
        _standardised(X), Y.argmax(axis=1)
    )
    standardised = (queries - X.mean(axis=0)) / X.std(axis=0)
    np.testing.assert_allclose(
        head.predict_proba(queries), reference.predict_proba(standardised), atol=1e-6
    )


def test_prototypes_pick_the_nearest_class_mean_by_cosine() -> None:
    X, Y = _data(5, 3, 16)
    head = HEADS["prototypes"](multi_label=False).fit(X, Y)
    Z = _standardised(X)
    unit = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    means = np.stack([unit[Y[:, c]].mean(axis=0) for c in range(3)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    probabilities = head.predict_proba(X)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), (unit @ means.T).argmax(axis=1))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("multi_label", [False, True])
def test_arrays_round_trip_without_pickle(name: str, multi_label: bool) -> None:
    X, Y = _data(4, 3, 12)
    if multi_label:
        Y = Y | np.roll(Y, 1, axis=1) * (np.arange(len(Y)) % 2 == 0)[:, None]
    head = HEADS[name](multi_label).fit(X, Y)
    buffer = io.BytesIO()
    np.savez(buffer, **head.arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        restored: Head = HEADS[name].from_arrays(
            {k: archive[k] for k in archive.files}, multi_label
        )
    probabilities = head.predict_proba(X)
    assert probabilities.shape == Y.shape and probabilities.dtype == np.float32
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    np.testing.assert_array_equal(restored.predict_proba(X), probabilities)
    if not multi_label:
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)


def test_the_one_shot_scaling_keeps_two_examples_dimensions_in_proportion() -> None:
    """Two rows: one scale for every dimension (per dimension, each would become +-1); five
    rows: each variance a quarter of the way to the mean variance; rows all alike: scale 1."""
    X = np.array([[0.0, 0.0, 5.0], [2.0, 20.0, 5.0]])
    mean, scale = shrunk_to_mean_variance(X)
    assert np.allclose(mean, [1.0, 10.0, 5.0])
    assert np.allclose(scale, np.sqrt(np.mean(X.var(axis=0))))
    five = np.random.default_rng(0).normal(size=(5, 3)) * [1.0, 10.0, 100.0]
    variance = five.var(axis=0)
    assert np.allclose(
        shrunk_to_mean_variance(five)[1] ** 2, 0.75 * variance + 0.25 * variance.mean()
    )
    assert np.array_equal(shrunk_to_mean_variance(np.ones((2, 3)))[1], np.ones(3))
