"""int8 quantization: the committed ranges build working int8 models that agree with float32.

The final agreement check runs the whole service pipeline (decode, patching, batching, clip
average) on ``../shared/audio`` with each float32 model and its int8 variant side by side.
"""

from __future__ import annotations

import asyncio
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import numpy_helper

from taggram.models.data.packages import EvaluationPackageError, evaluation_only
from taggram.models.quantize import (
    FLOAT_MODELS,
    MIN_PEARSON,
    MIN_TOP5_OVERLAP,
    QUANTIZATION,
    QuantSettings,
    agreement,
    build_quantized,
    calibrate,
    cpu_session,
    frontend_nodes,
    int8_name,
    keeps_agreement,
    load_settings,
)
from taggram.repository import COMPLETE_MARKER, load_repository, sha256_file
from taggram.service.settings import Settings
from taggram.service.tagging import Tagger, TagOptions
from tests.support.paths import require_repository, require_shared


@pytest.fixture(scope="module")
def int8_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built float32 models plus their int8 variants, quantized from the committed ranges."""
    source = require_repository()
    root = tmp_path_factory.mktemp("int8-repository")
    for name in FLOAT_MODELS:
        shutil.copytree(source / name, root / name)
    build_quantized(root)
    (root / COMPLETE_MARKER).touch()
    return root


def test_ranges_are_committed_for_the_four_models() -> None:
    records = {path.stem: json.loads(path.read_text()) for path in QUANTIZATION.glob("*.json")}
    assert sorted(records) == sorted(int8_name(name) for name in FLOAT_MODELS)
    for record in records.values():
        assert record["settings"]["calibrate_method"] in {"MinMax", "Percentile"}
        assert record["ranges"]["data"], "activation ranges are missing"
        # settings were chosen on held-out training audio, never on the evaluation packages
        validation, calibration = record["validation"], record["calibration"]
        assert validation["agreement"]["clips"] >= 8 and calibration["patches"] >= 64
        used = validation["packages"] + calibration["packages"]
        assert not [name for name in used if evaluation_only(name)], used


def test_frontend_stays_float32() -> None:
    root = require_repository()
    model = onnx.load(str(root / "MTT_musicnn" / "model.onnx"))
    front = set(frontend_nodes(model))
    ops = {node.op_type for node in model.graph.node if node.name in front}
    assert {"Conv", "MatMul", "Log", "Cast"} <= ops  # STFT, mel, float16 rounding, log
    assert not any(
        name.startswith("module.network.")
        for node in model.graph.node
        if node.name in front
        for name in node.input
    )


def test_build_writes_int8_models_with_their_agreement(int8_repository: Path) -> None:
    entries = load_repository(int8_repository)
    for name in FLOAT_MODELS:
        entry = entries[int8_name(name)]
        quantization = entry.metadata.training["quantization"]
        assert isinstance(quantization, dict)
        measured = quantization["validation"]["agreement"]
        assert measured["top5_overlap"] >= MIN_TOP5_OVERLAP
        assert entry.metadata.tags == entries[name].metadata.tags
        model = onnx.load(str(entry.onnx_path))
        int8_weights = [
            init for init in model.graph.initializer if init.data_type == onnx.TensorProto.INT8
        ]
        assert int8_weights, "no int8 weights in the quantized model"
        # 7-bit weights: 8-bit ones saturate ONNX Runtime's u8 x s8 kernels on x86 CPUs without
        # VNNI (an AVX2-only machine gave Pearson 0.983 against float32 on ../shared/audio).
        widest = max(int(np.abs(numpy_helper.to_array(w)).max()) for w in int8_weights)
        assert widest <= 64, f"{name}: int8 weights reach {widest}, outside 7 bits"


def test_build_is_deterministic(int8_repository: Path, tmp_path: Path) -> None:
    root, parameters = tmp_path / "repository", tmp_path / "parameters"
    shutil.copytree(int8_repository / "MTT_vgg", root / "MTT_vgg")
    parameters.mkdir()
    shutil.copy(QUANTIZATION / "MTT_vgg_int8.json", parameters)
    build_quantized(root, parameters)
    assert sha256_file(root / "MTT_vgg_int8" / "model.onnx") == sha256_file(
        int8_repository / "MTT_vgg_int8" / "model.onnx"
    )


async def _clip_probabilities(repository: Path, models: list[str], files: list[Path]) -> dict:
    settings = Settings(model_repository=repository, models=models, warmup=False)
    async with Tagger(settings) as tagger:
        return {
            name: np.stack(
                [(await tagger.tag(path, TagOptions(model=name))).probabilities for path in files]
            )
            for name in models
        }


@pytest.mark.parametrize("name", FLOAT_MODELS)
def test_int8_agrees_with_float32_on_shared_audio(int8_repository: Path, name: str) -> None:
    """Final check (never used to choose settings): top-5 overlap >= 4.5/5, Pearson >= 0.99."""
    audio = require_shared()
    with (audio / "manifest.csv").open(newline="") as handle:
        files = [audio / row["file"] for row in csv.DictReader(handle)]
    clips = asyncio.run(_clip_probabilities(int8_repository, [name, int8_name(name)], files))
    result = agreement(clips[name].astype(np.float64), clips[int8_name(name)].astype(np.float64))
    assert result["clips"] == len(files)
    assert result["top5_overlap"] >= MIN_TOP5_OVERLAP, result
    assert result["pearson"] >= MIN_PEARSON, result


def test_agreement_measures_what_it_says() -> None:
    reference = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.1, 0.0], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]])
    same = agreement(reference, reference)
    assert same["top5_overlap"] == 5 and same["pearson"] == pytest.approx(1)
    swapped = reference.copy()
    swapped[0, [0, 6]] = swapped[0, [6, 0]]  # the best tag drops out of the top 5
    result = agreement(reference, swapped)
    assert result["top5_overlap"] == 4.5 and result["top5_overlap_min"] == 4
    assert result["pearson"] < 0.99


def _manifest(data: Path, package: str, seconds: float = 20.0) -> None:
    rng = np.random.default_rng(0)
    rows = []
    for index in range(4):
        path = data / "audio" / package / f"dir{index}" / "song.wav"
        path.parent.mkdir(parents=True)
        t = np.arange(int(seconds * 16000)) / 16000
        tone = np.sin(2 * np.pi * (110 * (index + 1)) * t) * 0.3
        sf.write(str(path), (tone + rng.normal(0, 0.05, t.size)).astype(np.float32), 16000)
        group = f"{package}/dir{index}"
        rows.append({"path": str(path.relative_to(data)), "package": package, "group": group})
    with (data / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "package", "group"])
        writer.writeheader()
        writer.writerows(rows)


def test_calibrate_refuses_evaluation_packages(tmp_path: Path) -> None:
    _manifest(tmp_path, "hyperrogue-music")
    with pytest.raises(EvaluationPackageError):
        calibrate(require_repository(), tmp_path, tmp_path / "out", ["MTT_vgg"])


def test_calibrate_writes_ranges_the_build_uses(tmp_path: Path) -> None:
    """A small real calibration (4 files of a training package) round-trips into a build."""
    repository = require_repository()
    data, output = tmp_path / "data", tmp_path / "out"
    _manifest(data, "supertux-data")
    settings = QuantSettings("MinMax", per_channel=False)
    [path] = calibrate(
        repository, data, output, ["MTT_vgg"], patches_per_file=6, candidates=[settings]
    )
    record = json.loads(path.read_text())
    assert load_settings(record) == settings
    assert record["float_sha256"] == sha256_file(repository / "MTT_vgg" / "model.onnx")
    assert record["calibration"]["packages"] == ["supertux-data"]
    assert record["validation"]["files"] == 1 and record["calibration"]["patches"] == 16
    root = tmp_path / "repository"
    shutil.copytree(repository / "MTT_vgg", root / "MTT_vgg")
    [folder] = build_quantized(root, output)
    assert load_repository(root)["MTT_vgg_int8"].onnx_path == folder / "model.onnx"


def test_float16_variant_is_built_only_on_request(int8_repository: Path, tmp_path: Path) -> None:
    """``--float16`` adds ``MTT_vgg_fp16`` (front-end float32, network float16) where the
    committed validation agreement allows; it runs (on the CPU here) close to float32."""
    record = json.loads((QUANTIZATION / "MTT_vgg_int8.json").read_text())
    root, parameters = tmp_path / "repository", tmp_path / "parameters"
    shutil.copytree(int8_repository / "MTT_vgg", root / "MTT_vgg")
    parameters.mkdir()
    shutil.copy(QUANTIZATION / "MTT_vgg_int8.json", parameters)
    build_quantized(root, parameters, float16=True)
    entries = load_repository(root)
    assert ("MTT_vgg_fp16" in entries) == keeps_agreement(record["float16"]["agreement"])
    assert "MTT_vgg_fp16" in entries, "float16 MTT_vgg lost agreement on the validation audio"
    model = onnx.load(str(entries["MTT_vgg_fp16"].onnx_path))
    halves = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    assert halves and model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    sessions = [cpu_session(entries[name].onnx_path) for name in ("MTT_vgg", "MTT_vgg_fp16")]
    batch = (0.1 * np.random.default_rng(0).standard_normal((2, 48128))).astype(np.float32)
    full, half = (session.run(["probabilities"], {"waveform": batch})[0] for session in sessions)
    np.testing.assert_allclose(half, full, atol=0.02)
