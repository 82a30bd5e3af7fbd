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
    float16: bool = typer.Option(
        False, "--float16/--no-float16", help="also build the _fp16 variants (GPU repositories)"
    ),
) -> None:
    """Convert the four musicnn taggers to ONNX with their int8 copies, copy in the trained
    models, and write the feature extractors of custom taggers (mfcc, random_*)."""
    from taggram.models.build import build_repository
    from taggram.models.wheel import MusicnnWheel, fetch_wheel, verify_wheel

    started = time.perf_counter()
    if wheel is None:
        wheel = fetch_wheel(cache_dir)
    else:
        verify_wheel(wheel)
    folders = build_repository(repository, MusicnnWheel(wheel), float16=float16)
    for folder in folders:
        typer.echo(f"built {folder}")
    typer.echo(f"model repository {repository} complete in {time.perf_counter() - started:.1f} s")


@app.command("calibrate")
def calibrate(
    data_dir: Path = typer.Option(
        Path("data"), help="folder written by `taggram prepare-data` (training packages only)"
    ),
    repository: Path = typer.Option(REPOSITORY, help="built model repository (float32 models)"),
    output: Path | None = typer.Option(
        None, help="where the JSON files go (default: taggram/models/quantization, committed)"
    ),
    models: str = typer.Option(
        "MTT_musicnn,MTT_vgg,MSD_musicnn,MSD_vgg", help="comma-separated float32 models"
    ),
    patches_per_file: int = typer.Option(8, min=1, help="patches cut per file, evenly spaced"),
    validation_fraction: float = typer.Option(
        0.25, min=0.05, max=0.9, help="share of the manifest's folders used to choose settings"
    ),
) -> None:
    """Calibrate int8 quantization on training-package audio; write what `build-models` uses."""
    import logging

    from taggram.models.quantize import QUANTIZATION
    from taggram.models.quantize import calibrate as run_calibration

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("root").setLevel(logging.INFO)
    started = time.perf_counter()
    written = run_calibration(
        repository,
        data_dir,
        output or QUANTIZATION,
        [name for name in models.split(",") if name],
        patches_per_file=patches_per_file,
        validation_fraction=validation_fraction,
    )
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"calibrated {len(written)} models in {time.perf_counter() - started:.1f} s")
