"""Helpers the deployment checks share: locating real tools and reading what the service exports."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from taggram.service.settings import Settings
from tests.support.paths import ROOT

# Suffixes a histogram family's samples carry in the text exposition format.
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
# What shutdown budgets allow for the slowest request: a 15-minute file on 2 busy CPU cores.
LONGEST_REQUEST_SECONDS = 90.0
# The environment variables service/settings.py reads.
SETTINGS_ENV = frozenset(f"TAGGRAM_{name.upper()}" for name in Settings.model_fields)


def find_tool(name: str, provider: str) -> str:
    """Path of ``name`` from the virtualenv or PATH, or skip saying which package provides it."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"`{name}` is not installed: it comes from {provider}")
    return found


def run_tool(command: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a checker in the repository root, failing the test with its output if it fails."""
    result = subprocess.run(
        command, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def exported_series_names(exposition: str) -> set[str]:
    """Every series name a scrape of ``exposition`` yields, declared families included.

    A labelled metric that has not been observed yet has no samples, only its ``# TYPE`` line, so
    names are taken from the families too, with the suffixes Prometheus stores them under.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in _HISTOGRAM_SUFFIXES)
        else:
            names.add(family.name)
    return names
