"""The ``musicnn==0.1.0`` wheel: fetched once with pip, then read as a zip (never installed).

Installing it would pull an old TensorFlow and NumPy; the checkpoints and the label lists are all
that is needed, and both are read straight out of the archive.
"""

from __future__ import annotations

import ast
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from platformdirs import user_cache_path

from taggram.models.checkpoint import read_checkpoint

REQUIREMENT = "musicnn==0.1.0"
WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
# sha256 of the wheel on PyPI; a different file is refused.
WHEEL_SHA256 = "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"


def default_cache() -> Path:
    """``TAGGRAM_CACHE_DIR``, else the user cache directory (``~/.cache/taggram`` on Linux).

    Downloads never go next to the installed package: site-packages may be read-only or shared.
    """
    return Path(os.environ.get("TAGGRAM_CACHE_DIR") or user_cache_path("taggram"))


def fetch_wheel(cache: Path | None = None) -> Path:
    """Return ``<cache>/wheels/musicnn-0.1.0-py3-none-any.whl`` (cache: :func:`default_cache`),
    downloading it with ``pip download --no-deps`` if absent.

    Raises:
        subprocess.CalledProcessError: pip could not download the wheel.
        ValueError: the file's sha256 is not that of the published wheel.
    """
    folder = (cache or default_cache()) / "wheels"
    path = folder / WHEEL_NAME
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", REQUIREMENT, "--no-deps"]
        subprocess.run([*command, "--quiet", "--dest", str(folder)], check=True)
    verify_wheel(path)
    return path


def verify_wheel(path: Path) -> None:
    """Refuse a wheel whose bytes differ from the published ``musicnn==0.1.0``."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ValueError(f"{path}: sha256 {digest} is not that of {REQUIREMENT} ({WHEEL_SHA256})")


class MusicnnWheel:
    """Read access to the files of the wheel that matter for conversion."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, member: str) -> bytes:
        """The bytes of ``musicnn/<member>`` inside the wheel.

        Raises:
            KeyError: the wheel has no such member.
        """
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(f"musicnn/{member}")

    def checkpoint(self, model: str) -> dict[str, np.ndarray]:
        """All tensors of ``musicnn/<model>/`` (the checkpoint prefix is the folder itself)."""
        return read_checkpoint(
            self.read(f"{model}/.index"), self.read(f"{model}/.data-00000-of-00001")
        )

    def labels(self, dataset: str) -> list[str]:
        """``<dataset>_LABELS`` from the original configuration.py, in output order."""
        tree = ast.parse(self.read("configuration.py"))
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == f"{dataset}_LABELS" for t in node.targets
            ):
                return [str(label) for label in ast.literal_eval(node.value)]
        raise KeyError(f"{dataset}_LABELS not found in the wheel's configuration.py")
