"""The custom models a replica serves: loaded from the folder, kept in step with it by polling.

A loaded custom model is its record, its head, and the :class:`ModelMetadata` that presents it
like any other model (``kind="custom"``, ``base``, tags = its classes, the training summary under
``training``). A record whose base model this replica did not load is skipped (and logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from taggram.repository import ModelMetadata, TensorSpec
from taggram.service.custom import storage
from taggram.service.custom.ensemble import Candidate, Ensemble
from taggram.service.custom.features import networks
from taggram.service.custom.storage import CustomRecord

log = logging.getLogger(__name__)

SOURCE = "created through POST /v1/models from the caller's own examples"


@dataclass(frozen=True)
class CustomModel:
    """A loaded custom model: its record, fitted members and the metadata ``/v1/models``
    lists."""

    record: CustomRecord
    ensemble: Ensemble
    metadata: ModelMetadata

    @property
    def base(self) -> str:
        """The served network of the first member (its patches make the taggram's rows)."""
        return self.record.base

    @property
    def bases(self) -> list[str]:
        """Every served network the members read, the first member's first."""
        return networks(self.ensemble.features)

    def predict(self, embeddings: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities [n, classes] float32 for ``embeddings[feature]`` [n, dim] (every
        ``model.output`` the members read, the same n rows each)."""
        return self.ensemble.predict_proba(embeddings)


def version(record: CustomRecord) -> str:
    """The version a custom model answers with: its creation time and the start of its id
    (``2026-12-01T05:43:15Z-c9accebc``). The time alone is to the second, and a name deleted and
    created again within it gave two different models one version, so that a resumed catalogue
    run mixing them did not say so."""
    return f"{record.created}-{record.id[:8]}"


def describe(record: CustomRecord, base: ModelMetadata) -> ModelMetadata:
    """The repository-style metadata of a custom model on ``base``."""
    summary = record.model_dump(
        mode="json", exclude={"name", "description", "base", "classes", "record_version"}
    )
    architecture = " + ".join(str(member) for member in members(record))
    return ModelMetadata(
        name=record.name,
        version=version(record),
        description=record.description or f"custom tagger: {architecture}",
        architecture=architecture,
        kind="custom",
        base=record.base,
        tags=record.classes,
        sample_rate=base.sample_rate,
        patch=base.patch,
        inputs=base.inputs,
        outputs=[
            TensorSpec(
                name="probabilities",
                shape=["batch", len(record.classes)],
                description="sigmoid per tag (multi-label) or softmax over the classes",
            )
        ],
        probabilities_output="probabilities",
        embedding_outputs=[],
        dsp=base.dsp,
        training=summary,
        source=SOURCE,
        license="the examples' owner's",
        onnx_sha256="",
    )


def members(record: CustomRecord) -> list[Candidate]:
    """The record's (feature, classifier) members; a version 1 record is its single pair."""
    if record.members:
        return [Candidate(member.features, member.classifier) for member in record.members]
    return [Candidate(record.features, record.classifier)]


def record_networks(record: CustomRecord) -> list[str]:
    """The served networks ``record``'s members read, each once, the first member's first."""
    return networks(candidate.feature for candidate in members(record))


def stored_records(folder: Path) -> dict[str, CustomRecord]:
    """The records of the models ``folder`` holds now, by name, without their arrays (blocking
    file reads). An unreadable record is left out: the serving scan logs it when it loads."""
    found = {}
    for name, path in storage.scan(folder).items():
        try:
            found[name] = storage.read_record(path)
        except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
            continue
    return found


def build(record: CustomRecord, arrays: dict[str, np.ndarray], base: ModelMetadata) -> CustomModel:
    """A :class:`CustomModel` from its stored record and arrays, described against ``base``."""
    if not record.members:  # version 1: one head's arrays, without the member prefix
        arrays = {f"0.{name}": values for name, values in arrays.items()}
    weights = [member.weight for member in record.members]
    temperatures = [member.temperature for member in record.members]
    ensemble = Ensemble.from_arrays(
        members(record), arrays, record.multi_label, weights, temperatures
    )
    return CustomModel(record=record, ensemble=ensemble, metadata=describe(record, base))


class NotServedHereError(ValueError):
    """A custom model of the folder this replica cannot serve; the message says why."""


class CustomModels:
    """The loaded custom models, by name; :meth:`scan` reads what the folder holds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.models: dict[str, CustomModel] = {}
        # The folder's models not served here, by name: why (a 404 says it, not "no model").
        self.unserved: dict[str, str] = {}
        self._skipped: dict[str, str] = {}  # ids already reported as unloadable, and why

    def __contains__(self, name: str) -> bool:
        return name in self.models

    def __len__(self) -> int:
        return len(self.models)

    def get(self, name: str) -> CustomModel | None:
        """The custom model named ``name``, or None."""
        return self.models.get(name)

    def add(self, model: CustomModel) -> None:
        """Add or replace a model under its name."""
        self.models[model.record.name] = model

    def discard(self, name: str) -> None:
        """Forget the model named ``name`` (no error when absent)."""
        self.models.pop(name, None)

    def scan(
        self, bases: dict[str, ModelMetadata]
    ) -> tuple[dict[str, CustomModel], dict[str, str]]:
        """The models the folder holds now: those already loaded (same ``id``) kept, new or
        re-created ones loaded, deleted ones gone; and the folder's models not served here, by
        name, with why. Nothing is changed here: the caller swaps both in (:attr:`models`,
        :attr:`unserved`) on its own thread, so readers never see them half-done.

        Blocking (file reads): run it in a worker thread. One bad folder is logged and skipped,
        never fatal: another replica may be writing a newer record format.
        """
        current: dict[str, CustomModel] = {}
        unserved: dict[str, str] = {}
        for name, path in storage.scan(self.folder).items():
            identifier = storage.record_id(path)
            known = self.models.get(name)
            if identifier is None:
                continue
            if identifier in self._skipped:
                unserved[name] = self._skipped[identifier]
                continue
            if known is not None and known.record.id == identifier:
                current[name] = known
                continue
            try:
                if name in bases:  # made where that repository model was not loaded
                    raise NotServedHereError(
                        f"the model repository's {name} is served under that name"
                    )
                record, arrays = storage.read(path)
                missing = [name for name in record_networks(record) if name not in bases]
                if missing:
                    raise NotServedHereError(
                        f"its base models {missing} are not loaded here (TAGGRAM_MODELS)"
                    )
                current[name] = build(record, arrays, bases[record.base])
                log.info("loaded custom model %s (%s)", name, record.features)
            except Exception as error:  # skip this folder, keep serving the others
                why = str(error) if isinstance(error, NotServedHereError) else "it cannot be read"
                self._skipped[identifier] = unserved[name] = why
                log.warning("custom model %s in %s not loaded: %s", name, self.folder, error)
        for name in self.models.keys() - current.keys():
            log.info("custom model %s is no longer in %s", name, self.folder)
        return current, unserved
