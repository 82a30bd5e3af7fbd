"""The hash-checked serving locks (requirements/*.lock) satisfy what pyproject.toml asks for."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.paths import ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s\\;]+)", re.MULTILINE)


def _requirements(extra: str) -> list[Requirement]:
    """The base dependencies plus ``extra``, following self-references such as taggram[server]."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pending = [Requirement(r) for r in project["optional-dependencies"][extra]]
    found = [Requirement(r) for r in project["dependencies"]]
    while pending:
        requirement = pending.pop()
        if requirement.name == project["name"]:
            pending += [
                Requirement(r)
                for e in requirement.extras
                for r in project["optional-dependencies"][e]
            ]
        else:
            found.append(requirement)
    return found


@pytest.mark.parametrize("extra", ["cpu", "gpu"])
def test_lock_pins_every_serving_requirement_within_its_range(extra: str) -> None:
    text = (ROOT / "requirements" / f"serve-{extra}.lock").read_text()
    pins = {canonicalize_name(name): Version(version) for name, version in PIN.findall(text)}
    assert text.count("--hash=sha256:") >= len(pins) > 0
    for requirement in _requirements(extra):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in serve-{extra}.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"serve-{extra}.lock pins {name}=={pins[name]}, outside {requirement.specifier}: "
            "run `make lock`"
        )
    assert "torch" not in pins
