"""A custom model's classifier: one or several (feature, head) members, probabilities averaged.

A single member is the classic feature x classifier pair. Several members are **late fusion**:
each member's head reads its own feature (``model.output``, possibly of different networks) and
the model's probabilities are the weighted mean of the members' *calibrated* probabilities
[n, n_classes] float32 (soft voting, as ``sklearn.ensemble.VotingClassifier(voting="soft")``
does). The heads' own probabilities are not comparable (an SVM's squashed margins are nearly
flat, k-NN's vote shares are steps), so each member is first **temperature-scaled** (Guo et al.,
"On calibration of modern neural networks", ICML 2017): its log-probabilities (single-label) or
logits (multi-label) are divided by a temperature ``T`` fitted by minimising the log loss of its
cross-validated held-out probabilities. ``auto`` builds ensembles from the best cross-validated
pairs, and one over several features when a class has a single example
(:mod:`taggram.service.custom.selection`).

Parameters are the members' arrays under ``"<member index>.<array name>"`` keys: plain arrays
written with ``numpy.savez`` and read back with ``allow_pickle=False``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from taggram.service.custom.heads import HEADS, Head, sigmoid, softmax


@dataclass(frozen=True, order=True)
class Candidate:
    """One feature (``model.output``) with one classifier."""

    feature: str
    classifier: str

    def __str__(self) -> str:
        return f"{self.classifier} on {self.feature}"


@dataclass(frozen=True)
class Ensemble:
    """Fitted members (their candidate and head); probabilities are the members' weighted
    mean (``weights``: one per member, equal when empty)."""

    members: tuple[tuple[Candidate, Head], ...]
    weights: tuple[float, ...] = ()
    temperatures: tuple[float, ...] = ()  # one per member; 1 (unchanged) when empty

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """The members' (feature, classifier) pairs, in order."""
        return tuple(candidate for candidate, _ in self.members)

    @property
    def features(self) -> list[str]:
        """The features the members read, each once, in member order."""
        return list(dict.fromkeys(candidate.feature for candidate, _ in self.members))

    def member_probabilities(self, features: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Each member's calibrated probabilities [n, n_classes] float32; ``features[name]``:
        [n, dim]."""
        temperatures = self.temperatures or (1.0,) * len(self.members)
        return [
            calibrate(head.predict_proba(features[c.feature]), t, head.multi_label)
            for (c, head), t in zip(self.members, temperatures, strict=True)
        ]

    def predict_proba(self, features: Mapping[str, np.ndarray]) -> np.ndarray:
        """Mean of the members' probabilities, [n, n_classes] float32, for ``features[name]``
        [n, dim] (every name of :attr:`features`, the same n rows each)."""
        return combine(self.member_probabilities(features), self.weights)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every member's parameters, keyed ``"<index>.<name>"`` (what storage writes)."""
        return {
            f"{index}.{name}": values
            for index, (_, head) in enumerate(self.members)
            for name, values in head.arrays().items()
        }

    @classmethod
    def from_arrays(
        cls,
        candidates: Sequence[Candidate],
        arrays: Mapping[str, np.ndarray],
        multi_label: bool,
        weights: Sequence[float] = (),
        temperatures: Sequence[float] = (),
    ) -> Ensemble:
        """The fitted ensemble of ``candidates`` (with their ``weights`` and ``temperatures``)
        from its stored :meth:`arrays`."""
        members = []
        for index, candidate in enumerate(candidates):
            prefix = f"{index}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            members.append((candidate, HEADS[candidate.classifier].from_arrays(own, multi_label)))
        return cls(tuple(members), tuple(weights), tuple(temperatures))


def combine(probabilities: Sequence[np.ndarray], weights: Sequence[float] = ()) -> np.ndarray:
    """Soft vote: the (``weights``-weighted; equal when empty) mean of several [n, n_classes]
    probability arrays, float32."""
    return np.average(np.stack(probabilities), axis=0, weights=weights or None).astype(np.float32)


# Probabilities are clipped to [EPSILON, 1 - EPSILON] before taking logarithms (k-NN's vote shares
# reach 0 and 1).
EPSILON = 1e-4
# Temperatures tried when calibrating: 40 log-spaced values from 0.05 to 20.
TEMPERATURES = np.geomspace(0.05, 20.0, 40)


def calibrate(probabilities: np.ndarray, temperature: float, multi_label: bool) -> np.ndarray:
    """Temperature scaling of [n, n_classes] probabilities: ``softmax(log p / T)`` row-wise
    (single-label) or ``sigmoid(logit p / T)`` element-wise (multi-label); float32. ``T = 1``
    returns them unchanged."""
    if temperature == 1.0:
        return probabilities.astype(np.float32)
    p = np.clip(probabilities.astype(np.float64), EPSILON, 1 - EPSILON)
    if multi_label:
        return sigmoid(np.log(p / (1 - p)) / temperature).astype(np.float32)
    return softmax(np.log(p) / temperature).astype(np.float32)


def log_loss(probabilities: np.ndarray, Y: np.ndarray, multi_label: bool) -> float:
    """Mean negative log-likelihood of the [n, n_classes] 0/1 targets ``Y``."""
    p = np.clip(probabilities.astype(np.float64), EPSILON, 1 - EPSILON)
    if multi_label:
        return float(-np.mean(np.where(Y, np.log(p), np.log(1 - p))))
    return float(-np.mean(np.log(p[Y])))


def fit_temperature(held_out: np.ndarray, Y: np.ndarray, multi_label: bool) -> float:
    """The temperature of :data:`TEMPERATURES` with the least log loss on ``held_out``
    probabilities [n, n_classes] (each example predicted by a fold that did not train on it)."""
    losses = [log_loss(calibrate(held_out, t, multi_label), Y, multi_label) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(losses))])
