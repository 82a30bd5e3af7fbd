"""API keys on a real server: what stays open, 401s, both headers, key ids, the client and CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from taggram.cli import app
from taggram.client import AuthenticationFailedError, TaggramClient
from taggram.service.api.auth import key_id
from tests.e2e.conftest import SecuredServer


def _tone(seconds: float = 1.0) -> bytes:
    buffer = io.BytesIO()
    samples = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)
    sf.write(buffer, samples.astype(np.float32), 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_probes_metrics_and_docs_stay_open(secured_server: SecuredServer) -> None:
    with httpx.Client(base_url=secured_server.url) as http:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            assert http.get(path).status_code == 200, path


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/MTT_sample_cnn"),
        ("POST", "/v1/tag"),
        ("POST", "/v1/tag/batch"),
        ("GET", "/v2"),
        ("GET", "/v2/health/ready"),
        ("GET", "/v2/models/MTT_sample_cnn"),
        ("POST", "/v2/models/MTT_sample_cnn/infer"),
    ],
)
def test_v1_and_v2_need_a_known_key(secured_server: SecuredServer, method: str, path: str) -> None:
    with httpx.Client(base_url=secured_server.url) as http:
        for headers in ({}, {"Authorization": "Bearer not-a-key-we-know-of"}, {"X-API-Key": "x"}):
            response = http.request(method, path, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="taggram"'
            # /v2 answers as Open Inference Protocol servers do (application/json), /v1 as RFC
            # 9457 has it; both bodies are the problem.
            media = "application/json" if path.startswith("/v2") else "application/problem+json"
            assert response.headers["Content-Type"] == media
            problem = response.json()
            assert problem["code"] == "unauthorized" and problem["status"] == 401


def test_a_basic_credential_is_told_how_to_send_the_key(secured_server: SecuredServer) -> None:
    """A Basic ``Authorization`` was told "an API key is required" although it sent a credential:
    same status, code and challenge, a detail naming the scheme and how to send the key."""
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}  # user:pass
    with httpx.Client(base_url=secured_server.url) as http:
        response = http.get("/v1/models", headers=basic)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="taggram"'
    assert response.json()["code"] == "unauthorized"
    assert response.json()["detail"] == (
        "the credential scheme 'Basic' is not accepted: send 'Authorization: Bearer <key>' or "
        "'X-API-Key: <key>'"
    )
    assert "dXNlcjpwYXNz" not in response.text


def test_either_header_carries_the_key(secured_server: SecuredServer) -> None:
    keys = (secured_server.tag_key, secured_server.admin_key)  # from the env and from the file
    with httpx.Client(base_url=secured_server.url, timeout=120) as http:
        for key in keys:
            for headers in ({"Authorization": f"Bearer {key}"}, {"X-API-Key": key}):
                assert http.get("/v1/models", headers=headers).status_code == 200
        tagged = http.post(
            "/v1/tag",
            content=_tone(),
            headers={"Content-Type": "audio/wav", "X-API-Key": secured_server.tag_key},
        )
        assert tagged.status_code == 200, tagged.text


def _conflicts_counted(http: httpx.Client) -> float:
    text = http.get("/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "taggram_auth_failures"
        for sample in family.samples
        if sample.name == "taggram_auth_failures_total" and sample.labels["reason"] == "conflict"
    )


def test_two_different_keys_are_refused_and_the_same_key_twice_accepted(
    secured_server: SecuredServer,
) -> None:
    """A request carrying two different keys was served on the first one read (Bearer before
    X-API-Key, the first of two same-named headers): the other one, valid or not, was ignored
    without a word, and which key a request was counted under depended on header order."""
    tag, admin = secured_server.tag_key, secured_server.admin_key
    conflicting: list[list[tuple[str, str]]] = [
        [("Authorization", f"Bearer {tag}"), ("X-API-Key", admin)],
        [("Authorization", f"Bearer {tag}"), ("X-API-Key", "not-a-key-we-know-of")],
        [("X-API-Key", admin), ("X-API-Key", tag)],
        [("Authorization", f"Bearer {admin}"), ("Authorization", f"Bearer {tag}")],
    ]
    with httpx.Client(base_url=secured_server.url) as http:
        before = _conflicts_counted(http)
        for headers in conflicting:
            response = http.get("/v1/models", headers=headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="taggram"'
            assert response.headers["Content-Type"] == "application/problem+json"
            problem = response.json()
            assert problem["code"] == "unauthorized"
            assert problem["detail"].startswith("the request carries 2 different API keys"), problem
            assert "send one key" in problem["detail"]
            assert tag not in response.text and admin not in response.text
        assert _conflicts_counted(http) - before == len(conflicting)
        same = [("Authorization", f"Bearer {admin}"), ("X-API-Key", admin)]
        assert http.get("/v1/models", headers=same).status_code == 200
        # Basic is not a key carrier: the X-API-Key beside it is the one key sent.
        basic = [("Authorization", "Basic dXNlcjpwYXNz"), ("X-API-Key", tag)]
        assert http.get("/v1/models", headers=basic).status_code == 200


def test_metrics_and_logs_name_keys_by_id_only(secured_server: SecuredServer) -> None:
    key = secured_server.tag_key
    with httpx.Client(base_url=secured_server.url) as http:
        assert http.get("/v1/models", headers={"X-API-Key": key}).status_code == 200
        assert http.get("/v1/models", headers={"X-API-Key": key + "-wrong"}).status_code == 401
        text = http.get("/metrics").text
    counted = {
        sample.labels["key_id"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "taggram_api_key_requests"
        for sample in family.samples
        if sample.name == "taggram_api_key_requests_total"
    }
    assert counted[key_id(key)] >= 1
    failures = {
        sample.labels["reason"]
        for family in text_string_to_metric_families(text)
        if family.name == "taggram_auth_failures"
        for sample in family.samples
    }
    assert "unknown" in failures
    for secret in (secured_server.tag_key, secured_server.admin_key):
        assert secret not in text
        assert secret not in secured_server.server.log()


def test_the_openapi_document_states_the_security(secured_server: SecuredServer) -> None:
    document = httpx.get(f"{secured_server.url}/openapi.json").json()
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    tag = document["paths"]["/v1/tag"]["post"]
    assert tag["security"] == [{"bearer": ["tag"]}, {"apiKey": ["tag"]}]
    assert "WWW-Authenticate" in tag["responses"]["401"]["headers"]
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_the_client_sends_its_key_and_reads_the_problem(secured_server: SecuredServer) -> None:
    with TaggramClient(secured_server.url, api_key=secured_server.tag_key) as client:
        assert {model["name"] for model in client.models()["models"]} == {
            "MTT_sample_cnn",
            "MTT_musicnn",
        }
        assert client.tag(_tone(), filename="tone.wav", top_k=3)["tags"]
    with (
        TaggramClient(secured_server.url) as anonymous,
        pytest.raises(AuthenticationFailedError) as refused,
    ):
        anonymous.models()
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    assert refused.value.request_id


def test_the_catalogue_cli_takes_the_key_from_the_environment(
    secured_server: SecuredServer, tmp_path: Path
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    (folder / "tone.wav").write_bytes(_tone())
    output = tmp_path / "results.jsonl"
    command = ["catalogue", str(folder), "--url", secured_server.url, "--output", str(output)]
    runner = CliRunner()
    # Without a key (or with a wrong one) every track would fail alike: a usage error before any
    # is sent. It wrote each track as a settled failure and exited 0, so that a Job completed and
    # its rerun with the right key skipped every track.
    for key in ("", "not-a-key-of-this-service"):
        refused = runner.invoke(app, command, env={"TAGGRAM_API_KEY": key})
        assert refused.exit_code == 2, refused.output
        assert "--api-key (TAGGRAM_API_KEY): the service refused it: 401 unauthorized" in (
            refused.output
        )
        assert not output.exists()
    done = runner.invoke(app, command, env={"TAGGRAM_API_KEY": secured_server.tag_key})
    assert done.exit_code == 0, done.output
    [record] = [json.loads(line) for line in output.read_text().splitlines()]
    assert record["status"] == "ok"
