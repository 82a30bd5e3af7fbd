"""Schemathesis hooks for the API contract test: binary bodies are real audio files.

The OpenAPI document can only say that an upload is ``format: binary``; what makes it acceptable
(decodable audio) no schema expresses. Generating real audio (random noise and tones in WAV and
FLAC, any rate and channel count, under one patch long) lets positive cases reach the models and
their 200 answers be checked against the response schemas. ``tests/e2e/schemathesis.toml``
loads this module.
"""

from __future__ import annotations

import io

import numpy as np
import schemathesis
import soundfile as sf
from hypothesis import strategies as st

RATES = (8000, 16000, 22050, 44100, 48000)
# (container, subtype) pairs libsndfile writes and taggram accepts.
ENCODINGS = (("WAV", "PCM_16"), ("WAV", "PCM_U8"), ("WAV", "FLOAT"), ("FLAC", "PCM_24"))


@st.composite
def audio_files(draw: st.DrawFn) -> bytes:
    """A short audio file (0.01-2.5 s, so one patch whatever the hop) of noise or a tone."""
    rate = draw(st.sampled_from(RATES))
    channels = draw(st.integers(1, 2))
    frames = max(1, int(draw(st.floats(0.01, 2.5)) * rate))
    container, subtype = draw(st.sampled_from(ENCODINGS))
    amplitude = draw(st.floats(0.0, 1.0))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        samples = rng.uniform(-amplitude, amplitude, (frames, channels))
    else:
        tone = np.sin(2 * np.pi * draw(st.floats(20, rate / 2 - 1)) * np.arange(frames) / rate)
        samples = np.repeat((amplitude * tone)[:, None], channels, axis=1)
    buffer = io.BytesIO()
    sf.write(buffer, samples.astype(np.float32), rate, format=container, subtype=subtype)
    return buffer.getvalue()


AUDIO = audio_files()
schemathesis.openapi.format("binary", AUDIO)
for media_type in ("audio/*", "video/*", "application/octet-stream", "application/ogg"):
    schemathesis.openapi.media_type(media_type, AUDIO)
