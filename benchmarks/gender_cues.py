"""Which cue a tagger hears a speaker's gender by: pitch or formants.

Run from the repository root, after ``taggram prepare-data`` (for the validation speech) and with
the singing extra (``praat-parselmouth``)::

    .venv/bin/python -m benchmarks.gender_cues                  # ~10 minutes on 2 cores

Every recording (by default the validation speech: tuxpaint's spoken descriptions of pictures, the
reels ``prepare-data`` writes, 16 kHz mono) is changed through Praat's "Change gender"
(pitch-synchronous overlap-add, as ``--singing-voices`` sings; Boersma and Weenink's Praat) in
five ways: resynthesised unchanged (the control: overlap-add has artefacts of its own), the
pitch only moved down (×0.6) or up (×1.6), the formants only moved down (×0.85: a longer vocal
tract), and both down. Each model tags every version as the service does (clip average over its
patches). For each version the table gives the female share F = W / (W + M), where W sums the
clip probabilities of the female tags (woman, female, female vocal, female voice) and M of the
male ones, averaged over the recordings, and how many recordings have `woman` or `female` among
the model's top 5. The pitch effect dP is F(control) - F(pitch down), the formant effect dF is
F(control) - F(formants down). A student distilled from a teacher should move as the teacher
does; docs/training.md reads the figures.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import NamedTuple

import numpy as np
import soundfile as sf
import typer

from benchmarks import MODEL_REPOSITORY, ROOT
from benchmarks.student_vs_teacher import clip_tags, find_entry
from taggram.models.data.singing import Singer, sung_by
from taggram.service.inference.session import ModelSession

FEMALE = ("woman", "female", "female vocal", "female voice")
MALE = ("man", "male", "male vocal", "male voice")
NAMED = ("woman", "female")  # counted in the top 5


class Change(NamedTuple):
    """A change of voice: pitch and formant ratios (1.0: kept)."""

    name: str
    pitch_ratio: float
    formant_ratio: float

    def singer(self, seed: int) -> Singer:
        """The change as :func:`sung_by` makes it (``male``: moved towards a man's voice)."""
        male = self.pitch_ratio < 1.0 or self.formant_ratio < 1.0
        return Singer(male, self.pitch_ratio, self.formant_ratio, seed)


CONTROL = Change("resynthesised", 1.0, 1.0)
PITCH_DOWN = Change("pitch ×0.6", 0.6, 1.0)
FORMANTS_DOWN = Change("formants ×0.85", 1.0, 0.85)
CHANGES = (
    CONTROL,
    PITCH_DOWN,
    FORMANTS_DOWN,
    Change("both", 0.6, 0.85),
    Change("pitch ×1.6", 1.6, 1.0),
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


class Reading(NamedTuple):
    """One model on one version of one recording."""

    female_share: float
    named_in_top5: bool


def read(session: ModelSession, waveform: np.ndarray) -> Reading:
    """The female share and whether `woman` or `female` is in the top 5, of ``waveform``
    (float32, the model's sample rate)."""
    tags = list(session.metadata.tags)
    scores = clip_tags(session, waveform)
    female = sum(scores[tags.index(tag)] for tag in FEMALE if tag in tags)
    male = sum(scores[tags.index(tag)] for tag in MALE if tag in tags)
    top5 = {tags[i] for i in np.argsort(-scores, kind="stable")[:5]}
    return Reading(float(female / (female + male)), bool(top5 & set(NAMED)))


@app.command()
def main(
    audio: Path = typer.Option(
        ROOT / "data" / "audio" / "tuxpaint-stamps-default" / "reels",
        help="folder of 16 kHz mono WAV recordings of speech",
    ),
    models: str = typer.Option("MTT_musicnn,MTT_sample_cnn,MTT_vgg", help="comma-separated"),
    repository: Path = typer.Option(MODEL_REPOSITORY),
    trained: Path = typer.Option(
        ROOT / "taggram" / "models" / "trained", help="also searched for models"
    ),
    threads: int = typer.Option(2, help="onnxruntime intra-op threads"),
) -> None:
    paths = sorted(audio.glob("*.wav"))
    if not paths:
        raise typer.BadParameter(f"no .wav files in {audio} (run taggram prepare-data first)")
    sessions = {
        name: ModelSession(
            find_entry(name, [repository, trained]), ["CPUExecutionProvider"], threads, 1
        )
        for name in models.split(",")
    }
    versions = ("original", *(change.name for change in CHANGES))
    readings: dict[str, dict[str, list[Reading]]] = {
        name: {version: [] for version in versions} for name in sessions
    }
    for number, path in enumerate(paths):
        original, rate = sf.read(path, dtype="float32")
        changed = {
            change.name: sung_by(original, change.singer(seed=number)).astype(np.float32)
            for change in CHANGES
        }
        for name, session in sessions.items():
            if rate != session.metadata.sample_rate:
                raise typer.BadParameter(
                    f"{path} is {rate} Hz; {name} takes {session.metadata.sample_rate}"
                )
            for version, waveform in {"original": original, **changed}.items():
                readings[name][version].append(read(session, waveform))
    cpu = platform.processor() or platform.machine()
    typer.echo(f"{len(paths)} recordings from {audio}; CPU: {cpu}, {threads} threads")
    typer.echo("")
    typer.echo(f"| model | {' | '.join(versions)} | pitch effect dP | formant effect dF |")
    typer.echo(f"|---|{'---|' * len(versions)}---|---|")
    for name, by_version in readings.items():
        share = {
            version: float(np.mean([r.female_share for r in rs]))
            for version, rs in by_version.items()
        }
        named = {version: sum(r.named_in_top5 for r in rs) for version, rs in by_version.items()}
        cells = " | ".join(f"{share[v]:.3f} ({named[v]}/{len(paths)})" for v in versions)
        d_pitch = share[CONTROL.name] - share[PITCH_DOWN.name]
        d_formant = share[CONTROL.name] - share[FORMANTS_DOWN.name]
        typer.echo(f"| {name} | {cells} | {d_pitch:+.3f} | {d_formant:+.3f} |")
    typer.echo("")
    typer.echo("Cells: female share F, averaged (recordings with woman or female in the top 5).")


if __name__ == "__main__":
    app()
