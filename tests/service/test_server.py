"""The served process: probes while loading, exit codes on SIGTERM and on a model that fails."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from taggram.client import RetryPolicy
from taggram.repository import COMPLETE_MARKER, write_model
from taggram.service.api import create_app
from taggram.service.settings import Settings
from tests.service.conftest import tiny_metadata
from tests.support.audio import tone, write_wav
from tests.support.proxy import prefix_proxy
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
    assert tag.headers["Retry-After"] == "5"  # a client's backoff would spend its tries sooner


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


def test_every_answer_is_counted_under_its_route(tiny_repository: Path, tmp_path: Path) -> None:
    """The OpenAPI document, the files under /web and CORS preflights (answered before routing)
    are counted under their route, as docs/deploy.md's metric table says: only a path no route
    takes is "unmatched"."""
    origin = "https://app.example"
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_CORS_ORIGINS": origin}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        for path in ("/openapi.json", "/web/swagger-ui/swagger-ui.css", "/web/nothing.js"):
            httpx.get(server.url + path)
        httpx.head(f"{server.url}/openapi.json")
        httpx.get(f"{server.url}/nothing")
        for asking in (origin, "https://elsewhere.example"):
            preflight = httpx.options(
                f"{server.url}/v1/models/tiny",
                headers={"Origin": asking, "Access-Control-Request-Method": "DELETE"},
            )
        metrics = httpx.get(f"{server.url}/metrics").text
    expected = [
        'method="GET",route="/openapi.json",status="200"} 1.0',
        'method="HEAD",route="/openapi.json",status="200"} 1.0',
        'method="GET",route="/web/{path}",status="200"} 1.0',
        'method="GET",route="/web/{path}",status="404"} 1.0',
        'method="GET",route="unmatched",status="404"} 1.0',
        'method="OPTIONS",route="/v1/models/{name}",status="200"} 1.0',
        'method="OPTIONS",route="/v1/models/{name}",status="400"} 1.0',
    ]
    for series in expected:
        assert f"taggram_requests_total{{{series}" in metrics, series
    assert 'taggram_request_duration_seconds_count{route="/openapi.json"} 2.0' in metrics
    # Logged and answered with its request id, like any request.
    assert preflight.status_code == 400  # the origin is not allowed
    assert "X-Request-ID" in preflight.headers


def test_a_refused_cors_preflight_is_a_problem_naming_what_was_refused(
    tiny_repository: Path, tmp_path: Path
) -> None:
    """Starlette answered a refused preflight with a text/plain "Disallowed CORS origin, method",
    the one refusal without a problem body or a code. It is a 400 ``cors_refused`` problem
    naming what was refused, Starlette's CORS headers kept; an allowed preflight is unchanged."""
    origin = "https://app.example"
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_CORS_ORIGINS": origin}
    asked = {
        ("https://evil.example", "PUT", None): [
            "origin 'https://evil.example' is not allowed",
            "method 'PUT' is not allowed (GET, POST, DELETE)",
        ],
        (origin, "POST", "X-Secret"): ["request headers 'X-Secret' are not all allowed ("],
        (origin, "PATCH", "authorization"): ["method 'PATCH' is not allowed"],
    }
    with running_server(tiny_repository, tmp_path, env=env) as server:
        for (asking, method, headers), reasons in asked.items():
            preflight = {"Origin": asking, "Access-Control-Request-Method": method}
            if headers is not None:
                preflight["Access-Control-Request-Headers"] = headers
            refused = httpx.options(f"{server.url}/v1/tag", headers=preflight)
            assert refused.status_code == 400, refused.text
            assert refused.headers["Content-Type"] == "application/problem+json"
            problem = refused.json()
            assert (problem["code"], problem["instance"]) == ("cors_refused", "/v1/tag")
            assert problem["title"] == "CORS preflight refused"
            assert problem["request_id"] == refused.headers["X-Request-ID"]
            assert problem["detail"].startswith("CORS preflight refused: "), problem
            for reason in reasons:
                assert reason in problem["detail"], (reason, problem["detail"])
            assert refused.headers["Access-Control-Allow-Methods"] == "GET, POST, DELETE"
            assert "x-secret" not in refused.headers["Access-Control-Allow-Headers"].lower()
        allowed = httpx.options(
            f"{server.url}/v1/tag",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        metrics = httpx.get(f"{server.url}/metrics").text
    assert (allowed.status_code, allowed.text) == (200, "OK")
    assert allowed.headers["Access-Control-Allow-Origin"] == origin
    assert 'taggram_errors_total{code="cors_refused"} 3.0' in metrics


@pytest.mark.parametrize(
    ("proxies", "logged"), [("127.0.0.0/8", "203.0.113.7"), ("192.0.2.1", "127.0.0.1")]
)
def test_the_access_log_names_the_client_behind_a_trusted_proxy(
    tiny_repository: Path, tmp_path: Path, proxies: str, logged: str
) -> None:
    """Behind a load balancer the peer is the proxy: its X-Forwarded-For is believed only from
    the addresses TAGGRAM_FORWARDED_ALLOW_IPS lists."""
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_FORWARDED_ALLOW_IPS": proxies}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        httpx.get(f"{server.url}/v1/models", headers={"X-Forwarded-For": "203.0.113.7"})
        (line,) = [line for line in server.log().splitlines() if "GET /v1/models " in line]
    assert f" {logged}:" in line, line


def test_an_idle_keep_alive_connection_is_closed_after_the_setting(
    tiny_repository: Path, tmp_path: Path
) -> None:
    """A load balancer reusing its connections needs the service to keep them longer than it
    does: TAGGRAM_KEEP_ALIVE_SECONDS reaches uvicorn (its own default is 5 s)."""
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_KEEP_ALIVE_SECONDS": "1"}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            sock.settimeout(4.0)  # uvicorn's own 5 s would time out here
            answer = b""
            while chunk := sock.recv(65536):  # the answer, then the server's close
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert time.monotonic() - started < 3.0


def test_a_connection_that_sends_no_request_is_closed_after_the_keep_alive(
    tiny_repository: Path, tmp_path: Path
) -> None:
    """uvicorn armed its keep-alive timeout only after a response: a connection opened and left
    silent stayed open for ever (a file descriptor each, for anyone who can connect)."""
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_KEEP_ALIVE_SECONDS": "1"}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            started = time.monotonic()
            assert sock.recv(65536) == b""  # closed by the server, nothing sent
        assert time.monotonic() - started < 5.0


def test_a_misspelt_setting_is_warned_about_at_start(tiny_repository: Path, tmp_path: Path) -> None:
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_DRAIN_GRACE_SECOND": "30"}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        log = server.log()
    expected = "TAGGRAM_DRAIN_GRACE_SECOND is not a setting and is ignored: did you mean "
    assert expected + "TAGGRAM_DRAIN_GRACE_SECONDS?" in log, log


def test_sigterm_exits_zero(tiny_repository: Path, tmp_path: Path) -> None:
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_DRAIN_GRACE_SECONDS": "2"}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        server.process.send_signal(signal.SIGTERM)
        assert httpx.get(f"{server.url}/readyz").json() == {"status": "draining"}
        # A 503 not_ready says when to retry, and the client waits that long (plus its jitter
        # of up to a quarter, which keeps refused clients from returning in step).
        ready = httpx.get(f"{server.url}/v2/health/ready")
        assert (ready.status_code, ready.json()["code"]) == (503, "not_ready")
        assert ready.headers["Retry-After"] == "5"
        assert 5.0 <= (RetryPolicy().next_wait(0, ready) or 0.0) <= 6.25
        assert server.process.wait(timeout=60) == 0, server.log()


def test_a_body_still_arriving_when_the_grace_ends_is_answered(
    tiny_repository: Path, tmp_path: Path
) -> None:
    """After the drain grace the server waits for a request whose upload is still coming in
    (a slow client): the shutdown budgets of k8s/ and docker-compose.yml count its body
    timeout for that reason."""
    song = write_wav(tmp_path / "song.wav", tone(16000, 2.0), 16000).read_bytes()
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_DRAIN_GRACE_SECONDS": "0.5"}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            head = b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(song) + song[:1000])
            server.process.send_signal(signal.SIGTERM)
            time.sleep(2.0)  # four times the grace
            assert server.process.poll() is None, server.log()
            sock.sendall(song[1000:])
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
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


def test_a_feature_extractor_as_the_default_model_is_a_usage_error_in_one_line(
    tmp_path: Path,
) -> None:
    """``TAGGRAM_DEFAULT_MODEL=mfcc`` on a full repository started, then refused every request
    without ``model`` (422): it exits 2 before loading, naming the setting and the taggers."""
    extractor = tiny_metadata("extractor").model_copy(
        update={"tags": [], "probabilities_output": None}
    )
    write_model(tmp_path, tiny_metadata(), b"not loaded")  # the check comes before loading
    write_model(tmp_path, extractor, b"not loaded either")
    (tmp_path / COMPLETE_MARKER).touch()
    command = [sys.executable, "-m", "taggram", "serve", "--port", str(free_port())]
    env = {"TAGGRAM_MODEL_REPOSITORY": str(tmp_path), "TAGGRAM_DEFAULT_MODEL": "extractor"}
    finished = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 2, finished.stderr
    assert finished.stderr.splitlines() == [
        "error: default model 'extractor' (TAGGRAM_DEFAULT_MODEL) is a feature extractor: it "
        "gives no tags, so every request without model= would be refused; set "
        "TAGGRAM_DEFAULT_MODEL to one of the models that tag: tiny"
    ]


def test_a_second_server_on_a_port_in_use_is_a_usage_error_in_one_line(
    tiny_repository: Path, tmp_path: Path
) -> None:
    """A second ``taggram serve`` on the first one's port exits 2 with one line naming the port
    and the setting, before loading anything; uvicorn found out only after its start-up lines
    ("Application startup complete") and exited 3. The first server keeps serving."""
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny"}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        port = server.url.rsplit(":", 1)[1]
        command = [sys.executable, "-m", "taggram", "serve", "--host", "127.0.0.1", "--port", port]
        second = subprocess.run(
            command,
            env={**os.environ, "TAGGRAM_MODEL_REPOSITORY": str(tiny_repository), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2, second.stderr
        assert second.stderr.splitlines() == [
            f"error: 127.0.0.1:{port} is already in use (another taggram serve?); stop that "
            "server or choose another --port (TAGGRAM_PORT)"
        ]
        assert httpx.get(f"{server.url}/readyz").status_code == 200


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("no-such-host.invalid", "error: --host no-such-host.invalid (TAGGRAM_HOST): "),
        ("192.0.2.1", "error: --host 192.0.2.1 (TAGGRAM_HOST) is not an address of this machine"),
    ],
)
def test_a_host_the_service_cannot_listen_on_is_a_usage_error_in_one_line(
    tiny_repository: Path, host: str, expected: str
) -> None:
    """A host that does not resolve, or another machine's address (192.0.2.1: TEST-NET-1)."""
    command = [sys.executable, "-m", "taggram", "serve", "--host", host, "--port", "8000"]
    env = {"TAGGRAM_MODEL_REPOSITORY": str(tiny_repository), "TAGGRAM_DEFAULT_MODEL": "tiny"}
    finished = subprocess.run(
        command, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 2, finished.stderr
    lines = finished.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), finished.stderr


def test_a_trailing_slash_is_a_404_naming_the_path_without_it(
    tiny_repository: Path, tmp_path: Path
) -> None:
    """``curl -F file=@song.wav .../v1/tag/`` printed nothing: Starlette answered an empty 307,
    which curl does not follow, and a client that does sent the whole upload twice."""
    song = write_wav(tmp_path / "song.wav", tone(16000, 2.0), 16000)
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny"}
    with running_server(tiny_repository, tmp_path, env=env) as server:
        with song.open("rb") as handle:
            tag = httpx.post(f"{server.url}/v1/tag/", files={"file": handle})
        assert (tag.status_code, tag.json()["code"]) == (404, "not_found"), tag.text
        expected = "no route /v1/tag/; did you mean /v1/tag (without the trailing slash)?"
        assert tag.json()["detail"] == expected
        models = httpx.get(f"{server.url}/v1/models/")
        assert models.status_code == 404 and "did you mean /v1/models " in models.json()["detail"]
        nowhere = httpx.get(f"{server.url}/nowhere/").json()["detail"]
        assert nowhere == "no route /nowhere/; /openapi.json lists the API's paths"
        wrong = httpx.delete(f"{server.url}/v1/tag").json()["detail"]
        assert wrong == "DELETE is not allowed on /v1/tag, which takes POST"
        assert httpx.get(f"{server.url}/v1/models").status_code == 200


def test_the_trailing_slash_hint_under_a_root_path_works_for_both_kinds_of_caller(
    tiny_repository: Path, tmp_path: Path
) -> None:
    """With ``TAGGRAM_ROOT_PATH=/taggram`` uvicorn puts the prefix in front of every path, so a
    caller through the prefix-stripping proxy (``/taggram/v1/models/``) and one inside the
    cluster calling the pod directly (``/v1/models/``) arrive alike: the hint named
    ``/taggram/v1/models`` to both, a 404 for the second. It names both paths; each caller's
    works for it."""
    env = {"TAGGRAM_DEFAULT_MODEL": "tiny", "TAGGRAM_ROOT_PATH": "/taggram"}
    expected = (
        "no route /v1/models/; did you mean /v1/models (without the trailing slash; "
        "/taggram/v1/models through a proxy that serves the service under /taggram)?"
    )
    with (
        running_server(tiny_repository, tmp_path, env=env) as server,
        prefix_proxy(server.url, "/taggram") as proxy,
    ):
        outside = httpx.get(f"{proxy}/taggram/v1/models/")
        inside = httpx.get(f"{server.url}/v1/models/")
        for answer in (outside, inside):
            assert answer.status_code == 404, answer.text
            assert answer.json()["detail"] == expected
        assert httpx.get(f"{proxy}/taggram/v1/models").status_code == 200  # the proxy's path
        assert httpx.get(f"{proxy}/v1/models").status_code == 404  # outside the prefix
        assert httpx.get(f"{server.url}/v1/models").status_code == 200  # the pod's path
        # What the hint named alone before: the pod has no such path.
        assert httpx.get(f"{server.url}/taggram/v1/models").status_code == 404
        nowhere = httpx.get(f"{proxy}/taggram/nowhere/").json()["detail"]
        assert nowhere == "no route /nowhere/; /openapi.json lists the API's paths"
