"""Selection picks what the examples support; the estimate is held-out, not the choosing score."""

from __future__ import annotations

import numpy as np

from taggram.service.custom import selection
from taggram.service.custom.features import candidates


def _task(n_per_class: int, classes: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Two features: ``good`` separates the classes, ``noise`` does not."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    good = rng.normal(size=(classes, 32))[labels] * 2 + rng.normal(size=(len(labels), 32))
    noise = rng.normal(size=(len(labels), 64))
    return {"noise.x": noise, "good.x": good}, np.eye(classes, dtype=bool)[labels]


def test_auto_chooses_the_informative_feature() -> None:
    features, Y = _task(6, 4, seed=0)
    pool = candidates(list(features), list(selection.CLASSIFIERS))
    chosen = selection.select(features, Y, pool, multi=False)
    assert chosen.method == "cross-validation"
    # The best pair of each of the two best features votes: the informative one first; the
    # noise feature's member is calibrated to nearly flat probabilities (a high temperature).
    assert [m.feature for m in chosen.members] == ["good.x", "noise.x"]
    assert len(chosen.members) == selection.ENSEMBLE_FEATURES
    assert chosen.temperatures[1] > chosen.temperatures[0]
    assert len(chosen.scores) == len(pool) == 8
    best = max(chosen.scores.values())
    assert chosen.scores[chosen.members[0]] == best
    estimate = selection.estimate(features, Y, pool, multi=False)
    assert estimate.value is not None and estimate.value > 0.9
    assert estimate.chance == 0.25 and estimate.folds == 3


def test_nested_estimate_is_not_the_optimistic_choosing_score() -> None:
    """On labels that carry no information the best of many CV scores beats chance by luck;
    the nested estimate, scored on examples the selection never saw, stays near chance
    (chance is 0.25; averaged over a few seeded draws, since one draw of 32 is noisy)."""
    best, nested = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        Y = np.eye(4, dtype=bool)[np.repeat(np.arange(4), 8)]
        features = {f"f{i}.x": rng.normal(size=(32, 20)) for i in range(4)}
        pool = candidates(list(features), list(selection.CLASSIFIERS))
        best.append(max(selection.select(features, Y, pool, multi=False).scores.values()))
        estimate = selection.estimate(features, Y, pool, multi=False).value
        assert estimate is not None
        nested.append(estimate)
    assert np.mean(best) > np.mean(nested) + 0.05
    assert np.mean(nested) < 0.4


def test_single_example_of_a_class_falls_back_without_an_estimate() -> None:
    features, Y = _task(3, 3, seed=1)
    Y = Y[[0, 1, 2, 3, 4, 5, 6]]  # the third class keeps a single example
    features = {name: values[:7] for name, values in features.items()}
    one_shot = list(selection.ONE_SHOT_FEATURES)
    for name in one_shot:
        features[name] = features["good.x"]
    pool = candidates(["noise.x", *reversed(one_shot)], list(selection.CLASSIFIERS))
    chosen = selection.select(features, Y, pool, multi=False)
    assert chosen.method == "fallback"
    assert chosen.members == tuple(
        selection.Candidate(name, selection.ONE_SHOT_CLASSIFIER) for name in one_shot
    )
    assert chosen.weights == tuple(selection.ONE_SHOT_FEATURES.values())
    estimate = selection.estimate(features, Y, pool, multi=False)
    assert estimate.value is None and "single example" in estimate.method
    # Without any of those features, the first one asked for; a classifier asked for is kept.
    only = candidates(["noise.x", "good.x"], ["svm", "knn"])
    fallback = selection.select(features, Y, only, multi=False)
    assert fallback.members == (selection.Candidate("noise.x", "svm"),)


def test_a_fixed_pair_is_estimated_by_plain_cross_validation() -> None:
    features, Y = _task(5, 3, seed=2)
    pool = [selection.Candidate("good.x", "logistic")]
    assert selection.select(features, Y, pool, multi=False).method == "fixed"
    estimate = selection.estimate(features, Y, pool, multi=False)
    assert estimate.folds == 5 and "fixed pair" in estimate.method


def test_multi_label_is_scored_by_macro_f1() -> None:
    rng = np.random.default_rng(4)
    Y = rng.random((30, 3)) < 0.5
    Y[Y.sum(axis=1) == 0, 0] = True
    good = Y.astype(float) @ rng.normal(size=(3, 16)) * 3 + rng.normal(size=(30, 16))
    features = {"good.x": good}
    pool = candidates(["good.x"], list(selection.CLASSIFIERS))
    estimate = selection.estimate(features, Y, pool, multi=True)
    assert estimate.metric == "macro_f1"
    assert estimate.value is not None and estimate.value > 0.8


def test_chance_is_the_commonest_class_or_every_tag() -> None:
    """As docs/custom-models.md defines it: the accuracy of always answering the commonest class;
    for multi-label, the macro-F1 of answering every tag (2p / (1 + p) per tag, p its share)."""
    labels = np.array([0, 0, 0, 1, 1, 2])
    assert selection.chance_level(np.eye(3, dtype=bool)[labels], False) == 0.5
    tags = np.zeros((4, 2), dtype=bool)
    tags[:, 0] = True  # p = 1: answering it everywhere is perfect (F1 1)
    tags[0, 1] = True  # p = 1/4: precision 1/4, recall 1, F1 2/5
    every_tag = selection.score(tags, np.ones((4, 2)), multi_label=True)
    assert selection.chance_level(tags, True) == every_tag == (1.0 + 0.4) / 2
