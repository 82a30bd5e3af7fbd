"""Cut a mono waveform into model patches and weigh the patches back into clip-level scores.

The rule (documented in the README, "Response format"):

* ``context_samples`` zeros are prepended to the signal (the :class:`PatchSpec` contract); patch
  ``k`` scores the audio ``[start_k, start_k + span)`` and its input is the ``samples``-long slice
  of the padded signal that begins at ``start_k`` (so it carries the ``context`` samples before).
* Starts are ``0, hop, 2*hop, ...`` while the scored span lies inside the audio; with the
  default hop (= span) these are exactly the original musicnn's patches.
* Audio shorter than one span gives one patch, zero-padded at the end.
* A trailing remainder that no regular patch covers gets one extra patch aligned to the END of
  the audio (scoring its last ``span`` samples): nothing is dropped and nothing is zero-padded.
* Clip-level scores (and clip embeddings) are the average of the patch rows, each weighted by the
  audio it newly covers (the part not already covered by earlier patches), so every second of
  audio counts once: overlapping or end-aligned patches do not count double.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from taggram.repository import PatchSpec
from taggram.service.errors import InvalidOptionsError, TooManyPatchesError


@dataclass(frozen=True)
class PatchPlan:
    """Where the patches of one clip start and how much each counts in the clip average."""

    starts: np.ndarray  # int64, start of each scored span, in samples of the audio
    ends: np.ndarray  # int64, end of each scored span, clipped to the audio
    weights: np.ndarray  # float64, sums to 1

    def __len__(self) -> int:
        return len(self.starts)


def hop_samples(
    spec: PatchSpec, sample_rate: int, hop_seconds: float | None, model: str = "the model"
) -> int:
    """The hop in samples: the model's default, or the request's, which must leave no gaps:
    from one sample to one patch of ``model``. Raises :class:`InvalidOptionsError` naming the
    model and its range."""
    if hop_seconds is None:
        return spec.hop_samples
    # Checked in seconds, before rounding, so the bounds are exactly those the OpenAPI states.
    shortest, longest = 1 / sample_rate, spec.span_samples / sample_rate
    if not shortest <= hop_seconds <= longest:
        raise InvalidOptionsError(
            # Ten digits: with :g's six, 2.9920001 was "got 2.992", the bound itself.
            f"hop must be between {shortest:.10g} and {longest:.10g} seconds (one sample to one "
            f"patch of {model}), got {hop_seconds:.10g}"
        )
    return max(1, min(spec.span_samples, round(hop_seconds * sample_rate)))


# Padding under 1 % of a patch is not worth a warning (and its message would round to "the
# audio (2.99 s) is shorter than one patch (2.99 s) ... 0.0% silence").
PADDING_WARNING_SHARE = 0.01


def padding_warning(plan: PatchPlan, spec: PatchSpec, sample_rate: int, model: str) -> str | None:
    """The warning for audio shorter than one patch of ``model`` (its one patch zero-padded at
    the end, so silence is part of what the model heard), naming the share that was padding;
    ``None`` when the audio fills its patches or leaves under :data:`PADDING_WARNING_SHARE` of
    one to padding. ``sample_rate``: the model's, in Hz. The length has two significant figures
    (``"0.010 s"``, ``"1.5 s"``), as ``taggram tag`` prints it above the warning."""
    heard, span = int(plan.ends[-1] - plan.starts[-1]), spec.span_samples
    if len(plan) > 1 or heard > (1 - PADDING_WARNING_SHARE) * span:
        return None
    return (
        f"the audio ({heard / sample_rate:#.2g} s) is shorter than one patch of {model} "
        f"({span / sample_rate:.2f} s): it was zero-padded, so {1 - heard / span:.1%} of what "
        "the model heard was silence"
    )


def plan_patches(n_samples: int, spec: PatchSpec, hop: int, max_patches: int) -> PatchPlan:
    """Patch starts, ends and weights for ``n_samples`` of audio (see the module docstring)."""
    span = spec.span_samples
    n_regular = 1 if n_samples <= span else (n_samples - span) // hop + 1
    needs_tail = n_samples > span and (n_regular - 1) * hop + span < n_samples
    count = n_regular + int(needs_tail)
    if count > max_patches:
        raise TooManyPatchesError(
            f"these options cut {count} patches, more than the limit of {max_patches}; "
            "use a larger hop or shorter audio"
        )
    starts = np.arange(n_regular, dtype=np.int64) * hop
    if needs_tail:
        starts = np.append(starts, n_samples - span)
    ends = np.minimum(starts + span, n_samples)
    covered_before = np.concatenate(([0], np.maximum.accumulate(ends)[:-1]))
    new_coverage = ends - np.maximum(starts, covered_before)
    weights = new_coverage / new_coverage.sum()
    return PatchPlan(starts=starts, ends=ends, weights=weights)


class Patches:
    """The patch inputs of one clip, read from the waveform itself: no padded copy of the clip.

    Patch ``k``'s input is ``samples`` samples starting ``context_samples`` before its scored span,
    with zeros where that reaches before the audio's start or past its end (short audio), exactly
    the slices of ``[zeros(context), waveform, zeros(...)]``. Keeping the waveform instead of that
    padded copy saves 64 kB per second of audio per request in flight (58 MB for 15 minutes).
    """

    def __init__(self, waveform: np.ndarray, spec: PatchSpec, plan: PatchPlan) -> None:
        self._waveform = waveform.astype(np.float32, copy=False)
        self._context = spec.context_samples
        self._starts = plan.starts
        self.samples = spec.samples

    def __len__(self) -> int:
        return len(self._starts)

    def _span(self, index: int) -> tuple[int, int]:
        """Where patch ``index``'s input begins and ends, in samples of the waveform."""
        begin = int(self._starts[index]) - self._context
        return begin, begin + self.samples

    def _fill(self, out: np.ndarray, index: int) -> None:
        begin, end = self._span(index)
        low, high = max(begin, 0), min(end, len(self._waveform))
        out[: low - begin] = 0.0
        out[low - begin : high - begin] = self._waveform[low:high]
        out[high - begin :] = 0.0

    def peak(self) -> float:
        """The clip's largest absolute sample (decoded audio is within [-1, 1] unless float)."""
        return float(np.max(np.abs(self._waveform), initial=0.0))

    def __getitem__(self, index: int) -> np.ndarray:
        """Patch ``index``: ``[samples]`` float32, a view of the waveform (a padded copy at the
        clip's start or past its end)."""
        begin, end = self._span(index)
        if begin >= 0 and end <= len(self._waveform):
            return self._waveform[begin:end]
        out = np.empty(self.samples, np.float32)
        self._fill(out, index)
        return out

    def copy_into(self, out: np.ndarray, first: int) -> None:
        """Write patches ``first .. first + len(out)`` into the batch rows ``out`` (one copy)."""
        for row, index in enumerate(range(first, first + len(out))):
            self._fill(out[row], index)


class PatchSource(Protocol):
    """What the batcher needs of one request's patches: a count, a length, and a copy."""

    samples: int

    def __len__(self) -> int: ...

    def copy_into(self, out: np.ndarray, first: int) -> None: ...


class TensorPatches:
    """Patches given ready-made: the rows of a ``[batch, samples]`` float32 tensor (``/v2``)."""

    def __init__(self, tensor: np.ndarray) -> None:
        self._tensor = tensor
        self.samples = int(tensor.shape[1])

    def __len__(self) -> int:
        return len(self._tensor)

    def copy_into(self, out: np.ndarray, first: int) -> None:
        """Copy rows ``first .. first + len(out)`` of the tensor into ``out``."""
        out[:] = self._tensor[first : first + len(out)]


def covering(plan: PatchPlan, rate: int, other: PatchPlan, other_rate: int) -> np.ndarray:
    """For each patch of ``plan`` (samples at ``rate`` Hz), the index (int64) of the patch of
    ``other`` (at ``other_rate`` Hz) whose centre is nearest its centre: how one network's
    per-patch rows are laid on another network's patches. Identical plans map each patch to
    itself."""
    centres = (plan.starts + plan.ends) / (2 * rate)
    others = (other.starts + other.ends) / (2 * other_rate)
    after = np.clip(np.searchsorted(others, centres), 1, max(1, len(others) - 1))
    before = after - 1
    nearer = np.abs(others[np.minimum(after, len(others) - 1)] - centres) < np.abs(
        others[before] - centres
    )
    return np.where(nearer, np.minimum(after, len(others) - 1), before).astype(np.int64)


def clip_average(rows: np.ndarray, plan: PatchPlan) -> np.ndarray:
    """Coverage-weighted mean of per-patch rows: each second of audio counts once."""
    return (plan.weights @ rows.astype(np.float64)).astype(np.float32)
