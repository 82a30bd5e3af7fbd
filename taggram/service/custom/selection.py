"""Choosing a custom model's members from the examples themselves; an honest accuracy estimate.

``auto`` scores every (feature, classifier) candidate by stratified k-fold cross-validation on the
examples (``k = min(5, the smallest class's size)``) and ranks them by pooled held-out score; ties
(common: with few examples accuracy moves in coarse steps) go to the better mean reciprocal rank of
the true classes, then to the earlier candidate (features in the order given, classifiers in
:data:`CLASSIFIERS` order). The model is a soft vote (:mod:`taggram.service.custom.ensemble`) of
the best candidate of each of the :data:`ENSEMBLE_FEATURES` best-scoring features, each member
temperature-scaled on its own held-out predictions. The scores that chose the members are
optimistic (the best of many noisy scores), so the accuracy reported with a model comes from
**nested** cross-validation: the examples are split into outer folds, the whole procedure above
is repeated on each outer training part alone, and the model it builds is scored on the held-out
part it never saw; the held-out predictions of every outer fold are pooled into one figure. With
a single candidate there is nothing to choose and plain cross-validation is already honest.

Fallback: when a class has a single example, no fold can hold it out and still train on it, so
``auto`` takes a fixed weighted vote, :data:`ONE_SHOT_CLASSIFIER` on the features of
:data:`ONE_SHOT_FEATURES` among the candidates', its heads standardising by
:data:`ONE_SHOT_SCALING`, and reports no accuracy estimate. Inside nested
cross-validation, an outer training part whose smallest class has a single example falls back
the same way, so the estimate measures exactly what ``auto`` does.

Every setting here (:data:`AUTO_NETWORKS`, :data:`ENSEMBLE_FEATURES`, temperature scaling, the
one-shot vote and its weights) was chosen on the development tasks of ``benchmarks/few_shot.py``,
never on the tasks it reports (docs/custom-models.md).

Multi-label models (an example may carry several tags) are scored by macro-averaged F1 of the
tags at probability 0.5 on plain (unstratified) k-fold splits; "a class's size" is then the
number of examples carrying the tag."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import f1_score
from sklearn.model_selection import KFold, StratifiedKFold

from taggram.service.custom.ensemble import Candidate, Ensemble, fit_temperature
from taggram.service.custom.heads import (
    HEADS,
    Head,
    Scaling,
    per_dimension,
    shrunk_to_mean_variance,
)

CLASSIFIERS = ("prototypes", "logistic", "svm", "knn")
MAX_FOLDS = 5
OUTER_FOLDS = 3  # nested CV repeats the whole selection per outer fold: 3 keeps creation quick
SEED = 0
# Settings of auto, chosen on the development tasks of benchmarks/few_shot.py only (never on the
# tasks it reports; docs/custom-models.md shows the comparison that chose them).
# The networks whose features auto considers (when loaded): adding the others never improved the
# worst case over the development tasks, and skipping them makes creation several times faster.
AUTO_NETWORKS = ("MTT_musicnn", "mfcc", "random_vgg")
ENSEMBLE_FEATURES = 2  # the vote: the best candidate of each of the 2 best-scoring features
# One example of some class: a fixed soft vote, weighted towards MFCC statistics (no
# cross-validation is possible to choose anything).
ONE_SHOT_FEATURES = {
    "mfcc.statistics": 0.6,
    "MTT_musicnn.max_pool": 0.2,
    "MSD_musicnn.max_pool": 0.2,
}
ONE_SHOT_CLASSIFIER = "logistic"
# How the one-shot vote's heads standardise (every other head: per_dimension). Chosen on the
# development tasks at k = 1 with 8 and 2 classes (docs/custom-models.md).
ONE_SHOT_SCALING: Scaling = shrunk_to_mean_variance


@dataclass(frozen=True)
class Estimate:
    """An accuracy estimate and how it was obtained (``value`` None: not estimable)."""

    value: float | None
    metric: str
    method: str
    chance: float
    folds: int


@dataclass(frozen=True)
class Selection:
    """The chosen members (one pair, or several for an ensemble), how they were chosen, and
    every candidate's CV score."""

    members: tuple[Candidate, ...]
    method: str  # "cross-validation", "fixed" or "fallback"
    scores: dict[Candidate, float] = field(default_factory=dict)  # CV score of each candidate
    weights: tuple[float, ...] = ()  # the members' shares of the vote (equal when empty)
    temperatures: tuple[float, ...] = ()  # the members' calibration (1 when empty)


def smallest_class(Y: np.ndarray) -> int:
    """Examples in the smallest class of the ``[n, classes]`` 0/1 target matrix ``Y``."""
    return int(Y.sum(axis=0).min())


def metric_name(multi_label: bool) -> str:
    """``accuracy`` for single-label models, ``macro_f1`` for multi-label ones."""
    return "macro_f1" if multi_label else "accuracy"


def score(Y: np.ndarray, probabilities: np.ndarray, multi_label: bool) -> float:
    """Accuracy of the most probable class, or macro F1 of the tags at 0.5 (multi-label)."""
    if multi_label:
        return float(f1_score(Y, probabilities >= 0.5, average="macro", zero_division=0))
    return float(np.mean(probabilities.argmax(axis=1) == Y.argmax(axis=1)))


def chance_level(Y: np.ndarray, multi_label: bool) -> float:
    """What always answering the commonest class (or every tag for multi-label F1) would score."""
    if multi_label:
        share = Y.mean(axis=0)
        return float(np.mean(2 * share / (1 + share)))
    return float(Y.sum(axis=0).max() / len(Y))


def splits(Y: np.ndarray, multi_label: bool, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` (train, test) index pairs, stratified by class for single-label targets."""
    if multi_label:
        return list(KFold(folds, shuffle=True, random_state=SEED).split(Y))
    labels = Y.argmax(axis=1)
    return list(StratifiedKFold(folds, shuffle=True, random_state=SEED).split(labels, labels))


def make_head(classifier: str, multi_label: bool, scaling: Scaling = per_dimension) -> Head:
    """An unfitted head of the named classifier, standardising its inputs by ``scaling``."""
    return HEADS[classifier](multi_label, scaling=scaling)


def fit(features: dict[str, np.ndarray], Y: np.ndarray, chosen: Selection, multi: bool) -> Ensemble:
    """Every chosen member's head fitted on every example (``features[name]``: ``[n, d]``),
    standardised by :data:`ONE_SHOT_SCALING` for the fallback vote, per dimension otherwise."""
    scaling = ONE_SHOT_SCALING if chosen.method == "fallback" else per_dimension
    return Ensemble(
        tuple(
            (member, make_head(member.classifier, multi, scaling).fit(features[member.feature], Y))
            for member in chosen.members
        ),
        chosen.weights,
        chosen.temperatures,
    )


def held_out(
    X: np.ndarray, Y: np.ndarray, classifier: str, multi_label: bool, folds: int
) -> np.ndarray:
    """Probabilities [n, classes] of each example from the fold that held it out."""
    predictions = np.zeros(Y.shape, np.float32)
    for train, test in splits(Y, multi_label, folds):
        head = make_head(classifier, multi_label).fit(X[train], Y[train])
        predictions[test] = head.predict_proba(X[test])
    return predictions


def cross_validated(
    X: np.ndarray, Y: np.ndarray, classifier: str, multi_label: bool, folds: int
) -> float:
    """Pooled score of ``classifier`` over ``folds`` held-out parts."""
    return score(Y, held_out(X, Y, classifier, multi_label, folds), multi_label)


def reciprocal_rank(Y: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean over examples and their tags of 1 / (rank of the tag among the probabilities): a
    finer score than accuracy that only uses the order, so every classifier is judged alike."""
    ranks = (-probabilities).argsort(axis=1, kind="stable").argsort(axis=1, kind="stable") + 1
    return float(np.mean(1.0 / ranks[Y]))


def fallback(candidates: Sequence[Candidate]) -> Selection:
    """The soft vote used when cross-validation is impossible (see the module docstring):
    :data:`ONE_SHOT_CLASSIFIER` (or the first classifier asked for) on each feature of
    :data:`ONE_SHOT_FEATURES` among the candidates' with its weight (or on the first
    candidate's feature alone)."""
    features = list(dict.fromkeys(c.feature for c in candidates))
    classifiers = list(dict.fromkeys(c.classifier for c in candidates))
    classifier = ONE_SHOT_CLASSIFIER if ONE_SHOT_CLASSIFIER in classifiers else classifiers[0]
    weights = {name: w for name, w in ONE_SHOT_FEATURES.items() if name in features}
    weights = weights or {features[0]: 1.0}
    members = tuple(Candidate(name, classifier) for name in weights)
    return Selection(members, "fallback", weights=tuple(weights.values()))


def select(
    features: dict[str, np.ndarray], Y: np.ndarray, candidates: Sequence[Candidate], multi: bool
) -> Selection:
    """The members by cross-validation (the best candidate of each of the
    :data:`ENSEMBLE_FEATURES` best-scoring features, each temperature-calibrated on its held-out
    predictions), or the fixed or fallback ones."""
    if len(candidates) == 1:
        return Selection((candidates[0],), "fixed")
    smallest = smallest_class(Y)
    if smallest < 2:
        return fallback(candidates)
    folds = min(MAX_FOLDS, smallest)
    scores, ranks, predictions = {}, {}, {}
    for candidate in candidates:
        predictions[candidate] = held_out(
            features[candidate.feature], Y, candidate.classifier, multi, folds
        )
        scores[candidate] = score(Y, predictions[candidate], multi)
        ranks[candidate] = reciprocal_rank(Y, predictions[candidate])
    # Few examples make accuracies coarse (1/n steps) and ties common: ties go to the better
    # ranking of the true classes, then to the earlier candidate (a stable sort).
    ranked = sorted(candidates, key=lambda c: (-scores[c], -ranks[c]))
    best_per_feature = {c.feature: c for c in reversed(ranked)}  # the last write is the best
    by_feature = sorted(best_per_feature.values(), key=ranked.index)
    members = tuple(by_feature[:ENSEMBLE_FEATURES])
    temperatures = tuple(fit_temperature(predictions[m], Y, multi) for m in members)
    return Selection(members, "cross-validation", scores, temperatures=temperatures)


def estimate(
    features: dict[str, np.ndarray], Y: np.ndarray, candidates: Sequence[Candidate], multi: bool
) -> Estimate:
    """Held-out score of the whole procedure (nested CV; plain CV for a single candidate)."""
    metric, chance = metric_name(multi), chance_level(Y, multi)
    smallest = smallest_class(Y)
    if smallest < 2:
        return Estimate(None, metric, "not estimated: a class has a single example", chance, 0)
    if len(candidates) == 1:
        only = candidates[0]
        folds = min(MAX_FOLDS, smallest)
        value = cross_validated(features[only.feature], Y, only.classifier, multi, folds)
        method = f"{folds}-fold cross-validation of the fixed pair, pooled held-out predictions"
        return Estimate(value, metric, method, chance, folds)
    folds = min(OUTER_FOLDS, smallest)
    predictions = np.zeros(Y.shape, np.float32)
    for train, test in splits(Y, multi, folds):
        inner = {name: values[train] for name, values in features.items()}
        ensemble = fit(inner, Y[train], select(inner, Y[train], candidates, multi), multi)
        predictions[test] = ensemble.predict_proba(
            {f: features[f][test] for f in ensemble.features}
        )
    method = (
        f"nested cross-validation: {folds} outer folds; on each outer training part the whole "
        f"selection among {len(candidates)} candidates is repeated (inner k-fold, "
        f"k = min({MAX_FOLDS}, smallest class); members, temperatures, fits) and the model it "
        "builds is scored on the held-out part; held-out predictions pooled"
    )
    return Estimate(
        value=score(Y, predictions, multi), metric=metric, method=method, chance=chance, folds=folds
    )
