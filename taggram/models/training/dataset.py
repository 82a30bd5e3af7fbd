"""Training windows, the train/validation split and random patch sampling.

Both kinds of supervision become the same thing, a table of windows (file, patch start, target):

- labelled files: one window per patch length of audio, each with the file's tags, so long files
  weigh in proportion to their duration;
- distillation: one window per teacher window, the student's (longer or shorter) patch centred on
  it, its target the teacher's probabilities there.

Training draws windows at random and shifts each start by up to ``jitter`` samples; validation
reads every window unshifted, so its figures are comparable from epoch to epoch. Draws are uniform,
or rebalanced by each window's strongest target tag (:func:`tag_balanced_weights`) so that a
dominant kind of music in the data does not set the student's prior.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from taggram.models.training.audio import frames, read_patch
from taggram.models.training.labels import LabelTable
from taggram.models.training.teacher import TeacherTargets


@dataclass(frozen=True)
class Windows:
    """Patch windows over ``files``; ``groups[f]`` is file ``f``'s split group."""

    files: list[Path]
    groups: list[str]
    file_index: np.ndarray  # int64 [windows]
    starts: np.ndarray  # int64 [windows]
    targets: np.ndarray  # float32 [windows, tags]
    jitter: int

    def __len__(self) -> int:
        return len(self.starts)

    def subset(self, keep: np.ndarray) -> Windows:
        """The windows selected by ``keep`` (a boolean array over windows); same file list."""
        return Windows(
            self.files,
            self.groups,
            self.file_index[keep],
            self.starts[keep],
            self.targets[keep],
            self.jitter,
        )

    def clips(self, clip_samples: int) -> np.ndarray:
        """int64 [windows]: the clip of each window, cutting each file into ``clip_samples`` pieces
        (windows are assigned by the centre of their patch).
        """
        return self.file_index * (1 << 32) + self.starts // clip_samples

    def patch(self, window: int, samples: int, rng: random.Random | None = None) -> np.ndarray:
        """The audio of one window; shifted at random by up to ``jitter`` when ``rng`` is given."""
        start = int(self.starts[window])
        if rng is not None and self.jitter:
            start += rng.randint(-self.jitter, self.jitter)
        return read_patch(self.files[int(self.file_index[window])], start, samples)


def labelled_windows(table: LabelTable, files: list[Path], samples: int) -> Windows:
    """One window per ``samples`` of each file (at least one), with the file's tags."""
    file_index, starts = [], []
    for index, path in enumerate(files):
        count = max(1, frames(path) // samples)
        file_index += [index] * count
        starts += [k * samples for k in range(count)]
    indices = np.array(file_index, dtype=np.int64)
    return Windows(
        files,
        table.groups,
        indices,
        np.array(starts, dtype=np.int64),
        table.targets[indices],
        jitter=samples // 2,
    )


def shortest_distilled_file(window: int, hop: int, samples: int) -> int:
    """Samples a file needs to give :func:`distilled_windows` one window: a student patch of
    ``samples`` centred on one of the teacher's windows of ``window`` samples, laid every ``hop``
    from the file's start, must fit inside it.

    A student patch longer than the teacher's window, centred on the first one, would start
    before the file, so the first window that fits is a later one (the teacher's end-aligned last
    window never fits either: its centred patch runs past the end). With ``MTT_musicnn`` teaching
    a ``sample_cnn`` at the default hop that is 101,333 samples (6.33 s), not the patch's 3.69 s.
    """
    offset = window // 2 - samples // 2  # a student patch's start from its teacher window's
    first = -(max(0, -offset) // -hop)  # the first window whose patch starts inside the file
    return first * hop + offset + samples


def distilled_windows(
    teacher: TeacherTargets, files: list[Path], groups: list[str], samples: int
) -> Windows:
    """Student patches centred on the teacher's windows (those that fit inside their file).

    The shift stays small enough for a longer student patch to keep covering the teacher's window.
    """
    starts = teacher.starts + teacher.window // 2 - samples // 2
    lengths = np.array([frames(path) for path in files])
    fits = (starts >= 0) & (starts + samples <= lengths[teacher.file_index])
    fits &= np.isfinite(teacher.probabilities).all(axis=1)  # a teacher's NaN must not train
    jitter = max(abs(samples - teacher.window) // 2, samples // 16)
    return Windows(
        files,
        groups,
        teacher.file_index[fits],
        starts[fits],
        teacher.probabilities[fits],
        jitter=jitter,
    )


def split(
    windows: Windows, validation_fraction: float, seed: int, held_out: np.ndarray | None = None
) -> tuple[Windows, Windows]:
    """Split by group: shuffled groups go to validation until it holds the fraction of windows.

    ``held_out`` (bool per file, e.g. the manifest's ``split`` column) fixes the validation files
    instead; the fraction is then ignored.
    """
    if held_out is not None and held_out.any():
        in_validation = held_out[windows.file_index]
        return windows.subset(~in_validation), windows.subset(in_validation)
    by_group: dict[str, list[int]] = {}
    for index, group in enumerate(windows.groups):
        by_group.setdefault(group, []).append(index)
    names = sorted(by_group)
    random.Random(seed).shuffle(names)
    per_file = np.bincount(windows.file_index, minlength=len(windows.files))
    validation_files: list[int] = []
    goal = validation_fraction * len(windows)
    for name in names:
        if per_file[validation_files].sum() >= goal:
            break
        validation_files += by_group[name]
    in_validation = np.isin(windows.file_index, validation_files)
    if in_validation.all():
        raise ValueError("every file falls into one split group: add a 'group' column")
    return windows.subset(~in_validation), windows.subset(in_validation)


def tag_balanced_weights(targets: np.ndarray, exponent: float) -> np.ndarray:
    """float64 [windows]: a sampling weight per window, ``n ** -exponent`` where ``n`` is the
    number of windows sharing its strongest target tag (argmax of ``targets`` [windows, tags]).

    0 draws uniformly, 1 gives every strongest tag the same share of draws (class-balanced
    sampling), 0.5 is square-root sampling in between (Mahajan et al. 2018, "Exploring the Limits
    of Weakly Supervised Pretraining"), which lifts rare kinds of audio without repeating a
    handful of windows over and over.
    """
    strongest = targets.argmax(axis=1)
    counts = np.bincount(strongest, minlength=targets.shape[1]).astype(np.float64)
    return counts[strongest] ** -exponent


def draw_windows(
    windows: Windows,
    count: int,
    rng: random.Random,
    cumulative_weights: Sequence[float] | None = None,
) -> list[int]:
    """``count`` window indices drawn with replacement: uniformly, or in proportion to the weights
    whose cumulative sum is ``cumulative_weights`` (one per window)."""
    if cumulative_weights is None:
        return [rng.randrange(len(windows)) for _ in range(count)]
    return rng.choices(range(len(windows)), cum_weights=cumulative_weights, k=count)


def random_batch(
    windows: Windows,
    samples: int,
    batch_size: int,
    rng: random.Random,
    cumulative_weights: Sequence[float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One random training batch: shifted patches and their targets.

    ``cumulative_weights`` (one per window, e.g. the cumulative sum of
    :func:`tag_balanced_weights`) draws windows in proportion to their weights; without it the
    draw is uniform.
    """
    chosen = draw_windows(windows, batch_size, rng, cumulative_weights)
    audio = np.stack([windows.patch(w, samples, rng) for w in chosen])
    return torch.from_numpy(audio), torch.from_numpy(windows.targets[chosen])
