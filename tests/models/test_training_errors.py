"""What a user gets wrong when training: each mistake is a one-line usage error (exit status 2)
naming what to fix, never a traceback, and the cheap ones are caught before any audio is read.

The data is four generated 4 s WAV files (mono, 16 kHz: read as they are, nothing decoded).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from taggram.models.training.cli import app
from taggram.models.training.dataset import distilled_windows, shortest_distilled_file, split
from taggram.models.training.export import export_checkpoint
from taggram.models.training.labels import read_labels
from taggram.models.training.patching import WAVEFORM_PATCH, patch_spec
from taggram.models.training.sources import load_windows
from taggram.models.training.teacher import TeacherTargets
from taggram.models.training.trainer import TrainConfig, train
from taggram.repository import load_repository
from taggram.service.audio.patching import plan_patches


def _flat(output: str) -> str:
    """A usage error's text without the box rich draws around it."""
    return " ".join(output.replace("│", " ").split())


TINY = {"stem_channels": 4, "channels": [4, 8, 8, 8, 8, 8, 8], "dense_units": 16}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of four WAV files (tones and noise), ``labels.csv`` (path,tags) listing them and
    ``split.csv``, the same with a split column holding out one file of each tag.
    """
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    time = np.arange(4 * 16000) / 16000  # longer than a sample_cnn patch (3.69 s)
    lines, split_lines = ["path,tags"], ["path,tags,split"]
    for index in range(4):
        if index % 2:
            audio, tags = 0.3 * rng.standard_normal(len(time)), "noise"
        else:
            audio, tags = 0.5 * np.sin(2 * np.pi * 440 * (index + 1) * time), "tone"
        sf.write(str(folder / f"clip_{index}.wav"), audio.astype(np.float32), 16000)
        lines.append(f"clip_{index}.wav,{tags}")
        split_lines.append(f"clip_{index}.wav,{tags},{'validation' if index > 1 else 'train'}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    (folder / "split.csv").write_text("\n".join(split_lines) + "\n")
    return folder


def _train(data: Path, labels: Path, *options: str) -> str:
    """Run ``taggram train`` on ``labels`` (audio under ``data``); assert it is a usage error
    (exit status 2, no exception escaping) and return its output.
    """
    command = ["train", "--labels", str(labels), "--audio-root", str(data)]
    command += ["--out", str(data / "run"), "--cache", str(data / "cache")]
    command += ["--max-epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2"]
    result = CliRunner().invoke(app, [*command, *options])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    return _flat(result.output)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty"),
        ("path,tags\n", "no rows after the header"),
        ("file,labels\nclip_0.wav,tone\n", "needs a 'path'"),
        ("path,tone,mood\nclip_0.wav,1,happy\nclip_1.wav,0,sad\n", "column 'mood' holds 'happy'"),
        ("path,tone,year\nclip_0.wav,1,1997\nclip_1.wav,0,2001\n", "column 'year' holds '1997'"),
        ("path,tags\nclip_0.wav,tone\nmissing.wav,noise\n", "'missing.wav'"),
        ("path,tags\nclip_0.wav,tone\nnot_audio.wav,noise\n", "libsndfile cannot read it"),
    ],
)
def test_a_bad_labels_csv_is_a_usage_error(data: Path, content: str, expected: str) -> None:
    (data / "not_audio.wav").write_text("this is not audio")
    labels = data / "bad.csv"
    labels.write_text(content)
    assert expected in _train(data, labels)


def test_a_labels_csv_saved_by_excel_reads_like_one_without_its_byte_order_mark(
    data: Path,
) -> None:
    plain = data / "labels.csv"
    excel = data / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbf" + plain.read_text().replace("\n", "\r\n").encode())
    table, expected = read_labels(excel), read_labels(plain)
    assert (table.paths, table.tags) == (expected.paths, expected.tags)
    np.testing.assert_array_equal(table.targets, expected.targets)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--architecture-options", '{"channels": [8,'], "not JSON"),
        (["--architecture-options", "[8]"], "a JSON object"),
        (["--architecture-options", '{"chanels": [8]}'], "'chanels'"),
        (["--architecture-options", '{"aggregate": 9}'], "aggregate must be between 1 and 7"),
        (["--architecture", "resnet"], "'resnet' is not one of"),
        (
            ["--teacher", "T", "--listwise-weight", "-1"],
            "listwise weight must be a finite number >= 0",
        ),
        (["--teacher", "T", "--listwise-weight", "1", "--listwise-temperature", "0"], "> 0"),
        # NaN passes a "< 0" test: it trained a whole epoch on NaN losses, then crashed in BCE
        (["--teacher", "T", "--listwise-weight", "nan"], "listwise weight must be a finite"),
        (["--teacher", "T", "--listwise-weight", "1", "--listwise-temperature", "inf"], "finite"),
        (["--learning-rate", "nan"], "learning rate must be a finite number > 0, got nan"),
        (["--learning-rate", "-0.1"], "learning rate must be a finite number > 0"),
        # 0 minutes was read as "no budget" and trained without a limit
        (["--time-budget-minutes", "0"], "time budget must be a finite time > 0, got 0.0 s"),
        (["--time-budget-minutes", "nan"], "time budget must be a finite"),
        (["--listwise-weight", "1"], "give --teacher"),
        (["--tag-balance", "0.5"], "give --teacher"),
        (["--mix-fraction", "0.5"], "give --teacher"),
        (["--teacher", "T", "--mix-fraction", "1"], "mixed share of a batch must be within [0, 1)"),
        (["--teacher", "T", "--mix-fraction", "nan"], "mixed share of a batch"),
        (["--teacher", "T", "--tag-balance", "2"], "'--tag-balance'"),
        (["--device", "tpu"], "--device must be cpu, cuda or auto, got 'tpu'"),
        (["--select-on", "clip_pearson"], "give --teacher"),
        (["--select-on", "accuracy"], "select_on must be one of"),
        (["--precision", "float16"], "precision must be one of"),
        (["--schedule", "cosine"], "time budget"),
        (["--batch-size", "0"], "'--batch-size'"),
        # one patch failed in the first step, after the data was read, in torch's words
        (["--batch-size", "1"], "'--batch-size'"),
        (["--steps-per-epoch", "0"], "'--steps-per-epoch'"),
        (["--max-epochs", "0"], "'--max-epochs'"),
        (["--architecture", "vgg", "--initialise-from", "labels.csv"], "needs a sample_cnn"),
        # 0 was read as the default hop; NaN and -1 failed in the teacher's patch plan
        (["--teacher", "T", "--teacher-hop-seconds", "0"], "--teacher-hop-seconds must be"),
        (["--teacher", "T", "--teacher-hop-seconds", "-1"], "a finite number > 0, got -1.0"),
        (["--teacher", "T", "--teacher-hop-seconds", "nan"], "a finite number > 0, got nan"),
        # 2 and NaN were "every file falls into one split group: add a 'group' column"
        (["--validation-fraction", "2"], "--validation-fraction must be within [0, 1), got 2.0"),
        (["--validation-fraction", "nan"], "--validation-fraction must be within [0, 1)"),
        (["--validation-fraction", "-1"], "--validation-fraction must be within [0, 1)"),
        (["--top-tags", "0"], "'--top-tags'"),  # 0 kept every tag
    ],
)
def test_a_bad_option_fails_before_the_data_is_read(
    data: Path, options: list[str], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(data)
    assert expected in _train(data, data / "labels.csv", *options)
    assert not (data / "cache").exists()  # nothing was decoded, no teacher ran


@pytest.mark.parametrize(
    ("command", "option"),
    [
        # update_bn resets the batch norms' statistics: no batch left them at 0 and 1, a model
        # averaged without a word that agreed with nothing
        ("average", ["--calibration-batches", "0"]),
        ("average", ["--batch-size", "1"]),  # torch's "Expected more than 1 value per channel"
        ("average", ["--batch-size", "0"]),  # a traceback: "need at least one array to stack"
        ("average", ["--threads", "0"]),
        ("evaluate", ["--threads", "0"]),  # a traceback from torch.set_num_threads
    ],
)
def test_a_bad_option_of_average_or_evaluate_is_a_usage_error(
    data: Path, command: str, option: list[str]
) -> None:
    checkpoint = data / "labels.csv"  # any file: the option is refused before it is read
    arguments = [command, "--checkpoint", str(checkpoint), "--labels", str(checkpoint)]
    arguments += ["--out", str(data / "avg.pt")] if command == "average" else []
    result = CliRunner().invoke(app, [*arguments, "--cache", str(data / "cache"), *option])
    assert result.exit_code == 2, result.output
    assert f"'{option[0]}'" in _flat(result.output)
    assert not (data / "cache").exists()


@pytest.mark.parametrize("name", ["../outside", "a/b", "", "two words", "x" * 65])
def test_an_export_name_that_is_no_folder_and_url_segment_is_a_usage_error(
    data: Path, tmp_path: Path, name: str
) -> None:
    """``--name ../outside`` wrote beside the repository, ``a/b`` left a folder without a model
    that stopped the service from starting, ``""`` wrote into the repository's root."""
    root = tmp_path / "models" / "repository"
    command = ["export", "--checkpoint", str(data / "labels.csv"), "--name", name]
    result = CliRunner().invoke(app, [*command, "--root", str(root)])
    assert result.exit_code == 2, result.output
    output = _flat(result.output)
    assert "must be 1 to 64 letters, digits, '_' or '-'" in output
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("command", ["export", "evaluate", "average", "train"])
def test_a_file_that_is_no_checkpoint_is_a_usage_error(
    data: Path, command: str, tmp_path: Path
) -> None:
    """The labels CSV given as the checkpoint: it was the unpickler's traceback
    ("unpickling stack underflow") from each command that reads one."""
    given = str(data / "split.csv")
    arguments = {
        "export": ["--checkpoint", given, "--name", "x", "--root", str(tmp_path / "models")],
        "evaluate": ["--checkpoint", given, "--labels", given],
        "average": ["--checkpoint", given, "--labels", given, "--out", str(tmp_path / "a.pt")],
        "train": ["--resume", given, "--labels", given, "--out", str(tmp_path / "run")],
    }[command]
    if command != "export":
        arguments += ["--cache", str(tmp_path / "cache")]
    if command == "train":
        arguments += ["--architecture-options", json.dumps(TINY)]
    result = CliRunner().invoke(app, [command, *arguments])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    output = _flat(result.output)
    assert "split.csv is not a checkpoint of taggram train" in output


def test_a_config_of_one_patch_per_batch_says_why_it_is_refused() -> None:
    """What the CLI's ``min=2`` cannot say: a batch norm in training needs two patches."""
    with pytest.raises(ValueError, match=r"at least 2 patches \(batch norm"):
        TrainConfig(batch_size=1)


def test_a_validation_split_without_both_classes_of_any_tag_is_a_usage_error(data: Path) -> None:
    """One held-out file (a tenth of four): every tag is all positive or all negative there, so
    ROC-AUC is undefined for every epoch and no epoch could ever be kept as the best.
    """
    assert "ROC-AUC cannot pick an epoch" in _train(data, data / "labels.csv")
    assert not (data / "run").exists()


@pytest.fixture(scope="module")
def repository(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding ``tiny``: a ``TINY`` sample_cnn trained one step on ``data``."""
    folder = tmp_path_factory.mktemp("repository")
    labels = data / "split.csv"
    table = read_labels(labels)
    windows, tags, info = load_windows(
        labels, table, data, WAVEFORM_PATCH.samples, 16000, folder / "cache"
    )
    train_set, validation_set = split(windows, 0.0, 0, table.held_out)
    config = TrainConfig(architecture_options=TINY, batch_size=2, steps_per_epoch=1, max_epochs=1)
    checkpoint = train(config, train_set, validation_set, tags, folder / "run", info)
    repository = folder / "models"
    export_checkpoint(checkpoint, "tiny", repository, "0.0.1")
    return repository


def test_the_exported_description_gives_a_small_dataset_in_minutes(repository: Path) -> None:
    description = load_repository(repository)["tiny"].metadata.description
    assert (
        description
        == "sample_cnn tagger trained by taggram on 0.2 min of labelled audio (split.csv)"
    )


def test_an_unknown_teacher_names_the_repository_s_models(data: Path, repository: Path) -> None:
    output = _train(data, data / "labels.csv", "--teacher", "NOPE", "--repository", str(repository))
    assert "no model 'NOPE'" in output and "['tiny']" in output


def test_a_warm_start_narrower_than_the_exported_model_is_a_usage_error(
    data: Path, repository: Path
) -> None:
    narrower = json.dumps({**TINY, "stem_channels": 2})
    onnx_path = repository / "tiny" / "model.onnx"
    options = ["--initialise-from", str(onnx_path), "--architecture-options", narrower]
    assert "does not fit" in _train(data, data / "split.csv", *options)


def test_a_warm_start_from_a_model_of_other_tags_is_a_usage_error(
    data: Path, repository: Path
) -> None:
    """As many tags as the exported model (so the weights would fit), but not the same ones."""
    labels = data / "other_tags.csv"
    labels.write_text((data / "split.csv").read_text().replace("tone", "a").replace("noise", "b"))
    options = ["--initialise-from", str(repository / "tiny" / "model.onnx")]
    output = _train(data, labels, *options, "--architecture-options", json.dumps(TINY))
    assert "the same tags in the same order" in output


def test_evaluating_a_distilled_checkpoint_without_its_teacher_says_which(
    data: Path, repository: Path, tmp_path: Path
) -> None:
    # the labels' own tags (ignored when distilling) are not the teacher's
    labels = data / "distil.csv"
    labels.write_text((data / "split.csv").read_text().replace("tone", "a").replace("noise", "b"))
    table = read_labels(labels)
    teacher = load_repository(repository)["tiny"]
    windows, tags, info = load_windows(
        labels, table, data, WAVEFORM_PATCH.samples, 16000, tmp_path / "cache", teacher
    )
    train_set, validation_set = split(windows, 0.0, 0, table.held_out)
    config = TrainConfig(
        architecture_options=TINY,
        batch_size=2,
        steps_per_epoch=1,
        max_epochs=1,
        select_on="clip_pearson",
    )
    checkpoint = train(config, train_set, validation_set, tags, tmp_path / "run", info)
    command = ["evaluate", "--checkpoint", str(checkpoint), "--labels", str(labels)]
    result = CliRunner().invoke(app, [*command, "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 2, result.output
    assert "give --teacher tiny" in _flat(result.output)


def test_distilling_files_shorter_than_the_patch_is_a_usage_error(
    data: Path, repository: Path, tmp_path: Path
) -> None:
    """A 2 s file holds no 3.69 s student patch: no window to train on, said before training."""
    sf.write(str(tmp_path / "short.wav"), np.zeros(2 * 16000, dtype=np.float32), 16000)
    labels = tmp_path / "short.csv"
    labels.write_text("path,tags\nshort.wav,noise\n")
    options = ["--teacher", "tiny", "--repository", str(repository)]
    assert "a file needs 3.69 s at least" in _train(tmp_path, labels, *options)


def test_the_shortest_file_that_distils_is_the_one_the_error_names(tmp_path: Path) -> None:
    """A sample_cnn taught by a musicnn (the shipped recipe) at the teacher's own hop: a student
    patch centred on the first teacher window starts before the file, on the end-aligned last one
    runs past its end, so a 5 s file gives no window although the patch is 3.69 s; the error
    said "no file is as long as the student's patch".
    """
    teacher, student = patch_spec("musicnn"), patch_spec("sample_cnn")
    hop = teacher.hop_samples
    shortest = shortest_distilled_file(teacher.span_samples, hop, student.samples)
    assert shortest / 16000 == pytest.approx(6.33, abs=0.005)
    files, plans = [], []
    for length in (5 * 16000, shortest - 1, shortest):
        files.append(tmp_path / f"{length}.wav")
        sf.write(str(files[-1]), np.zeros(length, np.float32), 16000)
        plans.append(plan_patches(length, teacher, hop, max_patches=100).starts)
    targets = TeacherTargets(
        teacher="musicnn",
        tags=["a"],
        window=teacher.span_samples,
        file_index=np.repeat(np.arange(3), [len(starts) for starts in plans]),
        starts=np.concatenate(plans).astype(np.int64),
        probabilities=np.full((sum(map(len, plans)), 1), 0.5, np.float32),
    )
    windows = distilled_windows(targets, files, ["g0", "g1", "g2"], student.samples)
    assert windows.file_index.tolist() == [2]  # the shortest file's one window, nothing shorter


def test_holding_nothing_out_is_a_usage_error(data: Path) -> None:
    output = _train(data, data / "labels.csv", "--validation-fraction", "0")
    assert "4 training and 0 validation windows" in output


def test_training_on_cuda_without_a_gpu_is_a_usage_error(data: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: --device cuda is valid here")
    assert "sees no CUDA GPU" in _train(data, data / "labels.csv", "--device", "cuda")
    assert not (data / "cache").exists()


def test_prepare_data_without_ffmpeg_stops_before_any_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ffmpeg, `prepare-data` is one line (exit 2) before apt-get runs; it was a
    traceback at the first package with tracker modules, after downloading those before it."""
    monkeypatch.setenv("PATH", str(tmp_path))  # neither ffmpeg nor apt-get
    result = CliRunner().invoke(app, ["prepare-data", "--data-dir", str(tmp_path / "data")])
    assert result.exit_code == 2 and not isinstance(result.exception, ValueError), result.output
    assert "needs the ffmpeg command: apt-get install ffmpeg" in _flat(result.output)
    assert not (tmp_path / "data").exists()


def test_validation_clips_of_a_missing_manifest_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["validation-clips", "--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2, result.output
    assert "none.csv" in _flat(result.output)
