"""Prometheus' own promtool on the compose config and on what a live server's /metrics answers."""

from __future__ import annotations

import re

import prometheus_client
from prometheus_client.metrics import MetricWrapperBase

from taggram.service import metrics  # registers the collectors documented in docs/deploy.md
from taggram.service.settings import Settings
from tests.deploy.tools import (
    LONGEST_REQUEST_SECONDS,
    exported_series_names,
    find_tool,
    run_tool,
)
from tests.support.paths import ROOT

PROMTOOL_PACKAGE = "Debian's prometheus package (.ci/run installs it)"


def test_compose_prometheus_config_is_valid() -> None:
    promtool = find_tool("promtool", PROMTOOL_PACKAGE)
    run_tool([promtool, "check", "config", str(ROOT / "docker" / "prometheus.yml")])


def test_live_metrics_pass_promtool_lint(live_metrics: str) -> None:
    assert "taggram_requests_total" in live_metrics
    promtool = find_tool("promtool", PROMTOOL_PACKAGE)
    run_tool([promtool, "check", "metrics"], stdin=live_metrics)


def test_docs_describe_exactly_the_exported_metrics() -> None:
    """docs/deploy.md's metric table names every taggram family and nothing else."""
    exposition = prometheus_client.generate_latest().decode()
    families = {f.name for f in prometheus_client.parser.text_string_to_metric_families(exposition)}
    exported = {n for n in families if n.startswith("taggram_")}
    series = exported_series_names(exposition)
    table = (ROOT / "docs" / "deploy.md").read_text().split("## Metrics", 1)[1]
    documented = set(re.findall(r"^\| `(taggram_\w+)`", table, flags=re.MULTILINE))
    unknown = documented - series - families
    assert not unknown, f"documented but not exported: {unknown}"
    undocumented = {n for n in exported if not documented & {n, f"{n}_total"}}
    assert not undocumented, f"exported but not in docs/deploy.md: {undocumented}"


def test_docs_give_each_metric_its_type_and_labels() -> None:
    """docs/deploy.md's metric table gives every taggram metric its real type and label names."""
    table = (ROOT / "docs" / "deploy.md").read_text().split("## Metrics", 1)[1]
    rows = re.findall(r"^\| `(taggram_\w+)` \| (\w+) \|([\w, ]*)\|", table, flags=re.MULTILINE)
    documented = {name: (kind, labels.replace(" ", "")) for name, kind, labels in rows}
    # prometheus_client keeps a collector's label names only in this attribute, and a labelled
    # metric never observed has no sample in the exposition to read them from.
    collectors = [c for c in vars(metrics).values() if isinstance(c, MetricWrapperBase)]
    exported = {
        c._name + ("_total" if c._type == "counter" else ""): (c._type, ",".join(c._labelnames))
        for c in collectors
    }
    assert documented == exported


def test_request_latency_buckets_reach_the_slowest_request() -> None:
    """A request may take the body timeout to arrive, then its work: the request and refusal
    histograms must have finite buckets up to there, or quantiles stop at the last one."""
    slowest = Settings().body_timeout_seconds + LONGEST_REQUEST_SECONDS
    for histogram, label in (
        (metrics.REQUEST_DURATION, "route"),
        (metrics.REFUSED_DURATION, "status"),
    ):
        child = histogram.labels(**{label: "slowest-request-test"})
        child.observe(slowest)
        try:
            exposition = prometheus_client.generate_latest().decode()
        finally:
            histogram.remove("slowest-request-test")
        finite = [
            float(sample.labels["le"])
            for family in prometheus_client.parser.text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name.endswith("_bucket")
            and sample.labels.get(label) == "slowest-request-test"
            and sample.labels["le"] != "+Inf"
            and sample.value == 1
        ]
        assert finite, f"{histogram.describe()[0].name}: {slowest} s falls only in +Inf"
