"""Mixed training patches labelled by the teacher online (consistent teaching).

A student distilled from cached teacher targets only ever sees the training audio itself. Mixing
two random training patches, ``lam * a + (1 - lam) * b`` with ``lam`` uniform in [0, 1] (mixup,
Zhang et al. 2018), gives it audio no file holds: strings over a drum loop, speech over music.
The target of a mix is not the mix of the two targets, but the teacher's own output on the mixed
audio, computed at training time: the student then matches the teacher's function on inputs around
the data, not just on the data ("function matching" with consistent teaching, Beyer et al. 2022,
"Knowledge distillation: A good teacher is patient and consistent").
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from taggram.models.training.dataset import Windows, random_batch
from taggram.repository import ModelEntry
from taggram.service.inference.session import ModelSession


class OnlineTeacher:
    """A repository model that labels student patches at training time, on the CPU.

    The teacher reads the centre of each student patch: its scored span (``span_samples``) in the
    middle, with its left context before it, as the cached targets place a student patch around a
    teacher window. Raises ``ValueError`` if the teacher's input is longer than the student's patch.
    """

    def __init__(self, entry: ModelEntry, student_samples: int, threads: int) -> None:
        spec = entry.metadata.patch
        self.offset = (student_samples - spec.span_samples) // 2 - spec.context_samples
        if self.offset < 0:
            raise ValueError(
                f"{entry.metadata.name} reads {spec.samples} samples, more than the student's "
                f"patch of {student_samples} around its window: it cannot label mixed patches"
            )
        self.samples = spec.samples
        self.output = entry.metadata.tag_output
        self.session = ModelSession(entry, ["CPUExecutionProvider"], threads, 1)

    def label(self, patches: np.ndarray) -> np.ndarray:
        """float32 [n, tags]: the teacher's probabilities for student ``patches`` [n,
        student samples] (float32, mono, at the teacher's sample rate)."""
        inputs = np.ascontiguousarray(patches[:, self.offset : self.offset + self.samples])
        return self.session.run(inputs)[self.output].astype(np.float32)


def mixed_batch(
    windows: Windows,
    samples: int,
    count: int,
    rng: random.Random,
    teacher: OnlineTeacher,
    cumulative_weights: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` mixes of two randomly drawn (and shifted) training patches, [count, samples]
    float32, and the teacher's probabilities on each mix, [count, tags] float32.

    The two patches are a :func:`~taggram.models.training.dataset.random_batch` of ``2 * count``
    (drawn uniformly or by ``cumulative_weights``); each mix's weight is uniform in [0, 1].
    """
    audio, _ = random_batch(windows, samples, 2 * count, rng, cumulative_weights)
    weights = torch.tensor([rng.random() for _ in range(count)], dtype=torch.float32)[:, None]
    mixes = weights * audio[:count] + (1 - weights) * audio[count:]
    return mixes, torch.from_numpy(teacher.label(mixes.numpy()))
