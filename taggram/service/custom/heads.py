"""The classifiers of custom taggers ("heads"), fitted with scikit-learn, served from plain arrays.

Every head reads embeddings ``X`` [n, dim] float32 (one row per clip or patch) and returns
probabilities [n, n_classes] float32. Targets are an indicator matrix ``Y`` [n, n_classes] bool:
one ``True`` per row for single-label models (probabilities sum to 1, softmax), any number for
multi-label ones (each class on its own, sigmoid). Every head first standardises each dimension
with the training examples' mean and standard deviation (random-CNN and MFCC dimensions differ
in scale by orders of magnitude), or by another :data:`Scaling` given to it: the one-shot vote
uses :func:`shrunk_to_mean_variance`, since a few examples' own spread per dimension is mostly
noise (with two examples every dimension of both becomes +-1).

A fitted head is nothing but named numpy arrays (:meth:`Head.arrays`), saved with
``numpy.savez`` and loaded back with ``allow_pickle=False``: no pickled objects, so a custom-models
folder can never run code. Prediction is plain numpy on those arrays, the same code in
cross-validation and in serving.

* ``prototypes``: nearest class mean with cosine similarity (prototypical networks, Snell et al.
  2017; Pons, Serrà & Serra 2019). Probabilities: softmax of ``PROTOTYPE_SCALE`` x cosine; for
  multi-label, sigmoid of the scaled difference between the tag's and the not-tag's prototypes.
* ``logistic``: L2 logistic regression (``sklearn.linear_model.LogisticRegression``, C=1):
  multinomial for single-label, one binary model per tag for multi-label.
* ``svm``: linear SVM (``sklearn.svm.LinearSVC``, C=0.01, one-vs-rest); its margins are squashed
  by softmax (single-label) or sigmoid (multi-label): scores for ranking, not calibrated.
* ``knn``: k nearest examples by cosine similarity (``sklearn.neighbors`` semantics, uniform
  votes); a class's probability is the share of the k neighbours carrying it.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

PROTOTYPE_SCALE = 10.0  # cosine in [-1, 1] -> logits in [-10, 10], as scaled-cosine classifiers
MAX_NEIGHBOURS = 5
SVM_C = 0.01
# A constant logit for a multi-label tag whose training rows are all positive or all negative.
_CONSTANT_LOGIT = 6.0


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``[n, classes]`` logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Element-wise logistic function of ``logits`` (any shape)."""
    return 0.5 * (1.0 + np.tanh(0.5 * logits))  # overflow-free logistic


# How a head standardises its inputs: training embeddings [n, dim] float64 -> (mean [dim], scale
# [dim]), every row then mapped to (x - mean) / scale.
Scaling = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def per_dimension(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each dimension's mean and standard deviation over the rows of ``X`` [n, dim] (a constant
    dimension, std 0 or negligible against the largest, keeps scale 1)."""
    std = X.std(axis=0)
    return X.mean(axis=0), np.where(std > 1e-8 * max(1.0, float(std.max(initial=0.0))), std, 1.0)


def shrunk_to_mean_variance(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each dimension's mean over the rows of ``X`` [n, dim] float64, and as its scale the square
    root of its variance moved ``1 / (n - 1)`` of the way toward the mean variance of all
    dimensions: with two rows one common scale (the dimensions keep their relative sizes), with
    many nearly each dimension's own std. A variance that ends at 0 (every row alike) keeps
    scale 1."""
    variance = X.var(axis=0)
    weight = 1.0 / max(len(X) - 1, 1)
    shrunk = (1.0 - weight) * variance + weight * variance.mean()
    return X.mean(axis=0), np.sqrt(np.where(shrunk > 0, shrunk, 1.0))


def l2_normalise(rows: np.ndarray) -> np.ndarray:
    """``[n, d]`` rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


class Head(ABC):
    """A classifier on standardised embeddings; see the module docstring."""

    name: ClassVar[str]

    def __init__(self, multi_label: bool, scaling: Scaling = per_dimension) -> None:
        self.multi_label = multi_label
        self.scaling = scaling
        self.mean = np.zeros(0, np.float64)
        self.scale = np.ones(0, np.float64)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> Head:
        """Fit on embeddings ``X`` [n, dim] and indicator targets ``Y`` [n, n_classes] bool,
        standardised by :attr:`scaling` of ``X``."""
        X = np.asarray(X, np.float64)
        self.mean, self.scale = self.scaling(X)
        self._fit(self._standardise(X), np.asarray(Y, bool))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities [n, n_classes] float32 for embeddings ``X`` [n, dim]."""
        logits = self._logits(self._standardise(np.asarray(X, np.float64)))
        if self.name == "knn":
            return logits.astype(np.float32)  # already vote shares
        squash = sigmoid if self.multi_label else softmax
        return squash(logits).astype(np.float32)

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.scale

    def arrays(self) -> dict[str, np.ndarray]:
        """Every parameter as a named array (what storage writes)."""
        return {"mean": self.mean, "scale": self.scale, **self._arrays()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], multi_label: bool) -> Head:
        """A fitted head from its stored arrays (standardisation plus the classifier's own)."""
        head = cls(multi_label)
        head.mean, head.scale = arrays["mean"], arrays["scale"]
        head._load(arrays)
        return head

    @abstractmethod
    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None: ...

    @abstractmethod
    def _logits(self, Z: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]: ...

    @abstractmethod
    def _load(self, arrays: dict[str, np.ndarray]) -> None: ...


class PrototypeHead(Head):
    """Nearest class mean by cosine similarity (prototypical networks, Snell et al. 2017)."""

    name = "prototypes"

    def __init__(self, multi_label: bool, scaling: Scaling = per_dimension) -> None:
        super().__init__(multi_label, scaling)
        self.positive = np.zeros((0, 0))
        self.negative = np.zeros((0, 0))

    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None:
        unit = l2_normalise(Z)

        def means(mask: np.ndarray) -> np.ndarray:
            counts = np.maximum(mask.sum(axis=0), 1)[:, None]
            return l2_normalise((mask.T.astype(np.float64) @ unit) / counts)

        self.positive = means(Y)
        self.negative = means(~Y) if self.multi_label else np.zeros((0, Z.shape[1]))

    def _logits(self, Z: np.ndarray) -> np.ndarray:
        unit = l2_normalise(Z)
        logits = unit @ self.positive.T
        if self.multi_label:
            logits = logits - unit @ self.negative.T
        return PROTOTYPE_SCALE * logits

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"positive": self.positive, "negative": self.negative}

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        self.positive, self.negative = arrays["positive"], arrays["negative"]


class LinearHead(Head):
    """A linear map ``Z @ coef.T + intercept``; subclasses differ in how they fit it."""

    def __init__(self, multi_label: bool, scaling: Scaling = per_dimension) -> None:
        super().__init__(multi_label, scaling)
        self.coef = np.zeros((0, 0))
        self.intercept = np.zeros(0)

    def _logits(self, Z: np.ndarray) -> np.ndarray:
        return Z @ self.coef.T + self.intercept

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef, "intercept": self.intercept}

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        self.coef, self.intercept = arrays["coef"], arrays["intercept"]

    # Fit in the span of the examples (see _fit); pays off for lbfgs, not for liblinear's
    # coordinate descent, which converges far slower in those rotated coordinates.
    in_span: ClassVar[bool] = False

    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None:
        # With fewer examples than dimensions the L2-regularised solution lies in the span of
        # the examples (representer theorem): fit in those n coordinates, map the weights back.
        # Same model, a fraction of lbfgs's time on 40 examples of 753-1152 dimensions.
        reduce = self.in_span and len(Z) < Z.shape[1]
        basis = np.linalg.svd(Z, full_matrices=False)[2] if reduce else None
        if basis is not None:
            Z = Z @ basis.T
        self._fit_linear(Z, Y)
        if basis is not None:
            self.coef = self.coef @ basis

    def _fit_linear(self, Z: np.ndarray, Y: np.ndarray) -> None:
        with warnings.catch_warnings():
            # Few examples in many dimensions are separable; C=1 keeps the weights finite and the
            # solver's iteration cap keeps fitting bounded in time: a non-converged fit is fine.
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.multi_label:
                rows = [self._binary(Z, Y[:, j]) for j in range(Y.shape[1])]
                self.coef = np.stack([coef for coef, _ in rows])
                self.intercept = np.array([intercept for _, intercept in rows])
            else:
                self.coef, self.intercept = self._multiclass(Z, Y.argmax(axis=1), Y.shape[1])

    def _binary(self, Z: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
        """One tag against the rest: (coef [dim], intercept)."""
        if y.all() or not y.any():
            return np.zeros(Z.shape[1]), _CONSTANT_LOGIT if y.all() else -_CONSTANT_LOGIT
        model = self._estimator().fit(Z, y)
        return model.coef_[0], float(model.intercept_[0])

    def _multiclass(
        self, Z: np.ndarray, y: np.ndarray, n_classes: int
    ) -> tuple[np.ndarray, np.ndarray]:
        model = self._estimator().fit(Z, y)
        if n_classes == 2:  # sklearn fits one row w for P(class 1) = sigmoid(w z + b)
            half = model.coef_[0] / 2, float(model.intercept_[0]) / 2
            return np.stack([-half[0], half[0]]), np.array([-half[1], half[1]])
        return model.coef_, model.intercept_

    @abstractmethod
    def _estimator(self) -> LogisticRegression | LinearSVC: ...


class LogisticHead(LinearHead):
    """Logistic regression (scikit-learn) on standardised features."""

    name = "logistic"
    in_span = True

    def _estimator(self) -> LogisticRegression:
        return LogisticRegression(C=1.0, max_iter=200, tol=1e-3)


class SVMHead(LinearHead):
    """Linear SVM (scikit-learn ``LinearSVC``) on standardised features."""

    name = "svm"

    def _estimator(self) -> LinearSVC:
        # C=0.01: on ~1000 standardised dimensions as accurate as C=1 in the few-shot
        # benchmark, and liblinear converges in a third of the iterations.
        return LinearSVC(C=SVM_C, max_iter=1000, random_state=0)


class KnnHead(Head):
    """k-nearest neighbours by cosine similarity; ``k`` defaults to the smallest class's size
    (capped), so a small class can still win a vote."""

    name = "knn"

    def __init__(
        self, multi_label: bool, k: int | None = None, scaling: Scaling = per_dimension
    ) -> None:
        super().__init__(multi_label, scaling)
        self.k = k
        self.points = np.zeros((0, 0))
        self.targets = np.zeros((0, 0))

    def _fit(self, Z: np.ndarray, Y: np.ndarray) -> None:
        if self.k is None:  # at most the smallest class's size, so a small class can win a vote
            self.k = int(min(MAX_NEIGHBOURS, max(1, Y.sum(axis=0).min())))
        self.points = l2_normalise(Z)
        self.targets = Y.astype(np.float64)

    def _logits(self, Z: np.ndarray) -> np.ndarray:
        k = min(int(self.k or 1), len(self.points))
        similarity = l2_normalise(Z) @ self.points.T
        # The k most similar examples; ties go to the earlier example, as a stable sort does.
        nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
        return self.targets[nearest].mean(axis=1)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"points": self.points, "targets": self.targets, "k": np.array(self.k or 1)}

    def _load(self, arrays: dict[str, np.ndarray]) -> None:
        self.points, self.targets = arrays["points"], arrays["targets"]
        self.k = int(arrays["k"])


HEADS: dict[str, type[Head]] = {
    head.name: head for head in (PrototypeHead, LogisticHead, SVMHead, KnnHead)
}
