"""The training loop shared by every architecture: BCE on random patches, early stopping on a
validation figure, a wall-clock budget, a checkpoint of the best epoch and one to resume from.

An "epoch" is a fixed number of random batches (windows are drawn with replacement), so epochs
cost the same whatever the data size and the validation curve is sampled regularly. The figure
that picks the best epoch is macro ROC-AUC, or, when distilling, the clip-level Pearson
correlation with the teacher (``select_on``). The learning rate either halves after two epochs
without progress (``plateau``) or follows a cosine from its start to 1/100 of it over the time
budget (``cosine``), which suits a run whose length is fixed by the clock. ``last.pt`` holds
everything needed to resume (weights, optimiser, schedule, history, random states, time spent).

``device="cuda"`` trains on the GPU (batches are still read on the CPU; checkpoints hold CPU
tensors, so every run resumes, averages and exports on any machine). Resuming is exact on the CPU;
on a GPU, cuDNN's kernels and the GPU's own random generator (dropout) make it close, not
bit-identical.

``precision="bfloat16"`` runs each training step's forward pass under ``torch.autocast``
(convolutions and matrix products in bfloat16, weights, optimiser state, loss and validation in
float32: mixed precision, Micikevicius et al. 2018, with bfloat16 needing no loss scaling). On a
CPU with AVX-512 BF16 or AMX it makes a ``sample_cnn`` step about 3x faster; elsewhere oneDNN
emulates it, slower than float32.

``listwise_weight`` > 0 adds a listwise distillation term to the BCE (distillation only): the
KL divergence from the softmax over tags of the teacher's logits to the student's, both divided
by ``listwise_temperature`` and the term scaled by its square (Hinton et al. 2015's soft targets;
a softmax across tags is ListNet's top-one probability, Cao et al. 2007). BCE fits each tag's
probability on its own; this term weighs the tags by how high the teacher ranks them, which is
what a user's top tags depend on.

``tag_balance`` > 0 draws training windows in proportion to ``n ** -tag_balance``, ``n`` being how
many windows share the window's top teacher tag (:func:`~taggram.models.training.dataset.
tag_balanced_weights`): the student then sees rarer kinds of music more often than the data holds
them, instead of learning the data's own prior.

``mix_fraction`` > 0 replaces that share of each batch by mixes of two training patches labelled
by the teacher on the mixed audio at training time (:mod:`~taggram.models.training.mixing`).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from taggram.models.architectures import build
from taggram.models.architectures.waveform import SampleCNN
from taggram.models.training.dataset import Windows, random_batch, tag_balanced_weights
from taggram.models.training.metrics import (
    CLIP_SECONDS,
    binarize,
    clip_agreement,
    scored_tags,
    tagging_metrics,
)
from taggram.models.training.mixing import OnlineTeacher, mixed_batch
from taggram.models.training.patching import patch_spec
from taggram.repository import ModelEntry

CHECKPOINT = "best.pt"
LAST = "last.pt"
HISTORY = "history.json"
# with keep_epochs: one checkpoint per epoch, which taggram.models.training.averaging reads
EPOCHS = "epochs"
CALIBRATION_PATCHES = 64  # real patches that give a warm-started model its batch-norm statistics
PRECISIONS = ("float32", "bfloat16")
DEVICES = ("cpu", "cuda")
SCHEDULES = ("plateau", "cosine")
# validation figures that can pick the best epoch (clip_pearson needs a teacher's soft targets)
SELECTION_FIGURES = ("roc_auc", "clip_pearson")
COSINE_FLOOR = 0.01  # the cosine schedule ends at this fraction of the initial learning rate


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
    select_on: str = "roc_auc"  # or "clip_pearson" (distillation)
    schedule: str = "plateau"  # or "cosine" (needs time_budget_s)
    initialise_from: str | None = None  # an exported sample_cnn's model.onnx to start from
    precision: str = "float32"  # or "bfloat16": mixed precision for the training steps
    keep_epochs: bool = False  # also save every epoch's weights (epochs/epoch_NNN.pt), for SWA
    listwise_weight: float = 0.0  # weight of the listwise distillation term (0: BCE only)
    listwise_temperature: float = 1.0
    tag_balance: float = 0.0  # exponent of the tag-balanced sampling (0: uniform draws)
    device: str = "cpu"  # or "cuda"
    mix_fraction: float = 0.0  # share of each batch mixed and labelled by the teacher online
    # Fine-tuning: batch norm keeps its running statistics and normalises with them (eval mode)
    # while the rest trains. A fine-tune's new data mix otherwise moves the statistics, and the
    # statistics alone cost 2.2.0 most of its speech agreement (docs/training.md).
    freeze_batch_norm: bool = False
    # Fine-tuning some layers only: parameters whose names this matches (re.match, e.g.
    # frontend\.[0-9]\. for the first blocks) keep their values ("": every one trains).
    frozen_parameters: str = ""

    def __post_init__(self) -> None:
        """Refuse settings no run can use, before any data is read or a teacher runs.

        Raises ``ValueError`` naming the setting.
        """
        # isfinite also refuses NaN, which passes a plain "< 0" test and makes every loss NaN
        if not (math.isfinite(self.listwise_weight) and self.listwise_weight >= 0) or not (
            math.isfinite(self.listwise_temperature) and self.listwise_temperature > 0
        ):
            raise ValueError(
                "the listwise weight must be a finite number >= 0 and its temperature a finite "
                f"number > 0, got {self.listwise_weight} and {self.listwise_temperature}"
            )
        if self.batch_size < 2:
            raise ValueError(
                f"a batch needs at least 2 patches (batch norm normalises over the batch in "
                f"training), got {self.batch_size}"
            )
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(
                f"the learning rate must be a finite number > 0, got {self.learning_rate}"
            )
        if self.time_budget_s is not None and not (
            math.isfinite(self.time_budget_s) and self.time_budget_s > 0
        ):
            raise ValueError(
                f"the time budget must be a finite time > 0, got {self.time_budget_s} s"
            )
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError(
                f"device 'cuda': torch {torch.__version__} sees no CUDA GPU (a CPU build of "
                "torch, or no GPU on this machine)"
            )
        if not 0 <= self.tag_balance <= 1:
            raise ValueError(f"the tag balance must be within [0, 1], got {self.tag_balance}")
        if not 0 <= self.mix_fraction < 1:
            raise ValueError(
                "the mixed share of a batch must be within [0, 1) (a batch keeps one real patch "
                f"at least), got {self.mix_fraction}"
            )
        for name, value, allowed in (
            ("precision", self.precision, PRECISIONS),
            ("schedule", self.schedule, SCHEDULES),
            ("select_on", self.select_on, SELECTION_FIGURES),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.schedule == "cosine" and self.time_budget_s is None:
            raise ValueError("the cosine schedule runs over the time budget: give one")
        try:
            re.compile(self.frozen_parameters)
        except re.error as error:
            raise ValueError(
                f"frozen_parameters {self.frozen_parameters!r} is no regular expression: {error}"
            ) from error
        if self.initialise_from and self.architecture != "sample_cnn":
            raise ValueError(f"a warm start needs a sample_cnn, not {self.architecture!r}")


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
    clip_pearson: float = float("nan")
    clip_top5: float = float("nan")
    clips: float = 0.0

    def as_json(self) -> dict[str, float | int | None]:
        """The record for ``history.json`` and the log line: a figure that could not be computed
        (NaN: the clip agreement of labelled data or of files shorter than a clip) is ``null``,
        since strict JSON readers (jq, JavaScript, ``json.loads(..., parse_constant=...)``)
        refuse NaN."""
        return {
            key: None if isinstance(value, float) and math.isnan(value) else value
            for key, value in asdict(self).items()
        }


def predict(module: nn.Module, windows: Windows, samples: int, batch_size: int) -> np.ndarray:
    """Sigmoid outputs for every window, unshifted, in eval mode, on the module's device."""
    module.eval()
    device = next(module.parameters()).device
    scores = []
    with torch.no_grad():
        for first in range(0, len(windows), batch_size):
            chosen = range(first, min(first + batch_size, len(windows)))
            audio = torch.from_numpy(np.stack([windows.patch(w, samples) for w in chosen]))
            scores.append(torch.sigmoid(module(audio.to(device))["logits"]).cpu().numpy())
    return np.concatenate(scores)


def evaluate(
    module: nn.Module, windows: Windows, samples: int, batch_size: int
) -> tuple[float, dict[str, float]]:
    """Validation BCE and the tagging metrics of ``taggram.models.training.metrics`` (plus the
    clip-level agreement when the targets are soft, i.e. a teacher's).
    """
    scores = predict(module, windows, samples, batch_size)
    probabilities = torch.from_numpy(np.clip(scores, 1e-7, 1 - 1e-7))
    loss = nn.functional.binary_cross_entropy(probabilities, torch.from_numpy(windows.targets))
    metrics = tagging_metrics(windows.targets, scores)
    if not np.isin(windows.targets, (0.0, 1.0)).all():
        clips = windows.clips(round(CLIP_SECONDS * 16000))
        metrics.update(clip_agreement(windows.targets, scores, clips))
    return float(loss), metrics


def training_loss(
    module: nn.Module,
    audio: torch.Tensor,
    targets: torch.Tensor,
    precision: str,
    listwise_weight: float = 0.0,
    listwise_temperature: float = 1.0,
) -> torch.Tensor:
    """Mean BCE of ``module``'s logits on ``audio`` [batch, samples] (float32, 16 kHz) against
    ``targets`` [batch, tags] (probabilities in [0, 1]), plus ``listwise_weight`` times the
    listwise distillation term (module docstring); the forward pass in ``precision``
    (``PRECISIONS``) on the device ``audio`` is on, the loss itself always in float32.
    """
    autocast = torch.autocast(
        audio.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"
    )
    with autocast:
        logits = module(audio)["logits"]
    logits = logits.float()
    loss = nn.functional.binary_cross_entropy_with_logits(logits, targets)
    if listwise_weight:
        loss = loss + listwise_weight * listwise_distillation(logits, targets, listwise_temperature)
    return loss


def listwise_distillation(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(softmax(teacher logits / T) || softmax(logits / T)) * T^2, mean over the batch.

    ``logits``: the student's [batch, tags]; ``targets``: the teacher's probabilities [batch,
    tags], turned back into logits (clipped to [1e-6, 1 - 1e-6]).
    """
    teacher = torch.logit(targets.clamp(1e-6, 1 - 1e-6))
    return (
        nn.functional.kl_div(
            nn.functional.log_softmax(logits / temperature, dim=1),
            nn.functional.log_softmax(teacher / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        * temperature**2
    )


def _validation_subset(windows: Windows, limit: int, seed: int) -> Windows:
    """At most about ``limit`` windows: whole 30 s clips drawn at random (so that clip-level
    figures average complete clips).
    """
    if len(windows) <= limit:
        return windows
    clips = windows.clips(round(CLIP_SECONDS * 16000))
    keep = np.zeros(len(windows), dtype=bool)
    for clip in np.random.default_rng(seed).permutation(np.unique(clips)):
        if keep.sum() >= limit:
            break
        keep |= clips == clip
    return windows.subset(keep)


def _on_cpu(state: Any) -> Any:
    """``state`` (a state dict, nested dicts and lists of tensors) with every tensor on the CPU,
    so that a checkpoint written on a GPU loads anywhere.
    """
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {key: _on_cpu(value) for key, value in state.items()}
    if isinstance(state, list):
        return [_on_cpu(value) for value in state]
    return state


def cosine_learning_rate(config: TrainConfig, elapsed: float) -> float:
    """The cosine schedule's learning rate after ``elapsed`` seconds of the time budget."""
    assert config.time_budget_s is not None
    progress = min(1.0, elapsed / config.time_budget_s)
    return config.learning_rate * (
        COSINE_FLOOR + (1 - COSINE_FLOOR) * 0.5 * (1 + math.cos(math.pi * progress))
    )


def _warm_start(module: nn.Module, config: TrainConfig, windows: Windows, samples: int) -> None:
    """Initialise ``module`` from ``config.initialise_from`` (see warm_start)."""
    from taggram.models.training.warm_start import initialise_from_onnx

    assert config.initialise_from is not None and isinstance(module, SampleCNN)
    calibration, _ = random_batch(windows, samples, CALIBRATION_PATCHES, random.Random(config.seed))
    initialise_from_onnx(module, Path(config.initialise_from), calibration)


def _train_mode(module: nn.Module, freeze_batch_norm: bool) -> None:
    """``module`` in training mode, its batch norm layers kept in eval mode with
    ``freeze_batch_norm`` (normalised by their running statistics, which stay as they are; their
    scale and shift still train)."""
    module.train()
    if freeze_batch_norm:
        for layer in module.modules():
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):
                layer.eval()


def train(
    config: TrainConfig,
    train_set: Windows,
    validation_set: Windows,
    tags: list[str],
    out_dir: Path,
    info: dict[str, Any],
    resume: Path | None = None,
    teacher: ModelEntry | None = None,
) -> Path:
    """Train, keep the best epoch's weights in ``out_dir/best.pt``; return that path.

    ``info`` (data, teacher, licences ...) travels in the checkpoint into the exported metadata.
    ``resume``: a ``last.pt`` to continue from (its weights, optimiser, schedule, history, random
    states and elapsed time; the time budget counts the time already spent). ``teacher`` labels
    the mixed patches of ``config.mix_fraction``.
    Raises ``ValueError`` if either set of windows is empty, the validation windows cannot give
    the ROC-AUC that picks the best epoch (no tag with both classes), ``resume`` holds another
    architecture or tag list or, resumed into another folder, has no best epoch with it
    (:func:`_best_of_resumed_run`), the warm start's model does not fit the module
    (``warm_start.initialise_from_onnx``), or mixing has no teacher (or one whose input is
    longer than the student's patch).
    """
    if not len(train_set) or not len(validation_set):
        raise ValueError(
            f"{len(train_set)} training and {len(validation_set)} validation windows; both are "
            "needed (a validation fraction of 0 holds nothing out, and when distilling a file "
            "too short to hold a student patch centred on a teacher window gives no window)"
        )
    validation = _validation_subset(validation_set, config.max_validation_windows, config.seed)
    if config.select_on == "roc_auc" and not scored_tags(binarize(validation.targets)).any():
        # every epoch's figure would be NaN: none would ever be kept as the best
        raise ValueError(
            f"no tag has both positive and negative windows among the {len(validation)} "
            "validation windows, so ROC-AUC cannot pick an epoch: hold out more files (a "
            "larger validation fraction) or give the labels a split column"
        )
    mixed = round(config.batch_size * config.mix_fraction)
    if mixed and teacher is None:
        raise ValueError("mixed patches are labelled by the teacher online: give the teacher")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = patch_spec(config.architecture).samples
    online_teacher = OnlineTeacher(teacher, samples, config.threads) if teacher and mixed else None
    module = build(config.architecture, len(tags), **config.architecture_options)
    state = None if resume is None else read_checkpoint(resume)
    if state is not None:
        if state["architecture"] != config.architecture or state["tags"] != tags:
            raise ValueError(f"{resume} is a checkpoint of another architecture or tag list")
        module.load_state_dict(state["state_dict"])
        if resume is not None and not (out_dir / CHECKPOINT).exists():
            # Resumed into another folder: no epoch may beat the resumed best, and the run
            # ended in an error after training, with nothing to read as its best.
            torch.save(_best_of_resumed_run(resume, state), out_dir / CHECKPOINT)
    elif config.initialise_from:
        _warm_start(module, config, train_set, samples)
    # the optimiser is made on the device, so a resumed Adam state is cast there
    module.to(config.device)
    if config.frozen_parameters:
        frozen = [
            parameter
            for name, parameter in module.named_parameters()
            if re.match(config.frozen_parameters, name)
        ]
        if not frozen:
            raise ValueError(
                f"frozen_parameters {config.frozen_parameters!r} matches no parameter of "
                f"{config.architecture}"
            )
        for parameter in frozen:  # no gradient: Adam leaves them as they are
            parameter.requires_grad_(False)
    optimizer = torch.optim.Adam(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.5, patience=2
    )
    history: list[Epoch] = []
    best, stale, stop_reason, spent = -np.inf, 0, "max_epochs", 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history = [Epoch(**e) for e in state["history"]]
        best, stale, spent = state["best"], state["stale"], state["seconds"]
        rng.setstate(state["random_state"])
        torch.set_rng_state(state["torch_random_state"])
    cumulative_weights = (
        np.cumsum(tag_balanced_weights(train_set.targets, config.tag_balance)).tolist()
        if config.tag_balance
        else None
    )
    started = time.monotonic() - spent
    for epoch in range(len(history) + 1, config.max_epochs + 1):
        epoch_started = time.monotonic()
        _train_mode(module, config.freeze_batch_norm)
        losses = []
        for _ in tqdm(range(config.steps_per_epoch), desc=f"epoch {epoch}", leave=False):
            if config.schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = cosine_learning_rate(config, time.monotonic() - started)
            audio, targets = random_batch(
                train_set, samples, config.batch_size - mixed, rng, cumulative_weights
            )
            if online_teacher is not None:
                mixes, mix_targets = mixed_batch(
                    train_set, samples, mixed, rng, online_teacher, cumulative_weights
                )
                audio, targets = torch.cat((audio, mixes)), torch.cat((targets, mix_targets))
            loss = training_loss(
                module,
                audio.to(config.device, non_blocking=True),
                targets.to(config.device, non_blocking=True),
                config.precision,
                config.listwise_weight,
                config.listwise_temperature,
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        validation_loss, metrics = evaluate(module, validation, samples, 2 * config.batch_size)
        record = Epoch(
            epoch=epoch,
            # a resumed run may use another epoch length: count the steps actually taken
            steps=(history[-1].steps if history else 0) + config.steps_per_epoch,
            seconds=round(time.monotonic() - started, 1),
            learning_rate=optimizer.param_groups[0]["lr"],
            train_loss=float(np.mean(losses)),
            validation_loss=validation_loss,
            **metrics,
        )
        history.append(record)
        print(json.dumps(record.as_json(), allow_nan=False), flush=True)
        (out_dir / HISTORY).write_text(
            json.dumps([e.as_json() for e in history], indent=1, allow_nan=False)
        )
        figure = float(metrics[config.select_on])
        if config.schedule == "plateau":
            scheduler.step(figure)
        checkpoint = {
            "architecture": config.architecture,
            "architecture_options": config.architecture_options,
            "tags": tags,
            "state_dict": _on_cpu(module.state_dict()),
            "epoch": epoch,
            "metrics": metrics,
            "config": asdict(config),
            "info": info,
        }
        if figure > best:
            best, stale = figure, 0
            torch.save(checkpoint, out_dir / CHECKPOINT)
        else:
            stale += 1
        last = {
            **checkpoint,
            "optimizer": _on_cpu(optimizer.state_dict()),
            "scheduler": scheduler.state_dict(),
            "history": [asdict(e) for e in history],
            "best": best,
            "stale": stale,
            "seconds": time.monotonic() - started,
            "random_state": rng.getstate(),
            "torch_random_state": torch.get_rng_state(),
        }
        if config.keep_epochs:
            (out_dir / EPOCHS).mkdir(exist_ok=True)
            torch.save(checkpoint, out_dir / EPOCHS / f"epoch_{epoch:03d}.pt")
        torch.save(last, out_dir / f"{LAST}.partial")
        (out_dir / f"{LAST}.partial").replace(out_dir / LAST)
        if stale >= config.patience:
            stop_reason = "early stopping"
            break
        elapsed, last_epoch = time.monotonic() - started, time.monotonic() - epoch_started
        if config.time_budget_s is not None and elapsed + last_epoch > config.time_budget_s:
            stop_reason = "time budget"
            break
    final = read_checkpoint(out_dir / CHECKPOINT)
    final["run"] = {
        "epochs_run": len(history),
        "steps_run": history[-1].steps if history else 0,
        "training_seconds": round(time.monotonic() - started, 1),
        "stopped_by": stop_reason,
    }
    torch.save(final, out_dir / CHECKPOINT)
    return out_dir / CHECKPOINT


# Fields of an epoch's history record that are the run's, not the validation metrics.
_RUN_FIELDS = frozenset(
    {"epoch", "steps", "seconds", "learning_rate", "train_loss", "validation_loss"}
)


def _best_of_resumed_run(resume: Path, state: dict[str, Any]) -> dict[str, Any]:
    """The best epoch's checkpoint of the run that ``resume`` continues: the ``best.pt`` beside
    it, or the shipped epoch an exported ``checkpoint.pt`` carries (``shipped_state_dict``).

    Raises ``ValueError`` when there is neither, before any training.
    """
    beside = resume.parent / CHECKPOINT
    if beside.is_file():
        return read_checkpoint(beside)
    if "shipped_state_dict" not in state:
        raise ValueError(
            f"{resume}: its run's {CHECKPOINT} is not beside it; resume into that run's folder "
            f"or copy its {CHECKPOINT} next to the file"
        )
    epoch = state["shipped_epoch"]
    (record,) = [e for e in state["history"] if e["epoch"] == epoch]
    return {
        **{key: state[key] for key in ("architecture", "architecture_options", "tags")},
        **{key: state[key] for key in ("config", "info")},
        "state_dict": state["shipped_state_dict"],
        "epoch": epoch,
        "metrics": {key: value for key, value in record.items() if key not in _RUN_FIELDS},
    }


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The dict a training run saved at ``path`` (``best.pt``, ``last.pt``, an epoch's or an
    average's), its tensors on the CPU.

    Raises ``ValueError`` when ``path`` is not such a checkpoint (another file given by mistake),
    instead of the unpickler's own error.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a wrong file fails anywhere in unpickling, with any type
        raise ValueError(f"{path} is not a checkpoint of taggram train ({error})") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{path} is not a checkpoint of taggram train (no state_dict in it)")
    return checkpoint


def load_checkpoint(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The module of a checkpoint (eval mode) and the checkpoint dict; ``ValueError`` as
    :func:`read_checkpoint`."""
    checkpoint = read_checkpoint(path)
    module = build(
        checkpoint["architecture"], len(checkpoint["tags"]), **checkpoint["architecture_options"]
    )
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), checkpoint
