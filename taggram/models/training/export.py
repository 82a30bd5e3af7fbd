"""Export a training checkpoint as a repository model (ONNX + metadata), via models.export.

The metadata's ``training`` block carries what the checkpoint knows about its own making: data
(files, hours, packages with versions and licences), teacher, configuration, epochs, steps, wall
time and the validation figures of the epoch kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from taggram.models.architectures import frontend as fe
from taggram.models.build import EMBEDDINGS
from taggram.models.export import export_to_repository
from taggram.models.training.metrics import TOP_K
from taggram.models.training.patching import WAVEFORM_ARCHITECTURES, patch_spec
from taggram.models.training.trainer import load_checkpoint, read_checkpoint
from taggram.repository import ModelMetadata, ModelQuality, TensorSpec

WAVEFORM_DSP: dict[str, object] = {
    "sample_rate": 16000,
    "mono": "mean of channels",
    "resampling": "soxr 'HQ', only if the rate differs",
    "input": "raw samples in [-1, 1], no normalisation (the first batch norm scales them)",
}
KNOWN_EMBEDDINGS = {spec.name: spec.description for specs in EMBEDDINGS.values() for spec in specs}
KNOWN_EMBEDDINGS["embedding"] = (
    "dense layer after mean and max pooling over time, ReLU and batch norm "
    "(the input of the output layer)"
)


def _embedding_specs(module: torch.nn.Module, samples: int) -> list[TensorSpec]:
    """One spec per embedding the module returns, shapes read off a forward pass."""
    with torch.no_grad():
        outputs = module.eval()(torch.zeros(1, samples))
    return [
        TensorSpec(
            name=name,
            shape=["batch", *value.shape[1:]],
            description=KNOWN_EMBEDDINGS.get(name, f"the module's {name!r} output"),
        )
        for name, value in outputs.items()
        if name != "logits"
    ]


def _validation_source(info: dict[str, Any]) -> str:
    split = info.get("split", {})
    groups = split.get("validation_groups", [])
    held_out = f"{len(groups)} random groups held out whole" if groups else "whole groups held out"
    if split.get("by") == "the CSV's split column":
        held_out = f"{len(groups)} groups held out by the CSV's split column"
        if "packages" in info:  # the recipe's manifest: groups are <package>/<folder>
            held_out = "whole packages held out: " + ", ".join(
                sorted({group.split("/")[0] for group in groups})
            )
    if "teacher" in info:
        return (
            f"own validation split ({held_out}), labels = {info['teacher']['name']}'s "
            f"top-{TOP_K} tags per patch: agreement with the teacher, not accuracy on human tags"
        )
    return f"own validation split ({held_out}) of the training labels"


def checkpoint_metadata(
    checkpoint: dict[str, Any], module: torch.nn.Module, name: str, version: str
) -> ModelMetadata:
    """The repository metadata of a trained checkpoint (hashes filled in on writing)."""
    architecture = checkpoint["architecture"]
    tags = list(checkpoint["tags"])
    patch = patch_spec(architecture)
    waveform = architecture in WAVEFORM_ARCHITECTURES
    info = checkpoint["info"]
    embeddings = _embedding_specs(module, patch.samples)
    teacher = info.get("teacher", {}).get("name")
    # a small dataset would read "0.0 h"
    hours = info["hours"]
    amount = f"{hours:.1f} h" if hours >= 0.1 else f"{hours * 60:.1f} min"
    learnt_from = (
        f", distilled from {teacher} on {amount} of audio"
        if teacher
        else f" on {amount} of labelled audio"
    )
    return ModelMetadata(
        name=name,
        version=version,
        description=f"{architecture} tagger trained by taggram{learnt_from} ({info['labels']})",
        architecture=architecture,
        kind="waveform" if waveform else "spectrogram",
        tags=tags,
        sample_rate=16000,
        patch=patch,
        inputs=[
            TensorSpec(
                name="waveform",
                shape=["batch", patch.samples],
                description=f"mono 16000 Hz float32 audio, {patch.samples} samples "
                f"({patch.context_samples} of left context)",
            )
        ],
        outputs=[
            TensorSpec(
                name="probabilities",
                shape=["batch", len(tags)],
                description="sigmoid tag probabilities of the patch, in the order of `tags`",
            ),
            *embeddings,
        ],
        embedding_outputs=[spec.name for spec in embeddings],
        dsp=WAVEFORM_DSP if waveform else fe.DSP_PARAMETERS,
        training={
            **info,
            **checkpoint.get("run", {}),
            "best_epoch": checkpoint["epoch"],
            **({"averaged": checkpoint["averaged"]} if "averaged" in checkpoint else {}),
            "validation": checkpoint["metrics"],
            "config": checkpoint["config"],
            "code": "models/training (taggram train)",
        },
        quality=ModelQuality(
            roc_auc=checkpoint["metrics"]["roc_auc"],
            pr_auc=checkpoint["metrics"]["pr_auc"],
            source=_validation_source(info),
        ),
        source="trained by taggram's own pipeline (models/training)",
        license="ISC",
        onnx_sha256="",
    )


RESUMABLE = "checkpoint.pt"


def export_checkpoint(
    checkpoint_path: Path, name: str, root: Path, version: str, last: Path | None = None
) -> Path:
    """Write the checkpoint's model into the repository folder ``root``; return its folder.

    ``last``: the run's ``last.pt``, saved beside the model as ``checkpoint.pt`` (what
    ``taggram train --resume`` continues from) with the exported weights added under
    ``shipped_state_dict`` / ``shipped_epoch``, so that one file both resumes the run and
    reproduces the shipped model. ``build-models`` copies only ``model.onnx`` and the metadata.
    """
    module, checkpoint = load_checkpoint(checkpoint_path)
    metadata = checkpoint_metadata(checkpoint, module, name, version)
    folder = export_to_repository(module, metadata, root)
    if last is not None:
        resumable = read_checkpoint(last)
        resumable["shipped_state_dict"] = checkpoint["state_dict"]
        resumable["shipped_epoch"] = checkpoint["epoch"]
        torch.save(resumable, folder / RESUMABLE)
    return folder
