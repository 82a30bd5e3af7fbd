"""Build-time commands (``build-models``, ``train``, ...). torch is imported inside each command."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from taggram.repository import DEFAULT_REPOSITORY

app = typer.Typer()

REPOSITORY = Path(os.environ.get("TAGGRAM_MODEL_REPOSITORY", DEFAULT_REPOSITORY))


@app.command("build-models")
def build_models(
    repository: Path = typer.Option(REPOSITORY, help="model repository folder to build"),
    wheel: Path | None = typer.Option(
        None, help="local musicnn-0.1.0 wheel (default: pip download into the cache directory)"
    ),
    cache_dir: Path | None = typer.Option(
        None,
        help="where downloads are kept (default: TAGGRAM_CACHE_DIR, else the user cache directory)",
    ),
) -> None:
    """Convert the four musicnn taggers to ONNX, copy in committed trained models."""
    from taggram.models.build import build_repository
    from taggram.models.wheel import MusicnnWheel, fetch_wheel, verify_wheel

    started = time.perf_counter()
    if wheel is None:
        wheel = fetch_wheel(cache_dir)
    else:
        verify_wheel(wheel)
    folders = build_repository(repository, MusicnnWheel(wheel))
    for folder in folders:
        typer.echo(f"built {folder}")
    typer.echo(f"model repository {repository} complete in {time.perf_counter() - started:.1f} s")
