# taggram images. Two final targets share one model repository built once:
#   docker build --target runtime-cpu -t taggram:cpu .   # python slim + onnxruntime
#   docker build --target runtime-gpu -t taggram:gpu .   # CUDA 12 / cuDNN 9 runtime + onnxruntime-gpu
# torch and the model build tools live only in the `builder` stage; the runtime targets get the
# finished ONNX repository (/models) and a virtualenv holding `taggram[cpu]` or `taggram[gpu]`.
# Settings come from TAGGRAM_* environment variables (see docs/deploy.md).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# onnxruntime-gpu wheels on PyPI target CUDA 12 with cuDNN 9; Ubuntu 24.04 ships Python 3.12.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# ---------------------------------------------------------------------------------------------
# The project source, once: every other stage copies it from here, so the COPY list lives in one
# place and .dockerignore keeps model_repository/, .venv/ and data/ out of the build context.
FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY requirements/ /src/requirements/
COPY taggram/ /src/taggram/

# ---------------------------------------------------------------------------------------------
# builder: converts the musicnn checkpoints and exports every model to ONNX (torch only here).
# The musicnn wheel is fetched from PyPI during the build. PIP_EXTRA_INDEX_URL may point at a
# CPU-only torch index to avoid downloading CUDA wheels for a build that never uses them.
FROM ${PYTHON_IMAGE} AS builder
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
WORKDIR /src
COPY --from=source /src/ /src/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install ".[cpu,models]"
RUN /opt/build/bin/taggram build-models --repository /models \
    && test -f /models/.complete

# ---------------------------------------------------------------------------------------------
# GPU runtime: NVIDIA's CUDA + cuDNN runtime base with the distribution's Python.
FROM ${CUDA_IMAGE} AS cuda-python
ENV DEBIAN_FRONTEND=noninteractive
# The CUDA base tracks its Ubuntu release; pinning Python's patch level there only breaks rebuilds.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

FROM cuda-python AS venv-gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=source /src/ /tmp/src/
RUN python3 -m venv /opt/taggram \
    && /opt/taggram/bin/pip install --require-hashes -r /tmp/src/requirements/serve-gpu.lock \
    && /opt/taggram/bin/pip install --no-deps "/tmp/src[gpu]"

FROM cuda-python AS runtime-gpu
RUN groupadd --system --gid 10001 taggram \
    && useradd --system --uid 10001 --gid taggram --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin taggram
COPY --from=venv-gpu /opt/taggram /opt/taggram
COPY --from=builder /models /models
ENV PATH=/opt/taggram/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CUDA_CACHE_PATH=/tmp/cuda-cache \
    TAGGRAM_HOST=0.0.0.0 \
    TAGGRAM_PORT=8000 \
    TAGGRAM_MODEL_REPOSITORY=/models \
    TAGGRAM_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TAGGRAM_PORT', '8000'), timeout=4)"]
CMD ["taggram", "serve"]

# ---------------------------------------------------------------------------------------------
# CPU runtime, the default target (last stage). Each virtualenv is built in its own stage so pip's
# build backend and caches never reach the final image.
FROM ${PYTHON_IMAGE} AS venv-cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=source /src/ /tmp/src/
RUN python -m venv /opt/taggram \
    && /opt/taggram/bin/pip install --require-hashes -r /tmp/src/requirements/serve-cpu.lock \
    && /opt/taggram/bin/pip install --no-deps "/tmp/src[cpu]"

FROM ${PYTHON_IMAGE} AS runtime-cpu
RUN groupadd --system --gid 10001 taggram \
    && useradd --system --uid 10001 --gid taggram --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin taggram
COPY --from=venv-cpu /opt/taggram /opt/taggram
COPY --from=builder /models /models
ENV PATH=/opt/taggram/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TAGGRAM_HOST=0.0.0.0 \
    TAGGRAM_PORT=8000 \
    TAGGRAM_MODEL_REPOSITORY=/models \
    TAGGRAM_PROVIDERS=CPUExecutionProvider
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# Liveness only: /readyz drops to 503 while draining, which must not mark the container unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TAGGRAM_PORT', '8000'), timeout=4)"]
CMD ["taggram", "serve"]

