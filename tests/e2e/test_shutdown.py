"""SIGTERM drains: not ready at once, still serving through the grace period, nothing dropped."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import tag_file
from tests.support.paths import require_repository
from tests.support.server import Server, running_server

GRACE_SECONDS = 3.0
IN_FLIGHT = 8


def _in_flight(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        if family.name == "taggram_requests_in_flight":
            return family.samples[0].value
    return 0.0


def test_sigterm_drains_without_failing_a_request(
    format_files: dict[str, Path], tmp_path: Path
) -> None:
    env = {
        "TAGGRAM_MODELS": "MTT_musicnn",
        "TAGGRAM_DRAIN_GRACE_SECONDS": str(GRACE_SECONDS),
        # this test is about draining, not admission: a busy machine must not turn it into 429s
        "TAGGRAM_QUEUE_BUDGET_SECONDS": "600",
        "TAGGRAM_QUEUE_DEADLINE_SECONDS": "600",
    }
    with running_server(require_repository(), tmp_path, env=env) as server:

        def run(path: Path) -> httpx.Response:
            with httpx.Client(base_url=server.url, timeout=300) as http:
                return tag_file(http, path)

        with ThreadPoolExecutor(IN_FLIGHT + 1) as pool:
            pending = [pool.submit(run, format_files["wav_16"]) for _ in range(IN_FLIGHT)]
            deadline = time.monotonic() + 60
            while _in_flight(server) < IN_FLIGHT + 1:  # + the /metrics request itself
                assert time.monotonic() < deadline, "requests never arrived"
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            ready = httpx.get(f"{server.url}/readyz", timeout=30)
            assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
            # The load balancer may still route here during the grace period: served.
            late = pool.submit(run, format_files["mp3"])
            assert time.monotonic() - signalled < GRACE_SECONDS
            responses = [future.result() for future in [*pending, late]]
        assert [r.status_code for r in responses] == [200] * (IN_FLIGHT + 1), [
            r.text for r in responses if r.status_code != 200
        ]
        assert server.process.wait(timeout=120) == 0, server.log()
