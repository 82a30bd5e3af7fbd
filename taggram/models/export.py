"""Export any architecture module to ONNX under the repository's I/O contract, and write it there.

Contract (``taggram.repository``): one input ``waveform`` [batch, patch.samples] float32, outputs
``probabilities`` (sigmoid of the module's ``logits``; absent for a feature extractor, whose
``probabilities_output`` is None) then the embeddings that ``metadata.embedding_outputs`` names,
in that order, all with a dynamic batch axis.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from taggram.repository import ModelMetadata, write_model

OPSET = 18


class ContractModule(nn.Module):
    """Wraps a module returning a dict into the flat output tuple of the ONNX contract."""

    def __init__(self, module: nn.Module, embeddings: list[str], tags: bool = True) -> None:
        super().__init__()
        self.module = module
        self.embeddings = embeddings
        self.tags = tags

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``[batch, samples]`` waveform -> (probabilities ``[batch, tags]`` after the sigmoid, then
        each embedding named in ``embeddings``), the output order of the repository contract.
        """
        outputs = self.module(waveform)
        embeddings = tuple(outputs[name] for name in self.embeddings)
        return (torch.sigmoid(outputs["logits"]), *embeddings) if self.tags else embeddings


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (batch-norm moving statistics excluded, as in the papers)."""
    return sum(p.numel() for p in module.parameters())


def count_flops(module: nn.Module, samples: int) -> int:
    """Floating-point operations (multiply and add counted apart) for one patch at batch 1."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(torch.zeros(1, samples))
    return int(counter.get_total_flops())


def strip_provenance(model: onnx.ModelProto) -> None:
    """Drop the exporter's per-node debug metadata (stack traces with absolute source paths and
    line numbers), so the ONNX bytes depend only on the weights and the graph, not the checkout."""
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        del value.metadata_props[:]
    del model.graph.metadata_props[:]
    del model.metadata_props[:]


def to_onnx(module: nn.Module, metadata: ModelMetadata) -> bytes:
    """Trace ``module`` with the dynamo exporter into a checked ONNX model (bytes)."""
    tags = metadata.probabilities_output
    wrapper = ContractModule(module, metadata.embedding_outputs, tags is not None).eval()
    example = torch.zeros(2, metadata.patch.samples)
    batch = torch.export.Dim("batch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter about optional torchvision ops
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            wrapper,
            (example,),
            input_names=[metadata.input_name],
            output_names=[*([tags] if tags else []), *metadata.embedding_outputs],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    assert program is not None
    model = program.model_proto
    strip_provenance(model)
    model.doc_string = metadata.description
    onnx.checker.check_model(model, full_check=True)
    return bytes(model.SerializeToString())


def check_contract(onnx_bytes: bytes, metadata: ModelMetadata) -> None:
    """Run the model in onnxruntime at two batch sizes; fail on names or shapes off the metadata."""
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    expected = [spec.name for spec in metadata.outputs]
    if names != expected or [i.name for i in session.get_inputs()] != [metadata.input_name]:
        raise ValueError(f"ONNX outputs {names} differ from metadata outputs {expected}")
    for batch in (1, 3):
        waveform = np.zeros((batch, metadata.patch.samples), dtype=np.float32)
        results = session.run(None, {metadata.input_name: waveform})
        for spec, value in zip(metadata.outputs, results, strict=True):
            shape = [batch if dim == "batch" else dim for dim in spec.shape]
            if list(value.shape) != shape:
                raise ValueError(f"{spec.name}: shape {value.shape}, metadata says {spec.shape}")


def export_to_repository(module: nn.Module, metadata: ModelMetadata, root: Path) -> Path:
    """Export ``module`` (eval mode), fill parameter and FLOP counts if unset, write the model."""
    module.eval()
    update: dict[str, object] = {}
    if metadata.parameters is None:
        update["parameters"] = count_parameters(module)
    if metadata.flops_per_patch is None:
        update["flops_per_patch"] = count_flops(module, metadata.patch.samples)
    metadata = metadata.model_copy(update=update)
    onnx_bytes = to_onnx(module, metadata)
    check_contract(onnx_bytes, metadata)
    return write_model(root, metadata, onnx_bytes)
