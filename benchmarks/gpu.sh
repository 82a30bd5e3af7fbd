#!/usr/bin/env bash
# GPU benchmark: on a machine with an NVIDIA GPU, check that ONNX Runtime really runs the models
# on CUDA, then print network-only throughput at batch 1-256 (I/O binding, page-locked buffers),
# end-to-end audio seconds per second through `taggram serve`, and whether decoding or inference
# bounds it. Prints Markdown tables for docs/performance.md ("GPU").
#
#   benchmarks/gpu.sh                      # float32 and float16 MTT_musicnn, ../shared/audio
#   MODELS="MTT_musicnn MTT_vgg" CONCURRENCY=32 benchmarks/gpu.sh
#   TRACKS_FROM=data/manifest.csv benchmarks/gpu.sh   # four long training-package tracks
#
# Needs the `gpu` extra in the environment (onnxruntime-gpu instead of onnxruntime); builds a GPU
# model repository (float32, int8 and the _fp16 variants) into $REPOSITORY unless one is there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
REPOSITORY=${REPOSITORY:-.cache/gpu-model-repository}
MODELS=${MODELS:-MTT_musicnn MTT_musicnn_fp16}
BATCHES=${BATCHES:-1 4 16 64 256}
CONCURRENCY=${CONCURRENCY:-16}
GPU_BATCH=${GPU_BATCH:-64}

command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this script needs an NVIDIA GPU" >&2; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PYTHON" - <<'PY' || { echo "install the gpu extra: pip install -e '.[gpu,models]'" >&2; exit 2; }
import onnxruntime
providers = onnxruntime.get_available_providers()
print("onnxruntime", onnxruntime.__version__, providers)
raise SystemExit(0 if "CUDAExecutionProvider" in providers else 1)
PY

if [[ ! -f "$REPOSITORY/.complete" ]]; then
  "$PYTHON" -m taggram build-models --repository "$REPOSITORY" --float16
fi

args=(--repository "$REPOSITORY" --concurrency "$CONCURRENCY" --gpu-batch "$GPU_BATCH")
for model in $MODELS; do args+=(--model "$model"); done
for batch in $BATCHES; do args+=(--batches "$batch"); done
if [[ -n "${TRACKS_FROM:-}" ]]; then args+=(--tracks-from "$TRACKS_FROM"); fi
exec "$PYTHON" -m benchmarks.gpu_benchmark "${args[@]}"
