"""Where tests find the repository's model repository and the shared material beside the project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# TAGGRAM_SHARED points elsewhere, e.g. from a git worktree whose parent has no shared/.
SHARED = Path(os.environ.get("TAGGRAM_SHARED", ROOT.parent / "shared"))
SHARED_AUDIO = SHARED / "audio"
REFERENCE = SHARED_AUDIO / "reference"
SHARED_BUGS = SHARED / "bugs"
MODEL_REPOSITORY = Path(os.environ.get("TAGGRAM_MODEL_REPOSITORY", ROOT / "model_repository"))


def has_shared() -> bool:
    """Whether ``../shared/audio`` is here (CI and dev machines), not a user's fresh clone."""
    return (SHARED_AUDIO / "manifest.csv").is_file()


def require_shared() -> Path:
    """Return ``../shared/audio``, or skip: a user's fresh clone has no ``../shared``."""
    if not has_shared():
        pytest.skip(f"{SHARED_AUDIO} is absent: the shared recordings are only on CI/dev machines")
    return SHARED_AUDIO


def require_bugs() -> Path:
    """Return ``../shared/bugs`` (real-world files taggram once got wrong), or skip."""
    if not (SHARED_BUGS / "README.md").is_file():
        pytest.skip(
            f"{SHARED_BUGS} is absent: the real-world bug files are only on CI/dev machines"
        )
    return SHARED_BUGS


def require_repository() -> Path:
    """Return the built model repository, or skip with the command that builds it."""
    if not (MODEL_REPOSITORY / ".complete").is_file():
        pytest.skip(f"{MODEL_REPOSITORY} is not built: run `taggram build-models` (make test does)")
    return MODEL_REPOSITORY
