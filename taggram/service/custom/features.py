"""Which embeddings a custom tagger can be built on: every embedding output of the loaded models.

A feature is named ``model.output``: ``MTT_musicnn.penultimate``, ``MTT_musicnn.max_pool``,
``MTT_musicnn.mean_pool``, ``MTT_vgg.pool5`` (and the MSD ones), ``MTT_sample_cnn.embedding``,
``mfcc.statistics``, ``random_vgg.features``, ``random_sample_cnn.features``, for whichever of
these models the service loaded. A clip's feature is the coverage-weighted mean of its patches'
rows (the rule of clip-level tags, ``taggram.service.audio.patching.clip_average``).
"""

from __future__ import annotations

from collections.abc import Iterable

from taggram.repository import ModelMetadata
from taggram.service.custom.selection import (
    AUTO_NETWORKS,
    CLASSIFIERS,
    ONE_SHOT_FEATURES,
    Candidate,
)
from taggram.service.errors import InvalidOptionsError

AUTO = "auto"


def split(feature: str) -> tuple[str, str]:
    """``"MTT_musicnn.penultimate"`` → ``("MTT_musicnn", "penultimate")``."""
    model, _, output = feature.rpartition(".")
    return model, output


def networks(features: Iterable[str]) -> list[str]:
    """The served networks that ``features`` (``model.output`` names) are read from, each once,
    in first-use order."""
    return list(dict.fromkeys(split(feature)[0] for feature in features))


def quantised_from(meta: ModelMetadata) -> str | None:
    """The float model that ``meta`` is a quantised (e.g. int8) copy of, or None."""
    quantisation = meta.training.get("quantization")
    if isinstance(quantisation, dict):
        float_model = quantisation.get("float_model")
        return float_model if isinstance(float_model, str) else None
    return None


def available(models: dict[str, ModelMetadata]) -> list[str]:
    """Every ``model.output`` feature of ``models`` (custom models have none), in their order.

    A quantised copy of a loaded float model (``MTT_musicnn_int8`` beside ``MTT_musicnn``) is
    left out: its embeddings agree with the float model's to a Pearson correlation of 0.9999
    (its metadata's ``training.quantization.validation``), so it would double the extraction
    time and the candidates for nothing. It is offered when its float model is not loaded.
    """
    return [
        f"{name}.{output}"
        for name, meta in models.items()
        if meta.kind != "custom" and quantised_from(meta) not in models
        for output in meta.embedding_outputs
    ]


def _left_out(item: str, models: dict[str, ModelMetadata]) -> str:
    """Why a loaded model's features are not offered (see :func:`available`), or nothing."""
    name = item if item in models else split(item)[0]
    original = quantised_from(models[name]) if name in models else None
    if original is None or original not in models:
        return ""
    return f" ({name} is a quantised copy of {original}: ask for {original}'s, the same features)"


def _items(text: str | None, field: str) -> list[str]:
    """The comma-separated entries of ``field`` (none when it is not given).

    Raises:
        InvalidOptionsError: an empty entry (``svm,,``, ``,``, a blank value): refused, as
            ``/v1/tag`` refuses ``model=A,,B``, rather than read as the entries around it (or
            as ``auto``), which the caller may not have meant.
    """
    if text is None:
        return []
    items = [part.strip() for part in text.split(",")]
    if not all(items):
        raise InvalidOptionsError(
            f"{field} {text!r} has an empty entry: give names separated by commas, or leave "
            f"{field} out for {AUTO}"
        )
    return items


def auto_features(every: list[str], one_shot: bool) -> list[str]:
    """The features ``auto`` considers among ``every`` available one: those of
    :data:`~taggram.service.custom.selection.AUTO_NETWORKS`, or with a single example of some
    class (``one_shot``) those of the fixed one-shot vote; every available one when none of
    those is loaded."""
    if one_shot:
        wanted = [name for name in ONE_SHOT_FEATURES if name in every]
    else:
        wanted = [name for name in every if split(name)[0] in AUTO_NETWORKS]
    return wanted or every


def parse_features(
    text: str | None, models: dict[str, ModelMetadata], one_shot: bool = False
) -> list[str]:
    """The features a request allows: ``auto`` (or nothing) for :func:`auto_features`; else a
    comma-separated list of ``model.output`` names or model names (each standing for all of
    that model's outputs)."""
    every = available(models)
    items = _items(text, "features")
    if not items or items == [AUTO]:
        if not every:
            raise InvalidOptionsError("no loaded model has an embedding output to build on")
        return auto_features(every, one_shot)
    chosen: list[str] = []
    for item in items:
        matches = [item] if item in every else [f for f in every if split(f)[0] == item]
        if not matches:
            raise InvalidOptionsError(
                f"unknown features {item!r}{_left_out(item, models)}; choose among {every} (or a "
                "model name, or auto)"
            )
        chosen += [m for m in matches if m not in chosen]
    return chosen


def parse_classifiers(text: str | None) -> list[str]:
    """``auto`` (or nothing) for all four; else a comma-separated subset of :data:`CLASSIFIERS`."""
    items = _items(text, "classifier")
    if not items or items == [AUTO]:
        return list(CLASSIFIERS)
    unknown = [item for item in items if item not in CLASSIFIERS]
    if unknown:
        raise InvalidOptionsError(
            f"unknown classifier {unknown[0]!r}; choose among {list(CLASSIFIERS)} or auto"
        )
    return list(dict.fromkeys(items))


def candidates(features: list[str], classifiers: list[str]) -> list[Candidate]:
    """Every pair, feature-major (the tie-breaking order of ``auto``)."""
    return [Candidate(feature, classifier) for feature in features for classifier in classifiers]
