"""The training pipeline end to end on generated audio: labels, split, training, export, teacher.

A tiny sample-level CNN learns tones from noise for a few steps (its loss must fall), is exported
to ONNX through the same code as the shipped models, and must then give the PyTorch outputs in
onnxruntime; it also serves as the teacher of a distillation run.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from taggram.models.architectures.waveform import SampleCNN
from taggram.models.data.clips import write_validation_clips
from taggram.models.data.debian import Package, licences
from taggram.models.data.packages import (
    EVALUATION_ONLY,
    TRAINING_PACKAGES,
    EvaluationPackageError,
    Selection,
    ensure_trainable,
    evaluation_only,
)
from taggram.models.data.prepare import REEL_GAP_SECONDS, package_rows, prepare
from taggram.models.data.speech import passages
from taggram.models.training.averaging import average_checkpoints
from taggram.models.training.cli import app
from taggram.models.training.dataset import (
    Windows,
    draw_windows,
    labelled_windows,
    random_batch,
    split,
    tag_balanced_weights,
)
from taggram.models.training.export import RESUMABLE, checkpoint_metadata, export_checkpoint
from taggram.models.training.labels import read_labels
from taggram.models.training.metrics import binarize, clip_agreement, tagging_metrics
from taggram.models.training.mixing import OnlineTeacher, mixed_batch
from taggram.models.training.patching import WAVEFORM_PATCH
from taggram.models.training.sources import load_windows
from taggram.models.training.trainer import (
    HISTORY,
    LAST,
    TrainConfig,
    cosine_learning_rate,
    listwise_distillation,
    load_checkpoint,
    train,
    training_loss,
)
from taggram.models.training.warm_start import initialise_from_onnx
from taggram.repository import load_repository
from tests.support.audio import protracker_module
from tests.support.onnx_parity import assert_onnx_matches_module

TINY = {"stem_channels": 4, "channels": [4, 8, 8, 8, 8, 8, 8], "dense_units": 16}
RATE = 22050  # not the models' rate: the audio cache must resample


def _write_clips(folder: Path) -> Path:
    """Tones (with a random pitch) and noise bursts, 6 s each, plus a path,tags CSV."""
    rng = np.random.default_rng(0)
    time = np.arange(6 * RATE) / RATE
    rows = []
    for index in range(12):
        if index % 2:
            audio, tags = 0.3 * rng.standard_normal(len(time)), "noise"
        else:
            audio, tags = 0.5 * np.sin(2 * np.pi * rng.uniform(200, 800) * time), "tone;pitched"
        name = f"clip_{index:02d}.{'ogg' if index % 3 == 0 else 'wav'}"
        sf.write(str(folder / name), audio.astype(np.float32), RATE)
        rows.append({"path": name, "tags": tags})
    labels = folder / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "tags"])
        writer.writeheader()
        writer.writerows(rows)
    return labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(labels CSV, best checkpoint, cache) of a tiny model trained for a few steps."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clips")
    labels = _write_clips(folder)
    cache = tmp_path_factory.mktemp("cache")
    table = read_labels(labels)
    windows, tags, info = load_windows(labels, table, folder, WAVEFORM_PATCH.samples, 16000, cache)
    train_set, validation_set = split(windows, 0.25, seed=0)
    config = TrainConfig(
        architecture_options=TINY,
        batch_size=8,
        learning_rate=3e-3,
        steps_per_epoch=12,
        max_epochs=3,
        patience=10,
    )
    checkpoint = train(config, train_set, validation_set, tags, folder / "run", info)
    return labels, checkpoint, cache


def test_training_loss_falls(trained: tuple[Path, Path, Path]) -> None:
    _, checkpoint, _ = trained
    history = json.loads((checkpoint.parent / HISTORY).read_text())
    assert len(history) == 3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert 0.0 <= history[-1]["roc_auc"] <= 1.0


def test_exported_model_matches_pytorch(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, checkpoint, _ = trained
    export_checkpoint(checkpoint, "tiny_sample_cnn", tmp_path, "0.0.1")
    entry = load_repository(tmp_path)["tiny_sample_cnn"]
    assert entry.metadata.kind == "waveform"
    assert entry.metadata.embedding_outputs == ["embedding"]
    assert entry.metadata.training["epochs_run"] == 3
    module, _ = load_checkpoint(checkpoint)
    audio = np.random.default_rng(1).uniform(-0.5, 0.5, (3, entry.metadata.patch.samples))
    audio = audio.astype(np.float32)
    assert_onnx_matches_module(entry.onnx_path, module, audio, atol=1e-5, embedding_atol=1e-4)


def test_distillation_windows_come_from_the_teacher(
    trained: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels, checkpoint, cache = trained
    export_checkpoint(checkpoint, "teacher", tmp_path, "0.0.1")
    teacher = load_repository(tmp_path)["teacher"]
    table = read_labels(labels)
    student_samples = 48000  # shorter than the teacher's patch: centred inside it
    windows, tags, info = load_windows(
        labels, table, labels.parent, student_samples, 16000, cache, teacher, 16000
    )
    assert tags == teacher.metadata.tags
    assert info["teacher"]["name"] == "teacher"
    assert len(windows) > 0
    assert ((windows.targets > 0) & (windows.targets < 1)).all()
    # Student patches are centred on the teacher's patches as the service lays them: every hop,
    # plus one aligned to the end of the file.
    span = teacher.metadata.patch.span_samples
    teacher_starts = windows.starts + student_samples // 2 - span // 2
    lengths = np.array([sf.info(str(path)).frames for path in windows.files])
    end_aligned = teacher_starts == lengths[windows.file_index] - span
    assert np.all((teacher_starts % 16000 == 0) | end_aligned)
    assert end_aligned.any()
    # the cached targets are reused, identical, on a second call, even with the audio reached
    # by a relative path from another working directory (the teacher does not run again)
    cached = {path: path.stat().st_mtime_ns for path in cache.rglob("*.npz")}
    monkeypatch.chdir(labels.parent.parent)
    again, _, _ = load_windows(
        labels, table, Path(labels.parent.name), student_samples, 16000, cache, teacher, 16000
    )
    np.testing.assert_array_equal(again.targets, windows.targets)
    assert {path: path.stat().st_mtime_ns for path in cache.rglob("*.npz")} == cached


def test_mixed_patches_are_labelled_by_the_teacher_online(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """The online teacher reads a student patch where the cached targets put its window, so on
    unmixed audio it gives the cached targets; a mix is two shifted training patches weighed by
    lam and 1 - lam, labelled by the teacher on the mix itself; a run with mixes trains."""
    labels, checkpoint, cache = trained
    export_checkpoint(checkpoint, "teacher", tmp_path, "0.0.1")
    teacher = load_repository(tmp_path)["teacher"]
    samples = WAVEFORM_PATCH.samples
    windows, tags, info = load_windows(
        labels, read_labels(labels), labels.parent, samples, 16000, cache, teacher, 16000
    )
    online = OnlineTeacher(teacher, samples, threads=1)
    unmixed = np.stack([windows.patch(w, samples) for w in range(4)])
    np.testing.assert_allclose(online.label(unmixed), windows.targets[:4], atol=1e-6)

    mixes, targets = mixed_batch(windows, samples, 6, random.Random(3), online)
    np.testing.assert_allclose(targets.numpy(), online.label(mixes.numpy()), atol=1e-6)
    replay = random.Random(3)
    chosen = draw_windows(windows, 12, replay)
    patches = np.stack([windows.patch(w, samples, replay) for w in chosen])
    lam = np.array([replay.random() for _ in range(6)], dtype=np.float32)[:, None]
    np.testing.assert_allclose(mixes.numpy(), lam * patches[:6] + (1 - lam) * patches[6:])
    assert len(set(chosen)) > 2 and lam.min() > 0 and lam.max() < 1

    train_set, validation_set = split(windows, 0.25, seed=0)
    config = TrainConfig(
        architecture_options=TINY,
        batch_size=4,
        steps_per_epoch=3,
        max_epochs=1,
        select_on="clip_pearson",
        mix_fraction=0.5,
    )
    with pytest.raises(ValueError, match="labelled by the teacher online"):
        train(config, train_set, validation_set, tags, tmp_path / "none", info)
    train(config, train_set, validation_set, tags, tmp_path / "run", info, teacher=teacher)
    assert np.isfinite(json.loads((tmp_path / "run" / HISTORY).read_text())[0]["train_loss"])
    with pytest.raises(ValueError, match="cannot label mixed patches"):
        OnlineTeacher(teacher, samples - 1, threads=1)
    with pytest.raises(ValueError, match=r"within \[0, 1\)"):
        TrainConfig(mix_fraction=1.0)


@pytest.mark.parametrize(
    "package",
    [
        "fluid-soundfont-gm",
        "fluid-soundfont-gs",
        "fluidr3mono-gm-soundfont",
        "musescore-general-soundfont",
        "musescore-general-soundfont-small",
        "musescore-general-soundfont-future",
        "asterisk-core-sounds-en-gsm",
        "asterisk-core-sounds-fr-wav",
        "asterisk-prompt-de",
        "asterisk-prompt-it-menardi-wav",
        "wesnoth-1.16-utbs",
        "wesnoth-1.18-music",
    ],
)
def test_soundfont_asterisk_and_wesnoth_families_are_reserved(package: str) -> None:
    assert evaluation_only(package)
    with pytest.raises(EvaluationPackageError):
        ensure_trainable(["supertuxkart-data", package])
    assert not evaluation_only("timgm6mb-soundfont")


def test_evaluation_packages_are_refused(tmp_path: Path) -> None:
    assert not [name for name in TRAINING_PACKAGES if evaluation_only(name)]
    for package in sorted(EVALUATION_ONLY):
        with pytest.raises(EvaluationPackageError):
            ensure_trainable(["supertuxkart-data", package])
    with pytest.raises(EvaluationPackageError):
        prepare(tmp_path, {"hyperrogue-music": Selection()})
    assert not (tmp_path / "debs").exists()  # refused before anything was downloaded
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,package,group\na.wav,supertux-data,x\nb.wav,wesnoth-1.16-music,y\n")
    with pytest.raises(EvaluationPackageError):
        read_labels(manifest)


def test_label_layouts(tmp_path: Path) -> None:
    tags_csv = tmp_path / "tags.csv"
    tags_csv.write_text('path,tags\na.ogg,"rock;guitar"\nb.ogg,piano\n')
    table = read_labels(tags_csv)
    assert table.tags == ["guitar", "piano", "rock"]
    np.testing.assert_array_equal(table.targets, [[1, 0, 1], [0, 1, 0]])
    columns_csv = tmp_path / "columns.csv"
    columns_csv.write_text("path,group,rock,piano\na.wav,g1,1,0\nb.wav,g1,0,1\n")
    table = read_labels(columns_csv)
    assert (table.tags, table.groups) == (["rock", "piano"], ["g1", "g1"])
    mtt = tmp_path / "annotations_final.csv"
    mtt.write_text(
        '"clip_id"\t"no voice"\t"singer"\t"duet"\t"mp3_path"\n'
        '"2"\t"0"\t"1"\t"0"\t"f/a-b-01-x-0-29.mp3"\n'
        '"6"\t"1"\t"1"\t"0"\t"f/a-b-01-x-30-59.mp3"\n'
        '"9"\t"1"\t"0"\t"0"\t"c/c-d-02-y-0-29.mp3"\n'
    )
    table = read_labels(mtt)
    assert table.paths[0] == "f/a-b-01-x-0-29.mp3"
    assert table.groups == ["f", "f", "c"]
    assert table.tags == ["no voice", "singer", "duet"]
    top = table.top(2)
    assert top.tags == ["no voice", "singer"]
    np.testing.assert_array_equal(top.targets, [[0, 1], [1, 1], [1, 0]])


def test_labelled_windows_cover_each_file(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "long.wav"), np.zeros(3 * 59049 + 10, dtype=np.float32), 16000)
    sf.write(str(tmp_path / "short.wav"), np.zeros(1000, dtype=np.float32), 16000)
    (tmp_path / "l.csv").write_text("path,tags\nlong.wav,a\nshort.wav,b\n")
    table = read_labels(tmp_path / "l.csv")
    windows = labelled_windows(table, [tmp_path / "long.wav", tmp_path / "short.wav"], 59049)
    assert windows.starts.tolist() == [0, 59049, 118098, 0]
    assert windows.patch(3, 59049).shape == (59049,)  # zero-padded past the end


def test_tag_balanced_sampling_lifts_rare_top_tags(tmp_path: Path) -> None:
    """Nine windows whose top tag is 0 and one whose top tag is 1: uniform draws give tag 1 a
    tenth of the batches, square-root weights 1 / (1 + 3) of them, exponent 1 half of them.
    """
    path = tmp_path / "a.wav"
    sf.write(str(path), np.arange(10 * 100, dtype=np.float32) / 1000, 16000, subtype="FLOAT")
    targets = np.array([[0.9, 0.1]] * 9 + [[0.2, 0.7]], dtype=np.float32)
    windows = Windows([path], ["g"], np.zeros(10, np.int64), np.arange(10) * 100, targets, jitter=0)
    rng = random.Random(0)
    for exponent, share in ((0.0, 0.1), (0.5, 0.25), (1.0, 0.5)):
        weights = tag_balanced_weights(targets, exponent)
        np.testing.assert_allclose(weights[[0, 9]], [9.0**-exponent, 1.0])
        audio, batch_targets = random_batch(windows, 100, 4000, rng, np.cumsum(weights).tolist())
        rare = batch_targets[:, 1] == np.float32(0.7)
        assert rare.float().mean().item() == pytest.approx(share, abs=0.03)
        # each patch is its window's audio: the targets travel with the right window
        np.testing.assert_array_equal(audio[rare, 0].numpy(), np.float32(0.9))
    with pytest.raises(ValueError, match="tag balance"):
        TrainConfig(tag_balance=1.5)


def test_metrics_against_soft_targets() -> None:
    soft = np.array([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.2, 0.1, 0.7], [0.6, 0.5, 0.1]])
    np.testing.assert_array_equal(binarize(soft, 1), [[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0]])
    figures = tagging_metrics(soft, soft, top_k=1)
    assert figures["roc_auc"] == 1.0 and figures["tags_scored"] == 3


def test_licences_of_copyright_files() -> None:
    dep5 = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
    dep5 += "Files: *\nLicense: GPL-2+\n\nFiles: music/*\nLicense: CC-BY-SA-3.0\n text\n"
    dep5 += "\nLicense: GPL-2+\n full text\n"
    assert licences(dep5) == ["GPL-2+", "CC-BY-SA-3.0"]
    prose = "The songs are licenced under the terms of the Creative Commons Attribution "
    prose += "ShareAlike licence 3.0; the code under the GNU General Public License."
    assert licences(prose) == [
        "CC-BY-SA (free-text copyright file)",
        "GPL (free-text copyright file)",
    ]


def test_bfloat16_on_a_cpu_without_it_warns_that_float32_is_faster(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """On an AVX2-only CPU --precision bfloat16 ran a step 14x slower than float32, silently.
    The warning follows what PyTorch reports of this CPU, and the run still trains."""
    import torch

    labels, _, cache = trained
    command = ["train", "--labels", str(labels), "--cache", str(cache), "--out", str(tmp_path)]
    command += ["--architecture-options", json.dumps(TINY), "--steps-per-epoch", "1"]
    command += ["--batch-size", "4", "--max-epochs", "1", "--validation-fraction", "0.25"]
    result = CliRunner().invoke(app, [*command, "--precision", "bfloat16", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    warned = "oneDNN emulates bfloat16" in result.output
    assert warned != native, result.output


def test_command_line_round_trip(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """train → resume → evaluate → export → plot-training through the `taggram` commands."""
    labels, _, cache = trained
    common = ["--labels", str(labels), "--cache", str(cache), "--validation-fraction", "0.25"]
    run = tmp_path / "run"
    options = ["--architecture-options", json.dumps(TINY), "--steps-per-epoch", "2"]
    options += ["--batch-size", "4", "--schedule", "cosine", "--time-budget-minutes", "30"]
    train_command = ["train", *common, "--out", str(run), *options]
    result = CliRunner().invoke(app, [*train_command, "--max-epochs", "1"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app, [*train_command, "--max-epochs", "2", "--resume", str(run / LAST)]
    )
    assert result.exit_code == 0, result.output
    # strict JSON: labelled 6 s clips have no clip agreement, which is null, not NaN
    history = json.loads((run / HISTORY).read_text(), parse_constant=_refuse_constant)
    assert [e["epoch"] for e in history] == [1, 2]
    assert history[-1]["clip_pearson"] is None and history[-1]["clips"] == 0
    # a mistyped labels path is a usage error naming it, not a traceback
    missing = ["train", "--labels", str(tmp_path / "nope.csv"), "--out", str(run)]
    result = CliRunner().invoke(app, missing)
    assert result.exit_code == 2 and "nope.csv" in result.output
    result = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(run / "best.pt"), *common])
    assert result.exit_code == 0, result.output
    assert "ROC-AUC" in result.output and "PR-AUC" in result.output
    root = tmp_path / "repository"
    export = ["export", "--checkpoint", str(run / "best.pt"), "--name", "cli", "--root", str(root)]
    result = CliRunner().invoke(app, [*export, "--last", str(run / LAST)])
    assert result.exit_code == 0, result.output
    metadata = load_repository(root)["cli"].metadata
    assert metadata.training["steps_run"] == 4
    # no group column: each file is a group, drawn at random (no "packages" or "folders")
    assert metadata.quality is not None
    assert "random groups held out whole) of the training labels" in metadata.quality.source
    kept = torch.load(root / "cli" / "checkpoint.pt", weights_only=False)
    best = torch.load(run / "best.pt", weights_only=False)
    assert kept["epoch"] == 2 and kept["shipped_epoch"] == best["epoch"]
    plot = ["plot-training", "--history", str(run / HISTORY), "--out", str(tmp_path / "c.png")]
    result = CliRunner().invoke(app, plot)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").stat().st_size > 0


def _refuse_constant(name: str) -> None:
    raise ValueError(f"not JSON: {name}")


def test_quality_source_names_packages_only_for_a_package_manifest(
    trained: tuple[Path, Path, Path],
) -> None:
    """A user's CSV with a split column holds out its groups (files here), not "packages"."""
    _, best, _ = trained
    checkpoint = torch.load(best, weights_only=False)
    module, _ = load_checkpoint(best)
    groups = ["songs/a.wav", "songs/b.wav"]
    checkpoint["info"]["split"] = {"validation_groups": groups, "by": "the CSV's split column"}
    source = checkpoint_metadata(checkpoint, module, "m", "1").quality
    assert source is not None and "2 groups held out by the CSV's split column" in source.source
    checkpoint["info"]["packages"] = {"naev-data": {}}
    checkpoint["info"]["split"]["validation_groups"] = ["naev-data/music", "naev-data/sfx"]
    source = checkpoint_metadata(checkpoint, module, "m", "1").quality
    assert source is not None and "whole packages held out: naev-data)" in source.source


def _split_clips(
    trained: tuple[Path, Path, Path],
) -> tuple[Windows, Windows, list[str], dict[str, Any]]:
    """The ``trained`` fixture's clips as windows (cached), split three to one: (train,
    validation, tags, info) for a tiny run of one's own."""
    labels, _, cache = trained
    windows, tags, info = load_windows(
        labels, read_labels(labels), labels.parent, 59049, 16000, cache
    )
    train_set, validation_set = split(windows, 0.25, seed=0)
    return train_set, validation_set, tags, info


def test_resume_continues_the_run(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """A run stopped after two epochs and resumed from its last.pt goes on where it stopped."""
    train_set, validation_set, tags, info = _split_clips(trained)
    config = TrainConfig(architecture_options=TINY, batch_size=4, steps_per_epoch=3, max_epochs=2)
    train(config, train_set, validation_set, tags, tmp_path, info)
    first = json.loads((tmp_path / HISTORY).read_text())
    saved = torch.load(tmp_path / LAST, weights_only=False)
    assert saved["epoch"] == 2 and saved["optimizer"]["state"]
    # resumed with longer epochs: the history counts the steps really taken
    longer = TrainConfig(architecture_options=TINY, batch_size=4, steps_per_epoch=5, max_epochs=3)
    best = train(longer, train_set, validation_set, tags, tmp_path, info, resume=tmp_path / LAST)
    history = json.loads((tmp_path / HISTORY).read_text())
    assert [e["epoch"] for e in history] == [1, 2, 3]
    assert history[:2] == first  # the resumed run kept the record of the first two epochs
    assert history[2]["seconds"] >= history[1]["seconds"]  # its clock goes on, too
    assert [e["steps"] for e in history] == [3, 6, 11]
    run = torch.load(best, weights_only=False)["run"]
    assert run["epochs_run"] == 3 and run["steps_run"] == 11
    resumed = torch.load(tmp_path / LAST, weights_only=False)
    assert resumed["epoch"] == 3
    assert not torch.equal(
        resumed["state_dict"]["output.weight"], saved["state_dict"]["output.weight"]
    )


@pytest.mark.parametrize(
    ("freeze_batch_norm", "frozen_parameters"), [(True, ""), (False, ""), (True, r"frontend\.")]
)
def test_a_fine_tune_keeps_what_it_freezes(
    trained: tuple[Path, Path, Path],
    tmp_path: Path,
    freeze_batch_norm: bool,
    frozen_parameters: str,
) -> None:
    """Resumed with ``freeze_batch_norm``, a run leaves batch norm's running statistics as the
    resumed run left them (without it, they move); with ``frozen_parameters``, the parameters
    it matches keep their values while the others train."""
    train_set, validation_set, tags, info = _split_clips(trained)
    config = TrainConfig(architecture_options=TINY, batch_size=4, steps_per_epoch=3, max_epochs=1)
    train(config, train_set, validation_set, tags, tmp_path / "first", info)
    before = torch.load(tmp_path / "first" / LAST, weights_only=False)["state_dict"]
    again = TrainConfig(
        **{
            **vars(config),
            "max_epochs": 2,
            "freeze_batch_norm": freeze_batch_norm,
            "frozen_parameters": frozen_parameters,
        }
    )
    out = tmp_path / "again"
    train(again, train_set, validation_set, tags, out, info, resume=tmp_path / "first" / LAST)
    after = torch.load(out / LAST, weights_only=False)["state_dict"]
    kept = {name: torch.equal(after[name], before[name]) for name in before}
    statistics = [name for name in before if name.endswith(("running_mean", "running_var"))]
    frontend = [n for n in before if n.startswith("frontend.") and n.endswith((".weight", ".bias"))]
    assert statistics and frontend
    assert (
        all(kept[n] for n in statistics)
        if freeze_batch_norm
        else not any(kept[n] for n in statistics)
    )
    assert (
        all(kept[n] for n in frontend) if frozen_parameters else not any(kept[n] for n in frontend)
    )
    assert not kept["output.weight"]


def test_frozen_parameters_must_be_a_pattern_that_names_some(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="no regular expression"):
        TrainConfig(frozen_parameters="frontend[")
    train_set, validation_set, tags, info = _split_clips(trained)
    config = TrainConfig(
        architecture_options=TINY, batch_size=4, max_epochs=1, frozen_parameters="x"
    )
    with pytest.raises(ValueError, match="matches no parameter"):
        train(config, train_set, validation_set, tags, tmp_path, info)


def test_a_run_resumed_into_another_folder_starts_from_its_best_epoch(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """Resumed into a new folder (from a run's last.pt, or from an exported checkpoint.pt), the
    run has the resumed run's best epoch as its own until an epoch beats it: a run in which
    none did ended in an error after training. Without a best epoch to start from, it is
    refused before training."""
    train_set, validation_set, tags, info = _split_clips(trained)
    config = TrainConfig(architecture_options=TINY, batch_size=4, steps_per_epoch=3, max_epochs=2)
    first = tmp_path / "first"
    best = train(config, train_set, validation_set, tags, first, info)
    best_weights = torch.load(best, weights_only=False)["state_dict"]
    # max_epochs reached: the resumed run trains no epoch, so only the resumed best can be read
    for resumed in (tmp_path / "from_last", tmp_path / "from_export"):
        source = first / LAST
        if resumed.name == "from_export":
            source = export_checkpoint(best, "tiny", tmp_path / "repo", "0.0.1", last=first / LAST)
            source /= RESUMABLE
            (first / "best.pt").rename(first / "kept.pt")  # not beside the exported file anyway
        again = train(config, train_set, validation_set, tags, resumed, info, resume=source)
        weights = torch.load(again, weights_only=False)["state_dict"]
        assert all(torch.equal(weights[k], best_weights[k]) for k in best_weights), resumed.name
    with pytest.raises(ValueError, match=r"best\.pt is not beside it"):
        train(config, train_set, validation_set, tags, tmp_path / "none", info, resume=first / LAST)


@pytest.fixture
def exported_tiny(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> tuple[Path, list[str], torch.Tensor]:
    """(model.onnx, tags, calibration patches [windows, 59049]) of the tiny model, exported."""
    labels, checkpoint, cache = trained
    export_checkpoint(checkpoint, "tiny", tmp_path, "0.0.1")
    table = read_labels(labels)
    windows, tags, _ = load_windows(labels, table, labels.parent, 59049, 16000, cache)
    calibration = torch.from_numpy(np.stack([windows.patch(w, 59049) for w in range(len(windows))]))
    return load_repository(tmp_path)["tiny"].onnx_path, tags, calibration


@pytest.mark.parametrize("aggregate", [1, 3])
def test_warm_start_reproduces_the_exported_model(
    exported_tiny: tuple[Path, list[str], torch.Tensor], aggregate: int
) -> None:
    """Batch norms folded by the export are given back: the new module computes the ONNX model."""
    onnx_path, tags, calibration = exported_tiny
    module = SampleCNN(len(tags), **{**TINY, "aggregate": aggregate})
    initialise_from_onnx(module, onnx_path, calibration)
    assert_onnx_matches_module(
        onnx_path, module.eval(), calibration.numpy()[:4], atol=1e-5, embedding_atol=1e-4
    )


@pytest.mark.parametrize("aggregate", [1, 3])
def test_warm_start_widens_the_exported_model(
    exported_tiny: tuple[Path, list[str], torch.Tensor],
    trained: tuple[Path, Path, Path],
    tmp_path: Path,
    aggregate: int,
) -> None:
    """A wider module (more channels, more dense units) starts computing the exported model
    (whose back-end pools ``aggregate`` levels), and its new channels' weights to the old ones
    get gradients, so training can use them.
    """
    onnx_path, tags, calibration = exported_tiny
    torch.manual_seed(0)
    if aggregate > 1:  # an exported model whose dense layer reads every pooled level
        narrow = SampleCNN(len(tags), **{**TINY, "aggregate": aggregate})
        initialise_from_onnx(narrow, onnx_path, calibration)
        narrow.dense[0].weight.data += 0.1 * torch.randn_like(narrow.dense[0].weight)
        saved = torch.load(trained[1], weights_only=False)
        options = {**TINY, "aggregate": aggregate}
        state = {**saved, "state_dict": narrow.state_dict(), "architecture_options": options}
        torch.save(state, tmp_path / "aggregated.pt")
        export_checkpoint(tmp_path / "aggregated.pt", "aggregated", tmp_path, "0.0.1")
        onnx_path = load_repository(tmp_path)["aggregated"].onnx_path
    wide = {"stem_channels": 6, "channels": [4, 8, 12, 8, 8, 16, 16], "dense_units": 24}
    module = SampleCNN(len(tags), **wide, aggregate=aggregate)
    initialise_from_onnx(module, onnx_path, calibration)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    waveform = calibration.numpy()[:4]
    probabilities, embedding = session.run(None, {"waveform": waveform})
    with torch.no_grad():
        outputs = module.eval()(torch.from_numpy(waveform))
    np.testing.assert_allclose(probabilities, torch.sigmoid(outputs["logits"]), atol=1e-5)
    np.testing.assert_allclose(embedding, outputs["embedding"][:, :16], atol=1e-4)
    new_to_old = module.frontend[3].weight[:, 4:]  # block 1's conv: from the stem's new channels
    assert new_to_old.shape == (4, 2, 3) and torch.count_nonzero(new_to_old) == 0
    module.train()
    loss = training_loss(module, calibration[:8], torch.rand(8, len(tags)), "float32")
    loss.backward()
    assert module.frontend[3].weight.grad is not None
    assert torch.count_nonzero(module.frontend[3].weight.grad[:, 4:]) > 0
    assert torch.count_nonzero(module.output.weight.grad[:, 16:]) > 0
    with pytest.raises(ValueError, match="does not fit"):
        initialise_from_onnx(
            SampleCNN(len(tags), **{**TINY, "stem_channels": 2}), onnx_path, calibration
        )


def test_listwise_distillation_scores_the_ranking_of_tags() -> None:
    """Zero when the student's logits are the teacher's (shifted or not: a softmax sees only
    differences), positive when the order differs, and equal to the written-out KL divergence.
    """
    teacher = torch.tensor([[0.9, 0.5, 0.2, 0.05], [0.1, 0.6, 0.3, 0.02]])
    logits = torch.logit(teacher)
    for temperature in (1.0, 2.0):
        same = listwise_distillation(logits + 3.0, teacher, temperature)
        assert same.item() == pytest.approx(0.0, abs=1e-5)
    swapped = logits[:, [1, 0, 2, 3]]
    p = torch.softmax(logits / 2.0, dim=1)
    q = torch.softmax(swapped / 2.0, dim=1)
    expected = 4.0 * (p * (p / q).log()).sum(dim=1).mean()
    loss = listwise_distillation(swapped, teacher, 2.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-4) and loss.item() > 0.01
    with pytest.raises(ValueError, match="listwise"):
        TrainConfig(listwise_weight=-1.0)


def test_cosine_schedule_spans_the_time_budget() -> None:
    config = TrainConfig(learning_rate=1e-3, time_budget_s=100.0, schedule="cosine")
    assert cosine_learning_rate(config, 0.0) == pytest.approx(1e-3)
    assert cosine_learning_rate(config, 50.0) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert (
        cosine_learning_rate(config, 100.0)
        == cosine_learning_rate(config, 500.0)
        == pytest.approx(1e-5)
    )


def test_averaging_a_runs_epochs(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """SWA: the weights are the epochs' mean, the batch norms' statistics are those of the
    averaged network on the calibration patches, and the result exports and runs.
    """
    labels, _, cache = trained
    run = tmp_path / "run"
    common = ["--labels", str(labels), "--cache", str(cache), "--validation-fraction", "0.25"]
    options = ["--architecture-options", json.dumps(TINY), "--steps-per-epoch", "3"]
    train_command = ["train", *common, "--out", str(run), *options, "--batch-size", "4"]
    result = CliRunner().invoke(app, [*train_command, "--max-epochs", "2", "--keep-epochs"])
    assert result.exit_code == 0, result.output
    epochs = sorted((run / "epochs").iterdir())
    assert [e.name for e in epochs] == ["epoch_001.pt", "epoch_002.pt"]
    average = ["average", *common, "--out", str(tmp_path / "swa.pt")]
    average += ["--checkpoint", str(epochs[0]), "--checkpoint", str(epochs[1])]
    result = CliRunner().invoke(app, [*average, "--calibration-batches", "3", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "averaged epochs [1, 2]" in result.output and "ROC-AUC" in result.output
    swa = torch.load(tmp_path / "swa.pt", weights_only=False)
    states = [torch.load(e, weights_only=False)["state_dict"] for e in epochs]
    torch.testing.assert_close(
        swa["state_dict"]["output.weight"],
        (states[0]["output.weight"] + states[1]["output.weight"]) / 2,
    )
    # the first batch norm's mean is the mean of the averaged first convolution's output
    calibration = [0.1 * torch.randn(4, WAVEFORM_PATCH.samples) for _ in range(3)]
    module, _ = average_checkpoints(epochs, calibration)
    with torch.no_grad():
        first_conv = torch.cat([module.frontend[0](x.unsqueeze(1)) for x in calibration])
    torch.testing.assert_close(
        module.frontend[1].running_mean, first_conv.mean(dim=(0, 2)), rtol=1e-4, atol=1e-5
    )
    folder = export_checkpoint(tmp_path / "swa.pt", "swa", tmp_path / "repo", "0.0.1")
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["training"]["averaged"] == {"epochs": [1, 2]}
    other = tmp_path / "other.pt"
    saved = torch.load(epochs[0], weights_only=False)
    torch.save({**saved, "tags": saved["tags"][::-1]}, other)
    with pytest.raises(ValueError, match="tags"):
        average_checkpoints([epochs[1], other], calibration)


def test_mixed_precision_step_tracks_float32() -> None:
    """A bfloat16 step computes nearly the float32 loss and gradient (far closer than another
    batch's gradient is), and really runs in bfloat16.
    """
    torch.manual_seed(0)
    module = SampleCNN(8, aggregate=3).train()
    time = torch.arange(WAVEFORM_PATCH.samples) / 16000

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        pitches = torch.rand(4, 1) * 800 + 100
        return 0.3 * torch.sin(2 * torch.pi * pitches * time), torch.rand(4, 8)

    def step(
        audio: torch.Tensor, targets: torch.Tensor, precision: str
    ) -> tuple[float, torch.Tensor]:
        torch.manual_seed(1)  # the same dropout mask
        module.zero_grad()
        loss = training_loss(module, audio, targets, precision)
        loss.backward()
        assert loss.dtype == torch.float32
        grads = [p.grad.flatten() for p in module.parameters() if p.grad is not None]
        return loss.item(), torch.cat(grads)

    first, second = batch(), batch()
    loss32, grad32 = step(*first, "float32")
    loss16, grad16 = step(*first, "bfloat16")
    _, other = step(*second, "float32")
    assert loss16 == pytest.approx(loss32, rel=2e-2) and loss16 != loss32
    similarity = torch.nn.functional.cosine_similarity
    assert similarity(grad32, grad16, dim=0) > similarity(grad32, other, dim=0) + 0.3
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="float16")


def test_clip_agreement() -> None:
    rng = np.random.default_rng(0)
    teacher = rng.uniform(0, 1, (6, 10))
    clips = np.array([0, 0, 0, 1, 1, 1])
    same = clip_agreement(teacher, teacher, clips)
    assert same == {"clip_pearson": pytest.approx(1.0), "clip_top5": 5.0, "clips": 2.0}
    reversed_ = clip_agreement(teacher, 1 - teacher, clips)
    assert reversed_["clip_pearson"] == pytest.approx(-1.0)
    assert reversed_["clip_top5"] == 0.0


def test_the_manifest_split_column_holds_packages_out(tmp_path: Path) -> None:
    for name in ("a.wav", "b.wav", "c.wav"):
        sf.write(str(tmp_path / name), np.zeros(2 * 59049, dtype=np.float32), 16000)
    (tmp_path / "m.csv").write_text(
        "path,package,group,kind,split,x\n"
        "a.wav,supertux-data,g1,music,train,1\n"
        "b.wav,naev-data,g2,music,validation,0\n"
        "c.wav,flite,g3,speech,train,1\n"
    )
    table = read_labels(tmp_path / "m.csv")
    assert table.tags == ["x"] and table.kinds == ["music", "music", "speech"]
    assert table.held_out is not None and table.held_out.tolist() == [False, True, False]
    windows = labelled_windows(table, [tmp_path / n for n in ("a.wav", "b.wav", "c.wav")], 59049)
    train_set, validation_set = split(windows, 0.9, seed=0, held_out=table.held_out)
    assert set(validation_set.file_index.tolist()) == {1}
    assert set(train_set.file_index.tolist()) == {0, 2}


def test_short_clips_become_reels_and_music_stays_whole(tmp_path: Path) -> None:
    """A package's short clips are concatenated per folder; long files matching `music` stay."""
    root = tmp_path / "package"
    (root / "voices/a").mkdir(parents=True)
    (root / "music").mkdir()
    rate = 22050
    for index in range(30):  # 30 clips of 2.5 s (+ 0.25 s gaps): reels of 22 and 8 clips
        clip = 0.1 * np.ones(int(2.5 * rate), np.float32)
        sf.write(str(root / f"voices/a/{index:02d}.ogg"), clip, rate)
    sf.write(str(root / "music/song.wav"), np.zeros(40 * rate, np.float32), rate)
    # a broken encoding (it decodes to peaks far above full scale) is left out of its reel
    sf.write(str(root / "voices/a/99.wav"), 40 * np.ones(rate, np.float32), rate, subtype="FLOAT")
    package = Package(name="game-data", version="1.0", root=root)
    selection = Selection(clips=re.compile(r"voices/"), clips_kind="speech")
    rows = package_rows(package, selection, tmp_path, "CC0-1.0", "train")
    kinds = [(row.kind, row.group) for row in rows]
    assert kinds == [("music", "game-data/music")] + [("speech", "game-data/voices/a")] * 2
    first_reel = sf.read(str(tmp_path / rows[1].path))[0]
    assert len(first_reel) == 22 * round(2.5 * 16000) + 22 * round(REEL_GAP_SECONDS * 16000)
    assert rows[1].source == "voices/a (22 clips, reel 0)"
    assert rows[2].seconds == pytest.approx(8 * (2.5 + REEL_GAP_SECONDS))
    assert rows[0].seconds == pytest.approx(40.0)
    assert package_rows(package, selection, tmp_path, "CC0-1.0", "train") == rows  # idempotent


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="rendering modules needs ffmpeg")
def test_tracker_modules_are_rendered_and_jingles_left_out(tmp_path: Path) -> None:
    """Modules under the package's `modules` pattern are rendered by libopenmpt, once through."""
    root = tmp_path / "package"
    (root / "music").mkdir(parents=True)
    (root / "music/song.mod").write_bytes(protracker_module(5))  # 38.4 s
    (root / "music/jingle.mod").write_bytes(protracker_module(1))  # 7.7 s: not music
    (root / "music/silent.mod").write_bytes(protracker_module(5, note=False))  # not music
    package = Package(name="game-data", version="1.0", root=root)
    assert package_rows(package, Selection(), tmp_path, "GPL-2", "train") == []  # not asked for
    selection = Selection(modules=re.compile(r"music/"))
    rows = package_rows(package, selection, tmp_path, "GPL-2", "train")
    assert [(row.kind, row.source) for row in rows] == [("music", "music/song.mod")]
    audio, rate = sf.read(str(tmp_path / rows[0].path), dtype="float32")
    assert rate == 16000 and rows[0].seconds == pytest.approx(38.4, abs=0.2)
    assert np.sqrt(np.mean(audio[: 5 * rate] ** 2)) > 0.05  # the held note sounds
    assert package_rows(package, selection, tmp_path, "GPL-2", "train") == rows  # idempotent
    (root / "music/broken.it").write_bytes(b"IMPM not a module")
    with pytest.raises(ValueError, match="could not render"):
        package_rows(package, selection, tmp_path, "GPL-2", "train")


def test_audio_inside_a_zip_is_extracted_and_selected(tmp_path: Path) -> None:
    """A package keeping its audio in a zip (0 A.D.): only the selected members are extracted."""
    rate = 22050
    members = tmp_path / "members"
    for name, seconds in (("audio/music/song.ogg", 35), ("audio/voice/yes.ogg", 20)):
        (members / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(members / name), 0.1 * np.ones(seconds * rate, np.float32), rate)
    (members / "art/big.png").parent.mkdir(parents=True)
    (members / "art/big.png").write_bytes(b"not audio")
    root = tmp_path / "package"
    (root / "data").mkdir(parents=True)
    with zipfile.ZipFile(root / "data/public.zip", "w") as archive:
        for path in sorted(p for p in members.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(members).as_posix())
    selection = Selection(
        music=re.compile(r"audio/music/"),
        clips=re.compile(r"audio/voice/"),
        clips_kind="speech",
        archive="data/public.zip",
    )
    package = Package(name="game-data", version="1.0", root=root)
    rows = package_rows(package, selection, tmp_path / "out", "CC-BY-SA-3.0", "train")
    assert [(row.kind, row.source) for row in rows] == [
        ("music", "data/public/audio/music/song.ogg"),
        ("speech", "data/public/audio/voice (1 clips, reel 0)"),
    ]
    assert not (root / "data/public/art").exists()  # nothing but the selected audio
    assert package_rows(package, selection, tmp_path / "out", "CC-BY-SA-3.0", "train") == rows


def test_validation_clips_come_from_the_validation_split(tmp_path: Path) -> None:
    for name, seconds in (("a.wav", 50), ("b.wav", 20), ("c.wav", 40)):
        sf.write(str(tmp_path / name), np.zeros(seconds * 16000, np.float32), 16000)
    (tmp_path / "manifest.csv").write_text(
        "path,package,version,source,licence,seconds,group,kind,split\n"
        "a.wav,naev-data,1,m/a.ogg,CC-BY-3.0,50,g,music,validation\n"
        "b.wav,tuxpaint-stamps-default,1,reels,GPL-2,20,g,speech,validation\n"
        "c.wav,supertux-data,1,m/c.ogg,GPL-2+,40,g,music,train\n"
    )
    clips = write_validation_clips(tmp_path / "manifest.csv", tmp_path / "clips")
    with clips.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["package"], r["kind"], r["duration_s"], r["start_s"]) for r in rows] == [
        ("naev-data", "music", "30.0", "10.0"),
        ("tuxpaint-stamps-default", "speech", "20.0", "0.0"),
    ]
    assert sf.info(str(tmp_path / "clips" / rows[0]["file"])).duration == 30.0
    # every whole segment: the 50 s track gives one (0-30 s), a 70 s one would give two; the
    # 20 s reel, shorter than a segment, still gives one clip; each names its track
    (tmp_path / "manifest.csv").write_text(
        (tmp_path / "manifest.csv").read_text().replace("c.wav,supertux-data", "c.wav,x")
        + "d.wav,naev-data,1,m/d.ogg,CC-BY-3.0,70,g,music,validation\n"
    )
    audio = np.arange(70 * 16000, dtype=np.float32) / 1e7
    sf.write(str(tmp_path / "d.wav"), audio, 16000, subtype="FLOAT")
    segments = write_validation_clips(
        tmp_path / "manifest.csv", tmp_path / "all", every_segment=True
    )
    with segments.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["track"], r["start_s"], r["duration_s"]) for r in rows] == [
        ("0", "0.0", "30.0"),
        ("1", "0.0", "20.0"),
        ("2", "0.0", "30.0"),
        ("2", "30.0", "30.0"),
    ]
    second, _ = sf.read(str(tmp_path / "all" / rows[3]["file"]), dtype="float32")
    assert second[0] == np.float32(30 * 16000 / 1e7)  # cut where it says


def test_validation_clips_can_take_files_a_model_never_trained_on(tmp_path: Path) -> None:
    """``sources`` selects by path in the package, whatever the split (files added later)."""
    for name in ("a.wav", "b.wav", "c.wav"):
        sf.write(str(tmp_path / name), np.zeros(40 * 16000, np.float32), 16000)
    (tmp_path / "manifest.csv").write_text(
        "path,package,version,source,licence,seconds,group,kind,split\n"
        "a.wav,naev-data,1,m/a.ogg,CC-BY-3.0,40,g,music,validation\n"
        "b.wav,pingus-data,1,m/b.IT,GPL-3+,40,g,music,train\n"
        "c.wav,supertux-data,1,m/c.ogg,GPL-2+,40,g,music,train\n"
    )
    clips = write_validation_clips(
        tmp_path / "manifest.csv", tmp_path / "clips", sources=r"(?i)\.(mod|xm|it|s3m)$"
    )
    with clips.open(newline="") as handle:
        assert [r["source_path_in_package"] for r in csv.DictReader(handle)] == ["m/b.IT"]
    with pytest.raises(ValueError, match="no rows with source matching"):
        write_validation_clips(tmp_path / "manifest.csv", tmp_path / "none", sources=r"\.mod$")
    with pytest.raises(ValueError, match="not a regular expression"):
        write_validation_clips(tmp_path / "manifest.csv", tmp_path / "bad", sources="(")


def test_speech_passages_cover_the_text() -> None:
    text = "\n\n".join(" ".join(["word"] * 60) for _ in range(7))  # 7 paragraphs of 60 words
    found = passages(text, words=150)
    assert [len(p.split()) for p in found] == [180, 180, 60]
