"""``benchmarks/gpu.sh`` refuses plainly where there is no NVIDIA GPU (tests never need one)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.paths import ROOT


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_gpu_script_says_it_needs_a_gpu() -> None:
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu.sh")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs an NVIDIA GPU" in result.stderr
