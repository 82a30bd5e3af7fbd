"""A distilled student against its teacher on the recordings of ``../shared/audio``.

Run from the repository root (``taggram build-models`` first; the student may also be read from
``models/trained/`` before it is copied into the repository)::

    .venv/bin/python -m benchmarks.student_vs_teacher                 # about a minute on 2 cores
    .venv/bin/python -m benchmarks.student_vs_teacher --student MTT_sample_cnn --teacher MTT_musicnn

Both models tag every recording exactly as the service does (its decoder, patch plan, sessions
and coverage-weighted clip average), then the clip-level tag vectors are compared: how many of
the teacher's top-5 tags the student also ranks in its top 5, and the Pearson correlation of the
two vectors. Each summary row gives the mean top-5 overlap (of 5) with its standard error; when the
clips' manifest has a ``track`` column (``taggram validation-clips --every-segment``), a "per track"
row averages each track's segments first, so every track weighs the same whatever its length.
For scale, a reference model (``--reference``, by default ``MTT_vgg``, the other published MTT
tagger) is compared with the teacher the same way: how well a second model trained on the same
labels agrees with the teacher on the same clips. A paired table then gives the student's
agreement minus the reference's, clip by clip, with the standard error of those differences:
``--reference MTT_sample_cnn`` with a candidate as ``--student`` says whether the candidate
differs from the shipped student beyond the choice of clips.
onnxruntime's CPU time per patch (batch 1 and 16, the service's session options) is
measured for both on the same machine in the same run. Prints Markdown for docs/models.md.
"""

from __future__ import annotations

import csv
import platform
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import typer

from benchmarks import ROOT, SHARED_AUDIO
from benchmarks.raw_inference import time_repeatedly
from taggram.repository import ModelEntry, load_repository
from taggram.service.audio.decode import DecodeLimits, decode
from taggram.service.audio.patching import Patches, clip_average, plan_patches
from taggram.service.inference.session import ModelSession

LIMITS = DecodeLimits(max_bytes=1 << 30, max_duration_seconds=3600.0)
TOP = 5

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@dataclass(frozen=True)
class Agreement:
    clip: str
    kind: str
    track: str  # the source file the clip was cut from ("" when the manifest does not say)
    top5_overlap: float
    pearson: float
    teacher_top: list[str]
    student_top: list[str]


def clip_tags(session: ModelSession, waveform: np.ndarray) -> np.ndarray:
    """The clip-level probabilities the service would return (default hop)."""
    spec = session.metadata.patch
    plan = plan_patches(len(waveform), spec, spec.hop_samples, max_patches=100_000)
    patches = Patches(waveform, spec, plan)
    batch = np.stack([patches[i] for i in range(len(patches))])
    return clip_average(session.run(batch)[session.metadata.tag_output], plan)


def top(tags: list[str], scores: np.ndarray) -> list[str]:
    return [tags[i] for i in np.argsort(-scores, kind="stable")[:TOP]]


def compare(student: ModelSession, teacher: ModelSession, audio: Path) -> list[Agreement]:
    tags = teacher.metadata.tags
    if student.metadata.tags != tags:
        raise typer.BadParameter("student and teacher have different tag lists")
    with (audio / "manifest.csv").open(newline="") as handle:
        clips = list(csv.DictReader(handle))
    rows = []
    for clip in clips:
        waveform = decode((audio / clip["file"]).read_bytes(), 16000, LIMITS).waveform
        s, t = clip_tags(student, waveform), clip_tags(teacher, waveform)
        s_top, t_top = top(tags, s), top(tags, t)
        rows.append(
            Agreement(
                clip=clip["file"],
                kind=clip["kind"],
                track=clip.get("track", ""),
                top5_overlap=len(set(s_top) & set(t_top)) / TOP,
                pearson=float(np.corrcoef(s, t)[0, 1]),
                teacher_top=t_top,
                student_top=s_top,
            )
        )
    return rows


def mean_error(values: np.ndarray, sign: str = "", decimals: int = 2) -> str:
    """``mean ± standard error`` of ``values`` (``sign="+"`` signs the mean)."""
    error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{values.mean():{sign}.{decimals}f} ± {error:.{decimals}f}"


def summary(label: str, rows: list[Agreement]) -> str:
    """A Markdown row: clips, mean top-5 overlap (of 5) ± its standard error, mean Pearson r."""
    overlaps = TOP * np.array([r.top5_overlap for r in rows])
    pearson = np.mean([r.pearson for r in rows])
    return f"| {label} | {len(rows)} | {mean_error(overlaps)} | {pearson:.3f} |"


def paired(label: str, rows: list[Agreement], others: list[Agreement]) -> str:
    """A Markdown row: one model's agreement minus another's on the same clips (``rows`` and
    ``others`` in the same order), mean ± the standard error of the per-clip differences. Both
    models meet the same clips, so the clips' own difficulty cancels: this error is the one that
    says whether two models differ, and it is smaller than either model's own."""
    if [r.clip for r in rows] != [o.clip for o in others]:
        raise ValueError("paired rows must be the same clips in the same order")
    pairs = list(zip(rows, others, strict=True))
    overlap = TOP * np.array([r.top5_overlap - o.top5_overlap for r, o in pairs])
    pearson = np.array([r.pearson - o.pearson for r, o in pairs])
    return f"| {label} | {len(rows)} | {mean_error(overlap, '+')} | {mean_error(pearson, '+', 3)} |"


def has_tracks(rows: list[Agreement]) -> bool:
    """Whether ``rows`` name their tracks and some track has several clips (every segment):
    otherwise a per-track row would repeat the per-clip one."""
    tracks = [r.track for r in rows]
    return bool(rows) and all(tracks) and len(set(tracks)) < len(tracks)


def per_track(rows: list[Agreement]) -> list[Agreement]:
    """One row per track: the mean overlap and Pearson r of its clips."""
    tracks: dict[str, list[Agreement]] = {}
    for row in rows:
        tracks.setdefault(row.track, []).append(row)
    return [
        Agreement(
            clip=track,
            kind=clips[0].kind,
            track=track,
            top5_overlap=float(np.mean([c.top5_overlap for c in clips])),
            pearson=float(np.mean([c.pearson for c in clips])),
            teacher_top=[],
            student_top=[],
        )
        for track, clips in tracks.items()
    ]


def ms_per_patch(session: ModelSession, batch: int) -> tuple[float, float]:
    """(median, best) milliseconds of onnxruntime time per patch at ``batch``."""
    audio = 0.1 * np.random.default_rng(0).standard_normal(
        (batch, session.metadata.patch.samples), np.float32
    )
    timing = time_repeatedly(partial(session.run, audio), budget_s=3.0, min_runs=5)
    return 1000 * timing.median_s / batch, 1000 * timing.best_s / batch


def find_entry(name: str, repositories: list[Path]) -> ModelEntry:
    """The entry of model ``name`` in the first of ``repositories`` that has it."""
    for repository in repositories:
        if repository.is_dir() and (entries := load_repository(repository)).get(name):
            return entries[name]
    raise typer.BadParameter(f"{name} is in none of {[str(r) for r in repositories]}")


@app.command()
def main(
    student: str = typer.Option("MTT_sample_cnn"),
    teacher: str = typer.Option("MTT_musicnn"),
    repository: Path = typer.Option(ROOT / "model_repository"),
    trained: Path = typer.Option(
        ROOT / "taggram" / "models" / "trained", help="also searched for models"
    ),
    audio: Path = typer.Option(SHARED_AUDIO, help="folder with manifest.csv and the recordings"),
    threads: int = typer.Option(2, help="onnxruntime intra-op threads"),
    reference: str = typer.Option(
        "MTT_vgg", help="another model compared with the teacher, for scale ('' for none)"
    ),
) -> None:
    repositories = [repository, trained]
    sessions = {
        name: ModelSession(find_entry(name, repositories), ["CPUExecutionProvider"], threads, 1)
        for name in (student, teacher, reference)
        if name
    }
    rows = compare(sessions[student], sessions[teacher], audio)
    compared = {student: rows}
    if reference:
        compared[reference] = compare(sessions[reference], sessions[teacher], audio)
    typer.echo(f"| clip | kind | top-5 overlap | Pearson r | {teacher} top 5 | {student} top 5 |")
    typer.echo("|---|---|---|---|---|---|")
    for row in rows:
        typer.echo(
            f"| {row.clip} | {row.kind} | {row.top5_overlap:.1f} | {row.pearson:.3f} | "
            f"{', '.join(row.teacher_top)} | {', '.join(row.student_top)} |"
        )
    typer.echo("")
    typer.echo(f"Agreement with {teacher}:")
    typer.echo("")
    typer.echo("| model | recordings | n | mean top-5 overlap (of 5) ± SE | mean Pearson r |")
    typer.echo("|---|---|---|---|---|")
    for name, model_rows in compared.items():
        for label, subset in (
            ("all", model_rows),
            ("music", [r for r in model_rows if r.kind == "music"]),
            ("sound/speech", [r for r in model_rows if r.kind != "music"]),
        ):
            if subset:
                typer.echo(summary(f"{name} | {label}", subset))
            if has_tracks(subset):
                typer.echo(summary(f"{name} | {label}, per track", per_track(subset)))
    if reference:
        typer.echo("")
        typer.echo(f"Paired, {student} minus {reference}, on the same clips:")
        typer.echo("")
        typer.echo("| recordings | n | top-5 overlap difference ± SE | Pearson r difference ± SE |")
        typer.echo("|---|---|---|---|")
        for label, keep in (("all", None), ("music", True), ("sound/speech", False)):
            mine, theirs = (
                [r for r in compared[name] if keep is None or (r.kind == "music") == keep]
                for name in (student, reference)
            )
            if mine:
                typer.echo(paired(label, mine, theirs))
            if has_tracks(mine):
                typer.echo(paired(f"{label}, per track", per_track(mine), per_track(theirs)))
    typer.echo("")
    typer.echo(f"CPU: {platform.processor() or platform.machine()}, {threads} onnxruntime threads")
    typer.echo("| model | patch (s) | ms/patch batch 1 (median / best) | batch 16 | ms per s |")
    typer.echo("|---|---|---|---|---|")
    for name, session in sessions.items():
        seconds = session.metadata.patch.span_samples / session.metadata.sample_rate
        one, one_best = ms_per_patch(session, 1)
        many, many_best = ms_per_patch(session, 16)
        typer.echo(
            f"| {name} | {seconds:.2f} | {one:.1f} / {one_best:.1f} | {many:.1f} / {many_best:.1f}"
            f" | {many / seconds:.1f} |"
        )


if __name__ == "__main__":
    app()
