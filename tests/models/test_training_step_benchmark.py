"""``python -m benchmarks.training_step``: a bad device or batch size is a usage error (exit status
2, naming the option), never a traceback from torch; a good one prints a row per setting.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from benchmarks.training_step import app


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--device", "tpu"], "--device must be cpu or cuda, got 'tpu'"),
        (["--batch", "1"], "'--batch'"),  # batch norm refuses one patch in training
        (["--batch", "4", "--batch", "-3"], "'--batch'"),
    ],
)
def test_a_bad_option_is_a_usage_error(options: list[str], expected: str) -> None:
    result = CliRunner().invoke(app, ["--steps", "1", "--threads", "1", *options])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    assert expected in " ".join(result.output.replace("│", " ").split())


def test_one_step_on_the_cpu_prints_a_row_per_precision() -> None:
    options = ["--steps", "1", "--threads", "1", "--device", "cpu", "--batch", "2"]
    result = CliRunner().invoke(app, options)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("| cpu |")]
    assert [row.split("|")[2].strip() for row in rows] == ["float32", "bfloat16"]
