"""Tracing a track to the service: every record carries the request id and the seconds spent on
it, in every format, and a resume onto an output of an older model version says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from taggram.catalogue import writers
from taggram.catalogue.writers import Format, read_records
from taggram.cli import app
from tests.catalogue.conftest import Catalogue
from tests.support.server import running_server

pytestmark = pytest.mark.slow


def _ids(catalogue: Catalogue, good: int) -> list[str]:
    return sorted(catalogue.good)[:good]


def test_every_record_names_its_request_and_time_in_every_format(
    catalogue: Catalogue, repository: Path, server_env: dict[str, str], tmp_path: Path
) -> None:
    ids = [*_ids(catalogue, 2), "broken/noise.wav"]
    manifest = catalogue.manifest(tmp_path / "manifest.csv", ids)
    with running_server(repository, tmp_path, server_env) as server:
        outputs = [tmp_path / f"out.{fmt.value}" for fmt in Format]
        for output in outputs:
            result = CliRunner().invoke(
                app,
                ["catalogue", str(manifest), "--url", server.url, "--output", str(output),
                 "--no-progress"],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
        log = server.log()
    merged = tmp_path / "merged.parquet"  # a merge keeps them too
    result = CliRunner().invoke(app, ["merge", *map(str, outputs), "--output", str(merged)])
    assert result.exit_code == 0, result.output
    for output in [*outputs, merged]:
        found = {record.id: record for record in read_records(output)}
        assert sorted(found) == sorted(ids)
        assert found["broken/noise.wav"].status == "error"  # a refusal is traceable too
        for record in found.values():
            assert record.request_id and record.request_id in log, (output, record)
            assert record.tagging_s is not None and 0 < record.tagging_s < 60


def _old_output(output: Path, fmt: Format, track_id: str, model: str) -> None:
    """An output as taggram wrote it before ``request_id`` and ``tagging_s`` (and ``warnings``)
    existed, its one record tagged by an older version of ``model``."""
    row = {
        "id": track_id, "path": track_id, "status": "ok", "model": model,
        "version": "0.0.1-old", "duration_s": 3.0,
        "top_tags": [{"tag": "rock", "probability": 0.9}], "probabilities": {"rock": 0.9},
        "embedding_layer": None, "embedding": None, "error": None,
    }  # fmt: skip
    if fmt is Format.parquet:
        pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
        schema = writers._parquet_schema(pa)
        for name in ("warnings", "request_id", "tagging_s"):
            schema = schema.remove(schema.get_field_index(name))
        pq.write_table(pa.Table.from_pylist([row], schema=schema), output)
    elif fmt is Format.jsonl:
        output.write_text(json.dumps(row) + "\n", encoding="utf-8")
    else:
        header = "id,path,status,model,version,duration_s,top_tags,probabilities,"
        header += "embedding_layer,embedding,error_code,error_message,error_retryable\n"
        tags = '"[{""tag"": ""rock"", ""probability"": 0.9}]","{""rock"": 0.9}"'
        output.write_text(
            f"{header}{track_id},{track_id},ok,{model},0.0.1-old,3.0,{tags},,,,,\n",
            encoding="utf-8",
        )


@pytest.mark.parametrize("fmt", list(Format))
def test_a_resume_on_an_old_output_of_another_version_warns_and_upgrades_it(
    catalogue: Catalogue, repository: Path, model: str, tmp_path: Path, fmt: Format
) -> None:
    ids = _ids(catalogue, 3)
    manifest = catalogue.manifest(tmp_path / "manifest.csv", ids)
    output = tmp_path / f"old.{fmt.value}"
    _old_output(output, fmt, ids[0], model)
    result = CliRunner().invoke(
        app,
        ["catalogue", str(manifest), "--local", "--repository", str(repository),
         "--model", model, "--output", str(output), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = {record.id: record for record in read_records(output)}
    assert sorted(found) == ids and len(read_records(output)) == len(ids)
    new_version = found[ids[1]].version
    assert new_version not in (None, "0.0.1-old")
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"taggram catalogue: warning: {output} holds 1 record of version 0.0.1-old of {model}; "
        f"this run's records are version {new_version}: the output will mix versions"
    ]
    old = found[ids[0]]
    assert (old.version, old.request_id, old.tagging_s) == ("0.0.1-old", None, None)
    assert old.warnings == []
    for track_id in ids[1:]:  # --local sends no request: no id, but the time
        record = found[track_id]
        assert record.status == "ok" and record.request_id is None
        assert record.tagging_s is not None and record.tagging_s > 0
