"""The wheel: one import root, trained models inside, buildable into a repository anywhere."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.paths import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run([*command, "--no-build-isolation", "-w", str(out), str(ROOT)], check=True)
    (path,) = out.glob("taggram-*.whl")
    return path


def test_wheel_has_one_top_level_package_and_the_trained_models(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names if not name.startswith("taggram-")} == {"taggram"}
    trained = ROOT / "taggram" / "models" / "trained"
    files = [p for p in trained.rglob("*") if p.is_file()]
    # What build-models copies (model + metadata) ships; the training checkpoint, for resuming
    # a run from the repository, does not.
    shipped = {str(p.relative_to(ROOT)) for p in files if p.suffix in {".onnx", ".json"}}
    kept_out = {str(p.relative_to(ROOT)) for p in files if p.suffix == ".pt"}
    assert shipped
    assert shipped <= set(names)
    assert not kept_out & set(names)


def test_wheel_has_the_web_page(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    static = ROOT / "taggram" / "service" / "web" / "static"
    committed = {str(p.relative_to(ROOT)) for p in static.rglob("*") if p.is_file()}
    expected = {"index.html", "app.js", "style.css", "swagger-ui-bundle.js", "LICENSE"}
    assert expected <= {Path(name).name for name in committed}
    assert committed <= names


def test_vendored_swagger_ui_is_as_published() -> None:
    """``/docs`` runs the vendored Swagger UI with the page's authority (it sends the API key):
    each file must be the one in swagger-ui-dist's npm tarball, as ``SHA256SUMS`` records."""
    folder = ROOT / "taggram" / "service" / "web" / "static" / "swagger-ui"
    sums = dict(
        reversed(line.split("  ", 1)) for line in (folder / "SHA256SUMS").read_text().splitlines()
    )
    on_disk = {p.name for p in folder.iterdir() if p.is_file()} - {"SHA256SUMS"}
    assert set(sums) == on_disk
    for name, digest in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.slow
def test_build_models_from_an_installed_wheel_in_an_empty_folder(
    wheel: Path, tmp_path: Path
) -> None:
    """Installed outside the source tree, the wheel builds the repository where it is asked to,
    and writes nothing into its own installation (downloads go to the user cache)."""
    site = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site)]
    subprocess.run([*pip, str(wheel)], check=True)
    installed = {p for p in site.rglob("*") if "__pycache__" not in p.parts}
    work = tmp_path / "empty"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "taggram", "build-models", "--repository", "repo"],
        cwd=work,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (work / "repo" / ".complete").is_file()
    assert (work / "repo" / "MTT_sample_cnn" / "model.onnx").is_file()
    assert {p for p in site.rglob("*") if "__pycache__" not in p.parts} == installed
