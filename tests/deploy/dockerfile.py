"""The top-level Dockerfile as stages of instructions, read with dockerfile-parse.

dockerfile-parse gives instructions with their line numbers; stage boundaries, ``--from``
references and the global ARG defaults used in ``FROM`` lines are worked out here.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from dockerfile_parse import DockerfileParser

from tests.support.paths import ROOT

DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str
    line: int

    def flags(self) -> dict[str, str]:
        """``--name=value`` options before the arguments (``COPY --from=builder ...``)."""
        flags: dict[str, str] = {}
        for token in self.value.split():
            if not token.startswith("--"):
                break
            key, _, value = token[2:].partition("=")
            flags[key] = value
        return flags

    def arguments(self) -> list[str]:
        """Arguments after the flags, from either the JSON (exec) or the shell form."""
        text = re.sub(r"^(\s*--\S+\s+)*", "", self.value)
        keyword, _, rest = text.partition(" ")
        if keyword == "CMD" and rest.lstrip().startswith("["):  # HEALTHCHECK's exec form
            return [keyword, *json.loads(rest)]
        return list(json.loads(text)) if text.startswith("[") else shlex.split(text)


@dataclass
class Stage:
    name: str
    base: str
    index: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@cache
def stages(path: Path = DOCKERFILE) -> dict[str, Stage]:
    """Stages by name (unnamed ones by index), in file order, with global ARGs substituted."""
    parser = DockerfileParser(path=str(path))
    global_args: dict[str, str] = {}
    result: dict[str, Stage] = {}
    current: Stage | None = None
    for item in parser.structure:
        keyword, value = item["instruction"], item["value"]
        if keyword == "COMMENT":
            continue
        if keyword == "FROM":
            tokens = [t for t in value.split() if not t.startswith("--")]
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m[1] or m[2]], tokens[0])
            name = tokens[2] if len(tokens) >= 3 and tokens[1].lower() == "as" else str(len(result))
            current = result[name] = Stage(name=name, base=base, index=len(result))
        elif current is None and keyword == "ARG":
            key, _, default = value.partition("=")
            global_args[key.strip()] = default.strip().strip('"')
        elif current is not None:
            current.instructions.append(Instruction(keyword, value, item["startline"] + 1))
    return result


def ancestry(name: str) -> list[Stage]:
    """The stage and the stages it is built ``FROM``, nearest first."""
    chain = [stages()[name]]
    while chain[-1].base in stages():
        chain.append(stages()[chain[-1].base])
    return chain


def target_instructions(name: str, keyword: str) -> list[Instruction]:
    """Instructions of one kind that take effect in a target, in build order."""
    return [i for stage in reversed(ancestry(name)) for i in stage.all(keyword)]


def env(name: str) -> dict[str, str]:
    """The environment a target's containers start with (``ENV K=V ...`` lines, in order)."""
    result: dict[str, str] = {}
    for instruction in target_instructions(name, "ENV"):
        for token in shlex.split(instruction.value):
            key, _, value = token.partition("=")
            result[key] = value
    return result


def user_id(name: str) -> int:
    """The numeric uid a target runs as (its last ``USER``, which must be numeric)."""
    return int(target_instructions(name, "USER")[-1].value.split(":")[0])
