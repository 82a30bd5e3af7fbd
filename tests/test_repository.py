"""The model-repository contract: metadata written by one version is read by the next."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taggram.repository import (
    SCHEMA_VERSION,
    ModelMetadata,
    ModelQuality,
    RepositoryError,
    load_repository,
    write_model,
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


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "cannot be read as JSON"),
        (b"\xff\xfe", "cannot be read as JSON"),
        ("[]", "schema_version None unsupported"),
        ('{"schema_version": 2, "name": "m"}', "not valid model metadata: .*onnx_sha256"),
    ],
)
def test_unreadable_metadata_is_a_repository_error_naming_the_file(
    tmp_path: Path, content: str | bytes, expected: str
) -> None:
    """It was the JSON decoder's or pydantic's own error, which ``taggram serve`` could not
    tell from a bug and printed as a traceback."""
    root = _copy_trained(tmp_path, {})
    metadata = root / "MTT_sample_cnn" / "metadata.json"
    if isinstance(content, bytes):
        metadata.write_bytes(content)
    else:
        metadata.write_text(content)
    with pytest.raises(RepositoryError, match=expected):
        load_repository(root)


def test_an_undefined_figure_is_written_as_null_not_nan(tmp_path: Path) -> None:
    """A distilled run whose validation split holds one class has NaN ROC-AUC (its epochs are
    picked on clip Pearson); ``json.dumps`` wrote ``NaN``, which is not JSON."""
    source = TRAINED / "MTT_sample_cnn"
    metadata = ModelMetadata.model_validate(json.loads((source / "metadata.json").read_text()))
    nan, inf = float("nan"), float("inf")
    undefined = metadata.model_copy(
        update={
            "quality": ModelQuality(roc_auc=nan, pr_auc=nan, source="own validation split"),
            "training": {"validation": {"roc_auc": nan, "clip_pearson": 0.7}, "loss": [inf]},
        }
    )
    folder = write_model(tmp_path, undefined, (source / "model.onnx").read_bytes())

    def strict(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    raw = json.loads((folder / "metadata.json").read_text(), parse_constant=strict)
    assert raw["quality"]["roc_auc"] is None and raw["quality"]["pr_auc"] is None
    assert raw["training"] == {
        "validation": {"roc_auc": None, "clip_pearson": 0.7},
        "loss": [None],
    }
    assert load_repository(tmp_path)["MTT_sample_cnn"].metadata.quality == ModelQuality(
        source="own validation split"
    )


@pytest.mark.parametrize("name", ["../outside", "a/b", ""])
def test_a_model_is_written_only_under_a_name_that_is_a_folder_and_url_segment(
    tmp_path: Path, name: str
) -> None:
    source = TRAINED / "MTT_sample_cnn"
    metadata = ModelMetadata.model_validate(json.loads((source / "metadata.json").read_text()))
    root = tmp_path / "repository"
    with pytest.raises(ValueError, match="must be 1 to 64 letters"):
        write_model(root, metadata.model_copy(update={"name": name}), b"onnx")
    assert not any(tmp_path.iterdir())
