"""Fetch and unpack Debian packages with the system's own tools, and read their licences.

``apt-get download`` needs no root and installs nothing; ``dpkg -x`` unpacks without running
maintainer scripts. Both steps are skipped when their output already exists, so reruns are cheap.
"""

from __future__ import annotations

import re
import subprocess
import zipfile
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
        """The package's Debian copyright file (its licence record)."""
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


def expand(archive: Path, wanted: re.Pattern[str]) -> Path:
    """Extract the members of a zip ``archive`` whose names match ``wanted`` (once: a marker
    records a finished extraction) into a folder next to it named like it without the suffix
    (0 A.D. keeps all its data in one 3 GB zip, of which the recipe needs only the audio).
    Returns that folder. Raises ``zipfile.BadZipFile`` when ``archive`` is no zip.
    """
    folder = archive.with_suffix("")
    marker = folder / ".expanded"
    if not marker.is_file():
        with zipfile.ZipFile(archive) as opened:
            members = [name for name in opened.namelist() if wanted.search(name)]
            opened.extractall(folder, members)
        marker.write_text(archive.name + "\n")
    return folder


# Free-text copyright files (not DEP-5) name their licences in prose; these catch the usual ones.
FREE_TEXT_LICENCES = (
    (re.compile(r"GNU General Public License|\bGPL\b"), "GPL"),
    (re.compile(r"GNU Lesser General Public License|\bLGPL\b"), "LGPL"),
    (re.compile(r"Creative Commons Attribut\w* Share-?Alike|by-sa", re.IGNORECASE), "CC-BY-SA"),
    (re.compile(r"Creative Commons [\d.]+ Attribution\b|CC-BY(?!-SA)"), "CC-BY"),
    (re.compile(r"\bISC licen[cs]e", re.IGNORECASE), "ISC"),
    (re.compile(r"\bMIT licen[cs]e", re.IGNORECASE), "MIT"),
    (re.compile(r"\bBSD\b"), "BSD"),
    (re.compile(r"public domain", re.IGNORECASE), "public-domain"),
)


def licences(copyright_text: str) -> list[str]:
    """Licence names of a copyright file, in order of appearance.

    Machine-readable (DEP-5) files give their ``License:`` fields; free-text files are scanned
    for the common licence names, marked as such so nobody mistakes them for an exact reading.
    """
    names = re.findall(r"^License:[ \t]*(\S[^\n]*)$", copyright_text, flags=re.MULTILINE)
    if names:
        return list(dict.fromkeys(name.strip() for name in names))
    found = sorted(
        (match.start(), name)
        for pattern, name in FREE_TEXT_LICENCES
        if (match := pattern.search(copyright_text))
    )
    return [f"{name} (free-text copyright file)" for _, name in found]
