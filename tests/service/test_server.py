"""The served process: probes while loading, exit codes on SIGTERM and on a model that fails."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from taggram.repository import COMPLETE_MARKER, write_model
from taggram.service.api import create_app
from taggram.service.settings import Settings
from tests.service.conftest import tiny_metadata
from tests.support.server import free_port, running_server


def test_before_models_are_loaded_probes_say_starting(tiny_repository: Path) -> None:
    app = create_app(Settings(model_repository=tiny_repository, default_model="tiny"))

    async def run() -> list[httpx.Response]:
        # No lifespan has run: this is the app before its models are loaded.
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                await client.get("/healthz"),
                await client.get("/readyz"),
                await client.post(
                    "/v1/tag", content=b"RIFF", headers={"Content-Type": "audio/wav"}
                ),
            ]

    healthz, readyz, tag = asyncio.run(run())
    assert healthz.status_code == 200
    assert (readyz.status_code, readyz.json()) == (503, {"status": "starting"})
    assert (tag.status_code, tag.json()["code"]) == (503, "not_ready")


def test_head_is_answered_wherever_get_is(tiny_repository: Path, tmp_path: Path) -> None:
    """Uptime monitors and ``curl -I`` probe with HEAD: the GET's status and headers, no body."""
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny"}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        for path in ("/healthz", "/readyz", "/", "/v1/models", "/metrics"):
            got, head = httpx.get(server.url + path), httpx.head(server.url + path)
            assert head.status_code == got.status_code == 200, (path, head.text)
            assert head.content == b""
            assert head.headers["Content-Type"] == got.headers["Content-Type"]
        refused = httpx.head(f"{server.url}/v1/tag")  # POST only
        assert (refused.status_code, refused.headers["Allow"]) == (405, "POST")
        # A 405's Allow lists HEAD beside GET, since it is answered (RFC 9110, section 10.2.1).
        put = httpx.put(f"{server.url}/v1/models/tiny")
        assert (put.status_code, put.headers["Allow"]) == (405, "DELETE, GET, HEAD")
        assert httpx.post(f"{server.url}/healthz").headers["Allow"] == "GET, HEAD"
        # Counted under their route, like the GET: a HEAD health check is no unmatched path.
        metrics = httpx.get(f"{server.url}/metrics").text
        head_healthz = 'taggram_requests_total{method="HEAD",route="/healthz",status="200"} 1.0'
        assert head_healthz in metrics
        assert 'method="HEAD",route="unmatched"' not in metrics


def test_sigterm_exits_zero(tiny_repository: Path, tmp_path: Path) -> None:
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_DRAIN_GRACE_SECONDS": "0.5"}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        server.process.send_signal(signal.SIGTERM)
        assert httpx.get(f"{server.url}/readyz").json() == {"status": "draining"}
        assert server.process.wait(timeout=60) == 0, server.log()


def test_a_model_that_cannot_load_makes_the_process_exit_1(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    write_model(repository, tiny_metadata(), b"not an onnx model")  # hash matches, bytes do not
    (repository / COMPLETE_MARKER).touch()
    port = free_port()
    command = [sys.executable, "-m", "taggram", "serve", "--port", str(port)]
    env = {"TAGGRAM_MODEL_REPOSITORY": str(repository), "TAGGRAM_DEFAULT_MODEL": "tiny"}
    finished = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 1, finished.stderr
    assert "loading the models failed" in finished.stderr
