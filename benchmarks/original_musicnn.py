"""Tag files with the original musicnn 0.1.0 code, in a virtual environment of its own.

The benchmark compares taggram with what people ran before: Jordi Pons' unchanged
``musicnn.extractor.extractor``, which rebuilds the TensorFlow graph and restores the checkpoint
on every call and runs the network one 3 s patch at a time. Its dependencies (TensorFlow,
NumPy 1.26) cannot share taggram's environment, so :func:`ensure_venv` builds a separate one with
the recipe from ``../shared/audio/reference/README.md`` and :func:`run_original` runs *this file*
inside it as a worker. The worker half imports only the standard library at module level, because
taggram is not installed in that environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_VENV = Path(__file__).resolve().parents[1] / ".cache" / "musicnn-original-venv"
# Versions the reference outputs were produced with; tf-keras and musicnn go in without their
# dependencies (tf-keras would pull the full `tensorflow`, musicnn pins a NumPy with no 3.11 wheel).
REQUIREMENTS = [
    "tensorflow-cpu==2.21.0",
    "numpy==1.26.4",
    "ml_dtypes==0.5.4",
    "keras==3.15.1",
    "librosa==0.11.0",
    "soundfile==0.14.0",
    "soxr==1.1.0",
]
NO_DEPS_REQUIREMENTS = ["tf-keras==2.21.0", "musicnn==0.1.0"]
# The published models the wheel ships (and taggram's repository converts).
ORIGINAL_MODELS = frozenset({"MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"})
RECIPE_FILE = "taggram-recipe.json"


@dataclass(frozen=True)
class OriginalFileTiming:
    """One ``extractor`` call: wall time end to end and the part spent in the network.

    ``first_patch_s`` is the first forward pass alone: TensorFlow optimises the graph on a new
    session's first run, so it costs far more than the steady-state passes after it.
    """

    file: str
    total_s: float
    cpu_s: float  # process CPU time, every thread: what the call cost the machine
    network_s: float
    first_patch_s: float
    patches: int


@dataclass(frozen=True)
class OriginalRun:
    """One worker process: one-off costs (imports, the first call's JIT compiling), then files."""

    import_s: float
    first_call_s: float
    files: list[OriginalFileTiming]


def ensure_venv(venv: Path = DEFAULT_VENV, python: str = "python3.11") -> Path:
    """Create the environment unless one built from the same recipe exists; return its python."""
    interpreter = venv / "bin" / "python"
    recipe = {"python": python, "requirements": REQUIREMENTS, "no_deps": NO_DEPS_REQUIREMENTS}
    marker = venv / RECIPE_FILE
    if marker.is_file() and json.loads(marker.read_text()) == recipe and interpreter.exists():
        return interpreter
    subprocess.run([python, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    subprocess.run([*pip, "--no-deps", *NO_DEPS_REQUIREMENTS], check=True)
    marker.write_text(json.dumps(recipe, indent=1) + "\n")
    return interpreter


def run_original(
    interpreter: Path, files: list[Path], model: str = "MTT_musicnn", timeout_s: float = 600.0
) -> OriginalRun:
    """Tag ``files`` sequentially in one worker process, as a user of the original would."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [str(interpreter), str(Path(__file__).resolve()), "--model", model, *map(str, files)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"original musicnn failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout)
    return OriginalRun(
        import_s=result["import_s"],
        first_call_s=result["first_call_s"],
        files=[OriginalFileTiming(**item) for item in result["files"]],
    )


def _worker(model: str, files: list[str]) -> dict[str, object]:
    """Inside the original's environment: time ``extractor`` per file, and its ``Session.run``s.

    The network's forward passes are the ``Session.run`` calls feeding two placeholders (the
    log-mel patch and ``is_training``); the initializer and the checkpoint restore feed fewer.
    A first, untimed call on the first file pays the one-off costs (librosa's numba compiling,
    TensorFlow's lazy initialisation), which a long-running user process would pay only once.
    """
    os.environ["TF_USE_LEGACY_KERAS"] = "1"  # before TensorFlow is imported
    start = time.perf_counter()
    import tensorflow as tf
    from musicnn.extractor import extractor

    import_s = time.perf_counter() - start
    network = {"seconds": 0.0, "first": 0.0}
    session_run = tf.compat.v1.Session.run

    def timed_run(self, fetches, feed_dict=None, *args, **kwargs):
        if not feed_dict or len(feed_dict) != 2:
            return session_run(self, fetches, feed_dict, *args, **kwargs)
        begin = time.perf_counter()
        try:
            return session_run(self, fetches, feed_dict, *args, **kwargs)
        finally:
            elapsed = time.perf_counter() - begin
            network["seconds"] += elapsed
            network["first"] = network["first"] or elapsed

    tf.compat.v1.Session.run = timed_run
    timings = []
    for path in [files[0], *files]:
        network.update(seconds=0.0, first=0.0)
        begin, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(sys.stderr):  # extractor prints progress
            taggram, _tags, _features = extractor(path, model=model)
        total = time.perf_counter() - begin
        cpu = time.process_time() - cpu
        timings.append(
            {
                "file": path,
                "total_s": total,
                "cpu_s": cpu,
                "network_s": network["seconds"],
                "first_patch_s": network["first"],
                "patches": int(taggram.shape[0]),
            }
        )
    return {"import_s": import_s, "first_call_s": timings[0]["total_s"], "files": timings[1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description="Time musicnn.extractor.extractor per file.")
    parser.add_argument("--model", default="MTT_musicnn")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    print(json.dumps(_worker(args.model, args.files)))


if __name__ == "__main__":
    main()
