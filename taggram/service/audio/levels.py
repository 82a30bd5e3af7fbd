"""Levels of the decoded audio that make its tags suspect, gathered while it streams.

The models tag whatever they are given, so four kinds of upload get confident-looking tags that
describe nothing the listener hears, and the response says so in ``warnings``:

* silence (a blank recording, a track of digital silence): the mono signal never reaches
  ``SILENCE_PEAK`` (-80 dBFS, a few steps of 16-bit audio, so dither is silence too);
* channels that cancel when averaged to mono (one wired or exported with inverted polarity):
  the mono signal holds less than ``CANCELLED_ENERGY`` (-20 dB) of the channels' mean energy,
  which only channels nearly opposite can give (uncorrelated ones lose 3 dB, alike ones none);
* a DC offset (a faulty recording chain): the mono signal's mean is at least ``DC_OFFSET``
  (-26 dBFS) away from zero, which no recording of sound averages to over its length, and which
  the models hear in their lowest mel band; only over ``DC_MIN_SECONDS`` or more, since over a
  fraction of a low note's period any signal has a mean;
* float samples far outside [-1, 1] (float audio never normalised): a stored float sample (PCM
  float WAV, AIFF, CAF...) above ``FLOAT_PEAK`` (+6 dBFS). Lossy decoders overshoot 1.0 on loud
  masters, by more than that on clipped noise (Opus, WMA), which is the codec's, not the file's;
  far enough out, the network overflows and the upload is refused instead (``tagging``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SILENCE_PEAK = 1e-4
CANCELLED_ENERGY = 0.01
FLOAT_PEAK = 2.0
DC_OFFSET = 0.05
DC_MIN_SECONDS = 1.0


def _peak(samples: np.ndarray) -> float:
    # Two reductions and no temporary, unlike np.abs(samples).max().
    return max(float(samples.max()), -float(samples.min())) if samples.size else 0.0


def _dbfs(level: float) -> str:
    decibels = round(20 * math.log10(level))
    return f"{decibels:+d} dBFS" if decibels else "0 dBFS"


@dataclass
class Levels:
    """Running peaks and energies (sums of squares) of the native samples, of every channel and
    of their mono mean, and the mono signal's sum (its mean is the DC offset; NaN or infinite
    once a sample is)."""

    peak: float = 0.0
    channel_energy: float = 0.0  # summed over the samples, averaged over the channels
    mono_peak: float = 0.0
    mono_energy: float = 0.0
    mono_sum: float = 0.0
    frames: int = 0

    def add(self, samples: np.ndarray, mono: np.ndarray) -> None:
        """Count a block: float32 ``samples`` ``[n, channels]`` and their mean ``mono`` ``[n]``."""
        mono_peak, mono_energy = _peak(mono), float(np.dot(mono, mono))
        self.mono_peak = max(self.mono_peak, mono_peak)
        self.mono_energy += mono_energy
        # +inf and -inf sum to NaN, which numpy would report on stderr: the caller refuses it.
        with np.errstate(invalid="ignore"):
            self.mono_sum += float(np.sum(mono, dtype=np.float64))
        self.frames += len(mono)
        if samples.shape[1] == 1:
            self.peak = max(self.peak, mono_peak)
            self.channel_energy += mono_energy
            return
        flat = samples.reshape(-1)
        self.peak = max(self.peak, _peak(flat))
        self.channel_energy += float(np.dot(flat, flat)) / samples.shape[1]

    def warnings(self, rate: int, stored_float: bool) -> list[str]:
        """What makes the tags suspect, in the words of the response's ``warnings``: ``rate``
        is the samples' rate in Hz, ``stored_float`` whether they are float as stored (PCM
        float), not a lossy decoder's."""
        found = []
        if stored_float and self.peak > FLOAT_PEAK:
            found.append(
                f"the samples peak at {self.peak:.3g} ({_dbfs(self.peak)}), far outside [-1, 1] "
                f"(float audio that is not normalised?): tagged as they are, louder than any "
                f"recording, so the tags may be off"
            )
        mono = f"peaks at {_dbfs(self.mono_peak)}" if self.mono_peak else "is silent"
        if self.peak >= SILENCE_PEAK and self.mono_energy < CANCELLED_ENERGY * self.channel_energy:
            found.append(
                f"the channels cancel out when averaged to mono (one has inverted polarity?): "
                f"the mono signal the models tag {mono} where the channels reach "
                f"{_dbfs(self.peak)}, so the tags describe what is left"
            )
        elif self.mono_peak < SILENCE_PEAK:
            level = "every sample is zero" if self.mono_peak == 0 else _dbfs(self.mono_peak)
            found.append(f"the audio is silent ({level}): its tags describe no sound")
        offset = self.mono_sum / self.frames if self.frames else 0.0
        if abs(offset) >= DC_OFFSET and self.frames >= DC_MIN_SECONDS * rate:
            found.append(
                f"the audio has a DC offset of {offset:+.2f} ({_dbfs(abs(offset))}): the signal is "
                f"shifted off zero (a faulty recording chain?), which the tags may reflect"
            )
        return found
