"""Weight averaging of a run's last epochs: stochastic weight averaging (SWA).

Izmailov et al., "Averaging Weights Leads to Wider Optima and Better Generalization", UAI 2018:
the mean of the weights a run passes through near the end of its schedule generalises better
than any one of them, and it removes the epoch-to-epoch noise that picking the "best" epoch on a
small validation set rewards. A batch norm's running statistics are not the statistics of the
averaged weights' activations, so they are recomputed on training patches
(``torch.optim.swa_utils.update_bn``, the reference implementation's way).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from taggram.models.architectures import build
from taggram.models.training.trainer import read_checkpoint

# checkpoint entries that only make sense for one epoch's run state
_RUN_STATE = ("optimizer", "scheduler", "random_state", "torch_random_state", "stale", "best")


def average_checkpoints(
    paths: list[Path], calibration: Iterable[torch.Tensor]
) -> tuple[nn.Module, dict[str, Any]]:
    """The mean of the weights of ``paths`` (checkpoints of one run: ``best.pt``, ``last.pt`` or
    copies of it), with batch-norm statistics recomputed on ``calibration`` (batches of training
    patches, float32 ``[batch, samples]``).

    Returns the module (eval mode) and a checkpoint dict in the trainer's format (that of the
    latest epoch, with the averaged ``state_dict`` and an ``averaged`` record of the epochs), which
    ``taggram export`` takes as it is. Raises ``ValueError`` if the checkpoints differ in
    architecture, its options or tags, or if ``paths`` is empty.
    """
    if not paths:
        raise ValueError("no checkpoints to average")
    checkpoints = sorted(
        (read_checkpoint(path) for path in paths),
        key=lambda c: c["epoch"],
    )
    first = checkpoints[0]
    for checkpoint in checkpoints[1:]:
        for key in ("architecture", "architecture_options", "tags"):
            if checkpoint[key] != first[key]:
                raise ValueError(f"the checkpoints differ in {key}: not one run's epochs")
    module = build(first["architecture"], len(first["tags"]), **first["architecture_options"])
    states = [c["state_dict"] for c in checkpoints]
    averaged = {
        name: torch.stack([s[name] for s in states]).mean(dim=0)
        if value.is_floating_point()
        else states[-1][name]  # counters such as num_batches_tracked
        for name, value in states[-1].items()
    }
    module.load_state_dict(averaged)
    torch.optim.swa_utils.update_bn(calibration, module)
    module.eval()
    latest = {k: v for k, v in checkpoints[-1].items() if k not in _RUN_STATE}
    latest["state_dict"] = module.state_dict()
    latest["averaged"] = {"epochs": [c["epoch"] for c in checkpoints]}
    return module, latest
