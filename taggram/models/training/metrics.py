"""Tagging figures: macro ROC-AUC and PR-AUC (sklearn), also against a teacher's soft targets.

Soft targets are turned into labels by taking each window's ``top_k`` teacher tags as its
positives: a threshold such as 0.5 leaves most windows of a musicnn teacher without any positive
(its top probability is often below 0.5), while the top few tags are what a user reads off it.
Tags with only one class among the windows are left out of the macro average (AUC is undefined
there); how many remained is reported.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

TOP_K = 3
# Clip-level agreement: clips of 30 s (as in ../shared/audio), compared on their top 5 tags.
CLIP_SECONDS = 30.0
CLIP_TOP = 5


def binarize(targets: np.ndarray, top_k: int = TOP_K) -> np.ndarray:
    """0/1 labels as they are; soft targets → 1 for each row's ``top_k`` largest."""
    if np.isin(targets, (0.0, 1.0)).all():
        return targets.astype(np.int64)
    labels = np.zeros(targets.shape, dtype=np.int64)
    top = np.argsort(-targets, axis=1)[:, :top_k]
    np.put_along_axis(labels, top, 1, axis=1)
    return labels


def scored_tags(labels: np.ndarray) -> np.ndarray:
    """bool [tags]: the tags of 0/1 ``labels`` [windows, tags] with both classes among the
    windows, those a macro ROC-AUC or PR-AUC can average over.
    """
    positives = labels.sum(axis=0)
    return np.asarray((positives > 0) & (positives < len(labels)))


def tagging_metrics(
    targets: np.ndarray, scores: np.ndarray, top_k: int = TOP_K
) -> dict[str, float]:
    """Macro ROC-AUC, macro PR-AUC and the number of tags they average over."""
    labels = binarize(targets, top_k)
    scored = scored_tags(labels)
    if not scored.any():
        return {"roc_auc": float("nan"), "pr_auc": float("nan"), "tags_scored": 0.0}
    return {
        "roc_auc": float(roc_auc_score(labels[:, scored], scores[:, scored], average="macro")),
        "pr_auc": float(
            average_precision_score(labels[:, scored], scores[:, scored], average="macro")
        ),
        "tags_scored": float(scored.sum()),
    }


def clip_agreement(
    targets: np.ndarray, scores: np.ndarray, clips: np.ndarray, top: int = CLIP_TOP
) -> dict[str, float]:
    """Agreement of clip-level tag vectors, as a user of the service sees it.

    ``targets`` and ``scores``: float [windows, tags] (the teacher's and the student's
    probabilities); ``clips``: int [windows], the clip of each window. Each clip's vectors are the
    means over its windows; returned are the means over clips of their Pearson correlation
    (``clip_pearson``) and of the number of the target's top ``top`` tags also in the score's top
    ``top`` (``clip_top5``, 0 to ``top``), and the number of clips.
    """
    pearson, overlap = [], []
    for clip in np.unique(clips):
        rows = clips == clip
        t, s = targets[rows].mean(axis=0), scores[rows].mean(axis=0)
        pearson.append(float(np.corrcoef(t, s)[0, 1]))
        overlap.append(len(set(np.argsort(-t)[:top]) & set(np.argsort(-s)[:top])))
    return {
        "clip_pearson": float(np.mean(pearson)),
        "clip_top5": float(np.mean(overlap)),
        "clips": float(len(pearson)),
    }
