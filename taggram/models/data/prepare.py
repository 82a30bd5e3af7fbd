"""The data recipe: Debian music packages → mono 16 kHz WAV files under ``data/`` + a manifest.

Every step is idempotent (downloads, unpacks and decoded files are reused), so a rerun only does
what is missing and always rewrites the manifest from what is on disk. The manifest records, per
file, its package, version, path inside the package and the package's licences, which the trained
model's metadata then summarises.
"""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from taggram.models.data.debian import download, licences, unpack
from taggram.models.data.packages import MUSIC_PATH, TRAINING_PACKAGES, ensure_trainable

SAMPLE_RATE = 16000
# Containers libsndfile decodes; tracker modules (.xm, .mod, .it) and MIDI are left out.
AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3"})
# Shorter files are jingles and sound effects even under a "music" folder.
MIN_SECONDS = 30.0
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class ManifestRow:
    """One decoded file; ``group`` keeps related files (one folder) on one side of a split."""

    path: str  # relative to the data folder
    package: str
    version: str
    source: str  # path inside the package
    licence: str
    seconds: float
    group: str


def _duration(path: Path) -> float:
    """Seconds of audio, or 0 when libsndfile cannot read the file."""
    try:
        return float(sf.info(str(path)).duration)
    except (RuntimeError, sf.LibsndfileError):
        return 0.0


def music_files(root: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Audio files under ``root`` whose path matches ``pattern`` and that last long enough."""
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in AUDIO_SUFFIXES
        and path.is_file()
        and pattern.search(str(path.relative_to(root)))
        and _duration(path) >= MIN_SECONDS
    ]


def decode_to_wav(source: Path, target: Path, sample_rate: int = SAMPLE_RATE) -> None:
    """Decode, average the channels, resample with soxr (HQ) and write a float32 WAV atomically."""
    audio, rate = sf.read(str(source), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.wav")
    sf.write(str(partial), np.asarray(mono, dtype=np.float32), sample_rate, subtype="FLOAT")
    partial.replace(target)


def prepare(data_dir: Path, packages: dict[str, re.Pattern[str] | None] | None = None) -> Path:
    """Download, unpack, select and decode; return the manifest's path."""
    packages = TRAINING_PACKAGES if packages is None else packages
    ensure_trainable(packages)
    rows: list[ManifestRow] = []
    for name, pattern in tqdm(packages.items(), desc="packages", unit="pkg"):
        package = unpack(download(name, data_dir / "debs"), data_dir / "packages")
        copyright_text = ""
        if package.copyright_path.is_file():
            copyright_text = package.copyright_path.read_text(errors="replace")
            (data_dir / "licences").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(package.copyright_path, data_dir / "licences" / f"{name}.copyright")
        licence = "; ".join(licences(copyright_text)) or f"see usr/share/doc/{name}/copyright"
        for source in music_files(package.root, pattern or MUSIC_PATH):
            relative = source.relative_to(package.root)
            target = data_dir / "audio" / name / relative.with_suffix(".wav")
            if not target.is_file():
                decode_to_wav(source, target)
            rows.append(
                ManifestRow(
                    path=str(target.relative_to(data_dir)),
                    package=name,
                    version=package.version,
                    source=str(relative),
                    licence=licence,
                    seconds=round(_duration(target), 3),
                    group=f"{name}/{relative.parent}",
                )
            )
    manifest = data_dir / MANIFEST
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ManifestRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return manifest
