"""Training commands: ``prepare-data``, ``train``, ``evaluate``, ``export``, ``plot-training``.

torch (and everything that imports it) is imported inside the commands, so ``taggram serve``
never loads it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from taggram.repository import DEFAULT_REPOSITORY, RepositoryError, load_repository

app = typer.Typer()

LABELS = typer.Option(
    ...,
    exists=True,
    dir_okay=False,
    help="CSV path→tags, MTT annotations_final.csv, or data/manifest.csv",
)
AUDIO_ROOT = typer.Option(
    None,
    exists=True,
    file_okay=False,
    help="folder the CSV's paths are relative to (default: its folder)",
)
TEACHER = typer.Option(None, help="distil from this repository model instead of the CSV's tags")
REPOSITORY = typer.Option(DEFAULT_REPOSITORY, help="model repository holding the teacher")
CACHE = typer.Option(Path(".cache/training"), help="decoded audio and teacher targets")
TEACHER_HOP = typer.Option(None, help="seconds between teacher windows (default: its patch hop)")
TOP_TAGS = typer.Option(None, min=1, help="keep the N most frequent tags (e.g. 50 for MTT)")
VALIDATION = typer.Option(0.1, help="share of windows held out, whole groups at a time")
SEED = typer.Option(0, help="seed of the split, sampling and initialisation")
CHECKPOINT = typer.Option(..., exists=True, dir_okay=False, help="best.pt of a training run")


@contextmanager
def _usage_errors() -> Iterator[None]:
    """Report what a user's input gets wrong (a labels CSV, its audio, a teacher or warm start
    that does not fit) as a one-line usage error (exit status 2), not a traceback.
    """
    try:
        yield
    except (ValueError, OSError, RepositoryError) as error:
        raise typer.BadParameter(str(error)) from error


def _architecture_options(text: str, architecture: str) -> dict[str, Any]:
    """``--architecture-options`` parsed, after building the architecture with them once (cheap),
    so that a typo fails before any data is read. Raises ``typer.BadParameter``.
    """
    from taggram.models.architectures import ARCHITECTURES, build

    if architecture not in ARCHITECTURES:
        raise typer.BadParameter(
            f"{architecture!r} is not one of {sorted(ARCHITECTURES)}", param_hint="--architecture"
        )
    try:
        options = json.loads(text)
    except ValueError as error:
        raise typer.BadParameter(
            f"not JSON: {error}", param_hint="--architecture-options"
        ) from error
    if not isinstance(options, dict):
        raise typer.BadParameter(
            'a JSON object, e.g. {"stem_channels": 16}', param_hint="--architecture-options"
        )
    try:
        build(architecture, 1, **options)
    except (TypeError, ValueError) as error:
        raise typer.BadParameter(
            f"{architecture} does not take {text}: {error}", param_hint="--architecture-options"
        ) from error
    return options


def _split_windows(
    labels: Path,
    audio_root: Path | None,
    architecture: str,
    teacher: str | None,
    repository: Path,
    cache: Path,
    teacher_hop_seconds: float | None,
    top_tags: int | None,
    validation_fraction: float,
    seed: int,
) -> tuple[Any, Any, list[str], dict[str, Any]]:
    """Read the labels, build the windows (running the teacher if asked) and split them.

    Raises ``ValueError`` for a validation fraction outside [0, 1) or a teacher hop that is not
    a finite number of seconds > 0, before anything is read (a hop under one sample is one).
    """
    if not 0 <= validation_fraction < 1:  # NaN fails the comparison too
        raise ValueError(f"--validation-fraction must be within [0, 1), got {validation_fraction}")
    # 0 used to mean the default hop, and NaN or a negative hop failed deep in the teacher's plan
    if teacher_hop_seconds is not None and not (
        math.isfinite(teacher_hop_seconds) and teacher_hop_seconds > 0
    ):
        raise ValueError(
            f"--teacher-hop-seconds must be a finite number > 0, got {teacher_hop_seconds}"
        )
    from taggram.models.training.dataset import split
    from taggram.models.training.labels import read_labels
    from taggram.models.training.patching import patch_spec
    from taggram.models.training.sources import load_windows

    table = read_labels(labels)
    if top_tags:
        table = table.top(top_tags)
    models = load_repository(repository) if teacher else {}
    if teacher is not None and teacher not in models:
        raise ValueError(f"no model {teacher!r} in {repository}; it has {sorted(models)}")
    entry = models[teacher] if teacher else None
    rate = entry.metadata.sample_rate if entry else 16000
    hop = None if teacher_hop_seconds is None else max(1, round(teacher_hop_seconds * rate))
    windows, tags, info = load_windows(
        labels,
        table,
        audio_root or labels.parent,
        patch_spec(architecture).samples,
        rate,
        cache,
        entry,
        hop,
    )
    train_set, validation_set = split(windows, validation_fraction, seed, table.held_out)
    validation_files = sorted(set(validation_set.file_index.tolist()))
    info["split"] = {
        "train_windows": len(train_set),
        "validation_windows": len(validation_set),
        "validation_groups": sorted({windows.groups[i] for i in validation_files}),
        "by": "the CSV's split column" if table.held_out is not None else "random whole groups",
    }
    if table.kinds is not None:
        for name, subset in (("train", train_set), ("validation", validation_set)):
            kinds = [table.kinds[i] for i in subset.file_index]
            info["split"][f"{name}_windows_by_kind"] = {
                k: kinds.count(k) for k in sorted(set(kinds))
            }
    return train_set, validation_set, tags, info


def _hardware(threads: int, device: str) -> dict[str, Any]:
    """Where training runs: ``device`` ("cpu" or "cuda"), the CPU that reads the batches (and
    trains on "cpu" with ``threads`` torch threads) and the GPU's name on "cuda".
    """
    import platform

    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    hardware = {
        "device": device,
        "cpu": model,
        "torch_threads": threads,
        "torch": torch.__version__,
        "gpu_present": torch.cuda.is_available(),
    }
    if device == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name()
    return hardware


def _provenance(onnx_path: Path, tags: list[str]) -> dict[str, Any]:
    """What a warm start started from: the ONNX file's hash and, from the metadata.json beside
    it, the model's name, version and the summary of its own training.

    Raises ``ValueError`` if that metadata lists other ``tags`` or another order: each output
    keeps its tag, and the warm start itself can only check their number.
    """
    import hashlib

    record: dict[str, Any] = {
        "onnx_sha256": hashlib.sha256(onnx_path.read_bytes()).hexdigest(),
    }
    metadata_path = onnx_path.parent / "metadata.json"
    if metadata_path.is_file():
        metadata = json.loads(metadata_path.read_text())
        if metadata.get("tags", tags) != tags:
            raise ValueError(
                f"{onnx_path} tags {metadata['tags'][:4]}..., the labels {tags[:4]}...: a warm "
                "start needs the same tags in the same order"
            )
        training = metadata.get("training") or {}
        record.update(
            name=metadata.get("name"),
            version=metadata.get("version"),
            training={
                key: training.get(key)
                for key in ("files", "hours", "epochs_run", "steps_run", "training_seconds")
            },
        )
    return record


SINGING_SONGS = typer.Option(
    0,
    min=0,
    help="songs synthesised by Sinsy and mixed over music (needs the singing extra; 0: none)",
)
SINGING_SEED = typer.Option(0, help="seed of the first synthesised song (then one per song)")
SINGING_VOICES = typer.Option(
    False,
    help="with --singing-songs: each part sung by a random man or woman (Praat's Change gender)"
    " rather than Sinsy's one voice",
)


@contextmanager
def _singing_errors() -> Iterator[None]:
    """:func:`_usage_errors`, plus a missing ``singing`` extra as a usage error."""
    from taggram.models.data.singing import SingingUnavailableError

    with _usage_errors():
        try:
            yield
        except SingingUnavailableError as error:
            raise typer.BadParameter(str(error)) from error


def _native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), as PyTorch sees it."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


@app.command("prepare-data")
def prepare_data(
    data_dir: Path = typer.Option(Path("data"), help="where packages, audio and manifest go"),
    singing_songs: int = SINGING_SONGS,
    singing_seed: int = SINGING_SEED,
    singing_voices: bool = SINGING_VOICES,
) -> None:
    """Download the Debian music packages, decode their music to 16 kHz mono, write a manifest.

    Needs apt-get and dpkg-deb (Debian), and the ffmpeg command (built with libopenmpt, as
    Debian's is) to render tracker modules. With --singing-songs N, N songs synthesised by
    Sinsy (seeds from --singing-seed) are mixed over the training music and added as training
    music (package sinsy-singing); with --singing-voices, sung by random men and women.
    """
    from taggram.models.data.prepare import prepare

    if singing_voices and not singing_songs:
        raise typer.BadParameter("--singing-voices needs --singing-songs")
    with _singing_errors():
        manifest = prepare(
            data_dir,
            singing_songs=singing_songs,
            singing_seed=singing_seed,
            singing_voices=singing_voices,
        )
    typer.echo(f"manifest: {manifest}")


@app.command("validation-clips")
def validation_clips(
    manifest: Path = typer.Option(Path("data/manifest.csv"), help="the data recipe's manifest"),
    out: Path = typer.Option(Path("data/validation_clips"), help="folder for clips + manifest"),
    every_segment: bool = typer.Option(
        False, help="every whole 30 s segment of each file, not only its middle one"
    ),
    sources: str | None = typer.Option(
        None,
        metavar="REGEX",
        help="instead of the validation packages, the files whose path in their package matches"
        " (any split), e.g. files a model never trained on because they came later",
    ),
    singing_songs: int = SINGING_SONGS,
    singing_seed: int = SINGING_SEED,
    singing_a_cappella: bool = typer.Option(
        False, help="with --singing-songs: every song a cappella, over no music"
    ),
    singing_voices: bool = SINGING_VOICES,
) -> None:
    """Write 30 s excerpts of the validation packages (for benchmarks.student_vs_teacher).

    With --singing-songs N instead: N whole songs synthesised by Sinsy (seeds from
    --singing-seed; take seeds the training data did not use) mixed over the validation music.
    """
    from taggram.models.data.clips import CLIP_SECONDS, write_validation_clips

    for flag, given in (("a-cappella", singing_a_cappella), ("voices", singing_voices)):
        if given and not singing_songs:
            raise typer.BadParameter(f"--singing-{flag} needs --singing-songs")
    if singing_songs:
        if every_segment or sources is not None:
            raise typer.BadParameter("--singing-songs takes neither --every-segment nor --sources")
        from taggram.models.data.singing import write_singing_clips

        with _singing_errors():
            clips = write_singing_clips(
                manifest, out, singing_songs, singing_seed, singing_a_cappella, singing_voices
            )
    else:
        with _usage_errors():
            clips = write_validation_clips(manifest, out, CLIP_SECONDS, every_segment, sources)
    typer.echo(f"clips: {clips}")


@app.command("train")
def train_command(
    labels: Path = LABELS,
    out: Path = typer.Option(..., help="run folder: best.pt and history.json"),
    audio_root: Path | None = AUDIO_ROOT,
    architecture: str = typer.Option("sample_cnn", help="musicnn, vgg, sample_cnn"),
    architecture_options: str = typer.Option("{}", help='JSON, e.g. {"stem_channels": 16}'),
    teacher: str | None = TEACHER,
    repository: Path = REPOSITORY,
    cache: Path = CACHE,
    teacher_hop_seconds: float | None = TEACHER_HOP,
    top_tags: int | None = TOP_TAGS,
    validation_fraction: float = VALIDATION,
    batch_size: int = typer.Option(
        16, min=2, help="patches per step (batch norm needs at least 2)"
    ),
    learning_rate: float = typer.Option(1e-3),
    steps_per_epoch: int = typer.Option(150, min=1),
    max_epochs: int = typer.Option(200, min=1),
    patience: int = typer.Option(6, min=1, help="epochs without a better validation figure"),
    time_budget_minutes: float | None = typer.Option(None, help="stop before exceeding this"),
    threads: int = typer.Option(2, min=1, help="torch CPU threads"),
    seed: int = SEED,
    select_on: str | None = typer.Option(
        None, help="roc_auc or clip_pearson (default: clip_pearson with a teacher, else roc_auc)"
    ),
    schedule: str = typer.Option("plateau", help="plateau, or cosine over the time budget"),
    initialise_from: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="an exported sample_cnn model.onnx to start from (warm start)",
    ),
    max_validation_windows: int = typer.Option(
        800, min=1, help="validation windows read each epoch"
    ),
    resume: Path | None = typer.Option(
        None, exists=True, dir_okay=False, help="a last.pt to continue from"
    ),
    precision: str = typer.Option(
        "float32", help="float32, or bfloat16 (mixed precision: ~3x faster on AVX-512 BF16 / AMX)"
    ),
    keep_epochs: bool = typer.Option(
        False, help="also save each epoch's weights in OUT/epochs/ (for taggram average)"
    ),
    listwise_weight: float = typer.Option(
        0.0, help="with --teacher: weight of the listwise (softmax over tags) distillation term"
    ),
    listwise_temperature: float = typer.Option(1.0, help="temperature of the listwise term"),
    tag_balance: float = typer.Option(
        0.0,
        min=0.0,
        max=1.0,
        help="with --teacher: draw windows by their top teacher tag's count ** -this "
        "(0 uniform, 0.5 square-root, 1 balanced)",
    ),
    device: str = typer.Option("auto", help="cpu, cuda, or auto (cuda when torch sees a GPU)"),
    mix_fraction: float = typer.Option(
        0.0,
        help="with --teacher: share of each batch made of two patches mixed, labelled by the "
        "teacher on the mix at training time",
    ),
    freeze_batch_norm: bool = typer.Option(
        False,
        help="fine-tuning: keep batch norm's running statistics (layers normalise with them); "
        "the other weights train",
    ),
    frozen_parameters: str = typer.Option(
        "",
        metavar="REGEX",
        help="fine-tuning: parameters whose names match (from the start) keep their values, "
        "e.g. 'frontend\\.' for the whole front-end",
    ),
) -> None:
    """Train an architecture on labelled audio or by distillation; keep the best epoch."""
    import torch

    if listwise_weight and not teacher:
        raise typer.BadParameter("the listwise term distils a teacher's ranking: give --teacher")
    if tag_balance and not teacher:
        raise typer.BadParameter("the tag balance weighs by a teacher's top tag: give --teacher")
    if mix_fraction and not teacher:
        raise typer.BadParameter("mixed patches are labelled by a teacher: give --teacher")
    if select_on == "clip_pearson" and not teacher:
        raise typer.BadParameter("clip_pearson compares with a teacher: give --teacher")

    from taggram.models.training.trainer import DEVICES, TrainConfig, train

    if device not in ("auto", *DEVICES):
        raise typer.BadParameter(f"--device must be cpu, cuda or auto, got {device!r}")
    torch.set_num_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if precision == "bfloat16" and device == "cpu" and not _native_bfloat16():
        typer.echo(
            "warning: this CPU has neither AVX-512 BF16 nor AMX, so oneDNN emulates bfloat16: "
            "slower than float32 (a sample-level convolution's step 14x slower on an AVX2-only "
            "CPU); --precision float32 is faster here",
            err=True,
        )
    options = _architecture_options(architecture_options, architecture)
    with _usage_errors():
        config = TrainConfig(
            architecture=architecture,
            architecture_options=options,
            batch_size=batch_size,
            learning_rate=learning_rate,
            steps_per_epoch=steps_per_epoch,
            max_epochs=max_epochs,
            patience=patience,
            time_budget_s=None if time_budget_minutes is None else time_budget_minutes * 60,
            seed=seed,
            threads=threads,
            select_on=select_on or ("clip_pearson" if teacher else "roc_auc"),
            schedule=schedule,
            initialise_from=str(initialise_from) if initialise_from else None,
            max_validation_windows=max_validation_windows,
            precision=precision,
            keep_epochs=keep_epochs,
            listwise_weight=listwise_weight,
            listwise_temperature=listwise_temperature,
            tag_balance=tag_balance,
            device=device,
            mix_fraction=mix_fraction,
            freeze_batch_norm=freeze_batch_norm,
            frozen_parameters=frozen_parameters,
        )
        train_set, validation_set, tags, info = _split_windows(
            labels,
            audio_root,
            architecture,
            teacher,
            repository,
            cache,
            teacher_hop_seconds,
            top_tags,
            validation_fraction,
            seed,
        )
        typer.echo(json.dumps(info["split"]))
        info["hardware"] = _hardware(threads, device)
        if initialise_from is not None:
            info["initialised_from"] = _provenance(initialise_from, tags)
        # the repository holds the teacher: _split_windows checked that it is there
        entry = load_repository(repository)[teacher] if teacher and mix_fraction else None
        checkpoint = train(config, train_set, validation_set, tags, out, info, resume, entry)
    typer.echo(f"best checkpoint: {checkpoint}")


@app.command("evaluate")
def evaluate_command(
    checkpoint: Path = CHECKPOINT,
    labels: Path = LABELS,
    audio_root: Path | None = AUDIO_ROOT,
    teacher: str | None = TEACHER,
    repository: Path = REPOSITORY,
    cache: Path = CACHE,
    teacher_hop_seconds: float | None = TEACHER_HOP,
    top_tags: int | None = TOP_TAGS,
    validation_fraction: float = VALIDATION,
    seed: int = SEED,
    all_windows: bool = typer.Option(False, help="score every window, not the validation split"),
    threads: int = typer.Option(2, min=1, help="torch CPU threads"),
) -> None:
    """Print macro ROC-AUC and PR-AUC of a checkpoint (on the validation split by default)."""
    import torch

    from taggram.models.training.patching import patch_spec
    from taggram.models.training.trainer import load_checkpoint

    torch.set_num_threads(threads)
    with _usage_errors():
        module, saved = load_checkpoint(checkpoint)
        train_set, validation_set, tags, _ = _split_windows(
            labels,
            audio_root,
            saved["architecture"],
            teacher,
            repository,
            cache,
            teacher_hop_seconds,
            top_tags,
            0.0 if all_windows else validation_fraction,
            seed,
        )
    if tags != saved["tags"]:
        distilled_from = saved["info"].get("teacher", {}).get("name")
        hint = (
            f" (distilled from {distilled_from}: give --teacher {distilled_from})"
            if distilled_from and distilled_from != teacher
            else ""
        )
        raise typer.BadParameter(f"the labels' tags differ from the checkpoint's{hint}")
    windows = train_set if all_windows else validation_set
    _report(module, windows, patch_spec(saved["architecture"]).samples)


def _report(module: Any, windows: Any, samples: int) -> dict[str, float]:
    """Evaluate ``module`` on ``windows``, print the figures, return the metrics."""
    from taggram.models.training.trainer import evaluate

    loss, metrics = evaluate(module, windows, samples, 32)
    typer.echo(
        f"windows {len(windows)}  BCE {loss:.4f}  ROC-AUC {metrics['roc_auc']:.4f}  "
        f"PR-AUC {metrics['pr_auc']:.4f}  (macro over {metrics['tags_scored']:.0f} tags)"
    )
    if "clip_pearson" in metrics:
        typer.echo(
            f"clips {metrics['clips']:.0f} of 30 s  Pearson {metrics['clip_pearson']:.4f}  "
            f"top-5 overlap {metrics['clip_top5']:.2f}/5"
        )
    return metrics


@app.command("average")
def average_command(
    checkpoints: list[Path] = typer.Option(
        ..., "--checkpoint", exists=True, dir_okay=False, help="one epoch's checkpoint; repeat"
    ),
    out: Path = typer.Option(..., help="where the averaged checkpoint is written"),
    labels: Path = LABELS,
    audio_root: Path | None = AUDIO_ROOT,
    teacher: str | None = TEACHER,
    repository: Path = REPOSITORY,
    cache: Path = CACHE,
    teacher_hop_seconds: float | None = TEACHER_HOP,
    top_tags: int | None = TOP_TAGS,
    validation_fraction: float = VALIDATION,
    seed: int = SEED,
    calibration_batches: int = typer.Option(
        100,
        min=1,  # torch's update_bn resets the statistics first: none would leave them at 0 and 1
        help="batches of training patches that give the batch norms their statistics",
    ),
    batch_size: int = typer.Option(
        16, min=2, help="patches per calibration batch (batch norm needs at least 2)"
    ),
    threads: int = typer.Option(2, min=1, help="torch CPU threads"),
) -> None:
    """Average the weights of a run's epochs (SWA), print its validation figures, save it."""
    import random

    import torch

    from taggram.models.training.averaging import average_checkpoints
    from taggram.models.training.dataset import random_batch
    from taggram.models.training.patching import patch_spec
    from taggram.models.training.trainer import read_checkpoint

    torch.set_num_threads(threads)
    with _usage_errors():
        architecture = read_checkpoint(checkpoints[0])["architecture"]
        train_set, validation_set, _, _ = _split_windows(
            labels,
            audio_root,
            architecture,
            teacher,
            repository,
            cache,
            teacher_hop_seconds,
            top_tags,
            validation_fraction,
            seed,
        )
    samples = patch_spec(architecture).samples
    rng = random.Random(seed)
    calibration = [
        random_batch(train_set, samples, batch_size, rng)[0] for _ in range(calibration_batches)
    ]
    try:
        module, averaged = average_checkpoints(checkpoints, calibration)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--checkpoint") from error
    averaged["metrics"] = _report(module, validation_set, samples)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(averaged, out)
    typer.echo(f"averaged epochs {averaged['averaged']['epochs']}: {out}")


@app.command("export")
def export_command(
    checkpoint: Path = CHECKPOINT,
    name: str = typer.Option(..., help="model name in the repository"),
    root: Path = typer.Option(
        Path("taggram/models/trained"), help="repository folder to write into"
    ),
    version: str = typer.Option("1.0.0"),
    last: Path | None = typer.Option(
        None, help="the run's last.pt, kept beside the model as checkpoint.pt (resumable)"
    ),
) -> None:
    """Export a checkpoint to ONNX + metadata (build-models copies taggram/models/trained/ in)."""
    from taggram.models.training.export import export_checkpoint
    from taggram.repository import check_model_name

    with _usage_errors():
        check_model_name(name)  # before the export's work: it is a folder and a URL segment
        folder = export_checkpoint(checkpoint, name, root, version, last)
    typer.echo(f"exported {folder}")


@app.command("plot-training")
def plot_training(
    history: Path = typer.Option(..., help="history.json of a training run"),
    out: Path = typer.Option(Path("docs/training_curve.png")),
    title: str = typer.Option("training curve"),
) -> None:
    """Plot losses and validation ROC-AUC / PR-AUC against training time."""
    from taggram.models.training.plot import plot_history

    plot_history(history, out, title)
    typer.echo(f"wrote {out}")
