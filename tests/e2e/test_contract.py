"""The API contract: schemathesis, every check, against a real server with API keys on.

``tests/e2e/schemathesis.toml`` holds the configuration: all operations, no excluded check, at
least 50 examples per operation, a fixed seed, real audio for binary bodies
(``tests/e2e/schemathesis_hooks.py``). A failure prints schemathesis' report, with a ``curl``
line reproducing each problem.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.conftest import SecuredServer
from tests.support.paths import ROOT

CONFIG = Path(__file__).with_name("schemathesis.toml")
# One pass of every phase takes about a minute on 2 busy cores; this bounds a runaway run.
TIMEOUT_SECONDS = 900


def test_schemathesis_finds_nothing(secured_server: SecuredServer) -> None:
    env = {
        **os.environ,
        "TAGGRAM_CONTRACT_KEY": secured_server.admin_key,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        *(sys.executable, "-m", "schemathesis.cli"),
        *("--config-file", str(CONFIG)),
        *("run", f"{secured_server.url}/openapi.json"),
        *("--checks", "all", "--no-color"),
    ]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_SECONDS
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", report)
    assert selected is not None and selected[1] == selected[2], report  # none left out
