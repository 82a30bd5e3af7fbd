"""Static int8 quantization of the four musicnn/VGG taggers (ONNX Runtime, QDQ format).

Two steps, so that the build needs no audio:

* ``taggram calibrate`` (:func:`calibrate`) reads mono 16 kHz audio prepared from the *training*
  Debian packages (``taggram prepare-data``; the evaluation denylist is refused), splits it by
  folder into a calibration and a validation side, collects every activation's range on the
  calibration side for each candidate setting, quantizes, and keeps the setting whose clip-level
  tags agree best with float32 on the validation side. It writes one JSON file per model under
  ``taggram/models/quantization/`` (committed): the chosen settings, the activation ranges (ONNX
  Runtime's calibration cache), the float model's SHA-256 and the measured agreement.
* ``taggram build-models`` (:func:`build_quantized`) quantizes each freshly built float model
  with those committed ranges: the same int8 model everywhere, without the calibration audio.

The log-mel front-end (STFT convolution, mel matrix product, float16 rounding, log) stays float32:
the power spectrum spans more than 100 dB, which 8 bits (48 dB) cannot hold, and quantizing the
waveform before the STFT would add a noise floor that the ``log10(1 + 10000 * mel)`` compression
then amplifies in quiet bands. It costs about 0.1 of the FLOPs. Everything after it (the
convolutions, dense layers and the output layer) runs in int8 (activations uint8, weights int8).
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import soundfile as sf
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from taggram.models.data.packages import ensure_trainable
from taggram.repository import (
    METADATA_FILE,
    ONNX_FILE,
    ModelMetadata,
    ModelQuality,
    sha256_file,
    write_model,
)

log = logging.getLogger(__name__)

QUANTIZATION = Path(__file__).resolve().parent / "quantization"
FLOAT_MODELS = ("MTT_musicnn", "MTT_vgg", "MSD_musicnn", "MSD_vgg")
SUFFIX = "_int8"
FLOAT16_SUFFIX = "_fp16"
# A reduced-precision variant is built only when it keeps this agreement with float32 (clip-level,
# on the validation side of the training audio; the same bar as the final check on shared audio).
MIN_TOP5_OVERLAP = 4.5
MIN_PEARSON = 0.99
# Initializers of the network proper (after the front-end), as the exporter names them.
NETWORK_PREFIX = "module.network."
# Patches per strided calibration pass: ONNX Runtime keeps every intermediate tensor of a pass in
# memory (about 30 MB per musicnn patch), so passes are kept small.
CALIBRATION_STRIDE = 16
TOP_K = 5


def int8_name(float_name: str) -> str:
    """The served name of a float model's int8 variant (``MTT_musicnn`` -> ``MTT_musicnn_int8``)."""
    return float_name + SUFFIX


@dataclass(frozen=True)
class QuantSettings:
    """One candidate: how ranges are calibrated and weights quantized."""

    calibrate_method: str = "MinMax"  # MinMax or Percentile
    percentile: float | None = None  # for Percentile
    per_channel: bool = True
    quant_format: str = "QDQ"
    activation_type: str = "QUInt8"  # u8 activations x s8 weights: the VNNI/AVX2 fast path
    weight_type: str = "QInt8"
    # Operators given int8 inputs/outputs. Relu is listed so that each convolution gets a
    # quantized output (the Relu folds into it, and DQ-Conv-Q fuses into one int8 QLinearConv);
    # quantizing the max-pools, concatenations, residual additions or the sigmoid as well cost
    # much agreement on the validation audio (top-5 overlap 4.3 instead of 4.5 for MTT_musicnn).
    op_types: tuple[str, ...] = ("Conv", "Gemm", "Relu", "MaxPool")
    float_output_layer: bool = False  # keep the last dense layer (logits) in float32
    # musicnn's temporal filters ([128|64|32] frames x 1 band, one input channel) run 4-8x slower
    # as ONNX Runtime's int8 QLinearConv (im2col of a one-channel input) than as its float NCHWc
    # convolution (measured: 52 vs 7 ms per 8 patches on one thread), so they stay float32.
    float_temporal_convs: bool = True
    # Share of the network's convolution and dense FLOPs run in int8, largest layers first: the
    # big early convolutions give nearly all the speed-up, the small late layers (musicnn's
    # mid-end and dense layers, VGG's last convolutions) most of the accumulated error.
    int8_flops_share: float = 1.0
    # 7-bit weights ([-64, 63]): on x86 without VNNI (AVX2, AVX-512F) ONNX Runtime's u8 x s8
    # kernels add pairs of products in 16 bits (VPMADDUBSW), which saturate with full 8-bit
    # weights (onnxruntime#12088; oneDNN's "Nuances of int8 computations"). 7 bits cannot, so
    # one int8 model agrees with float32 on every x86 CPU (on an AVX2-only one, 8-bit weights
    # gave Pearson 0.983-0.988 against float32 on ../shared/audio).
    reduce_range: bool = True

    @property
    def method(self) -> CalibrationMethod:
        """ONNX Runtime's calibration method for ``calibrate_method``."""
        return CalibrationMethod[self.calibrate_method]

    @property
    def label(self) -> str:
        """A one-line human description of the settings (recorded in the metadata)."""
        method = self.calibrate_method + (f" {self.percentile:g}" if self.percentile else "")
        weights = "per-channel" if self.per_channel else "per-tensor"
        output = ", float32 output layer" if self.float_output_layer else ""
        share = f", int8 for {self.int8_flops_share:.0%} of the FLOPs"
        bits = ", 7-bit weights" if self.reduce_range else ""
        return f"{method}, {weights} weights{bits}{output}{share}"


CANDIDATES = tuple(
    QuantSettings("Percentile", percentile, int8_flops_share=share)
    for percentile in (99.999, 99.99)
    for share in (1.0, 0.9, 0.6)
)
# Validation is small (a few dozen clips of game music), so a candidate must clear the final bar
# (top-5 overlap 4.5, Pearson 0.99) with a margin to count as keeping agreement; among those the
# one with the most int8 FLOPs (the fastest) wins, else the most accurate.
MARGIN_TOP5_OVERLAP = 4.75
MARGIN_PEARSON = 0.995


# ---------------------------------------------------------------------------------------------
# The graph: pooling moved before the batch norm (exact), and which nodes stay float32


def _consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _static_dims(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Inferred shapes of every intermediate tensor (0 for a symbolic dimension)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    return {
        info.name: [dim.dim_value for dim in info.type.tensor_type.shape.dim]
        for info in inferred.graph.value_info
    }


def pool_before_batch_norm(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every ``Conv → Relu → BatchNormalization → max-pool`` chain so that the pool comes
    first and the int8 graph never dequantizes the large pre-pool tensor.

    Both networks normalise after the ReLU and then max-pool (musicnn over the whole frequency
    axis with ``ReduceMax``, VGG with ``MaxPool``); run as is, the int8 graph must dequantize each
    convolution's full output for the float batch norm, which costs more than int8 saves. The
    rewrite is exact: with ``s`` the batch norm's per-channel scale and ``σ = sign(s)``,
    ``max(s·relu(z) + c) = s·relu(σ·max(σ·z)) + c`` (ReLU and the affine map are monotone). The
    convolution's weights and bias are multiplied by ``σ``, the pool (``ReduceMax`` becomes a
    ``MaxPool`` over the whole axis, which has an int8 kernel) then runs on its output, followed
    by ``×σ``, ReLU, the unchanged batch norm and, for ``ReduceMax``, the squeeze.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    consumers = _consumers(model)
    dims = _static_dims(model)
    replaced: dict[str, list[onnx.NodeProto]] = {}  # pool node name -> its replacement chain
    removed: set[str] = set()
    for bn in [node for node in graph.node if node.op_type == "BatchNormalization"]:
        relu = producers.get(bn.input[0])
        conv = producers.get(relu.input[0]) if relu is not None else None
        pools = consumers.get(bn.output[0], [])
        if (
            relu is None
            or relu.op_type != "Relu"
            or conv is None
            or conv.op_type != "Conv"
            or len(conv.input) < 3
            or len(consumers[relu.output[0]]) != 1
            or len(consumers[conv.output[0]]) != 1
            or len(pools) != 1
            or pools[0].op_type not in {"ReduceMax", "MaxPool"}
        ):
            continue
        pool = pools[0]
        gamma, var = (
            onnx.numpy_helper.to_array(initializers[n]) for n in (bn.input[1], bn.input[4])
        )
        epsilon = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        sign = np.where(gamma / np.sqrt(var + epsilon) < 0, -1.0, 1.0).astype(np.float32)
        for index in (1, 2):  # weight, bias
            init = initializers[conv.input[index]]
            value = onnx.numpy_helper.to_array(init)
            shaped = sign.reshape((-1,) + (1,) * (value.ndim - 1))
            init.CopyFrom(onnx.numpy_helper.from_array(value * shaped, init.name))
        chain: list[onnx.NodeProto] = []
        pooled = f"{pool.name}_pooled"
        if pool.op_type == "MaxPool":
            chain.append(onnx.helper.make_node("MaxPool", [conv.output[0]], [pooled], pool.name))
            chain[0].attribute.extend(pool.attribute)
            rank = len(dims.get(conv.output[0], [])) or 4
        else:
            axes = onnx.numpy_helper.to_array(initializers[pool.input[1]]).tolist()
            shape = dims[conv.output[0]]
            rank = len(shape)
            if axes not in ([rank - 1], [-1]) or rank != 4 or not shape[-1]:
                continue  # only the frequency-axis max of musicnn, with a known width
            chain.append(
                onnx.helper.make_node(
                    "MaxPool", [conv.output[0]], [pooled], pool.name, kernel_shape=[1, shape[-1]]
                )
            )
        signed = pooled
        if (sign < 0).any():
            sign_name = f"{pool.name}_sign"
            graph.initializer.append(
                onnx.numpy_helper.from_array(sign.reshape((1, -1) + (1,) * (rank - 2)), sign_name)
            )
            signed = f"{pool.name}_signed"
            chain.append(onnx.helper.make_node("Mul", [pooled, sign_name], [signed]))
        rectified = f"{pool.name}_relu"
        chain.append(onnx.helper.make_node("Relu", [signed], [rectified], relu.name))
        keep = pool.op_type == "MaxPool" or any(
            a.name == "keepdims" and a.i == 1 for a in pool.attribute
        )
        normalised = pool.output[0] if keep else f"{pool.name}_normalised"
        moved = onnx.helper.make_node(
            "BatchNormalization", [rectified, *bn.input[1:]], [normalised], bn.name
        )
        moved.attribute.extend(bn.attribute)
        chain.append(moved)
        if not keep:
            axes_name = f"{pool.name}_axes"
            graph.initializer.append(
                onnx.numpy_helper.from_array(np.array([rank - 1], np.int64), axes_name)
            )
            chain.append(
                onnx.helper.make_node("Squeeze", [normalised, axes_name], [pool.output[0]])
            )
        replaced[pool.name] = chain
        removed |= {relu.name, bn.name}
    nodes = []
    for node in graph.node:
        if node.name in removed:
            continue
        nodes.extend(replaced.get(node.name, [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def frontend_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes computing the log-mel front-end: every ancestor of the first node that
    reads a network weight (``module.network.*``), i.e. everything between the waveform input and
    the network's input batch normalisation."""
    producers = {output: node for node in model.graph.node for output in node.output}
    initializers = {init.name for init in model.graph.initializer}
    first = next(
        node
        for node in model.graph.node
        if any(name.startswith(NETWORK_PREFIX) for name in node.input)
    )
    found: dict[str, onnx.NodeProto] = {}
    pending = [name for name in first.input if name not in initializers]
    while pending:
        node = producers.get(pending.pop())
        if node is None or node.name in found:
            continue
        found[node.name] = node
        pending.extend(name for name in node.input if name not in initializers)
    return sorted(found)


def output_layer(model: onnx.ModelProto, probabilities: str = "probabilities") -> str:
    """Name of the node computing the logits: the producer of the sigmoid's input."""
    producers = {output: node for node in model.graph.node for output in node.output}
    sigmoid = producers[probabilities]
    return producers[sigmoid.input[0]].name


def temporal_convs(model: onnx.ModelProto) -> list[str]:
    """Convolutions with one input channel and a kernel one frequency band wide."""
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "Conv"
        and len(shape := shapes.get(node.input[1], [])) == 4
        and shape[1] == 1
        and shape[3] == 1
    ]


def layer_flops(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-adds x 2 per patch of every Conv and Gemm node, from the inferred shapes."""
    dims = _static_dims(model)
    shapes = {init.name: list(init.dims) for init in model.graph.initializer}
    flops = {}
    for node in model.graph.node:
        weight = shapes.get(node.input[1]) if len(node.input) > 1 else None
        output = dims.get(node.output[0])
        if node.op_type in {"Conv", "Gemm"} and weight and output:
            per_output = int(np.prod(weight[1:])) if node.op_type == "Conv" else weight[-1]
            flops[node.name] = 2 * per_output * int(np.prod([d or 1 for d in output[1:]]))
    return flops


def light_layers(model: onnx.ModelProto, share: float, excluded: set[str]) -> list[str]:
    """The smallest Conv/Gemm layers left over once the largest make up ``share`` of the FLOPs."""
    flops = {name: f for name, f in layer_flops(model).items() if name not in excluded}
    total, running, light = sum(flops.values()), 0, []
    for name, f in sorted(flops.items(), key=lambda item: -item[1]):
        if running >= share * total:
            light.append(name)
        running += f
    return light


def float_nodes(model: onnx.ModelProto, settings: QuantSettings) -> list[str]:
    """Nodes that stay float32 under ``settings``."""
    output = [output_layer(model)] if settings.float_output_layer else []
    temporal = temporal_convs(model) if settings.float_temporal_convs else []
    fixed = frontend_nodes(model) + output + temporal
    light = light_layers(model, settings.int8_flops_share, set(fixed))
    return fixed + light if settings.int8_flops_share < 1 else fixed


def prepared(float_path: Path) -> onnx.ModelProto:
    """The float model as it is quantized: pools moved before the batch norms (exact)."""
    return pool_before_batch_norm(onnx.load(str(float_path)))


class _ExpectedAdvice(logging.Filter):
    """Drops ONNX Runtime's quantizer notes that do not apply here: its pre-processing advice
    (the graph is prepared by :func:`pool_before_batch_norm` instead) and the scale bumps of
    channels whose weights are all zero (dead filters of the trained networks)."""

    EXPECTED = ("Please consider", "Increased scale")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.EXPECTED)


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    root, expected = logging.getLogger(), _ExpectedAdvice()
    root.addFilter(expected)
    try:
        yield
    finally:
        root.removeFilter(expected)


def quantize(
    float_path: Path, target: Path, settings: QuantSettings, ranges: dict[str, Any]
) -> None:
    """Write the int8 model of ``float_path`` to ``target`` from stored activation ranges."""
    with tempfile.TemporaryDirectory(prefix="taggram-quant-") as tmp:
        cache = Path(tmp) / "ranges.json"
        cache.write_text(json.dumps(ranges))
        _quantize_static(prepared(float_path), target, settings, cache)


def _quantize_static(
    model: onnx.ModelProto,
    target: Path,
    settings: QuantSettings,
    cache: Path,
    reader: CalibrationDataReader | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """ONNX Runtime's static quantization under ``settings``; the ranges come from ``cache``
    when it exists, else from calibrating on ``reader`` (and are then saved to ``cache``)."""
    with _quiet_quantizer():
        quantize_static(
            model,
            target,
            calibration_data_reader=reader,
            calibration_cache_path=cache,
            quant_format=QuantFormat[settings.quant_format],
            per_channel=settings.per_channel,
            activation_type=QuantType[settings.activation_type],
            weight_type=QuantType[settings.weight_type],
            nodes_to_exclude=float_nodes(model, settings),
            op_types_to_quantize=list(settings.op_types),
            calibrate_method=settings.method,
            reduce_range=settings.reduce_range,
            extra_options=extra,
        )


# ---------------------------------------------------------------------------------------------
# Calibration audio: prepared training packages, split by folder


@dataclass(frozen=True)
class Clip:
    """Patches cut from one file (mono 16 kHz float32 [n, patch_samples])."""

    path: str
    package: str
    patches: np.ndarray


@dataclass
class AudioSplit:
    """Training-package clips split by folder into calibration and validation sides."""

    calibration: list[Clip] = field(default_factory=list)
    validation: list[Clip] = field(default_factory=list)

    @staticmethod
    def describe(clips: list[Clip]) -> dict[str, Any]:
        """Packages, file count and patch count of ``clips``, for the quantization files."""
        return {
            "packages": sorted({clip.package for clip in clips}),
            "files": len(clips),
            "patches": int(sum(len(clip.patches) for clip in clips)),
        }


def _patches(path: Path, samples: int, count: int) -> np.ndarray:
    """Up to ``count`` patches of ``samples`` at evenly spaced positions of a 16 kHz file."""
    with sf.SoundFile(str(path)) as sound:
        if sound.samplerate != 16000 or sound.channels != 1:
            raise ValueError(f"{path}: expected mono 16 kHz (taggram prepare-data writes it)")
        audio = sound.read(dtype="float32")
    if len(audio) < samples:
        return np.empty((0, samples), np.float32)
    starts = np.linspace(0, len(audio) - samples, num=count).astype(np.int64)
    return np.stack([audio[start : start + samples] for start in np.unique(starts)])


def load_split(
    data_dir: Path,
    samples: int,
    patches_per_file: int,
    validation_fraction: float,
) -> AudioSplit:
    """Read ``data_dir/manifest.csv`` (from ``taggram prepare-data``) and cut patches.

    Whole folders (the manifest's ``group``) go to one side: the groups sorted by the SHA-1 of
    their name, the first ``validation_fraction`` of them validate, the rest calibrate.

    Raises:
        EvaluationPackageError: the manifest names a package of the evaluation denylist.
    """
    with (data_dir / "manifest.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    ensure_trainable(row["package"] for row in rows)
    # The music of the training packages: the recipe's reels of speech and effects, and the
    # packages it holds out to validate the waveform student, stay out.
    rows = [r for r in rows if r.get("kind", "music") == "music" and r.get("split") != "validation"]
    groups = sorted({row["group"] for row in rows}, key=lambda g: hashlib.sha1(g.encode()).digest())
    n_validation = max(1, round(len(groups) * validation_fraction))
    validation_groups = set(groups[:n_validation])
    split = AudioSplit()
    for row in rows:
        patches = _patches(data_dir / row["path"], samples, patches_per_file)
        if len(patches):
            side = split.validation if row["group"] in validation_groups else split.calibration
            side.append(Clip(row["path"], row["package"], patches))
    if not split.calibration or not split.validation:
        raise ValueError(f"{data_dir}: need audio on both sides of the split, got {split}")
    return split


class PatchReader(CalibrationDataReader):
    """Feeds calibration patches to ONNX Runtime one at a time, in strided ranges."""

    def __init__(self, input_name: str, patches: np.ndarray) -> None:
        self.input_name = input_name
        self.patches = patches
        self._iterator: Iterator[np.ndarray] = iter(())

    def __len__(self) -> int:
        return len(self.patches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Feed patches ``start_index`` to ``end_index`` (exclusive) in the next strided pass."""
        self._iterator = iter(self.patches[start_index:end_index, None])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next ``{input: [1, samples]}`` float32 feed, or None at the end of the range."""
        patch = next(self._iterator, None)
        return None if patch is None else {self.input_name: patch}


def collect_ranges(
    float_path: Path, input_name: str, patches: np.ndarray, settings: QuantSettings
) -> dict[str, Any]:
    """Calibrate on ``patches`` and return ONNX Runtime's range cache (a JSON-able dict)."""
    usable = len(patches) - len(patches) % CALIBRATION_STRIDE
    if usable == 0:
        raise ValueError(f"need at least {CALIBRATION_STRIDE} calibration patches")
    extra: dict[str, Any] = {"CalibStridedMinMax": CALIBRATION_STRIDE}
    if settings.percentile is not None:
        extra["CalibPercentile"] = settings.percentile
    with tempfile.TemporaryDirectory(prefix="taggram-calib-") as tmp:
        cache = Path(tmp) / "ranges.json"
        reader = PatchReader(input_name, patches[:usable])
        _quantize_static(
            prepared(float_path), Path(tmp) / "model.onnx", settings, cache, reader, extra
        )
        ranges: dict[str, Any] = json.loads(cache.read_text())
    return ranges


# ---------------------------------------------------------------------------------------------
# Agreement with float32


def clip_probabilities(
    session: ort.InferenceSession, clips: Sequence[np.ndarray], batch: int = 16
) -> np.ndarray:
    """[clips, tags] float64: each clip's mean patch probability (the first output)."""
    input_name = session.get_inputs()[0].name
    output = session.get_outputs()[0].name
    rows = []
    for patches in clips:
        probabilities = [
            session.run([output], {input_name: patches[i : i + batch]})[0]
            for i in range(0, len(patches), batch)
        ]
        rows.append(np.concatenate(probabilities).mean(axis=0, dtype=np.float64))
    return np.stack(rows)


def agreement(reference: np.ndarray, candidate: np.ndarray, top_k: int = TOP_K) -> dict[str, float]:
    """How well ``candidate`` clip probabilities [clips, tags] follow ``reference`` (float32).

    ``top5_overlap``: tags shared by the two top-5 lists, averaged over clips (5 = identical);
    ``pearson``: Pearson correlation of each clip's tag probabilities, averaged over clips
    (``pearson_min`` the worst clip); ``max_abs_difference``: largest probability difference.
    """
    top_ref = np.argsort(-reference, axis=1)[:, :top_k]
    top_new = np.argsort(-candidate, axis=1)[:, :top_k]
    overlap = [len(set(a) & set(b)) for a, b in zip(top_ref, top_new, strict=True)]
    pearson = [float(np.corrcoef(a, b)[0, 1]) for a, b in zip(reference, candidate, strict=True)]
    return {
        "clips": len(reference),
        "top5_overlap": round(float(np.mean(overlap)), 4),
        "top5_overlap_min": int(min(overlap)),
        "pearson": round(float(np.mean(pearson)), 6),
        "pearson_min": round(float(min(pearson)), 6),
        "max_abs_difference": round(float(np.abs(reference - candidate).max()), 6),
    }


def cpu_session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """A CPU ONNX Runtime session of the model at ``path`` (``threads`` 0: all cores)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def choose(tried: list[tuple[QuantSettings, dict[str, float]]]) -> tuple[QuantSettings, dict]:
    """The candidate with the most int8 among those clearing the bar with a margin, else the
    most accurate (Pearson, then top-5 overlap: the less noisy measure first)."""
    clearing = [
        item
        for item in tried
        if item[1]["top5_overlap"] >= MARGIN_TOP5_OVERLAP and item[1]["pearson"] >= MARGIN_PEARSON
    ]
    if clearing:
        return max(
            clearing,
            key=lambda i: (i[0].int8_flops_share, i[1]["pearson"], i[1]["top5_overlap"]),
        )
    return max(tried, key=lambda item: (item[1]["pearson"], item[1]["top5_overlap"]))


# ---------------------------------------------------------------------------------------------
# The two entry points


def calibrate(
    repository: Path,
    data_dir: Path,
    output: Path = QUANTIZATION,
    models: Sequence[str] = FLOAT_MODELS,
    patches_per_file: int = 8,
    validation_fraction: float = 0.25,
    candidates: Sequence[QuantSettings] = CANDIDATES,
    threads: int = 0,
) -> list[Path]:
    """Choose settings and ranges for each float model in ``repository``; write ``output/*.json``.

    Args:
        repository: a built model repository holding the float32 ``models``.
        data_dir: folder of ``taggram prepare-data`` (``manifest.csv`` + 16 kHz mono WAV files).
        patches_per_file: patches cut per file, evenly spaced.
        validation_fraction: share of the manifest's folders held out to choose the settings.

    Raises:
        EvaluationPackageError: ``data_dir`` holds a package of the evaluation denylist.
    """
    output.mkdir(parents=True, exist_ok=True)
    written = []
    split: AudioSplit | None = None
    for name in models:
        folder = repository / name
        metadata = ModelMetadata.model_validate_json((folder / METADATA_FILE).read_text())
        float_path = folder / ONNX_FILE
        if split is None:
            split = load_split(
                data_dir, metadata.patch.samples, patches_per_file, validation_fraction
            )
        calibration = np.concatenate([clip.patches for clip in split.calibration])
        validation = [clip.patches for clip in split.validation]
        reference = clip_probabilities(cpu_session(float_path, threads), validation)
        ranges_by_method: dict[tuple[str, float | None], dict[str, Any]] = {}
        tried: list[tuple[QuantSettings, dict[str, float]]] = []
        with tempfile.TemporaryDirectory(prefix="taggram-int8-") as tmp:
            for settings in candidates:
                key = (settings.calibrate_method, settings.percentile)
                if key not in ranges_by_method:
                    log.info("%s: calibrating %s", name, settings.label)
                    ranges_by_method[key] = collect_ranges(
                        float_path, metadata.input_name, calibration, settings
                    )
                target = Path(tmp) / f"{len(tried)}.onnx"
                quantize(float_path, target, settings, ranges_by_method[key])
                result = agreement(
                    reference, clip_probabilities(cpu_session(target, threads), validation)
                )
                log.info("%s: %s -> %s", name, settings.label, result)
                tried.append((settings, result))
        best, best_result = choose(tried)
        record = {
            "model": int8_name(name),
            "float_model": name,
            "float_sha256": sha256_file(float_path),
            "onnxruntime": ort.__version__,
            "settings": asdict(best),
            "float32_nodes": "log-mel front-end (STFT, mel, float16 rounding, log): "
            "int8 cannot hold the power spectrum's range",
            "calibration": {
                **AudioSplit.describe(split.calibration),
                "patches": CALIBRATION_STRIDE
                * (sum(len(c.patches) for c in split.calibration) // CALIBRATION_STRIDE),
            },
            "validation": {**AudioSplit.describe(split.validation), "agreement": best_result},
            "candidates": [
                {"settings": settings.label, "agreement": result} for settings, result in tried
            ],
            "ranges": ranges_by_method[(best.calibrate_method, best.percentile)],
        }
        record["float16"] = float16_agreement(float_path, validation, reference, threads)
        path = output / f"{int8_name(name)}.json"
        path.write_text(json.dumps(record, indent=1, sort_keys=False) + "\n")
        written.append(path)
    return written


def to_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float16 variant for GPUs: the network in float16, the log-mel front-end in float32
    (``10000 * mel`` reaches about 1e6, beyond float16's 65504), float32 input and outputs.

    Done by hand rather than with ``onnxruntime.transformers.float16``, which rounds the tensors
    *between* blocked (float32) nodes to float16 too and so overflows inside the front-end: the
    network's float initializers become float16, one ``Cast`` enters the network from the
    front-end, and one ``Cast`` per output leaves it.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    front = set(frontend_nodes(model))
    produced_by_front = {out for node in graph.node if node.name in front for out in node.output}
    read_by_front = {name for node in graph.node if node.name in front for name in node.input}
    initializers = {init.name: init for init in graph.initializer}
    casts: list[onnx.NodeProto] = []
    renamed: dict[str, str] = {}
    for node in graph.node:
        if node.name in front:
            continue
        for index, name in enumerate(node.input):
            if name in produced_by_front:  # the front-end's log-mel enters the network
                if name not in renamed:
                    renamed[name] = f"{name}_fp16"
                    to = onnx.TensorProto.FLOAT16
                    casts.append(onnx.helper.make_node("Cast", [name], [renamed[name]], to=to))
                node.input[index] = renamed[name]
            elif (init := initializers.get(name)) is not None:
                if init.data_type != onnx.TensorProto.FLOAT:
                    continue
                half = onnx.numpy_helper.to_array(init).astype(np.float16)
                if name in read_by_front:  # shared with the front-end: a float16 copy
                    node.input[index] = f"{name}_fp16"
                    if f"{name}_fp16" not in initializers:
                        copy = onnx.numpy_helper.from_array(half, f"{name}_fp16")
                        graph.initializer.append(copy)
                        initializers[copy.name] = copy
                else:
                    init.CopyFrom(onnx.numpy_helper.from_array(half, name))
    outputs = {output.name for output in graph.output}
    for node in graph.node:
        if node.name in front:
            continue
        for index, name in enumerate(node.input):  # an output also read inside the network
            if name in outputs:
                node.input[index] = f"{name}_fp16"
        for index, name in enumerate(node.output):
            if name in outputs:
                node.output[index] = f"{name}_fp16"
                cast = onnx.helper.make_node(
                    "Cast", [f"{name}_fp16"], [name], to=onnx.TensorProto.FLOAT
                )
                casts.append(cast)
    nodes = list(graph.node)
    first_network = next(i for i, node in enumerate(nodes) if node.name not in front)
    del graph.node[:]
    graph.node.extend(nodes[:first_network] + casts[:1] + nodes[first_network:] + casts[1:])
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def float16_agreement(
    float_path: Path, validation: list[np.ndarray], reference: np.ndarray, threads: int = 0
) -> dict[str, Any]:
    """The float16 variant's agreement with float32 on the validation clips (run on the CPU)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model = to_float16(onnx.load(str(float_path)))
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return {"agreement": agreement(reference, clip_probabilities(session, validation))}


def keeps_agreement(measured: dict[str, float]) -> bool:
    """Whether measured agreement with float32 passes the bars (top-5 overlap and Pearson r)."""
    return measured["top5_overlap"] >= MIN_TOP5_OVERLAP and measured["pearson"] >= MIN_PEARSON


def load_settings(record: dict[str, Any]) -> QuantSettings:
    """The :class:`QuantSettings` recorded in a committed quantization file."""
    settings = dict(record["settings"])
    settings["op_types"] = tuple(settings["op_types"])
    return QuantSettings(**settings)


def variant_metadata(
    metadata: ModelMetadata, name: str, kind: str, quantization: dict[str, Any]
) -> ModelMetadata:
    """The float model's metadata, renamed, annotated with its reduced precision."""
    return metadata.model_copy(
        update={
            "name": name,
            "description": f"{metadata.description}; {kind} of {metadata.name}",
            "training": {**metadata.training, "quantization": quantization},
            "quality": ModelQuality(
                source=f"not measured for the {kind} model; its agreement with "
                f"{metadata.name} is under training.quantization.validation"
            ),
        }
    )


def int8_metadata(metadata: ModelMetadata, record: dict[str, Any]) -> ModelMetadata:
    """The float model's metadata, renamed and annotated with how it was quantized."""
    settings = load_settings(record)
    quantization = {
        "scheme": f"static int8 ({settings.quant_format}, uint8 activations, int8 weights, "
        f"{settings.label}), ONNX Runtime {record['onnxruntime']}",
        "float_model": record["float_model"],
        "float32_nodes": record["float32_nodes"],
        "calibration": record["calibration"],
        "validation": record["validation"],
    }
    return variant_metadata(metadata, record["model"], "int8 (static quantization)", quantization)


def float16_metadata(metadata: ModelMetadata, record: dict[str, Any]) -> ModelMetadata:
    """The float model's metadata, renamed and annotated as its float16 variant."""
    quantization = {
        "scheme": "float16 network (onnxruntime.transformers.float16), float32 input/outputs",
        "float_model": record["float_model"],
        "float32_nodes": "log-mel front-end: the mel power spectrum exceeds float16's range",
        "validation": {**record["validation"], **record["float16"]},
    }
    name = record["float_model"] + FLOAT16_SUFFIX
    return variant_metadata(metadata, name, "float16", quantization)


def build_quantized(
    root: Path, parameters: Path = QUANTIZATION, float16: bool = False
) -> list[Path]:
    """Quantize the float models in ``root`` with the committed ranges; write ``<name>_int8``,
    and with ``float16`` also ``<name>_fp16`` where the float16 variant keeps the agreement
    (for GPU repositories: on a CPU float16 is no faster and would only cost memory).

    A float model whose bytes differ from those calibrated on is still quantized (the ranges are
    keyed by tensor name), with a warning: rerun ``taggram calibrate`` after changing the export.
    """
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        log.warning(
            "onnxruntime %s cannot quantize from stored ranges: no int8 models", ort.__version__
        )
        return []
    written = []
    for path in sorted(parameters.glob(f"*{SUFFIX}.json")):
        record = json.loads(path.read_text())
        folder = root / record["float_model"]
        float_path = folder / ONNX_FILE
        if sha256_file(float_path) != record["float_sha256"]:
            log.warning("%s differs from the model calibrated on; rerun taggram calibrate", folder)
        metadata = ModelMetadata.model_validate_json((folder / METADATA_FILE).read_text())
        with tempfile.TemporaryDirectory(prefix="taggram-int8-") as tmp:
            target = Path(tmp) / ONNX_FILE
            quantize(float_path, target, load_settings(record), record["ranges"])
            onnx_bytes = target.read_bytes()
        written.append(write_model(root, int8_metadata(metadata, record), onnx_bytes))
        half = record.get("float16")
        if float16 and half is not None and keeps_agreement(half["agreement"]):
            converted = to_float16(onnx.load(str(float_path))).SerializeToString()
            written.append(write_model(root, float16_metadata(metadata, record), converted))
    return written
