"""The custom-models folder: atomic create, one winner per name, delete, no pickles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from taggram.service.custom import storage
from taggram.service.custom.heads import PrototypeHead
from taggram.service.custom.registry import build
from taggram.service.custom.storage import CustomRecord, EstimateRecord
from taggram.service.errors import (
    InvalidExamplesError,
    ModelExistsError,
    ModelNotFoundError,
    StorageError,
)
from tests.service.conftest import tiny_metadata


def record(name: str = "drums", identifier: str = "one") -> CustomRecord:
    return CustomRecord(
        id=identifier,
        name=name,
        created="2026-01-01T00:00:00Z",
        base="MTT_musicnn",
        base_version="1.0.0",
        features="MTT_musicnn.penultimate",
        classifier="prototypes",
        multi_label=False,
        label_separator="|",
        classes=["kick", "snare"],
        examples_per_class={"kick": 2, "snare": 2},
        examples=4,
        selection="cross-validation",
        estimate=EstimateRecord(value=1.0, metric="accuracy", method="test", chance=0.5, folds=2),
        seconds={"total": 1.0},
    )


def test_write_read_scan_remove(tmp_path: Path) -> None:
    arrays = {"mean": np.arange(3.0), "positive": np.eye(2, 3)}
    storage.write(tmp_path, record(), arrays)
    assert list(storage.scan(tmp_path)) == ["drums"]
    loaded, loaded_arrays = storage.read(tmp_path / "drums")
    assert loaded == record()
    assert set(loaded_arrays) == set(arrays)
    np.testing.assert_array_equal(loaded_arrays["positive"], arrays["positive"])
    assert storage.record_id(tmp_path / "drums") == "one"
    storage.remove(tmp_path, "drums")
    assert storage.scan(tmp_path) == {}
    assert list(tmp_path.iterdir()) == []  # no staging or trash left behind


def test_a_name_is_created_once(tmp_path: Path) -> None:
    storage.write(tmp_path, record(identifier="first"), {"mean": np.zeros(1)})
    with pytest.raises(ModelExistsError):
        storage.write(tmp_path, record(identifier="second"), {"mean": np.zeros(1)})
    assert storage.record_id(tmp_path / "drums") == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["drums"]


def test_a_name_differing_only_in_case_is_taken(tmp_path: Path) -> None:
    """``DRUMS`` beside ``drums`` is one folder on a case-insensitive volume (Azure Files): the
    second replica's write, before its scan saw the first, is refused too."""
    storage.write(tmp_path, record(identifier="first"), {"mean": np.zeros(1)})
    with pytest.raises(ModelExistsError, match=r"'drums' already exists.*differ only in case"):
        storage.write(tmp_path, record("DRUMS", "second"), {"mean": np.zeros(1)})
    assert [p.name for p in tmp_path.iterdir()] == ["drums"]


def test_removing_a_missing_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        storage.remove(tmp_path, "nothing")


def test_hidden_and_incomplete_folders_are_not_models(tmp_path: Path) -> None:
    (tmp_path / ".tmp-drums-123").mkdir()
    (tmp_path / "half").mkdir()
    assert storage.scan(tmp_path) == {}
    assert storage.scan(tmp_path / "absent") == {}


def test_pickled_parameters_are_refused(tmp_path: Path) -> None:
    storage.write(tmp_path, record(), {"mean": np.zeros(1)})
    np.savez(tmp_path / "drums" / storage.PARAMETERS_FILE, mean=np.array([object()]))
    with pytest.raises(ValueError, match="allow_pickle"):
        storage.read(tmp_path / "drums")


@pytest.mark.parametrize("name", ["", "a/b", "../x", "with space", "é", "x" * 65])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidExamplesError):
        storage.check_name(name)


def test_an_unwritable_folder_is_a_clear_server_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(StorageError, match="cannot be written"):
        storage.write(blocker / "custom", record(), {"mean": np.zeros(1)})


def test_a_version_1_record_is_one_pair_with_unprefixed_arrays() -> None:
    """Records written before ensembles (no ``members``, one head's arrays) still load."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(4, 6)), np.eye(2, dtype=bool)[[0, 0, 1, 1]]
    head = PrototypeHead(False).fit(X, Y)
    old = record().model_copy(update={"record_version": 1})
    model = build(old, head.arrays(), tiny_metadata())
    assert [str(c) for c in model.ensemble.candidates] == ["prototypes on MTT_musicnn.penultimate"]
    np.testing.assert_array_equal(
        model.predict({"MTT_musicnn.penultimate": X}), head.predict_proba(X)
    )
    assert model.bases == ["MTT_musicnn"]
    assert model.metadata.architecture == "prototypes on MTT_musicnn.penultimate"
