"""The Grafana dashboard: its structure, its datasource, and its queries run by a real Prometheus
scraping a live server (the Debian ``prometheus`` package's server binary)."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.tools import exported_series_names, find_tool
from tests.support.paths import ROOT
from tests.support.server import Server, free_port

GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "taggram.json"
METRIC = re.compile(r"\btaggram_[a-z0-9_]+\b")
# Grafana fills these in before a query reaches Prometheus.
MACROS = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "5m"}
REQUIRED_PANELS = {
    "taggram_requests_total": "request rate",
    "taggram_request_duration_seconds_bucket": "latency percentiles",
    "taggram_queue_depth": "queue depth",
    "taggram_batch_size_sum": "batch size",
    "taggram_audio_seconds_total": "audio seconds per second",
    "taggram_errors_total": "errors by code",
}


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _targets() -> list[dict[str, Any]]:
    return [t for panel in _dashboard()["panels"] for t in panel.get("targets", [])]


def _expressions() -> list[str]:
    expressions = []
    for target in _targets():
        expr = target["expr"]
        for macro, value in MACROS.items():
            expr = expr.replace(macro, value)
        expressions.append(expr)
    return expressions


def _queried_metrics() -> set[str]:
    return {name for expr in _expressions() for name in METRIC.findall(expr)}


def test_dashboard_structure() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"]
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["title"] and panel["targets"], panel["id"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"panel {panel['id']}: duplicate refIds"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, f"panel {panel['id']} is wider than the dashboard"
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & area, f"panel {panel['id']} overlaps another"
        cells |= area


def test_dashboard_uses_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (datasource,) = provisioned["datasources"]
    assert datasource["type"] == "prometheus"
    expected = {"type": "prometheus", "uid": datasource["uid"]}
    for panel in _dashboard()["panels"]:
        assert panel["datasource"] == expected, panel["id"]
        assert all(t["datasource"] == expected for t in panel["targets"]), panel["id"]


def test_dashboard_covers_the_operational_views() -> None:
    queried = _queried_metrics()
    missing = {view for name, view in REQUIRED_PANELS.items() if name not in queried}
    assert not missing, f"no panel for: {missing}"


def test_every_queried_metric_is_exported(live_metrics: str) -> None:
    unknown = _queried_metrics() - exported_series_names(live_metrics)
    assert not unknown, f"the dashboard queries metrics the service does not export: {unknown}"


@pytest.fixture
def prometheus(live_server: Server, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on docker/prometheus.yml, re-pointed at the live server (1 s scrapes)."""
    binary = find_tool("prometheus", "Debian's prometheus package (.ci/run installs it)")
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    config["global"]["scrape_interval"] = "1s"
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "taggram"]
    job["static_configs"] = [{"targets": [live_server.url.removeprefix("http://")]}]
    config["scrape_configs"] = [job]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    command = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address={address}",
    ]
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://{address}"
        _wait_for_samples(url, process, tmp_path / "prometheus.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_samples(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until two scrapes of taggram have landed (rates need two points), 60 s at most."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited {process.returncode}:\n{log.read_text()}")
        try:
            answer = httpx.get(f"{url}/api/v1/query", params={"query": "count_over_time(up[1m])"})
            samples = answer.json()["data"]["result"]
            if samples and int(samples[0]["value"][1]) >= 2:
                return
        except (httpx.TransportError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail(f"prometheus took no two scrapes in 60 s:\n{log.read_text()}")


def test_dashboard_queries_run_on_prometheus(prometheus: str, live_metrics: str) -> None:
    """Every panel query parses and evaluates; every series with samples is really scraped."""
    for expr in _expressions():
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        assert answer.json()["status"] == "success", f"{expr}: {answer.text}"
    sampled = {
        name
        for name in _queried_metrics()
        if re.search(rf"^{name}[{{ ]", live_metrics, flags=re.MULTILINE)
    }
    assert "taggram_requests_total" in sampled
    for name in sorted(sampled):
        answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": f"count({name})"})
        assert answer.json()["data"]["result"], f"{name} is exported but Prometheus stored none"
