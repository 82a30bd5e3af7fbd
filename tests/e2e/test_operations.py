"""Probes, model listing, OpenAPI, Prometheus exposition, and clients that hang up."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taggram.repository import ModelMetadata
from tests.e2e.conftest import long_track, tag_file
from tests.support.paths import MODEL_REPOSITORY
from tests.support.server import Server

METRICS = {
    "taggram_requests": "counter",
    "taggram_request_duration_seconds": "histogram",
    "taggram_decode_duration_seconds": "histogram",
    "taggram_queue_wait_seconds": "histogram",
    "taggram_inference_duration_seconds": "histogram",
    "taggram_batch_size": "histogram",
    "taggram_patches": "counter",
    "taggram_audio_seconds": "counter",
    "taggram_requests_in_flight": "gauge",
    "taggram_queue_depth": "gauge",
    "taggram_errors": "counter",
    "taggram_model_info": "gauge",
}


def _metrics(server: Server) -> dict[str, list]:
    text = httpx.get(f"{server.url}/metrics").text
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(server: Server, name: str, **labels: str) -> float:
    family = name.removesuffix("_total")
    samples = _metrics(server).get(family, [])
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def test_probes_and_docs(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/tag", "/v1/models", "/v1/models/{name}", "/healthz", "/readyz"} <= set(paths)


def test_models_serve_the_repository_metadata(client: httpx.Client) -> None:
    listing = client.get("/v1/models").json()
    names = {model["name"] for model in listing["models"]}
    assert listing["default_model"] in names
    on_disk = {path.parent.name for path in MODEL_REPOSITORY.glob("*/metadata.json")}
    assert names == on_disk
    for name in names:
        text = (MODEL_REPOSITORY / name / "metadata.json").read_text()
        metadata = ModelMetadata.model_validate_json(text).model_dump(mode="json")
        assert client.get(f"/v1/models/{name}").json() == metadata


def test_metrics_parse_and_count_work(
    client: httpx.Client, server: Server, format_files: dict[str, Path]
) -> None:
    assert tag_file(client, format_files["flac"]).status_code == 200
    families = {
        family.name: family.type
        for family in text_string_to_metric_families(client.get("/metrics").text)
    }
    for name, kind in METRICS.items():
        assert families.get(name) == kind, name
    assert _value(server, "taggram_requests_total", route="/v1/tag", status="200") >= 1
    assert _value(server, "taggram_audio_seconds_total", model="MTT_musicnn") >= 30
    info = _metrics(server)["taggram_model_info"]
    assert {sample.labels["model"] for sample in info} == {
        path.parent.name for path in MODEL_REPOSITORY.glob("*/metadata.json")
    }


def _tag_in_batch(client: httpx.Client, path: Path) -> httpx.Response:
    with path.open("rb") as handle:
        return client.post("/v1/tag/batch", files=[("files", (path.name, handle))])


@pytest.mark.parametrize("send", [tag_file, _tag_in_batch], ids=["tag", "batch"])
def test_client_disconnect_drops_its_patches_and_harms_nobody(
    server: Server,
    music_wav: Path,
    format_files: dict[str, Path],
    tmp_path: Path,
    send: Callable[[httpx.Client, Path], httpx.Response],
) -> None:
    track = long_track(music_wav, tmp_path, 480)  # 161 patches: many batches
    before = _value(server, "taggram_patches_total", model="MTT_musicnn")
    noticed = _value(server, "taggram_errors_total", code="client_disconnected")
    impatient = httpx.Client(base_url=server.url, timeout=httpx.Timeout(300, read=1.0))
    with impatient, pytest.raises(httpx.ReadTimeout):
        send(impatient, track)  # hangs up after 1 s waiting for the answer
    deadline = time.monotonic() + 120
    while _value(server, "taggram_errors_total", code="client_disconnected") <= noticed:
        assert time.monotonic() < deadline, "the disconnect was never noticed"
        time.sleep(0.2)
    while _value(server, "taggram_queue_depth", model="MTT_musicnn") > 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert _value(server, "taggram_patches_total", model="MTT_musicnn") - before < 161
    with httpx.Client(base_url=server.url, timeout=300) as client:
        assert tag_file(client, format_files["mp3"]).status_code == 200
