"""The model-repository contract: metadata written by one version is read by the next."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taggram.repository import (
    SCHEMA_VERSION,
    ModelMetadata,
    RepositoryError,
    load_repository,
)
from tests.support.paths import ROOT

TRAINED = ROOT / "taggram" / "models" / "trained"


def _copy_trained(tmp_path: Path, edit: dict[str, object]) -> Path:
    source = TRAINED / "MTT_sample_cnn"
    folder = tmp_path / "MTT_sample_cnn"
    folder.mkdir()
    (folder / "model.onnx").write_bytes((source / "model.onnx").read_bytes())
    raw = json.loads((source / "metadata.json").read_text()) | edit
    (folder / "metadata.json").write_text(json.dumps(raw))
    return tmp_path


def test_schema_version_1_is_upgraded_on_load(tmp_path: Path) -> None:
    current = json.loads((TRAINED / "MTT_sample_cnn" / "metadata.json").read_text())
    legacy = {k: v for k, v in current.items() if k != "quality"}
    legacy |= {"schema_version": 1, "metrics": current["quality"]}
    root = _copy_trained(tmp_path, {})
    (root / "MTT_sample_cnn" / "metadata.json").write_text(json.dumps(legacy))
    metadata = load_repository(root)["MTT_sample_cnn"].metadata
    assert metadata.schema_version == SCHEMA_VERSION
    assert metadata == ModelMetadata.model_validate(current)


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    root = _copy_trained(tmp_path, {"schema_version": SCHEMA_VERSION + 1})
    with pytest.raises(RepositoryError, match="schema_version"):
        load_repository(root)
