"""Fixtures for the model tests: the musicnn wheel and the trained torch ports built from it."""

from __future__ import annotations

import pytest

from taggram.models.wheel import MusicnnWheel, fetch_wheel

MODELS = ("MTT_musicnn", "MTT_vgg", "MSD_musicnn", "MSD_vgg")


@pytest.fixture(scope="session")
def wheel() -> MusicnnWheel:
    """The musicnn 0.1.0 wheel (cached by `taggram build-models`; downloaded once otherwise)."""
    return MusicnnWheel(fetch_wheel())
