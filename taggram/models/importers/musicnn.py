"""Load musicnn 0.1.0's TF1 checkpoints into the torch ports of ``Musicnn`` and ``Vgg``.

TF1 layers are named by creation order (``conv2d_3``, ``batch_normalization_7``, ...); the tables
below follow the order in which the original models.py creates them. Every inference variable
must be used and every torch tensor filled, so a renamed or missing variable fails loudly (the
original silently ran MTT models on random weights when a restore failed).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from taggram.models.architectures.musicnn import Musicnn
from taggram.models.architectures.vgg import Vgg

# Checkpoint variables that only training uses (optimizer state and counters).
TRAINING_ONLY = ("/Adam", "beta1_power", "beta2_power", "global_step")
BN_FIELDS = {
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


def _conv2d(kernel: np.ndarray) -> np.ndarray:
    """TF [height, width, in, out] → torch Conv2d [out, in, height, width]."""
    return kernel.transpose(3, 2, 0, 1)


def _conv1d(kernel: np.ndarray) -> np.ndarray:
    """A TF [width, channels, 1, out] convolution over a [time, channels] map → torch Conv1d."""
    return kernel[:, :, 0, :].transpose(2, 1, 0)


def _dense(kernel: np.ndarray) -> np.ndarray:
    """TF [in, out] → torch Linear [out, in]."""
    return kernel.T


Mapping = dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]


def _layer(tf_name: str, torch_name: str, kernel: Callable[[np.ndarray], np.ndarray]) -> Mapping:
    return {
        f"{tf_name}/kernel": (f"{torch_name}.weight", kernel),
        f"{tf_name}/bias": (f"{torch_name}.bias", np.asarray),
    }


def _bn(index: int, torch_name: str) -> Mapping:
    tf_name = "batch_normalization" + (f"_{index}" if index else "")
    return {f"{tf_name}/{tf}": (f"{torch_name}.{pt}", np.asarray) for tf, pt in BN_FIELDS.items()}


def _tf_name(layer: str, index: int) -> str:
    return layer + (f"_{index}" if index else "")


def musicnn_mapping() -> Mapping:
    """TF variable → (torch state-dict key, conversion) for ``Musicnn``."""
    mapping = _bn(0, "input_bn")
    blocks = [f"timbral.{i}" for i in range(2)] + [f"temporal.{i}" for i in range(3)]
    blocks += [f"midend.{i}" for i in range(3)]
    for index, block in enumerate(blocks):
        kernel = _conv1d if block.startswith("midend") else _conv2d
        mapping |= _layer(_tf_name("conv2d", index), f"{block}.conv", kernel)
        mapping |= _bn(index + 1, f"{block}.bn")
    mapping |= _bn(len(blocks) + 1, "pool_bn")
    mapping |= _layer("dense", "penultimate", _dense)
    mapping |= _bn(len(blocks) + 2, "penultimate_bn")
    mapping |= _layer("dense_1", "output", _dense)
    return mapping


def vgg_mapping(layers: int = 5) -> Mapping:
    """TF variable → (torch state-dict key, conversion) for ``Vgg``."""
    mapping = _bn(0, "input_bn")
    for i in range(layers):
        mapping |= _layer(f"{i + 1}CNN", f"convs.{i}", _conv2d)
        mapping |= _bn(i + 1, f"bns.{i}")
    mapping |= _layer("dense", "output", _dense)
    return mapping


def inference_variables(names: list[str]) -> list[str]:
    """The checkpoint variables that inference needs (drops optimizer state)."""
    return sorted(n for n in names if not any(marker in n for marker in TRAINING_ONLY))


def load_network(network: nn.Module, variables: dict[str, np.ndarray]) -> None:
    """Copy checkpoint ``variables`` into ``network`` (a ``Musicnn`` or ``Vgg``), strictly."""
    if isinstance(network, Musicnn):
        mapping = musicnn_mapping()
    elif isinstance(network, Vgg):
        mapping = vgg_mapping(len(network.convs))
    else:
        raise TypeError(f"no musicnn checkpoint mapping for {type(network).__name__}")
    wanted = set(inference_variables(list(variables)))
    unused, missing = sorted(wanted - set(mapping)), sorted(set(mapping) - wanted)
    if unused or missing:
        raise ValueError(f"checkpoint mismatch: unused {unused}, missing {missing}")
    state = network.state_dict()
    filled: set[str] = set()
    for tf_name, (key, convert) in mapping.items():
        value = torch.from_numpy(np.ascontiguousarray(convert(variables[tf_name])))
        if key not in state or state[key].shape != value.shape:
            expected = tuple(state[key].shape) if key in state else "absent"
            raise ValueError(f"{tf_name} {tuple(value.shape)} does not fit {key} ({expected})")
        state[key] = value
        filled.add(key)
    unfilled = sorted(k for k in state if k not in filled and not k.endswith("num_batches_tracked"))
    if unfilled:
        raise ValueError(f"torch tensors not filled from the checkpoint: {unfilled}")
    network.load_state_dict(state, strict=True)
    network.eval()
