"""Build-time commands (``build-models``, ``train``, ...). torch is imported inside each command."""

from __future__ import annotations

import typer

app = typer.Typer()
