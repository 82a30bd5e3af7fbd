"""The data recipe: Debian packages → mono 16 kHz WAV files under ``data/`` + a manifest.

Music files are decoded one by one; short clips (spoken words, sound effects) are concatenated per
folder into reels of about a minute, so that a training window holds several of them;
synthesised speech comes from :mod:`taggram.models.data.speech`, and synthesised singing mixed
over the training music, when asked for, from :mod:`taggram.models.data.singing`. Every step is
idempotent (downloads, unpacks and decoded files are reused), so a rerun only does what is
missing and always rewrites the manifest from what is on disk. The manifest records, per file, its
package, version, path inside the package, the package's licences, what it is (music, speech,
effects) and its split (whole packages are held out for validation), which the trained model's
metadata then summarises.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from taggram.models.data.debian import Package, download, expand, licences, unpack
from taggram.models.data.packages import (
    TRAINING_PACKAGES,
    VALIDATION_PACKAGES,
    Selection,
    ensure_trainable,
)

SAMPLE_RATE = 16000
# Containers libsndfile decodes; MIDI is left out.
AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3"})
# Tracker modules, rendered by FFmpeg's libopenmpt demuxer (a Selection's ``modules``).
MODULE_SUFFIXES = frozenset({".mod", ".xm", ".it", ".s3m"})
# libopenmpt's own output rate; soxr then resamples to SAMPLE_RATE as for decoded files.
MODULE_RENDER_RATE = 48000
# A rendered module quieter than this (RMS, -60 dBFS) is silence, not music: a song whose two
# channels are exact inverses (pingus' rough_journey.it) cancels when averaged to mono.
SILENCE_RMS = 1e-3
# Shorter files are jingles and sound effects even under a "music" folder.
MIN_SECONDS = 30.0
# Reels of short clips: about a minute each, clips separated by a quarter second of silence.
REEL_SECONDS = 60.0
REEL_GAP_SECONDS = 0.25
# A decoded clip peaking above this is a broken encoding, not audio (see write_reel).
MAX_PEAK = 2.0
MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class ManifestRow:
    """One decoded file; ``group`` keeps related files (one folder) on one side of a split."""

    path: str  # relative to the data folder
    package: str
    version: str
    source: str  # path inside the package (a reel: its folder and the number of clips)
    licence: str
    seconds: float
    group: str
    kind: str  # music, speech or effects
    split: str  # train or validation


def _duration(path: Path) -> float:
    """Seconds of audio, or 0 when libsndfile cannot read the file."""
    try:
        return float(sf.info(str(path)).duration)
    except (RuntimeError, sf.LibsndfileError):
        return 0.0


def matching_files(root: Path, suffixes: frozenset[str], pattern: re.Pattern[str]) -> list[Path]:
    """Files under ``root``, sorted, with one of ``suffixes`` (any case) and a path relative to
    ``root`` that matches ``pattern``."""
    return [
        path
        for path in sorted(root.rglob("*"))
        if path.suffix.lower() in suffixes
        and path.is_file()
        and pattern.search(str(path.relative_to(root)))
    ]


def audio_files(root: Path, pattern: re.Pattern[str]) -> list[tuple[Path, float]]:
    """(path, seconds) of the readable audio files under ``root`` whose path matches ``pattern``."""
    found = [(path, _duration(path)) for path in matching_files(root, AUDIO_SUFFIXES, pattern)]
    return [(path, seconds) for path, seconds in found if seconds > 0]


def music_files(root: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Audio files under ``root`` whose path matches ``pattern`` and that last long enough."""
    return [path for path, seconds in audio_files(root, pattern) if seconds >= MIN_SECONDS]


def read_mono(source: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode, average the channels and resample with soxr (HQ): float32 [samples]."""
    audio, rate = sf.read(str(source), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate, quality="HQ")
    return np.asarray(mono, dtype=np.float32)


def ffmpeg_command() -> str:
    """The ``ffmpeg`` command's path. Raises ``FileNotFoundError`` (naming the fix) without it."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise FileNotFoundError(
            "rendering tracker modules needs the ffmpeg command: apt-get install ffmpeg"
        )
    return ffmpeg


def render_module(source: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Render a tracker module (.mod, .xm, .it, .s3m) once through, without repeats: float32
    [samples] of mono audio at ``sample_rate`` Hz.

    The ``ffmpeg`` command's libopenmpt demuxer renders stereo at 48 kHz (libopenmpt's defaults:
    its interpolation, stereo separation and one pass through the song); the channels are then
    averaged and resampled with soxr HQ like a decoded file. Raises ``FileNotFoundError`` when
    ``ffmpeg`` is not installed (Debian's is built with libopenmpt) and ``ValueError`` when it
    cannot render the file.
    """
    command = [ffmpeg_command(), "-nostdin", "-v", "error", "-f", "libopenmpt", "-i", str(source)]
    command += ["-ac", "2", "-ar", str(MODULE_RENDER_RATE), "-f", "f32le", "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        reason = " ".join(result.stderr.decode(errors="replace").split())
        raise ValueError(f"ffmpeg could not render {source}: {reason}")
    stereo = np.frombuffer(result.stdout, dtype=np.float32).reshape(-1, 2)
    mono = soxr.resample(stereo.mean(axis=1), MODULE_RENDER_RATE, sample_rate, quality="HQ")
    return np.asarray(mono, dtype=np.float32)


def write_wav(audio: np.ndarray, target: Path, sample_rate: int = SAMPLE_RATE) -> None:
    """Write float32 mono audio as a float WAV atomically (never a partial file under its name)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.wav")
    sf.write(str(partial), np.asarray(audio, dtype=np.float32), sample_rate, subtype="FLOAT")
    partial.replace(target)


def decode_to_wav(source: Path, target: Path, sample_rate: int = SAMPLE_RATE) -> None:
    """Decode, average the channels, resample with soxr (HQ) and write a float32 WAV atomically."""
    write_wav(read_mono(source, sample_rate), target, sample_rate)


def music_to_wav(source: Path, target: Path) -> bool:
    """Decode (or, a tracker module, render) ``source`` to a float WAV at ``target``; whether it
    was written. A module's render is known only once made: one shorter than ``MIN_SECONDS``
    (a jingle) or quieter than ``SILENCE_RMS`` is not music and is not written (rendering it
    again on a rerun takes a moment)."""
    if source.suffix.lower() not in MODULE_SUFFIXES:
        decode_to_wav(source, target)
        return True
    rendered = render_module(source)
    too_short = len(rendered) < MIN_SECONDS * SAMPLE_RATE
    if too_short or np.sqrt(np.mean(rendered**2)) < SILENCE_RMS:
        return False
    write_wav(rendered, target)
    return True


def plan_reels(clips: list[tuple[Path, float]]) -> list[list[Path]]:
    """Consecutive clips (in the given order) packed into reels of at least ``REEL_SECONDS``
    (the last reel of a folder may be shorter; it is kept if it reaches ``MIN_SECONDS / 3``).
    """
    reels: list[list[Path]] = [[]]
    seconds = 0.0
    for path, duration in clips:
        if seconds >= REEL_SECONDS:
            reels.append([])
            seconds = 0.0
        reels[-1].append(path)
        seconds += duration + REEL_GAP_SECONDS
    if seconds < MIN_SECONDS / 3:
        reels.pop()
    return reels


def write_reel(clips: list[Path], target: Path) -> None:
    """Decode ``clips`` and write them one after the other, separated by short silences.

    Clips that decode to non-finite samples or peaks above ``MAX_PEAK`` are broken encodings
    (some of klettres' Setswana recordings decode to peaks of 10-60) and are left out.
    """
    gap = np.zeros(round(REEL_GAP_SECONDS * SAMPLE_RATE), np.float32)
    decoded = [read_mono(clip) for clip in clips]
    parts = [part for audio in decoded if _sound(audio) for part in (audio, gap)]
    write_wav(np.concatenate(parts) if parts else gap, target)


def _sound(audio: np.ndarray) -> bool:
    """Whether decoded audio is finite and within ``MAX_PEAK`` (lossy codecs overshoot 1 a bit)."""
    return bool(np.isfinite(audio).all() and np.abs(audio).max(initial=0.0) <= MAX_PEAK)


def package_rows(
    package: Package, selection: Selection, data_dir: Path, licence: str, split: str
) -> list[ManifestRow]:
    """Decode what ``selection`` takes from an unpacked package; one manifest row per WAV file."""
    rows = []
    if selection.archive is not None:
        wanted = [p.pattern for p in (selection.music, selection.clips) if p is not None]
        expand(package.root / selection.archive, re.compile("|".join(f"(?:{w})" for w in wanted)))

    def row(target: Path, source: str, folder: Path, kind: str) -> ManifestRow:
        return ManifestRow(
            path=str(target.relative_to(data_dir)),
            package=package.name,
            version=package.version,
            source=source,
            licence=licence,
            seconds=round(_duration(target), 3),
            group=f"{package.name}/{folder}",
            kind=kind,
            split=split,
        )

    music: list[Path] = []
    if selection.music is not None:
        music += music_files(package.root, selection.music)
    if selection.modules is not None:
        music += matching_files(package.root, MODULE_SUFFIXES, selection.modules)
    for source in music:
        relative = source.relative_to(package.root)
        target = data_dir / "audio" / package.name / relative.with_suffix(".wav")
        if target.is_file() or music_to_wav(source, target):
            rows.append(row(target, str(relative), relative.parent, "music"))
    if selection.clips is not None:
        by_folder: dict[Path, list[tuple[Path, float]]] = {}
        for source, seconds in audio_files(package.root, selection.clips):
            if source not in music and seconds < MIN_SECONDS:
                folder = source.relative_to(package.root).parent
                folder = Path("reels") if selection.reels_across_folders else folder
                by_folder.setdefault(folder, []).append((source, seconds))
        for folder, clips in by_folder.items():
            for number, reel in enumerate(plan_reels(clips)):
                target = data_dir / "audio" / package.name / folder / f"reel_{number:03d}.wav"
                if not target.is_file():
                    write_reel(reel, target)
                described = f"{folder} ({len(reel)} clips, reel {number})"
                rows.append(row(target, described, folder, selection.clips_kind))
    return rows


def prepare(
    data_dir: Path,
    packages: Mapping[str, Selection] | None = None,
    validation: Mapping[str, Selection] | None = None,
    speech: bool = True,
    singing_songs: int = 0,
    singing_seed: int = 0,
    singing_voices: bool = False,
) -> Path:
    """Download, unpack, select and decode (plus flite's synthesised speech when ``speech``, and
    ``singing_songs`` songs synthesised by Sinsy, seeds from ``singing_seed``, mixed over the
    training music, sung by random men and women with ``singing_voices``); return the manifest's
    path. ``packages`` are for training, ``validation`` held out whole.

    Raises ``EvaluationPackageError`` for a package reserved for evaluation, ``FileNotFoundError``
    without ffmpeg where modules are selected, ``ValueError`` for negative ``singing_songs`` and
    ``SingingUnavailableError`` when songs are asked for without pysinsy, or singers without
    praat-parselmouth (each before any download).
    """
    packages = TRAINING_PACKAGES if packages is None else packages
    validation = VALIDATION_PACKAGES if validation is None else validation
    ensure_trainable([*packages, *validation])
    if singing_songs < 0:
        raise ValueError(f"singing songs must be at least 0, not {singing_songs}")
    if singing_songs:
        from taggram.models.data.singing import require_parselmouth, require_pysinsy

        require_pysinsy()  # before any download, not after an hour of them
        if singing_voices:
            require_parselmouth()
    if any(s.modules is not None for s in (*packages.values(), *validation.values())):
        ffmpeg_command()  # before any download, not at the first package with modules
    rows: list[ManifestRow] = []
    chosen = [(name, s, "train") for name, s in packages.items()]
    chosen += [(name, s, "validation") for name, s in validation.items()]
    for name, selection, split in tqdm(chosen, desc="packages", unit="pkg"):
        package = unpack(download(name, data_dir / "debs"), data_dir / "packages")
        rows += package_rows(
            package, selection, data_dir, package_licence(package, data_dir), split
        )
    if speech:
        from taggram.models.data.speech import synthesise

        rows += synthesise(data_dir)
    if singing_songs:
        from taggram.models.data.singing import accompaniment, synthesise_singing

        music = accompaniment(rows, "train")
        rows += synthesise_singing(data_dir, music, singing_songs, singing_seed, singing_voices)
    manifest = data_dir / MANIFEST
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(ManifestRow.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return manifest


def package_licence(package: Package, data_dir: Path) -> str:
    """The licences of a package's copyright file (copied to ``data/licences/``), ``; ``-joined."""
    copyright_text = ""
    if package.copyright_path.is_file():
        copyright_text = package.copyright_path.read_text(errors="replace")
        (data_dir / "licences").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package.copyright_path, data_dir / "licences" / f"{package.name}.copyright")
    return "; ".join(licences(copyright_text)) or f"see usr/share/doc/{package.name}/copyright"
