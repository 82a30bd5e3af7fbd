"""What a creation's answer warns about in the examples themselves, beside decoding problems.

Each is a mistake the service cannot refuse (it may be meant) but that the caller rarely means and
that no figure of the answer shows plainly:

* **the same audio twice** (the same file listed twice, two files of digital silence): under two
  labels no model can tell the two apart; under one label the copy counts twice in the fit and,
  held out by cross-validation, is scored against its own twin, so the estimate is optimistic;
* **classes that differ only in case** (``Rock`` and ``rock``): two tags, each with half the
  examples;
* **an estimate not above chance**: cross-validation finds nothing the examples tell apart;
* **``svm`` or ``knn`` with one example of some class** (the one-shot vote, asked for with
  ``classifier``): nothing is held out to calibrate them, so an ``svm`` vote's probabilities are
  nearly even and a ``knn`` vote's are steps, and in the ``knn`` vote the heaviest member decides
  the top tag alone (measured in docs/custom-models.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Two examples are "the same audio" when every feature agrees to this fraction of the feature's
# largest magnitude: far above the float32 noise of one clip embedded in different batches (up to
# 8e-6 relative, docs/custom-models.md), far below what two different recordings give.
SAME_TOLERANCE = 1e-4


def same_audio(embedded: dict[str, np.ndarray]) -> list[list[int]]:
    """Groups (two or more, ascending) of example indices whose features are all the same.

    ``embedded``: ``{feature: float32 [n_examples, dim]}``, every feature of the same examples.
    Returns the groups in order of their first example; examples alike to no other are in none.
    """
    matrices = list(embedded.values())
    count = len(matrices[0]) if matrices else 0
    tolerances = [SAME_TOLERANCE * max(float(np.abs(m).max(initial=0.0)), 1e-12) for m in matrices]
    grouped: set[int] = set()
    groups = []
    for first in range(count):
        if first in grouped:
            continue
        alike = np.ones(count - first - 1, bool)
        for matrix, tolerance in zip(matrices, tolerances, strict=True):
            alike &= np.abs(matrix[first + 1 :] - matrix[first]).max(axis=1) <= tolerance
        others = [first + 1 + int(i) for i in np.flatnonzero(alike) if first + 1 + i not in grouped]
        if others:
            groups.append([first, *others])
            grouped.update(others)
    return groups


def _examples(indices: Sequence[int], filenames: Sequence[str]) -> str:
    named = [f"{i + 1} ({filenames[i]!r})" for i in indices]
    return ", ".join(named[:-1]) + f" and {named[-1]}"


def same_audio_warnings(
    groups: list[list[int]], filenames: Sequence[str], tags: Sequence[Sequence[str]]
) -> list[str]:
    """One warning per group of :func:`same_audio`, saying what it does to the model.

    ``filenames`` and ``tags`` (each example's tags, in order) are indexed as the examples."""
    warnings = []
    for group in groups:
        labels = list(dict.fromkeys("|".join(sorted(tags[i])) for i in group))
        where = f"examples {_examples(group, filenames)} are the same audio to the tagger"
        if len(labels) > 1:
            quoted = " and ".join(repr(label) for label in labels)
            warnings.append(
                f"{where} but labelled {quoted}: no model can tell them apart; a clip with "
                "several tags is one example whose label joins them with '|' (a multi-label "
                "model)"
            )
        else:
            warnings.append(
                f"{where}, all labelled {labels[0]!r}: each copy counts again in the fit, and "
                "held out by cross-validation it is scored against its own twin, so the "
                "estimate is optimistic"
            )
    return warnings


def case_warnings(classes: Sequence[str]) -> list[str]:
    """A warning for each set of ``classes`` that differ only in case (``Rock``, ``rock``)."""
    spellings: dict[str, list[str]] = {}
    for tag in classes:
        spellings.setdefault(tag.casefold(), []).append(tag)
    return [
        f"classes {alike} differ only in case: they are separate tags, each with its own "
        "examples; give them one spelling if they are one"
        for alike in spellings.values()
        if len(alike) > 1
    ]


def chance_warning(value: float | None, metric: str, chance: float) -> list[str]:
    """A warning when the estimate (``value``, None when not estimated) is not above chance."""
    if value is None or value > chance:
        return []
    return [
        f"the estimate ({metric} {value:.3f}) is not above chance ({chance:.3f}): on held-out "
        "examples the model did no better than a fixed answer (the chance level); more "
        "examples, or examples that differ more between classes, may help"
    ]


def one_shot_warnings(classifier: str, weights: dict[str, float]) -> list[str]:
    """What the one-shot vote of ``classifier`` (one example of some class) gives instead of
    probabilities to read as such; ``weights``: each member's feature and weight in the vote.

    ``svm``: squashed margins, nearly even (the top tag 0.19-0.22 of 8 classes on the few-shot
    benchmark's tasks, about 0.6 of 2). ``knn``: each head answers its one nearest example's
    class with probability 1, so the vote's probabilities are the shares of weight that agree,
    and a member weighing more than the others together decides the top tag alone (``auto``'s
    MFCC statistics, 0.6 of the vote). Neither fails: both rank the tags (docs/custom-models.md).
    """
    if classifier == "svm":
        return [
            "one example of some class: the svm heads of the one-shot vote have no held-out "
            "examples to calibrate them, so their probabilities are squashed margins, nearly "
            "even (about 0.2 for the top tag of 8 classes, 0.6 of 2): they rank the tags; do "
            "not read them as confidences or threshold them (classifier logistic, the default, "
            "gives probabilities that spread)"
        ]
    if classifier != "knn":
        return []
    warning = (
        "one example of some class: each knn head answers the class of its one nearest example "
        "with probability 1, so the probabilities are the shares of the vote's weight that "
        "agree (1.0 when every member does), not confidences"
    )
    total = sum(weights.values())
    heaviest, weight = max(weights.items(), key=lambda item: item[1])
    if len(weights) > 1 and weight > total - weight:
        warning += (
            f", and {heaviest} (weight {weight:g} of {total:g}) outweighs the other members "
            "together: its nearest example alone decides the top tag"
        )
    return [warning]
