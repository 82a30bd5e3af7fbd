"""Scripts that print performance figures for docs/performance.md (run with ``python -m``; each
has ``--help``). Two modules are helpers of the others and print nothing on their own:
``raw_inference`` (the GEMM rate and onnxruntime's bare cost, run by ``http_benchmark``) and
``serving`` (a served process, its memory and metrics, for ``load``, ``soak`` and ``memory``)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Real recordings beside the project on development and CI machines (absent in a user's clone);
# TAGGRAM_SHARED points elsewhere, as for the tests (a git worktree's parent has no shared/).
SHARED = Path(os.environ.get("TAGGRAM_SHARED", ROOT.parent / "shared"))
SHARED_AUDIO = SHARED / "audio"
MODEL_REPOSITORY = Path(os.environ.get("TAGGRAM_MODEL_REPOSITORY", ROOT / "model_repository"))
