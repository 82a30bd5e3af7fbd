"""The training loop shared by every architecture: BCE on random patches, early stopping on
validation macro ROC-AUC, a wall-clock budget, and a checkpoint of the best epoch.

An "epoch" is a fixed number of random batches (windows are drawn with replacement), so epochs
cost the same whatever the data size and the validation curve is sampled regularly.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from taggram.models.architectures import build
from taggram.models.training.dataset import Windows, random_batch
from taggram.models.training.metrics import tagging_metrics
from taggram.models.training.patching import patch_spec

CHECKPOINT = "best.pt"
HISTORY = "history.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run is configured with (recorded in the exported metadata).

    ``time_budget_s`` stops training after that many seconds of wall time; ``patience`` is in
    epochs without a better validation ROC-AUC.
    """

    architecture: str = "sample_cnn"
    architecture_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    steps_per_epoch: int = 150
    max_epochs: int = 200
    patience: int = 6
    time_budget_s: float | None = None
    max_validation_windows: int = 800
    seed: int = 0
    threads: int = 2


@dataclass(frozen=True)
class Epoch:
    """One epoch's record in ``history.json``: seconds since training started, losses (BCE) and
    validation macro ROC-AUC / PR-AUC over the tags that have positives.
    """

    epoch: int
    steps: int
    seconds: float  # since training started
    learning_rate: float
    train_loss: float
    validation_loss: float
    roc_auc: float
    pr_auc: float
    tags_scored: float


def predict(module: nn.Module, windows: Windows, samples: int, batch_size: int) -> np.ndarray:
    """Sigmoid outputs for every window, unshifted, in eval mode."""
    module.eval()
    scores = []
    with torch.no_grad():
        for first in range(0, len(windows), batch_size):
            chosen = range(first, min(first + batch_size, len(windows)))
            audio = torch.from_numpy(np.stack([windows.patch(w, samples) for w in chosen]))
            scores.append(torch.sigmoid(module(audio)["logits"]).numpy())
    return np.concatenate(scores)


def evaluate(
    module: nn.Module, windows: Windows, samples: int, batch_size: int
) -> tuple[float, dict[str, float]]:
    """Validation BCE and the tagging metrics of ``taggram.models.training.metrics``."""
    scores = predict(module, windows, samples, batch_size)
    probabilities = torch.from_numpy(np.clip(scores, 1e-7, 1 - 1e-7))
    loss = nn.functional.binary_cross_entropy(probabilities, torch.from_numpy(windows.targets))
    return float(loss), tagging_metrics(windows.targets, scores)


def _validation_subset(windows: Windows, limit: int, seed: int) -> Windows:
    if len(windows) <= limit:
        return windows
    keep = np.sort(np.random.default_rng(seed).choice(len(windows), limit, replace=False))
    return windows.subset(keep)


def train(
    config: TrainConfig,
    train_set: Windows,
    validation_set: Windows,
    tags: list[str],
    out_dir: Path,
    info: dict[str, Any],
) -> Path:
    """Train, keep the best epoch's weights in ``out_dir/best.pt``; return that path.

    ``info`` (data, teacher, licences ...) travels in the checkpoint into the exported metadata.
    """
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = patch_spec(config.architecture).samples
    module = build(config.architecture, len(tags), **config.architecture_options)
    optimizer = torch.optim.Adam(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=2
    )
    validation = _validation_subset(validation_set, config.max_validation_windows, config.seed)
    history: list[Epoch] = []
    best, stale, stop_reason = -np.inf, 0, "max_epochs"
    started = time.monotonic()
    for epoch in range(1, config.max_epochs + 1):
        epoch_started = time.monotonic()
        module.train()
        losses = []
        for _ in tqdm(range(config.steps_per_epoch), desc=f"epoch {epoch}", leave=False):
            audio, targets = random_batch(train_set, samples, config.batch_size, rng)
            loss = nn.functional.binary_cross_entropy_with_logits(module(audio)["logits"], targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        validation_loss, metrics = evaluate(module, validation, samples, 2 * config.batch_size)
        record = Epoch(
            epoch=epoch,
            steps=epoch * config.steps_per_epoch,
            seconds=round(time.monotonic() - started, 1),
            learning_rate=optimizer.param_groups[0]["lr"],
            train_loss=float(np.mean(losses)),
            validation_loss=validation_loss,
            **metrics,
        )
        history.append(record)
        print(json.dumps(asdict(record)), flush=True)
        (out_dir / HISTORY).write_text(json.dumps([asdict(e) for e in history], indent=1))
        scheduler.step(record.roc_auc)
        if record.roc_auc > best:
            best, stale = record.roc_auc, 0
            checkpoint = {
                "architecture": config.architecture,
                "architecture_options": config.architecture_options,
                "tags": tags,
                "state_dict": module.state_dict(),
                "epoch": epoch,
                "metrics": metrics,
                "config": asdict(config),
                "info": info,
            }
            torch.save(checkpoint, out_dir / CHECKPOINT)
        else:
            stale += 1
        if stale >= config.patience:
            stop_reason = "early stopping"
            break
        elapsed, last = time.monotonic() - started, time.monotonic() - epoch_started
        if config.time_budget_s is not None and elapsed + last > config.time_budget_s:
            stop_reason = "time budget"
            break
    final = torch.load(out_dir / CHECKPOINT, weights_only=False)
    final["run"] = {
        "epochs_run": len(history),
        "steps_run": len(history) * config.steps_per_epoch,
        "training_seconds": round(time.monotonic() - started, 1),
        "stopped_by": stop_reason,
    }
    torch.save(final, out_dir / CHECKPOINT)
    return out_dir / CHECKPOINT


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The module of a checkpoint (eval mode) and the checkpoint dict."""
    checkpoint = torch.load(path, weights_only=False)
    module = build(
        checkpoint["architecture"], len(checkpoint["tags"]), **checkpoint["architecture_options"]
    )
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), checkpoint
