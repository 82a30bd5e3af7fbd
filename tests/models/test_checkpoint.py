"""The tensor-bundle reader on the real musicnn checkpoints, and on corrupted copies of them."""

from __future__ import annotations

import numpy as np
import pytest

from taggram.models.checkpoint import CheckpointError, read_checkpoint, read_index, read_tensor
from taggram.models.importers.musicnn import inference_variables
from taggram.models.wheel import MusicnnWheel

# Facts of the published checkpoints (reference README: variables restored by TF, trainable
# parameters of each graph).
INFERENCE_VARIABLES = {"musicnn": 64, "vgg": 36}
TRAINABLE_PARAMETERS = {"musicnn": 787_159, "vgg": 605_748}
DATA = ".data-00000-of-00001"


@pytest.mark.parametrize("model", ["MTT_musicnn", "MSD_musicnn", "MTT_vgg", "MSD_vgg"])
def test_index_lists_every_variable_with_dtype_and_shape(wheel: MusicnnWheel, model: str) -> None:
    entries = read_index(wheel.read(f"{model}/.index"))
    architecture = model.split("_")[1]
    names = inference_variables(list(entries))
    assert len(names) == INFERENCE_VARIABLES[architecture]
    # Every trainable variable has Adam's two slots beside it.
    trainable = [n for n in names if not n.split("/")[-1].startswith("moving_")]
    assert all(f"{n}/Adam" in entries and f"{n}/Adam_1" in entries for n in trainable)
    assert (
        sum(int(np.prod(entries[n].shape)) for n in trainable) == TRAINABLE_PARAMETERS[architecture]
    )
    assert {entries[n].dtype for n in names} == {np.dtype("<f4")}
    if architecture == "musicnn":
        # int(0.4 * 96) mel bands by int(1.6 * 128) filters; 753 pooled channels x (max, mean).
        assert entries["conv2d/kernel"].shape == (7, 38, 1, 204)
        assert entries["batch_normalization_9/gamma"].shape == (1506,)
    else:
        assert entries["2CNN/kernel"].shape == (3, 3, 128, 128)
        assert entries["dense/kernel"].shape == (256, 50)


def test_tensors_have_the_declared_shape_and_finite_values(wheel: MusicnnWheel) -> None:
    index, data = wheel.read("MTT_vgg/.index"), wheel.read(f"MTT_vgg/{DATA}")
    entries = read_index(index)
    tensors = read_checkpoint(index, data, inference_variables(list(entries)))
    for name, tensor in tensors.items():
        assert tensor.shape == entries[name].shape
        assert np.isfinite(tensor).all(), name
    assert (tensors["batch_normalization_1/moving_variance"] >= 0).all()


def _flip(buffer: bytes, position: int) -> bytes:
    return buffer[:position] + bytes([buffer[position] ^ 0xFF]) + buffer[position + 1 :]


def test_rejects_corrupted_index(wheel: MusicnnWheel) -> None:
    index = wheel.read("MTT_vgg/.index")
    with pytest.raises(CheckpointError, match="crc32c"):
        read_index(_flip(index, 100))  # inside the first data block
    with pytest.raises(CheckpointError, match="magic"):
        read_index(_flip(index, len(index) - 1))
    with pytest.raises(CheckpointError):
        read_index(index[:20])


def test_rejects_corrupted_tensor_data(wheel: MusicnnWheel) -> None:
    entries = read_index(wheel.read("MTT_vgg/.index"))
    data = wheel.read(f"MTT_vgg/{DATA}")
    entry = entries["dense/kernel"]
    with pytest.raises(CheckpointError, match="crc32c"):
        read_tensor(_flip(data, entry.offset + entry.size // 2), entry)
    with pytest.raises(CheckpointError, match="past the end"):
        read_tensor(data[: entry.offset + 10], entry)
    with pytest.raises(CheckpointError, match="lacks"):
        read_checkpoint(wheel.read("MTT_vgg/.index"), data, ["no/such/variable"])
