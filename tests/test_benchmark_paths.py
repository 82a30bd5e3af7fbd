"""The benchmarks find ``../shared`` where the tests do: ``TAGGRAM_SHARED`` when set (a git
worktree's parent has no ``shared/``), else beside the project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shared_audio(env: dict[str, str]) -> Path:
    """``benchmarks.SHARED_AUDIO`` as a fresh interpreter computes it under ``env``."""
    code = "import benchmarks; print(benchmarks.SHARED_AUDIO)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return Path(result.stdout.strip())


def test_taggram_shared_moves_the_benchmarks_recordings(tmp_path: Path) -> None:
    env = os.environ | {"TAGGRAM_SHARED": str(tmp_path)}
    assert _shared_audio(env) == tmp_path / "audio"


def test_without_taggram_shared_the_recordings_are_beside_the_project() -> None:
    env = {key: value for key, value in os.environ.items() if key != "TAGGRAM_SHARED"}
    assert _shared_audio(env) == ROOT.parent / "shared" / "audio"
