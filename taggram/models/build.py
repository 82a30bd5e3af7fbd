"""Build the model repository: the four musicnn 0.1.0 taggers, their int8 variants (quantized with
the committed ranges of ``taggram/models/quantization/``), any committed trained models, and the
feature extractors of custom taggers (MFCC statistics, random-weight CNNs).

Deterministic (same wheel, same code → same ONNX bytes) and idempotent: the ``.complete`` marker
is removed first and written last, so an interrupted build is never mistaken for a finished one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from taggram.models.architectures import build
from taggram.models.architectures import frontend as fe
from taggram.models.export import export_to_repository
from taggram.models.features import build_feature_models
from taggram.models.importers.musicnn import load_network
from taggram.models.quantize import QUANTIZATION, build_quantized
from taggram.models.wheel import REQUIREMENT, MusicnnWheel
from taggram.repository import (
    COMPLETE_MARKER,
    METADATA_FILE,
    ONNX_FILE,
    ModelMetadata,
    ModelQuality,
    TensorSpec,
    load_repository,
    write_model,
)

TRAINED = Path(__file__).resolve().parent / "trained"
VERSION = "1.0.0"
SOURCE = (
    f"{REQUIREMENT} (https://github.com/jordipons/musicnn) by Jordi Pons, Music Technology Group, "
    "Universitat Pompeu Fabra; TF1 checkpoint converted to ONNX by taggram"
)
QUALITY_SOURCE = (
    "published test-set figures: Pons & Serra, 'musicnn: pre-trained convolutional neural networks "
    "for music audio tagging', ISMIR 2019 LBD, and the musicnn README"
)
DATASETS = {
    "MTT": "MagnaTagATune (top-50 tags)",
    "MSD": "Million Song Dataset, Last.fm top-50 tags",
}
EMBEDDINGS = {
    "musicnn": [
        TensorSpec(
            name="penultimate",
            shape=["batch", 200],
            description="200-d penultimate "
            "dense layer after ReLU and batch norm (the input of the output layer)",
        ),
        TensorSpec(
            name="mean_pool",
            shape=["batch", 753],
            description="mid-end features "
            "(front-end 561 + 3 x 64 mid-end channels) averaged over the patch's 187 frames",
        ),
        TensorSpec(
            name="max_pool",
            shape=["batch", 753],
            description="the same features, max over the patch's 187 frames",
        ),
    ],
    "vgg": [
        TensorSpec(
            name="pool5",
            shape=["batch", 256],
            description="last max-pool [2 time steps "
            "x 128 channels], time-major; the input of the output layer",
        ),
    ],
}
TRAINING_KEYS = ("epochs", "batch_size", "learning_rate", "optimizer", "weight_decay", "patience")


@dataclass(frozen=True)
class PublishedTagger:
    """One of the four taggers shipped in the musicnn wheel, with its published accuracy."""

    name: str
    roc_auc: float
    pr_auc: float

    @property
    def dataset(self) -> str:
        """``MTT`` or ``MSD``: the training set, from the name."""
        return self.name.split("_")[0]

    @property
    def architecture(self) -> str:
        """``musicnn`` or ``vgg``, from the name."""
        return self.name.split("_")[1]


PUBLISHED = (
    PublishedTagger("MTT_musicnn", 0.9067, 0.3831),
    PublishedTagger("MTT_vgg", 0.9030, 0.3823),
    PublishedTagger("MSD_musicnn", 0.8802, 0.2891),
    PublishedTagger("MSD_vgg", 0.8768, 0.2819),
)


def musicnn_metadata(tagger: PublishedTagger, wheel: MusicnnWheel) -> ModelMetadata:
    """Metadata of one converted tagger (hash, size, parameters and FLOPs are filled later)."""
    tags = wheel.labels(tagger.dataset)
    config = json.loads(wheel.read(f"{tagger.name}/config.json"))
    waveform = TensorSpec(
        name="waveform",
        shape=["batch", fe.PATCH_SAMPLES],
        description=f"mono {fe.SAMPLE_RATE} Hz float32 audio: {fe.CONTEXT_SAMPLES} samples of left "
        f"context (the preceding audio, zeros before the clip start) then the {fe.HOP_SAMPLES} "
        "samples scored",
    )
    probabilities = TensorSpec(
        name="probabilities",
        shape=["batch", len(tags)],
        description="sigmoid tag probabilities of the patch, in the order of `tags`",
    )
    embeddings = EMBEDDINGS[tagger.architecture]
    return ModelMetadata(
        name=tagger.name,
        version=VERSION,
        description=f"musicnn 0.1.0 {tagger.architecture} tagger trained on "
        f"{DATASETS[tagger.dataset]}, log-mel front-end inside the graph",
        architecture=tagger.architecture,
        kind="spectrogram",
        tags=tags,
        sample_rate=fe.SAMPLE_RATE,
        patch=fe.PATCH,
        inputs=[waveform],
        outputs=[probabilities, *embeddings],
        embedding_outputs=[spec.name for spec in embeddings],
        dsp=fe.DSP_PARAMETERS,
        training={
            "dataset": DATASETS[tagger.dataset],
            "trained_by": "Jordi Pons (musicnn-training), weights unchanged",
            **{key: config[key] for key in TRAINING_KEYS if key in config},
        },
        quality=ModelQuality(roc_auc=tagger.roc_auc, pr_auc=tagger.pr_auc, source=QUALITY_SOURCE),
        source=SOURCE,
        license="ISC",
        onnx_sha256="",
    )


def build_musicnn(tagger: PublishedTagger, wheel: MusicnnWheel, root: Path) -> Path:
    """Convert one checkpoint from the wheel and write it into the repository."""
    metadata = musicnn_metadata(tagger, wheel)
    module = build(tagger.architecture, len(metadata.tags))
    load_network(module.get_submodule("network"), wheel.checkpoint(tagger.name))
    return export_to_repository(module, metadata, root)


def copy_trained(source: Path, root: Path) -> list[Path]:
    """Copy committed trained models (``<name>/model.onnx`` + metadata) in, re-hashing each."""
    if not source.is_dir():
        return []
    written = []
    for folder in sorted(p for p in source.iterdir() if (p / METADATA_FILE).is_file()):
        metadata = ModelMetadata.model_validate_json((folder / METADATA_FILE).read_text())
        written.append(write_model(root, metadata, (folder / ONNX_FILE).read_bytes()))
    return written


def build_repository(
    root: Path,
    wheel: MusicnnWheel,
    trained: Path = TRAINED,
    quantization: Path = QUANTIZATION,
    float16: bool = False,
) -> list[Path]:
    """Build every model into ``root``, verify the result loads, then mark it complete.

    ``float16`` adds the ``_fp16`` variants (for a GPU repository)."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / COMPLETE_MARKER
    marker.unlink(missing_ok=True)
    folders = [build_musicnn(tagger, wheel, root) for tagger in PUBLISHED]
    folders += build_quantized(root, quantization, float16)
    folders += copy_trained(trained, root)
    folders += build_feature_models(root)
    entries = load_repository(root)
    summary = {name: entry.metadata.onnx_sha256 for name, entry in sorted(entries.items())}
    marker.write_text(json.dumps(summary, indent=2) + "\n")
    return folders
