"""The taggram as a picture: tags by time, like the figures of the musicnn paper.

matplotlib is an optional extra (``pip install 'taggram[plot]'``); :func:`require_matplotlib`
says so plainly when it is missing. The input is a ``POST /v1/tag?taggram=true`` response body,
so the picture is the same whether the tagging ran in-process or through the service.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

INSTALL_HINT = "pip install 'taggram[plot]'"


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise :class:`PlotUnavailableError` with the install command when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise PlotUnavailableError(
            f"plotting needs matplotlib, which is not installed: {INSTALL_HINT}"
        ) from error


def require_format(path: Path) -> None:
    """Check that matplotlib writes pictures in the format ``path``'s suffix names (no suffix:
    matplotlib's default, PNG).

    Raises:
        PlotUnavailableError: matplotlib is not installed.
        ValueError: the suffix names no format matplotlib writes (the message lists them).
    """
    require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    supported = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix.lower().removeprefix(".")
    if suffix and suffix not in supported:
        raise ValueError(
            f"{path}: {suffix!r} is no picture format matplotlib writes; end the name with one of "
            f"{', '.join('.' + name for name in sorted(supported))}"
        )


def require_folder(path: Path) -> None:
    """Check that the folder ``path`` names a picture in exists and may be written in (checked
    before tagging: a missing folder was found only at the write, after each file was tagged).

    Raises:
        ValueError: the folder is missing, is no folder, or is not writable (the message says
            which).
    """
    folder = path.parent  # "." for a bare name
    if not folder.is_dir():
        missing = "is no folder" if folder.exists() else "does not exist"
        raise ValueError(f"{path}: the folder {folder} {missing}; create it first")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"{path}: the folder {folder} is not writable")


def column_edges(starts: np.ndarray, ends: np.ndarray, duration: float) -> np.ndarray:
    """Time edges (seconds, ``[n_patches + 1]``) of each patch's column in the picture.

    Each patch owns the time nearer its centre than its neighbours' centres, so the end-aligned
    last patch and overlapping patches (a ``hop`` below the patch length) are drawn where they
    were heard; the web page draws its heat-map the same way.
    """
    centres = (starts + ends) / 2
    inner = (centres[:-1] + centres[1:]) / 2
    return np.concatenate([[0.0], inner, [max(duration, float(ends[-1]))]])


def plot_taggram(body: dict[str, Any], path: Path, *, rows: int | None = 20, title: str) -> None:
    """Write the taggram of ``body`` (a ``/v1/tag`` response with ``taggram``) to ``path``.

    Rows are tags ordered by clip probability (best at the top), the ``rows`` best or all when
    ``None``; columns are patches on a time axis in seconds; colour is the patch probability
    (viridis, 0 to the largest value shown). The format follows ``path``'s suffix (PNG, SVG,
    PDF...).

    Raises:
        PlotUnavailableError: matplotlib is not installed.
        KeyError: ``body`` has no ``taggram``.
    """
    require_matplotlib()
    from matplotlib.figure import Figure  # pyplot-free: no global state, no display needed

    taggram = body["taggram"]
    column = {tag: i for i, tag in enumerate(taggram["tags"])}
    # body["tags"] is best first; a response cut by top_k or threshold plots only those tags.
    ranked = [item["tag"] for item in body["tags"] if item["tag"] in column]
    shown = ranked[:rows] if rows else ranked
    patches = taggram["patches"]
    matrix = np.array([[patch["values"][column[tag]] for patch in patches] for tag in shown])
    starts = np.array([patch["start_seconds"] for patch in patches])
    ends = np.array([patch["end_seconds"] for patch in patches])
    edges = column_edges(starts, ends, float(body["audio"]["duration_seconds"]))

    figure = Figure(figsize=(max(6.0, min(16.0, 4 + 0.25 * len(patches))), 1.2 + 0.28 * len(shown)))
    axes = figure.subplots()
    mesh = axes.pcolormesh(
        edges, np.arange(len(shown) + 1), matrix, cmap="viridis", vmin=0, shading="flat"
    )
    axes.set_yticks(np.arange(len(shown)) + 0.5, labels=shown)
    axes.invert_yaxis()
    axes.set_xlabel("time (s)")
    axes.set_title(title, fontsize=10)
    figure.colorbar(mesh, ax=axes, label="probability", pad=0.02)
    figure.savefig(path, dpi=150, bbox_inches="tight")
