"""Service-side commands: ``taggram serve``."""

from __future__ import annotations

import typer

app = typer.Typer()
