"""Synthesised English speech for training: flite reads *Alice's Adventures in Wonderland*.

Recorded speech in Debian comes in short clips (letters, syllables, character voices); flite
(Debian packages ``flite`` and ``libflite1``, unpacked like every other package, run from there
without installing) adds continuous read speech by four voices, three male and one female. The
text, the first two chapters of Lewis Carroll's book (public domain), ships in the flite package
itself (``usr/share/doc/flite/examples/alice``). Each voice reads every fourth passage of about a
minute, so all four voices together read the text once.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from taggram.models.data.debian import download, unpack
from taggram.models.data.prepare import (
    ManifestRow,
    _duration,
    package_licence,
    read_mono,
    write_wav,
)

PACKAGES = ("flite", "libflite1")
TEXT = "usr/share/doc/flite/examples/alice"
# flite's built-in voices (libflite1): US male (kal16, rms), Scottish male (awb), US female (slt).
VOICES = ("kal16", "awb", "rms", "slt")
WORDS_PER_PASSAGE = 150  # about a minute of speech


def passages(text: str, words: int = WORDS_PER_PASSAGE) -> list[str]:
    """Consecutive paragraphs joined into passages of at least ``words`` words (the last may be
    shorter); whitespace is normalised.
    """
    found: list[str] = []
    current: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        current += paragraph.split()
        if len(current) >= words:
            found.append(" ".join(current))
            current = []
    if current:
        found.append(" ".join(current))
    return found


def synthesise(data_dir: Path) -> list[ManifestRow]:
    """Download and unpack flite, synthesise the passages (once), return their manifest rows."""
    flite, library = (
        unpack(download(n, data_dir / "debs"), data_dir / "packages") for n in PACKAGES
    )
    program = flite.root / "usr/bin/flite"
    environment = dict(os.environ)
    environment["LD_LIBRARY_PATH"] = ":".join(str(p) for p in library.root.glob("usr/lib/*"))
    licence = package_licence(flite, data_dir) or "see usr/share/doc/flite/copyright"
    package_licence(library, data_dir)
    rows = []
    for number, passage in enumerate(passages((flite.root / TEXT).read_text(errors="replace"))):
        voice = VOICES[number % len(VOICES)]
        target = data_dir / "audio" / "flite" / voice / f"alice_{number:03d}.wav"
        if not target.is_file():
            raw = target.with_suffix(".flite.wav")
            raw.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [str(program), "-voice", voice, "-t", passage, "-o", str(raw)],
                check=True,
                env=environment,
            )
            write_wav(read_mono(raw), target)  # flite writes 16-bit PCM (kal16 16 kHz, others too)
            raw.unlink()
        rows.append(
            ManifestRow(
                path=str(target.relative_to(data_dir)),
                package="flite",
                version=f"{flite.version} (libflite1 {library.version})",
                source=f"{TEXT}, passage {number}, voice {voice}",
                licence=f"speech synthesised by flite ({licence}); text public domain",
                seconds=round(_duration(target), 3),
                group=f"flite/{voice}",
                kind="speech",
                split="train",
            )
        )
    return rows
