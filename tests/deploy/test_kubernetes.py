"""Kubernetes manifests: render every kustomization with ``kubectl kustomize``, validate each object
against the Kubernetes OpenAPI schemas (bundled by kubernetes-validate; strict, so unknown fields
fail) and check that the pieces agree with each other, with the image and with the service."""

from __future__ import annotations

import copy
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import prometheus_client
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator

import taggram.service.metrics  # noqa: F401  (registers the collectors whose names are checked)
from taggram.service.settings import Settings
from tests.deploy import dockerfile
from tests.deploy.tools import (
    LONGEST_REQUEST_SECONDS,
    SETTINGS_ENV,
    exported_series_names,
    find_tool,
    run_tool,
)
from tests.support.paths import ROOT

K8S = ROOT / "k8s"
# The oldest Kubernetes minor still widely run, and the newest the validator knows.
VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
OVERLAYS = ("cpu", "gpu")
Object = dict[str, Any]


def _kustomizations() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


def _renderable() -> list[Path]:
    """Kustomizations that render on their own (a Component only renders inside another)."""
    return [
        d for d in _kustomizations() if _read(d / "kustomization.yaml")[0]["kind"] != "Component"
    ]


def _read(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def render(directory: Path) -> tuple[Object, ...]:
    kubectl = find_tool("kubectl", "Debian's kubectl package (.ci/run installs it)")
    return tuple(_read_text(run_tool([kubectl, "kustomize", str(directory)]).stdout))


def _read_text(text: str) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _referenced_files() -> set[Path]:
    """Files kustomizations use: resources, patches and generator inputs (validated via renders)."""
    used: set[Path] = set()
    for directory in _kustomizations():
        spec = _read(directory / "kustomization.yaml")[0]
        entries = list(spec.get("resources", [])) + [
            p["path"] for p in spec.get("patches", []) if "path" in p
        ]
        for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
            entries += generator.get("envs", []) + [
                f.split("=")[-1] for f in generator.get("files", [])
            ]
        used.update((directory / entry).resolve() for entry in entries)
    return used


def _standalone_manifests() -> list[Path]:
    """YAML under k8s/ that no kustomization includes (examples, the catalogue Job, ...)."""
    used = _referenced_files()
    return sorted(
        path
        for path in [*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")]
        if path.name != "kustomization.yaml" and path.resolve() not in used
    )


def _forbid_unknown_fields(schema: Any) -> None:
    """Make a generated CRD schema strict, as ``kubectl apply`` (field validation Strict) is."""
    if isinstance(schema, dict):
        if "properties" in schema:
            schema.setdefault("additionalProperties", False)
        for value in schema.values():
            _forbid_unknown_fields(value)
    elif isinstance(schema, list):
        for value in schema:
            _forbid_unknown_fields(value)


@cache
def _prometheus_operator_schema(kind: str) -> Object:
    """JSON schema of a monitoring.coreos.com/v1 kind, from models generated from its CRDs."""
    schema: Object = getattr(prometheus_operator, kind).model_json_schema(by_alias=True)
    _forbid_unknown_fields(schema)
    return schema


def validate(obj: Object) -> None:
    """Fail with the offending path if ``obj`` does not match its schema."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if obj["apiVersion"] == "monitoring.coreos.com/v1":
        validator = jsonschema.Draft202012Validator(_prometheus_operator_schema(obj["kind"]))
        error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
        if error is not None:
            pytest.fail(f"{name}: {error.message} at {error.json_path}")
        return
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as failure:
            pytest.fail(f"{name} (Kubernetes {version}): {failure.message} at {failure.json_path}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{name}: no schema for {obj['apiVersion']} in Kubernetes {version}")


@pytest.mark.parametrize("directory", _renderable(), ids=lambda d: str(d.relative_to(K8S)))
def test_kustomization_renders_valid_objects(directory: Path) -> None:
    objects = render(directory)
    assert objects
    for obj in objects:
        validate(obj)


@pytest.mark.parametrize("path", _standalone_manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_standalone_manifest_is_valid(path: Path) -> None:
    for obj in _read(path):
        validate(obj)


def test_strict_validation_catches_misspelt_fields() -> None:
    """Both validators must reject an unknown field, or the checks above prove nothing."""
    objects = render(K8S / "overlays" / "cpu")
    for kind, parent in (
        ("Deployment", ("spec", "template", "spec")),
        ("ServiceMonitor", ("spec",)),
    ):
        broken = copy.deepcopy(one(objects, kind))
        node = broken
        for key in parent:
            node = node[key]
        node["terminationGracePeriod"] = 30
        with pytest.raises(pytest.fail.Exception):
            validate(broken)


def one(objects: tuple[Object, ...], kind: str) -> Object:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def overlay(name: str) -> tuple[Object, ...]:
    return render(K8S / "overlays" / name)


def _container(objects: tuple[Object, ...]) -> Object:
    (container,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _settings(objects: tuple[Object, ...]) -> dict[str, str]:
    (source,) = _container(objects)["envFrom"]
    name = source["configMapRef"]["name"]
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    data: dict[str, str] = config["data"]
    return data


@pytest.mark.parametrize("name", OVERLAYS)
def test_settings_are_service_settings(name: str) -> None:
    settings = _settings(overlay(name))
    assert set(settings) <= SETTINGS_ENV, set(settings) - SETTINGS_ENV
    ports = {p["name"]: p["containerPort"] for p in _container(overlay(name))["ports"]}
    assert int(settings["TAGGRAM_PORT"]) == ports["http"]
    assert settings["TAGGRAM_HOST"] == "0.0.0.0"
    # Threads are set explicitly, whatever the node and the CPU limit the service would read.
    assert int(settings["TAGGRAM_INTRA_OP_THREADS"]) >= 1


@pytest.mark.parametrize("name", OVERLAYS)
def test_api_keys_come_from_a_secret_file(name: str) -> None:
    objects = overlay(name)
    keys_file = Path(_settings(objects)["TAGGRAM_API_KEYS_FILE"])
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [
        m for m in _container(objects)["volumeMounts"] if m["mountPath"] == str(keys_file.parent)
    ]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == "taggram-api-keys"
    assert secret.get("optional") is not True  # no Secret, no pod: fail closed
    assert [item["path"] for item in secret["items"]] == [keys_file.name]
    # Keys never sit in the ConfigMap.
    assert "TAGGRAM_API_KEYS" not in _settings(objects)


@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_follow_the_service_endpoints(name: str) -> None:
    container = _container(overlay(name))
    paths = {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert paths == {
        "startupProbe": "/readyz",
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
    }
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "room for model warm-up"


@pytest.mark.parametrize("name", OVERLAYS)
def test_termination_grace_covers_the_drain(name: str) -> None:
    """preStop sleep (LB propagation) + drain grace (still accepting) + a request accepted at
    its end must fit: the server waits for that request's body, which may take the whole body
    timeout (a slow client), before its work (the longest request)."""
    objects = overlay(name)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    command = _container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    env = _settings(objects)
    settings = Settings(**{k.removeprefix("TAGGRAM_").lower(): v for k, v in env.items()})
    budget = (
        float(command[1])
        + settings.drain_grace_seconds
        + settings.body_timeout_seconds
        + LONGEST_REQUEST_SECONDS
    )
    assert pod["terminationGracePeriodSeconds"] >= budget


@pytest.mark.parametrize("name", OVERLAYS)
def test_pod_is_locked_down(name: str) -> None:
    objects = overlay(name)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = _container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile.user_id(f"runtime-{name}")
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "uploads spool to /tmp on a read-only root"
    assert container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("name", OVERLAYS)
def test_bodies_in_flight_fit_the_tmp_volume(name: str) -> None:
    """Uploads spool to /tmp until their request ends, and an emptyDir past its sizeLimit gets
    the pod evicted with every request in it: the service must refuse (429) before that."""
    objects = overlay(name)
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in _container(objects)["volumeMounts"]}
    size = volumes[mounts["/tmp"]]["emptyDir"]["sizeLimit"]
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", size).groups()  # type: ignore[union-attr]
    tmp_bytes = int(number) << {"Ki": 10, "Mi": 20, "Gi": 30}[unit]
    env = _settings(objects)
    settings = Settings(**{k.removeprefix("TAGGRAM_").lower(): v for k, v in env.items()})
    assert settings.max_body_bytes_in_flight <= tmp_bytes


# The idle timeout of ingress-nginx's upstream connections (upstream-keepalive-timeout) and of
# an AWS ALB: the service must keep idle connections open longer, or the balancer may reuse one
# that the service is closing and answer 502.
BALANCER_IDLE_SECONDS = 60


@pytest.mark.parametrize("name", OVERLAYS)
def test_keep_alive_outlasts_the_load_balancer(name: str) -> None:
    env = _settings(overlay(name))
    settings = Settings(**{k.removeprefix("TAGGRAM_").lower(): v for k, v in env.items()})
    assert settings.keep_alive_seconds > BALANCER_IDLE_SECONDS


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("name", OVERLAYS)
def test_selectors_and_ports_line_up(name: str) -> None:
    objects = overlay(name)
    deployment = one(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service")
    assert _selects(service["spec"]["selector"], pod_labels)
    container_ports = {p["name"] for p in _container(objects)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= container_ports
    assert _selects(
        one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], pod_labels
    )
    policy = one(objects, "NetworkPolicy")["spec"]
    assert _selects(policy["podSelector"]["matchLabels"], pod_labels)
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} <= container_ports
    monitor = one(objects, "ServiceMonitor")["spec"]
    assert _selects(monitor["selector"]["matchLabels"], service["metadata"]["labels"])
    assert {e["port"] for e in monitor["endpoints"]} <= {
        p["name"] for p in service["spec"]["ports"]
    }
    target = one(objects, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_gpu_overlay_asks_for_a_gpu_and_cpu_does_not() -> None:
    gpu, cpu = overlay("gpu"), overlay("cpu")
    assert _container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == 1
    pod = one(gpu, "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert _settings(gpu)["TAGGRAM_PROVIDERS"].startswith("CUDAExecutionProvider")
    # A model on CUDA batches by TAGGRAM_GPU_MAX_BATCH_SIZE; TAGGRAM_MAX_BATCH_SIZE only sizes
    # the batches of a model that fell back to the CPU, which must stay CPU-sized.
    assert int(_settings(gpu)["TAGGRAM_GPU_MAX_BATCH_SIZE"]) >= 64
    assert _settings(gpu)["TAGGRAM_MAX_BATCH_SIZE"] == _settings(cpu)["TAGGRAM_MAX_BATCH_SIZE"]
    assert "nvidia.com/gpu" not in str(one(cpu, "Deployment"))
    images = {name: _container(overlay(name))["image"] for name in OVERLAYS}
    assert images["gpu"].endswith(":gpu") and images["cpu"].endswith(":cpu")


def _exported_names() -> set[str]:
    return exported_series_names(prometheus_client.generate_latest().decode())


def test_custom_metrics_are_ones_the_service_exports() -> None:
    """The queue-depth HPA and the prometheus-adapter rule name real service metrics."""
    metrics = one(overlay("gpu"), "HorizontalPodAutoscaler")["spec"]["metrics"]
    pods_metrics = [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"]
    assert pods_metrics == ["taggram_queue_depth"]
    rules = yaml.safe_load(
        _read(K8S / "examples" / "prometheus-adapter-rules.yaml")[0]["data"]["config.yaml"]
    )
    for rule in rules["rules"]:
        series = re.match(r"\w+", rule["seriesQuery"].strip("'"))
        assert series is not None and series[0] in _exported_names()
        assert rule["name"]["as"] in pods_metrics


def _ingress(name: str) -> Object:
    (ingress,) = _read(K8S / "examples" / name)
    return ingress


def _nginx_rewrite(ingress: Object, path: str) -> str | None:
    """The path ingress-nginx forwards for ``path`` (``None``: no rule takes it): a regex rule
    with ``use-regex`` and ``rewrite-target``, or a ``Prefix`` rule forwarded as it is."""
    annotations = ingress["metadata"]["annotations"]
    regex = annotations.get("nginx.ingress.kubernetes.io/use-regex") == "true"
    for rule in ingress["spec"]["rules"][0]["http"]["paths"]:
        if rule["pathType"] == "Prefix":
            if path == rule["path"] or path.startswith(rule["path"] + "/"):
                return path
        # nginx matches a regex location from the path's start, case-insensitively.
        elif regex and (match := re.match(rule["path"], path, re.IGNORECASE)):
            target: str = annotations["nginx.ingress.kubernetes.io/rewrite-target"]
            return re.sub(r"\$(\d)", lambda group: match[int(group[1])], target)
    return None


def test_prefixed_ingress_strips_the_prefix_the_service_is_told() -> None:
    """``ingress-nginx-prefix.yaml`` forwards what ``ingress-nginx.yaml`` forwards, with
    ``/taggram`` taken off, tells the operator the same prefix for ``TAGGRAM_ROOT_PATH``, and
    keeps the same limits at the edge."""
    plain, prefixed = _ingress("ingress-nginx.yaml"), _ingress("ingress-nginx-prefix.yaml")
    (root_path,) = re.findall(
        r"TAGGRAM_ROOT_PATH=(\S+)", (K8S / "examples" / "ingress-nginx-prefix.yaml").read_text()
    )
    Settings(root_path=root_path)  # a value the service takes
    for path in (
        "/v1/tag",
        "/v1/models/MTT_musicnn",
        "/v2",
        "/v2/models/MTT_musicnn/infer",
        "/metrics",
        "/readyz",
        "/docs",
        "/v10",
    ):
        assert _nginx_rewrite(plain, path) == _nginx_rewrite(prefixed, root_path + path), path
    assert _nginx_rewrite(prefixed, "/v1/tag") is None
    limits = {
        key: value
        for key, value in plain["metadata"]["annotations"].items()
        if key.startswith("nginx.ingress.kubernetes.io/")
    }
    assert limits.items() <= prefixed["metadata"]["annotations"].items()
    body_cap = limits["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body_cap.endswith("m")
    assert int(body_cap[:-1]) * 2**20 == int(_settings(overlay("cpu"))["TAGGRAM_MAX_UPLOAD_BYTES"])
