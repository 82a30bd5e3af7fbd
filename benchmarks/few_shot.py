"""Few-shot evaluation of custom taggers: every feature x classifier, ``auto``, and MFCC + 1-NN.

Run from the repository root, with a model repository that has the feature extractors
(``taggram build-models``) and ``apt-get install --no-install-recommends fluidsynth espeak-ng``::

    nice .venv/bin/python -m benchmarks.few_shot                 # about 10 minutes per task
    nice .venv/bin/python -m benchmarks.few_shot --episodes 5 --ks 1,5

Tasks, built once into ``.cache/few_shot`` from Debian packages (never one of the evaluation-only
packages of ``taggram.models.data.packages``; ``ensure_trainable`` checks). **Development** tasks
chose every setting of ``auto`` (``taggram.service.custom.selection``); **benchmark** tasks only
report, with those settings fixed:

* ``instruments`` (benchmark, music): eight General MIDI instruments of ``timgm6mb-soundfont``
  rendered by fluidsynth, each example 3 s of one to four random notes (pitch, velocity, length).
* ``voices`` (benchmark, speech): which of eight voice packs of ``hedgewars-data`` says a
  phrase (British, Classic, Default, HillBilly, Mobster, Pirate, Robot, Surfer; ~60 phrases each).
* ``languages`` (benchmark, speech): which of eight languages ``espeak-ng`` reads a random string
  of numbers in, at a random speed and pitch (the MFCC-friendly task of the issue's measurement).
* ``effects`` (benchmark, sound effects): whose attack sound it is, of six units of
  ``megaglest-data`` (daemon, horseman, guard, swordman, stickfighter, archmage; 11 to 16 short
  sounds each, so k = 1 and 5 only).
* ``dev_instruments`` (development, music): eight other instruments (harpsichord, vibraphone,
  accordion, bass, cello, harp, trombone, clarinet) of ``csound-soundfont``'s GM bank, rendered
  the same way.
* ``dev_speakers`` (development, speech): which of eight English voice variants of
  ``espeak-ng`` (m1, m3, f2, f4, Andy, Annie, croak, klatt) reads a string of numbers.
* ``dev_languages`` (development, speech): eight other languages of ``espeak-ng`` (sv, cs, hu,
  fi, ru, tr, ro, da).

Each episode draws ``k`` support examples per class and up to ``QUERIES`` other examples per class
as queries (seeded: the same episodes for every method); each method is fitted on the support set
only and scored by accuracy on the queries. ``auto`` is the service's own procedure on its own
candidates (``features.auto_features``, then ``selection.select`` on the support set, then
``selection.fit``); "best pair" is the best of every feature x classifier pair, chosen after the
fact on the queries. The MFCC baseline
is ``mfcc.statistics`` with one nearest neighbour (cosine). Prints Markdown tables: the summary for
docs/custom-models.md and every pair's accuracy.
"""

from __future__ import annotations

import asyncio
import json
import platform
import re
import shutil
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import typer
from threadpoolctl import threadpool_limits

from benchmarks import ROOT
from taggram.models.data.debian import download, unpack
from taggram.models.data.packages import ensure_trainable
from taggram.service.custom import selection
from taggram.service.custom.features import auto_features, available, candidates, networks
from taggram.service.custom.heads import KnnHead
from taggram.service.settings import Settings
from taggram.service.tagging import Tagger

CACHE = ROOT / ".cache" / "few_shot"
QUERIES = 15
MIN_QUERIES = 5  # a k is skipped for a task whose smallest class leaves fewer queries
SECONDS = 3.0
EXAMPLES_PER_CLASS = 40  # generated for the synthetic tasks
INSTRUMENTS = {
    "piano": 0,
    "marimba": 12,
    "organ": 19,
    "guitar": 24,
    "violin": 40,
    "trumpet": 56,
    "alto_sax": 65,
    "flute": 73,
}
VOICES = ("British", "Classic", "Default", "HillBilly", "Mobster", "Pirate", "Robot", "Surfer")
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "pl")
EFFECTS = ("daemon", "horseman", "guard", "swordman", "stickfighter", "archmage")
# Development tasks (settings of auto are chosen on these only): other sources, other classes.
DEV_INSTRUMENTS = {
    "harpsichord": 6,
    "vibraphone": 11,
    "accordion": 21,
    "bass": 33,
    "cello": 42,
    "harp": 46,
    "trombone": 57,
    "clarinet": 71,
}
DEV_LANGUAGES = ("sv", "cs", "hu", "fi", "ru", "tr", "ro", "da")
DEV_SPEAKERS = ("m1", "m3", "f2", "f4", "Andy", "Annie", "croak", "klatt")
BASELINE = "mfcc.statistics"

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _packages(names: tuple[str, ...]) -> dict[str, Path]:
    """Download and unpack ``names`` once; returns each package's unpacked root folder."""
    ensure_trainable(names)
    return {name: unpack(download(name, CACHE / "debs"), CACHE / "unpacked").root for name in names}


def _midi(program: int, notes: list[tuple[float, float, int, int]]) -> bytes:
    """A format-0 standard MIDI file: one program, ``(start s, length s, pitch, velocity)`` notes
    at 120 BPM with 480 ticks per beat (1 s = 960 ticks)."""
    events: list[tuple[int, bytes]] = [(0, bytes([0xC0, program]))]
    for start, length, pitch, velocity in notes:
        events.append((round(start * 960), bytes([0x90, pitch, velocity])))
        events.append((round((start + length) * 960), bytes([0x80, pitch, 0])))
    events.sort(key=lambda item: item[0])
    track, now = bytearray(), 0
    for tick, message in events:
        delta, now = tick - now, tick
        encoded = [delta & 0x7F]
        while delta := delta >> 7:
            encoded.insert(0, 0x80 | (delta & 0x7F))
        track += bytes(encoded) + message
    track += b"\x00\xff\x2f\x00"
    return (
        b"MThd"
        + struct.pack(">IHHH", 6, 0, 1, 480)
        + b"MTrk"
        + struct.pack(">I", len(track))
        + track
    )


def _render(soundfont: Path, programs: dict[str, int], seed: int, folder: Path) -> None:
    """One fluidsynth render per instrument (examples 4 s apart), cut into 3 s examples."""
    if not soundfont.is_file():  # fluidsynth would quietly fall back to the system's default
        raise FileNotFoundError(soundfont)
    rng = np.random.default_rng(seed)
    for name, program in programs.items():
        notes = []
        for i in range(EXAMPLES_PER_CLASS):
            for _ in range(int(rng.integers(1, 5))):
                start = 4 * i + rng.uniform(0, 1.5)
                notes.append(
                    (
                        start,
                        rng.uniform(0.4, 1.5),
                        int(rng.integers(48, 84)),
                        int(rng.integers(60, 120)),
                    )
                )
        midi = folder / f"{name}.mid"
        midi.write_bytes(_midi(program, notes))
        rendered = folder / f"{name}_all.wav"
        subprocess.run(
            [
                "fluidsynth",
                "-ni",
                "-q",
                "-g",  # gain: fluidsynth's default 0.2 renders at about -25 dBFS
                "0.8",
                "-r",
                "16000",
                "-F",
                str(rendered),
                str(soundfont),
                str(midi),
            ],
            check=True,
            capture_output=True,
        )
        audio, rate = sf.read(rendered, dtype="float32", always_2d=True)
        target = folder / name
        target.mkdir(exist_ok=True)
        for i in range(EXAMPLES_PER_CLASS):
            part = audio[int(4 * i * rate) : int((4 * i + SECONDS) * rate)].mean(axis=1)
            sf.write(target / f"{i:03d}.wav", part, rate, subtype="PCM_16")
        midi.unlink()
        rendered.unlink()


def _instruments(roots: dict[str, Path], folder: Path) -> None:
    soundfont = roots["timgm6mb-soundfont"] / "usr/share/sounds/sf2/TimGM6mb.sf2"
    _render(soundfont, INSTRUMENTS, 13, folder)


def _dev_instruments(roots: dict[str, Path], folder: Path) -> None:
    soundfont = roots["csound-soundfont"] / "usr/share/sounds/sf2/sf_GMbank.sf2"
    _render(soundfont, DEV_INSTRUMENTS, 23, folder)


def _voices(roots: dict[str, Path], folder: Path) -> None:
    voices = roots["hedgewars-data"] / "usr/share/games/hedgewars/Data/Sounds/voices"
    for name in VOICES:
        shutil.copytree(voices / name, folder / name)


def _effects(roots: dict[str, Path], folder: Path) -> None:
    sounds = roots["megaglest-data"] / "usr/share/games/megaglest/techs/megapack/commondata/sounds"
    for unit in EFFECTS:
        target = folder / unit
        target.mkdir()
        for path in sounds.iterdir():
            if re.fullmatch(rf"{unit}_attack\d*\.wav", path.name):
                shutil.copy(path, target / path.name)


def _espeak(voices: dict[str, str], seed: int, folder: Path) -> None:
    """``EXAMPLES_PER_CLASS`` random strings of four numbers per class, read by espeak-ng with
    the class's voice (``language`` or ``language+variant``) at a random speed and pitch."""
    rng = np.random.default_rng(seed)
    for name, voice in voices.items():
        target = folder / name
        target.mkdir()
        for i in range(EXAMPLES_PER_CLASS):
            numbers = " ".join(str(int(n)) for n in rng.integers(1, 100, size=4))
            subprocess.run(
                [
                    "espeak-ng",
                    "-v",
                    voice,
                    "-s",
                    str(int(rng.integers(140, 190))),
                    "-p",
                    str(int(rng.integers(30, 70))),
                    "-w",
                    str(target / f"{i:03d}.wav"),
                    numbers,
                ],
                check=True,
                capture_output=True,
            )


def _languages(_roots: dict[str, Path], folder: Path) -> None:
    _espeak({language: language for language in LANGUAGES}, 17, folder)


def _dev_languages(_roots: dict[str, Path], folder: Path) -> None:
    _espeak({language: language for language in DEV_LANGUAGES}, 27, folder)


def _dev_speakers(_roots: dict[str, Path], folder: Path) -> None:
    _espeak({variant: f"en+{variant}" for variant in DEV_SPEAKERS}, 29, folder)


@dataclass(frozen=True)
class Task:
    """A few-shot task: what it is, whether it chose settings, its packages and its builder."""

    description: str
    role: str  # "development" (settings of auto chosen on it) or "benchmark" (reported only)
    packages: tuple[str, ...]
    build: Callable[[dict[str, Path], Path], None]


TASKS: dict[str, Task] = {
    "instruments": Task(
        "music: 8 soundfont instruments (timgm6mb, fluidsynth)",
        "benchmark",
        ("timgm6mb-soundfont",),
        _instruments,
    ),
    "voices": Task(
        "speech: 8 voice packs of hedgewars-data", "benchmark", ("hedgewars-data",), _voices
    ),
    "languages": Task("speech: 8 languages read by espeak-ng", "benchmark", (), _languages),
    "effects": Task(
        "sound effects: whose attack it is, of six megaglest-data units (k <= 5: 11-16 each)",
        "benchmark",
        ("megaglest-data",),
        _effects,
    ),
    "dev_instruments": Task(
        "music: 8 other instruments of csound-soundfont's GM bank (fluidsynth)",
        "development",
        ("csound-soundfont",),
        _dev_instruments,
    ),
    "dev_speakers": Task(
        "speech: 8 espeak-ng English voice variants reading numbers",
        "development",
        (),
        _dev_speakers,
    ),
    "dev_languages": Task(
        "speech: 8 other languages read by espeak-ng", "development", (), _dev_languages
    ),
}
DEVELOPMENT = [name for name, task in TASKS.items() if task.role == "development"]
BENCHMARK = [name for name, task in TASKS.items() if task.role == "benchmark"]


def build_task(name: str) -> Path:
    folder = CACHE / "tasks" / name
    if not (folder / ".complete").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        task = TASKS[name]
        task.build(_packages(task.packages), folder)
        (folder / ".complete").touch()
    return folder


async def _embed_all(files: list[Path], repository: Path) -> dict[str, np.ndarray]:
    # No queue budget or deadline: every file is the run's own (a busy machine is slow, not full).
    settings = Settings(
        model_repository=repository,
        warmup=False,
        default_model="MTT_musicnn",  # a tagger: a feature extractor cannot be the default
        queue_budget_seconds=86_400.0,
        queue_deadline_seconds=86_400.0,
    )
    slots = asyncio.Semaphore(4)  # a few files at once keep the batchers' batches full
    async with Tagger(settings) as tagger:
        # The networks of the features kept below: quantised copies of loaded float networks
        # offer none (features.available), and running them only doubled the time.
        names = available(tagger.models)
        bases = networks(names)

        async def one(path: Path) -> dict[str, dict[str, np.ndarray]]:
            async with slots:
                return (await tagger.embed(path.read_bytes(), bases)).embeddings

        rows = await asyncio.gather(*(one(path) for path in files))
    return {
        feature: np.stack(
            [row[feature.rpartition(".")[0]][feature.rpartition(".")[2]] for row in rows]
        )
        for feature in names
    }


def features_of(name: str, repository: Path) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Every feature of every example of task ``name`` (cached), labels, class names."""
    folder = build_task(name)
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [f for c in classes for f in sorted((folder / c).iterdir())]
    labels = np.array([classes.index(f.parent.name) for f in files])
    cache = CACHE / "features" / f"{name}.npz"
    if not cache.is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        embedded: dict[str, Any] = asyncio.run(_embed_all(files, repository))
        np.savez(cache, **embedded)
    with np.load(cache, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}, labels, classes


def episode_split(labels: np.ndarray, k: int, episode: int) -> tuple[np.ndarray, np.ndarray]:
    """One seeded episode: indices of ``k`` support examples and up to ``QUERIES`` queries per
    class (``labels``: int class per example), the same for every method compared."""
    rng = np.random.default_rng(1000 * k + episode)
    support: list[int] = []
    queries: list[int] = []
    for c in range(int(labels.max()) + 1):
        members = rng.permutation(np.flatnonzero(labels == c))
        support += list(members[:k])
        queries += list(members[k : k + QUERIES])
    return np.array(support), np.array(queries)


def _accuracy(head_probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(head_probabilities.argmax(axis=1) == labels))


def run_task(
    features: dict[str, np.ndarray], labels: np.ndarray, k: int, episodes: int
) -> tuple[dict[str, list[float]], list[list[str]]]:
    """Accuracy of every method on ``episodes`` seeded episodes with ``k`` shots, and the
    members ``auto`` picked in each episode."""
    n_classes = int(labels.max()) + 1
    pool = candidates(list(features), list(selection.CLASSIFIERS))
    # auto's own candidates: what POST /v1/models with features=auto considers
    considered = candidates(auto_features(list(features), k < 2), list(selection.CLASSIFIERS))
    scores: dict[str, list[float]] = {}
    picks: list[list[str]] = []
    for episode in range(episodes):
        s, q = episode_split(labels, k, episode)
        Y = np.eye(n_classes, dtype=bool)[labels[s]]
        train = {name: values[s] for name, values in features.items()}
        query = {name: values[q] for name, values in features.items()}
        for candidate in pool:
            head = selection.make_head(candidate.classifier, False).fit(train[candidate.feature], Y)
            probabilities = head.predict_proba(query[candidate.feature])
            scores.setdefault(str(candidate), []).append(_accuracy(probabilities, labels[q]))
        chosen = selection.select(train, Y, considered, False)
        auto = selection.fit(train, Y, chosen, False).predict_proba(query)
        scores.setdefault("auto", []).append(_accuracy(auto, labels[q]))
        picks.append([str(member) for member in chosen.members])
        if BASELINE in features:
            baseline = KnnHead(False, k=1).fit(train[BASELINE], Y)
            probabilities = baseline.predict_proba(features[BASELINE][q])
            scores.setdefault("MFCC + 1-NN", []).append(_accuracy(probabilities, labels[q]))
    return scores, picks


def commonest(picks: list[list[str]]) -> str:
    """The members ``auto`` picked most often over the episodes, and in how many."""
    counts = Counter(" + ".join(members) for members in picks)
    members, count = counts.most_common(1)[0]
    return f"{members} ({count}/{len(picks)})"


def pair_tables(results: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """One Markdown table per task: every method's mean accuracy (rows) at each k (columns)."""
    out = []
    for task, by_k in results.items():
        ks = sorted(by_k, key=int)
        methods = list(by_k[ks[0]])
        order = sorted(methods, key=lambda m: -np.mean(by_k[ks[-1]][m]))
        out += [
            f"\n{task}:\n",
            "| method | " + " | ".join(f"k={k}" for k in ks) + " |",
        ]
        out.append("|---|" + "---|" * len(ks))
        for method in order:
            cells = " | ".join(f"{np.mean(by_k[k][method]):.3f}" for k in ks)
            out.append(f"| {method} | {cells} |")
    return "\n".join(out)


@app.command()
def main(
    repository: Path = typer.Option(
        ROOT / "model_repository", help="model repository with feature models"
    ),
    ks: str = typer.Option("1,5,10,20", help="examples per class, comma-separated"),
    episodes: int = typer.Option(20, min=1, help="random episodes per task and k"),
    tasks: str = typer.Option(",".join(TASKS), help="tasks to run, comma-separated"),
    output: Path = typer.Option(CACHE / "results.json", help="every score, as JSON"),
    tables_from: list[Path] = typer.Option(
        [], help="print the per-pair tables of these results files (merged in order), run nothing"
    ),
) -> None:
    """Print the summary table (docs/custom-models.md) and every pair's mean accuracy."""
    if tables_from:
        merged: dict[str, dict[str, dict[str, list[float]]]] = {}
        for path in tables_from:
            for task, by_k in json.loads(path.read_text()).items():
                merged.setdefault(task, {}).update(by_k)
        print(pair_tables(merged))
        return
    started = time.perf_counter()
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    summary = [
        "| task | role | k | chance | MFCC + 1-NN | best fixed pair, chosen on the queries "
        "| auto | auto − best | auto − MFCC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    picked = []
    for task in tasks.split(","):
        features, labels, classes = features_of(task, repository)
        results[task] = {}
        for k in (int(x) for x in ks.split(",")):
            if np.bincount(labels).min() < k + MIN_QUERIES:
                continue  # too few examples left as queries in some class
            with threadpool_limits(limits=1):  # thousands of small fits: one BLAS thread each
                scores, picks = run_task(features, labels, k, episodes)
            results[task][str(k)] = scores
            means = {name: float(np.mean(v)) for name, v in scores.items()}
            pairs = {n: m for n, m in means.items() if n not in ("auto", "MFCC + 1-NN")}
            best = max(pairs, key=pairs.__getitem__)
            baseline = means.get("MFCC + 1-NN", float("nan"))
            summary.append(
                f"| {task} | {TASKS[task].role} | {k} | {1 / len(classes):.3f} | {baseline:.3f} "
                f"| {pairs[best]:.3f} ({best}) | {means['auto']:.3f} "
                f"| {100 * (means['auto'] - pairs[best]):+.1f} pts "
                f"| {100 * (means['auto'] - baseline):+.1f} pts |"
            )
            picked.append(f"| {task} | {k} | {commonest(picks)} |")
            print(summary[-1], flush=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results))
    print(
        f"\n{episodes} episodes per row, up to {QUERIES} queries per class; machine: "
        f"{platform.processor() or platform.machine()}, {time.perf_counter() - started:.0f} s\n"
    )
    print("\n".join(summary))
    print("\n| task | k | members auto picked most often (episodes) |\n|---|---|---|")
    print("\n".join(picked))
    print(pair_tables(results))


if __name__ == "__main__":
    app()
