"""The architecture's hard boundary: ``service/`` serves without torch and without ``models/``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

FORBIDDEN = (
    "torch",
    "models",
    "onnx",
    "librosa",
)  # build-time only: none of these in a server image


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_service_sources_import_no_build_time_package() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(_top_level_imports(path) & set(FORBIDDEN))
        for path in (ROOT / "service").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        ("service.api.app, service.cli", FORBIDDEN),
        # the CLI also lists the build commands, whose modules import torch only when they run
        ("taggram.cli, taggram.client", ("torch", "onnx", "librosa")),
    ],
)
def test_serving_entry_points_load_without_build_time_packages(
    modules: str, forbidden: tuple[str, ...]
) -> None:
    """Importing the app or ``taggram serve``'s CLI must not pull torch in transitively."""
    code = (
        f"import sys; import {modules}; "
        f"bad = [m for m in {forbidden!r} if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
