"""The model repository: the one contract between ``models/`` (which writes it) and ``service/``.

Layout: ``<root>/<model name>/model.onnx`` plus ``<root>/<model name>/metadata.json``, the latter
validated by :class:`ModelMetadata`. Every model takes the same input, a batch of mono float32
waveform patches at the model's sample rate, so the service treats all models alike.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SCHEMA_VERSION = 2  # 2: `metrics` renamed `quality`
# Older versions this code still reads, upgrading them on load.
READABLE_VERSIONS = (1, SCHEMA_VERSION)
# Where `taggram build-models` writes and `taggram serve` reads, relative to the working directory.
DEFAULT_REPOSITORY = Path("model_repository")
METADATA_FILE = "metadata.json"
ONNX_FILE = "model.onnx"
# Written last by the builder; its presence means the repository is complete.
COMPLETE_MARKER = ".complete"


class TensorSpec(BaseModel):
    """One named ONNX input or output; ``"batch"`` marks the dynamic batch axis."""

    model_config = ConfigDict(frozen=True)

    name: str
    shape: list[int | str]
    dtype: str = "float32"
    description: str


class PatchSpec(BaseModel):
    """How audio is cut into model inputs.

    The service prepends ``context_samples`` zeros to the mono signal, then patch ``k`` is the
    ``samples``-long slice starting at ``k * hop``; it scores the audio between ``k * hop`` and
    ``k * hop + span_samples`` (``span_samples = samples - context_samples``). For the musicnn
    models the 256 samples of context reproduce librosa's centred STFT exactly across patches.
    """

    model_config = ConfigDict(frozen=True)

    samples: int = Field(gt=0, description="input length of one patch, in samples")
    hop_samples: int = Field(gt=0, description="default hop between patch starts, in samples")
    context_samples: int = Field(0, ge=0, description="leading context included in the input")
    frames: int | None = Field(
        None, description="spectrogram frames per patch (spectrogram models)"
    )
    hop_frames: int | None = Field(None, description="default hop in frames (spectrogram models)")

    @property
    def span_samples(self) -> int:
        """Samples of audio one patch newly scores (its input minus the leading context)."""
        return self.samples - self.context_samples


class ModelQuality(BaseModel):
    """A model's measured tagging quality (macro ROC-AUC / PR-AUC over its tags) and its source."""

    model_config = ConfigDict(frozen=True)

    roc_auc: float | None = None
    pr_auc: float | None = None
    source: str = Field(description="where the figures come from (paper, own evaluation)")


class ModelMetadata(BaseModel):
    """Everything a client or the service needs to know about one model."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    name: str
    version: str
    description: str
    architecture: str = Field(description="musicnn, vgg, sample_cnn, mfcc, random_vgg, ...")
    kind: Literal["spectrogram", "waveform", "custom"] = Field(
        description="what the network reads (spectrogram, waveform), or custom: a classifier "
        "created through POST /v1/models on an embedding of the `base` model"
    )
    base: str | None = Field(
        None, description="custom models: the repository model whose embedding they classify"
    )
    tags: list[str] = Field(description="output classes; empty for a feature extractor")
    sample_rate: int
    patch: PatchSpec
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    probabilities_output: str | None = Field(
        "probabilities", description="the tag output; None for a feature extractor (no tags)"
    )
    embedding_outputs: list[str] = Field(default_factory=list)
    dsp: dict[str, object] = Field(default_factory=dict, description="exact pre-processing")
    training: dict[str, object] = Field(default_factory=dict, description="dataset, teacher, ...")
    quality: ModelQuality | None = None
    parameters: int | None = None
    flops_per_patch: int | None = None
    source: str
    license: str
    onnx_sha256: str
    onnx_bytes: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Read schema version 1 (``metrics`` for ``quality``) as the current version."""
        if isinstance(data, dict) and data.get("schema_version") == 1:
            quality = data.get("metrics")
            data = {k: v for k, v in data.items() if k != "metrics"}
            data |= {"schema_version": SCHEMA_VERSION, "quality": quality}
        return data

    @property
    def input_name(self) -> str:
        """Name of the ONNX input: a ``[batch, patch.samples]`` float32 waveform."""
        return self.inputs[0].name

    @property
    def tag_output(self) -> str:
        """The probabilities output; ``ValueError`` for a feature extractor (it has no tags)."""
        if self.probabilities_output is None:
            raise ValueError(f"{self.name} is a feature extractor: it has no tag output")
        return self.probabilities_output


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelEntry(BaseModel):
    """A model found on disk: its metadata and the path of its ONNX file."""

    model_config = ConfigDict(frozen=True)

    metadata: ModelMetadata
    onnx_path: Path


# A model's name is its folder in the repository and a URL segment (/v1/models/{name}, ?model=)
MODEL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_model_name(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is 1 to 64 letters, digits, ``_`` or ``-``."""
    if not MODEL_NAME.fullmatch(name):
        raise ValueError(f"model name {name!r} must be 1 to 64 letters, digits, '_' or '-'")


class RepositoryError(RuntimeError):
    """The repository is missing, incomplete or inconsistent (raised at start-up only)."""


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float (anywhere in its dicts and lists) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def write_model(root: Path, metadata: ModelMetadata, onnx_bytes: bytes) -> Path:
    """Write one model (ONNX + metadata) into the repository; used by ``models/`` exporters.

    An undefined figure (a ROC-AUC over a validation split with one class, NaN) is written as
    ``null``: Python would write ``NaN``, which is not JSON and which strict readers
    (JavaScript's ``JSON.parse``, Go, Rust's serde) refuse. Raises ``ValueError`` for a name
    :func:`check_model_name` refuses, before anything is written.
    """
    check_model_name(metadata.name)  # "../x" or "a/b" would write outside the repository
    folder = root / metadata.name
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / ONNX_FILE
    onnx_path.write_bytes(onnx_bytes)
    digest = hashlib.sha256(onnx_bytes).hexdigest()
    final = metadata.model_copy(update={"onnx_sha256": digest, "onnx_bytes": len(onnx_bytes)})
    content = _finite(final.model_dump(mode="json"))
    text = json.dumps(content, indent=2, sort_keys=False, allow_nan=False) + "\n"
    (folder / METADATA_FILE).write_text(text)
    return folder


def load_repository(root: Path, *, verify_hashes: bool = True) -> dict[str, ModelEntry]:
    """Read every model folder under ``root``; fail loudly on anything inconsistent."""
    if not root.is_dir():
        # the command names the folder: build-models alone builds ./model_repository, which a
        # service started with another --model-repository would still not find
        raise RepositoryError(
            f"model repository {root} does not exist; "
            f"run `taggram build-models --repository {shlex.quote(str(root))}`"
        )
    entries: dict[str, ModelEntry] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        meta_path, onnx_path = folder / METADATA_FILE, folder / ONNX_FILE
        if not meta_path.is_file() or not onnx_path.is_file():
            raise RepositoryError(f"{folder} lacks {METADATA_FILE} or {ONNX_FILE}")
        try:
            raw = json.loads(meta_path.read_text())
        except (ValueError, OSError) as error:  # ValueError: not JSON, or not UTF-8
            raise RepositoryError(f"{meta_path} cannot be read as JSON: {error}") from error
        if not isinstance(raw, dict) or raw.get("schema_version") not in READABLE_VERSIONS:
            version = raw.get("schema_version") if isinstance(raw, dict) else None
            raise RepositoryError(f"{folder}: schema_version {version} unsupported")
        try:
            metadata = ModelMetadata.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}"
                for problem in error.errors(include_url=False)
            )
            raise RepositoryError(f"{meta_path} is not valid model metadata: {problems}") from error
        if verify_hashes and sha256_file(onnx_path) != metadata.onnx_sha256:
            raise RepositoryError(f"{onnx_path}: sha256 differs from {METADATA_FILE}")
        entries[metadata.name] = ModelEntry(metadata=metadata, onnx_path=onnx_path)
    if not entries:
        raise RepositoryError(f"model repository {root} holds no models")
    return entries
