"""The custom-models folder: one sub-folder per model, written atomically, shareable by replicas.

Layout: ``<folder>/<name>/record.json`` (:class:`CustomRecord`: what the model is, how it was
chosen and estimated) and ``<folder>/<name>/parameters.npz`` (the head's arrays, read back with
``allow_pickle=False``: nothing in the folder can execute code).

A model is written into a hidden temporary folder first and then renamed to ``<name>``: the
rename is atomic, and it fails when ``<name>`` already exists, so two replicas creating the same
name at once cannot both succeed (the loser answers 409). Deleting renames the folder to a hidden
name before removing it, so a replica scanning the folder never sees half a model. Hidden entries
(a leading ``.``) are never models. A shared ReadWriteMany volume (NFS, CephFS, ...) gives every
replica the same view; each rescans it every ``custom_models_poll_seconds``.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from taggram.repository import MODEL_NAME, check_model_name
from taggram.service.errors import (
    InvalidExamplesError,
    ModelExistsError,
    ModelNotFoundError,
    StorageError,
)

log = logging.getLogger(__name__)

RECORD_FILE = "record.json"
PARAMETERS_FILE = "parameters.npz"
RECORD_VERSION = 2  # 2: members (ensembles); a version 1 record is one pair, still read


class EstimateRecord(BaseModel):
    """The honest accuracy estimate stored with a model, and how it was computed."""

    model_config = ConfigDict(frozen=True)

    value: float | None = Field(description="held-out score; null when it cannot be estimated")
    metric: Literal["accuracy", "macro_f1"]
    method: str = Field(description="how it was computed")
    chance: float = Field(
        description="the score of always answering the commonest class (accuracy), or of "
        "answering every tag for every clip (multi-label macro-F1: the mean of 2p / (1 + p) "
        "over the tags, p a tag's share of the examples)"
    )
    folds: int


class CandidateScore(BaseModel):
    """One candidate pair's cross-validation score during selection."""

    model_config = ConfigDict(frozen=True)

    features: str
    classifier: str
    score: float = Field(description="cross-validated score that took part in the choice")


class MemberRecord(BaseModel):
    """One member of a model's soft vote: a feature with a classifier."""

    model_config = ConfigDict(frozen=True)

    features: str = Field(description="`model.output`: the embedding this member reads")
    classifier: Literal["prototypes", "logistic", "svm", "knn"]
    weight: float = Field(default=1.0, gt=0, description="its share of the vote (relative)")
    temperature: float = Field(
        default=1.0, gt=0, description="its probabilities' calibration (1: as the head gives them)"
    )


class CustomRecord(BaseModel):
    """What ``record.json`` holds; also the training summary that ``GET /v1/models`` shows."""

    model_config = ConfigDict(frozen=True)

    record_version: int = RECORD_VERSION
    id: str = Field(description="unique per creation: a re-created name is a new model")
    name: str
    description: str = ""
    created: str = Field(description="ISO 8601 UTC time of creation")
    base: str = Field(description="the repository model of the first member's features")
    base_version: str
    bases: list[str] = Field(
        default_factory=list, description="every repository model the members read"
    )
    features: str = Field(
        description="`model.output` the classifier reads; an ensemble's features comma-separated"
    )
    classifier: Literal["prototypes", "logistic", "svm", "knn", "ensemble"]
    members: list[MemberRecord] = Field(
        default_factory=list,
        description="the (features, classifier) pairs whose probabilities are averaged; "
        "one for a single pair",
    )
    multi_label: bool
    label_separator: str
    classes: list[str]
    examples_per_class: dict[str, int]
    examples: int
    selection: Literal["cross-validation", "fixed", "fallback"]
    candidates: list[CandidateScore] = Field(
        default_factory=list, description="every candidate's cross-validated score (auto)"
    )
    estimate: EstimateRecord
    seconds: dict[str, float] = Field(description="time taken: decode, features, fit, total")


def check_name(name: str) -> None:
    """Names are path components and URL segments: letters, digits, ``_`` and ``-`` only."""
    try:
        check_model_name(name)
    except ValueError as error:
        raise InvalidExamplesError(str(error)) from error


def check_free(name: str, taken: Iterable[str], where: str = "") -> None:
    """Refuse ``name`` with :class:`ModelExistsError` (409) when one of the ``taken`` names
    equals it ignoring case: ``MY_SOUNDS`` beside ``my_sounds`` is one folder on a
    case-insensitive volume (Azure Files, SMB, macOS), where the second write would land in the
    first model's folder, and two names a person cannot tell apart when reading a list.
    ``where`` says where the taken names are (`` in the model repository``)."""
    folded = name.casefold()
    for existing in taken:
        if existing.casefold() == folded:
            same = "" if existing == name else " (names may not differ only in case)"
            raise ModelExistsError(f"a model named {existing!r} already exists{where}{same}")


def write(folder: Path, record: CustomRecord, arrays: dict[str, np.ndarray]) -> Path:
    """Write a model as ``folder/<name>``; :class:`ModelExistsError` if that name exists,
    ignoring case (:func:`check_free`)."""
    staging = folder / f".tmp-{record.name}-{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
    except OSError as error:
        raise StorageError(
            f"the custom-models folder {folder} cannot be written: {error.strerror}"
        ) from error
    try:
        payload: dict[str, Any] = dict(arrays)
        with (staging / PARAMETERS_FILE).open("wb") as handle:
            np.savez(handle, **payload)
        (staging / RECORD_FILE).write_text(record.model_dump_json(indent=2) + "\n")
        final = folder / record.name
        # Another replica's model, not scanned yet, may differ only in case: on a
        # case-sensitive volume the rename below would not see it.
        check_free(record.name, scan(folder))
        try:
            staging.rename(final)  # atomic; refuses an existing non-empty folder
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY) or final.exists():
                raise ModelExistsError(f"a model named {record.name!r} already exists") from error
            raise
        _sync(folder)
        return final
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _sync(folder: Path) -> None:
    """Flush the directory entry so another node (or a restart) sees the rename."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some network filesystems refuse fsync on directories; the rename still stands
    finally:
        os.close(descriptor)


def remove(folder: Path, name: str) -> None:
    """Delete model ``name``; :class:`ModelNotFoundError` if it is not there or ``name`` is no
    model's name. ``name`` comes from the URL and becomes a path component: ``..`` named the
    folder's parent (a 500) and ``.tmp-...`` another replica's model being written."""
    if not MODEL_NAME.fullmatch(name):
        raise ModelNotFoundError(f"no custom model named {name!r}")
    trash = folder / f".deleted-{name}-{uuid.uuid4().hex}"
    try:
        (folder / name).rename(trash)
    except FileNotFoundError as error:
        raise ModelNotFoundError(f"no custom model named {name!r}") from error
    shutil.rmtree(trash, ignore_errors=True)
    _sync(folder)


def scan(folder: Path) -> dict[str, Path]:
    """The model folders present now (hidden entries are staging or trash, never models)."""
    if not folder.is_dir():
        return {}
    return {
        entry.name: entry
        for entry in folder.iterdir()
        if not entry.name.startswith(".") and (entry / RECORD_FILE).is_file()
    }


def read_record(path: Path) -> CustomRecord:
    """A model folder's record, without its arrays."""
    return CustomRecord.model_validate_json((path / RECORD_FILE).read_text())


def read(path: Path) -> tuple[CustomRecord, dict[str, np.ndarray]]:
    """A model folder's record and arrays (``allow_pickle=False``)."""
    record = read_record(path)
    with np.load(path / PARAMETERS_FILE, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    return record, arrays


def record_id(path: Path) -> str | None:
    """The model's ``id`` without loading its arrays (cheap, for polling)."""
    try:
        value = json.loads((path / RECORD_FILE).read_text()).get("id")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None
