"""The architecture's hard boundaries, checked on the sources and on what importing loads.

- ``taggram.service`` serves without torch, onnx, librosa and without ``taggram.models``;
- ``taggram.models`` reaches the serving half only through ``taggram.repository`` and the two
  runtime pieces that distillation must share with serving (the ONNX Runtime session and the patch
  plan), so a teacher is run exactly as the service runs it;
- ``taggram.client`` imports nothing of the server.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGE = ROOT / "taggram"
BUILD_TIME = ("torch", "onnx", "librosa", "taggram.models")  # none of these in a server image
SERVER_STACK = ("onnxruntime", "soundfile", "fastapi", "uvicorn", "taggram.service")


def _imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (top level or inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _matches(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def _offenders(folder: Path, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {
        str(path.relative_to(ROOT)): sorted(n for n in _imports(path) if _matches(n, forbidden))
        for path in folder.rglob("*.py")
    }
    return {path: names for path, names in found.items() if names}


def test_service_sources_import_no_build_time_package() -> None:
    assert _offenders(PACKAGE / "service", BUILD_TIME) == {}


SHARED_RUNTIME = ("taggram.service.inference.session", "taggram.service.audio.patching")


def test_models_use_only_the_shared_runtime_of_the_service() -> None:
    found = _offenders(PACKAGE / "models", ("taggram.service",))
    beyond = {path: [n for n in names if n not in SHARED_RUNTIME] for path, names in found.items()}
    assert {path: names for path, names in beyond.items() if names} == {}


def test_one_import_root() -> None:
    """Only ``taggram`` is a top-level package: no ``service`` or ``models`` to clash with."""
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages <= {"taggram", "tests", "benchmarks"}


@pytest.mark.parametrize(
    ("modules", "forbidden"),
    [
        ("taggram.service.api.app, taggram.service.cli", BUILD_TIME),
        # the CLI also lists the build commands, whose modules import torch only when they run
        ("taggram.cli", ("torch", "onnx", "librosa")),
        # a catalogue machine talking to a service needs none of the server stack
        ("taggram.client, taggram.catalogue.remote", BUILD_TIME + SERVER_STACK),
        # `taggram tag --url` needs only the client; matplotlib loads only for --plot
        ("taggram.tag_command", (*BUILD_TIME, *SERVER_STACK, "matplotlib")),
    ],
)
def test_entry_points_load_only_what_they_need(modules: str, forbidden: tuple[str, ...]) -> None:
    """Importing these must not pull the forbidden packages in transitively."""
    code = (
        f"import sys; import {modules}; "
        f"bad = [m for m in {forbidden!r} if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_benchmarks_do_not_import_the_tests() -> None:
    assert _offenders(ROOT / "benchmarks", ("tests",)) == {}
