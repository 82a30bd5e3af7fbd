"""The training curve: losses and validation figures against training time."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _figure(epoch: dict[str, float | None], key: str) -> float:
    """``epoch[key]``, NaN where it is missing or null (a figure that could not be computed)."""
    value = epoch.get(key)
    return math.nan if value is None else float(value)


def plot_history(history_path: Path, out: Path, title: str) -> None:
    """Plot a run's ``history.json`` (losses and validation ROC-AUC / PR-AUC, plus the clip-level
    agreement with a teacher when distilling, against minutes of training) to the image ``out``.
    """
    epochs = json.loads(history_path.read_text())
    minutes = [e["seconds"] / 60 for e in epochs]
    figure, (losses, scores) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    # the training loss includes the listwise term when a run used one (--listwise-weight)
    train_label = "training loss (BCE + any listwise term)"
    losses.plot(minutes, [e["train_loss"] for e in epochs], marker=".", label=train_label)
    losses.plot(minutes, [e["validation_loss"] for e in epochs], marker=".", label="validation BCE")
    losses.set_xlabel("training time (min)")
    losses.set_ylabel("loss")
    losses.legend()
    for key, label in (("roc_auc", "ROC-AUC (macro)"), ("pr_auc", "PR-AUC (macro)")):
        scores.plot(minutes, [_figure(e, key) for e in epochs], marker=".", label=label)
    pearson = [_figure(e, "clip_pearson") for e in epochs]
    if any(math.isfinite(r) for r in pearson):  # distillation
        scores.plot(minutes, pearson, marker=".", label="clip Pearson r with the teacher")
        overlap = [_figure(e, "clip_top5") / 5 for e in epochs]
        scores.plot(minutes, overlap, marker=".", label="clip top-5 overlap / 5")
    scores.set_xlabel("training time (min)")
    scores.set_ylabel("validation")
    scores.legend()
    figure.suptitle(title)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
