"""Fetch and unpack Debian packages with the system's own tools, and read their licences.

``apt-get download`` needs no root and installs nothing; ``dpkg -x`` unpacks without running
maintainer scripts. Both steps are skipped when their output already exists, so reruns are cheap.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Package:
    """One downloaded and unpacked package."""

    name: str
    version: str
    root: Path  # the unpacked file system tree

    @property
    def copyright_path(self) -> Path:
        return self.root / "usr/share/doc" / self.name / "copyright"


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "--field", str(deb), name], check=True, capture_output=True, text=True
    ).stdout.strip()


def download(name: str, folder: Path) -> Path:
    """The package's ``.deb`` in ``folder``, downloaded unless already there."""
    folder.mkdir(parents=True, exist_ok=True)
    found = sorted(folder.glob(f"{name}_*.deb"))
    if not found:
        subprocess.run(["apt-get", "download", name], cwd=folder, check=True)
        found = sorted(folder.glob(f"{name}_*.deb"))
    if not found:
        raise FileNotFoundError(f"apt-get download {name} left no .deb in {folder}")
    return found[-1]


def unpack(deb: Path, folder: Path) -> Package:
    """Unpack ``deb`` under ``folder/<name>`` (once: a marker records a finished unpack)."""
    name = _field(deb, "Package")
    root = folder / name
    marker = root / ".unpacked"
    if not marker.is_file():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        marker.write_text(deb.name + "\n")
    return Package(name=name, version=_field(deb, "Version"), root=root)


def licences(copyright_text: str) -> list[str]:
    """The distinct ``License:`` names of a (machine-readable, DEP-5) copyright file, in order."""
    names = re.findall(r"^License:[ \t]*(\S[^\n]*)$", copyright_text, flags=re.MULTILINE)
    return list(dict.fromkeys(name.strip() for name in names))
