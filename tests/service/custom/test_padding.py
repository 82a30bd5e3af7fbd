"""Which padding warnings a custom model's creation answers with (creation.padding_warnings)."""

from __future__ import annotations

from taggram.repository import load_repository
from taggram.service.custom.creation import padding_warnings
from tests.support.paths import require_repository

MUSICNN = "the audio (3.0 s) is shorter than one patch of MTT_musicnn (2.99 s): ..."
STUDENT = "the audio (3.0 s) is shorter than one patch of MTT_sample_cnn (3.69 s): ..."


def test_only_the_chosen_networks_and_the_longest_patch_are_named() -> None:
    """Every 3 s example was warned of as padding of MTT_sample_cnn, a candidate the selection
    left out; an example is named once, for the longest patch the model reads."""
    models = {
        name: entry.metadata
        for name, entry in load_repository(require_repository()).items()
        if name in ("MTT_musicnn", "MTT_sample_cnn")
    }
    files = ["a.wav", "b.wav", "c.wav"]
    padded = [{"MTT_sample_cnn": STUDENT}, {"MTT_sample_cnn": STUDENT, "MTT_musicnn": MUSICNN}, {}]
    assert padding_warnings(files, padded, ["MTT_musicnn"], models) == [
        f"example 2 ('b.wav'): {MUSICNN}"
    ]
    both = ["MTT_musicnn", "MTT_sample_cnn"]
    assert padding_warnings(files, padded, both, models) == [
        f"example 1 ('a.wav'): {STUDENT}",
        f"example 2 ('b.wav'): {STUDENT}",
    ]
