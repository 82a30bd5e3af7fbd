"""docker compose files: the compose-spec schema, and that every file and target named exists."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import yaml

from taggram.service.settings import Settings
from tests.deploy import dockerfile
from tests.deploy.tools import LONGEST_REQUEST_SECONDS, SETTINGS_ENV, run_tool
from tests.support.paths import ROOT

COMPOSE_FILES = ("docker-compose.yml", "docker-compose.gpu.yml")
GRAFANA = ROOT / "docker" / "grafana"


def _compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return loaded


def test_compose_files_match_the_compose_spec() -> None:
    """check-jsonschema ships the compose-spec schema, so this runs offline."""
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec"]
    run_tool([*command, *COMPOSE_FILES])


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_builds_name_existing_dockerfile_targets(name: str) -> None:
    builds = [s["build"] for s in _compose(name)["services"].values() if "build" in s]
    assert builds
    for build in builds:
        context = ROOT / build["context"]
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()
        assert build["target"] in dockerfile.stages()


def _bind_sources(service: dict[str, Any]) -> list[str]:
    """Host paths of short-syntax bind mounts (named volumes have no leading ``.`` or ``/``)."""
    sources = [str(v).split(":")[0] for v in service.get("volumes", [])]
    return [s for s in sources if s.startswith((".", "/"))]


def test_mounted_files_exist() -> None:
    for name, service in _compose()["services"].items():
        for source in _bind_sources(service):
            assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_scrapes_the_taggram_service() -> None:
    compose = _compose()
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "taggram")
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    port = dockerfile.env("runtime-cpu")["TAGGRAM_PORT"]
    assert targets == [f"taggram:{port}"]
    assert "taggram" in compose["services"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./docker/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in mounts


def test_grafana_provisioning_reaches_the_dashboard_and_prometheus() -> None:
    compose = _compose()
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    provisioning = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "taggram.yml").read_text()
    )
    dashboards_in_container = provisioning["providers"][0]["options"]["path"]
    host_folder = next(h for h, c in mounts.items() if c == dashboards_in_container)
    assert list((ROOT / host_folder).glob("*.json")), f"no dashboard in {host_folder}"
    assert mounts["./docker/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasource = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in compose["services"]["prometheus"]["ports"]


def test_observability_is_bound_to_loopback_and_grafana_has_no_default_login() -> None:
    services = _compose()["services"]
    for name in ("prometheus", "grafana"):
        for port in services[name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), (name, port)
    grafana = services["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    # The password comes from the environment, and compose refuses to start without it.
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")


def test_gpu_override_reserves_an_nvidia_device() -> None:
    service = _compose("docker-compose.gpu.yml")["services"]["taggram"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert service["build"]["target"] == "runtime-gpu"
    assert "CUDAExecutionProvider" in service["environment"]["TAGGRAM_PROVIDERS"]
    # The GPU batch has its own setting; TAGGRAM_MAX_BATCH_SIZE would only enlarge the batches
    # of a model that fell back to the CPU.
    assert int(service["environment"]["TAGGRAM_GPU_MAX_BATCH_SIZE"]) >= 64
    assert "TAGGRAM_MAX_BATCH_SIZE" not in service["environment"]


def test_stop_grace_outlasts_the_drain_grace() -> None:
    """The drain grace + a request accepted at its end: its body (up to the body timeout: the
    server waits for a slow client's upload) and its work (the longest request)."""
    service = _compose()["services"]["taggram"]
    env = service["environment"]
    timings = ("drain_grace_seconds", "body_timeout_seconds")
    settings = Settings(
        **{n: env[f"TAGGRAM_{n.upper()}"] for n in timings if f"TAGGRAM_{n.upper()}" in env}
    )
    stop_grace = float(str(service["stop_grace_period"]).removesuffix("s"))
    assert stop_grace >= (
        settings.drain_grace_seconds + settings.body_timeout_seconds + LONGEST_REQUEST_SECONDS
    )


def test_every_compose_setting_is_a_service_setting() -> None:
    for name in COMPOSE_FILES:
        environment = _compose(name)["services"]["taggram"].get("environment", {})
        assert set(environment) <= SETTINGS_ENV, set(environment) - SETTINGS_ENV
