"""ONNX Runtime sessions: one per model, on the best installed provider, warmed up before use.

``onnxruntime`` (CPU wheel) and ``onnxruntime-gpu`` (pip extra ``gpu``) install the same module;
the CUDA provider is used when that build and a GPU are present, CPU otherwise.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import onnxruntime as ort

from taggram.repository import ModelEntry, ModelMetadata
from taggram.service.settings import SettingsError

log = logging.getLogger(__name__)

_PREFERRED = ("CUDAExecutionProvider", "CPUExecutionProvider")


def _find_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (musl, macOS)."""
    try:
        trim: Callable[[int], int] = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


# What the arena gives back lands in the C heap, split across per-thread malloc arenas; without a
# trim, free pages in the middle of those heaps stay resident.
_MALLOC_TRIM = _find_malloc_trim()


def choose_providers(requested: list[str]) -> list[str]:
    """The requested providers, or CUDA-then-CPU among those installed.

    Raises:
        SettingsError: a requested provider is not installed.
    """
    available = ort.get_available_providers()
    if requested:
        missing = [name for name in requested if name not in available]
        if missing:
            raise SettingsError(
                f"providers {missing} are not installed (TAGGRAM_PROVIDERS); available: {available}"
            )
        return requested
    return [name for name in _PREFERRED if name in available]


def provider_label(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda``: the short name used in metric labels and responses."""
    return provider.removesuffix("ExecutionProvider").lower()


class ModelSession:
    """One model's inference session; :meth:`run` is blocking and meant for a worker thread."""

    def __init__(
        self,
        entry: ModelEntry,
        providers: list[str],
        intra_op_threads: int,
        inter_op_threads: int,
        io_binding: IOBindingMode = "auto",
        max_batch_size: int = 16,
        gpu_max_batch_size: int | None = None,
        release_memory_when_idle: bool = True,
    ) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Decoding threads share the cores: idle inference threads should sleep, not spin.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # ONNX Runtime's CPU arena keeps a model's peak working memory (hundreds of MB for a
        # musicnn batch of 16) and never gives it back: the five default models held 3-4 GB after
        # warm-up. Without the arena every batch page-faults its tensors afresh (70 % more CPU
        # per patch). So the arena stays, and is shrunk (its free chunks returned) at the end of
        # warm-up and once a model has been idle for a moment (the batcher calls
        # release_memory): fast under load, small when idle (benchmarks/memory.py,
        # docs/deploy.md "Sizing"). The C heap is trimmed then too.
        self._release = ort.RunOptions()
        self._release.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.release_memory_when_idle = release_memory_when_idle
        self.metadata: ModelMetadata = entry.metadata
        self._session = ort.InferenceSession(
            str(entry.onnx_path), sess_options=options, providers=providers
        )
        self.provider = provider_label(self._session.get_providers()[0])
        self.output_names: list[str] = [output.name for output in self._session.get_outputs()]
        # The batch the batcher forms: the GPU setting when the session really runs on one.
        self.max_batch_size = max_batch_for(
            self.provider, max_batch_size, gpu_max_batch_size or max_batch_size
        )
        self._bound = bound_runner(self._session, self.provider, io_binding, self.max_batch_size)

    @property
    def name(self) -> str:
        """The model's name in the repository."""
        return self.metadata.name

    @property
    def binds_io(self) -> bool:
        """Whether batches run through I/O binding (:class:`BoundRunner`): one at a time, as
        they share its host buffers."""
        return self._bound is not None

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for a ``[batch, samples]`` float32 batch, keyed by output name."""
        if self._bound is not None and len(batch) <= self._bound.max_batch_size:
            return self._bound.run(batch)
        outputs = self._session.run(None, {self.metadata.input_name: batch})
        return dict(zip(self.output_names, outputs, strict=True))

    def release_memory(self) -> None:
        """Give the arena's free memory back (the model is idle): a one-patch run that shrinks
        the arena at its end, then a trim of the C heap. Blocking, for the worker thread; a
        no-op when the session was made with ``release_memory_when_idle=False``."""
        if not self.release_memory_when_idle:
            return
        batch = np.zeros((1, self.metadata.patch.samples), np.float32)
        self._session.run(None, {self.metadata.input_name: batch}, self._release)
        if _MALLOC_TRIM is not None:
            _MALLOC_TRIM(0)

    def warm_up(self, batch_sizes: list[int]) -> float:
        """Run each batch shape once so the first requests find the graph and kernels ready, then
        give the working memory back (:meth:`release_memory`).

        Returns the measured seconds per patch of the largest batch, run a second time (the
        batcher's first cost estimate for admission).
        """
        for size in batch_sizes:
            self.run(np.zeros((size, self.metadata.patch.samples), np.float32))
            # Between runs too: the arena would otherwise keep one run's chunks while the next
            # allocates its memory pattern, and start-up would peak far above serving.
            self.release_memory()
        largest = max(batch_sizes)
        started = time.perf_counter()
        self.run(np.zeros((largest, self.metadata.patch.samples), np.float32))
        seconds_per_patch = (time.perf_counter() - started) / largest
        self.release_memory()
        log.info(
            "warmed up %s on %s for batch sizes %s: %.1f ms per patch",
            self.name,
            self.provider,
            batch_sizes,
            seconds_per_patch * 1000,
        )
        return seconds_per_patch


# ---------------------------------------------------------------------------------------------
# The GPU path: I/O binding through reusable page-locked host buffers. Kept apart from the
# session options above: it only changes how a batch travels to the device and back.

IOBindingMode = Literal["auto", "on", "off"]


def uses_io_binding(provider: str, mode: IOBindingMode) -> bool:
    """``auto`` binds on an accelerator (anything but ``cpu``); ``on``/``off`` force it."""
    return mode == "on" or (mode == "auto" and provider != "cpu")


def max_batch_for(provider: str, cpu_batch: int, gpu_batch: int) -> int:
    """The batch size the batcher forms for a session on ``provider`` (short label)."""
    return cpu_batch if provider == "cpu" else gpu_batch


class HostBuffer:
    """A float32 host array in memory the accelerator's provider allocates as page-locked
    (``HOST_ACCESSIBLE``: CUDA pinned memory) when it can, so host-device copies are direct DMA
    and can overlap; ordinary memory otherwise (the CPU provider, or an older runtime).
    """

    def __init__(self, shape: tuple[int, ...], ep_name: str) -> None:
        self.pinned = False
        self._value: ort.OrtValue | None = None
        info = _host_accessible_memory(ep_name)
        if info is not None:
            self._value = ort.OrtValue.ortvalue_from_shape_and_type(
                list(shape), np.float32, memory_info=info
            )
            count = int(np.prod(shape))
            raw = (ctypes.c_float * count).from_address(self._value.data_ptr())
            self.array = np.ctypeslib.as_array(raw).reshape(shape)
            self.pinned = True
        else:
            self.array = np.zeros(shape, np.float32)

    @property
    def address(self) -> int:
        """Address of the buffer's first byte (what I/O binding is given)."""
        return int(self.array.ctypes.data)


def _host_accessible_memory(ep_name: str) -> ort.OrtMemoryInfo | None:
    """The provider's page-locked host memory, where this onnxruntime build can allocate it."""
    get_devices = getattr(ort, "get_ep_devices", None)
    if get_devices is None:
        return None
    for device in get_devices():
        if device.ep_name == ep_name:
            info: ort.OrtMemoryInfo | None = device.memory_info(
                ort.OrtDeviceMemoryType.HOST_ACCESSIBLE
            )
            if info is not None:
                return info
    return None


class BoundRunner:
    """Runs ``[n, samples]`` float32 batches (``n <= max_batch_size``) through I/O binding.

    The batch is copied once into a reusable host input buffer; ONNX Runtime copies it to the
    device and writes every output straight into reusable host output buffers (no per-batch
    allocation on either side); the rows are copied out before the buffers are reused.
    Outputs must be ``[batch, ...]`` float32 with fixed trailing dimensions (the repository
    contract). One batch at a time: the batcher runs a model's batches sequentially.
    """

    def __init__(self, session: ort.InferenceSession, max_batch_size: int) -> None:
        self._session = session
        self.max_batch_size = max_batch_size
        ep_name = session.get_providers()[0]
        source = session.get_inputs()[0]
        self._input_name = source.name
        self._input = HostBuffer((max_batch_size, *_fixed(source.shape)), ep_name)
        self._outputs = {
            output.name: HostBuffer((max_batch_size, *_fixed(output.shape)), ep_name)
            for output in session.get_outputs()
        }
        self.pinned = self._input.pinned

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for ``batch`` (``[n, samples]`` float32, ``n <= max_batch_size``), keyed
        by output name; the rows are copies, safe after the next run.
        """
        rows = len(batch)
        self._input.array[:rows] = batch
        binding = self._session.io_binding()
        binding.bind_input(
            self._input_name,
            "cpu",
            0,
            np.float32,
            [rows, *self._input.array.shape[1:]],
            self._input.address,
        )
        for name, buffer in self._outputs.items():
            shape = [rows, *buffer.array.shape[1:]]
            binding.bind_output(name, "cpu", 0, np.float32, shape, buffer.address)
        self._session.run_with_iobinding(binding)
        return {name: buffer.array[:rows].copy() for name, buffer in self._outputs.items()}


def _fixed(shape: list[int | str | None]) -> tuple[int, ...]:
    """The trailing (non-batch) dimensions, which the repository contract makes fixed."""
    dims = shape[1:]
    if not all(isinstance(dim, int) for dim in dims):
        raise ValueError(f"I/O binding needs fixed trailing dimensions, got {shape}")
    return tuple(int(dim) for dim in dims)  # type: ignore[arg-type]


def bound_runner(
    session: ort.InferenceSession, provider: str, mode: IOBindingMode, max_batch_size: int
) -> BoundRunner | None:
    """A :class:`BoundRunner` when ``mode`` asks for I/O binding on ``provider``, else None."""
    if not uses_io_binding(provider, mode):
        return None
    runner = BoundRunner(session, max_batch_size)
    log.info(
        "I/O binding on %s, batch up to %d, %s host buffers",
        provider,
        max_batch_size,
        "page-locked" if runner.pinned else "ordinary",
    )
    return runner
