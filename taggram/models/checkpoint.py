"""A reader for TensorFlow tensor-bundle checkpoints (``.index`` + ``.data-00000-of-00001``).

The musicnn wheel ships TF1 checkpoints; reading them directly keeps TensorFlow out of the
dependencies. The ``.index`` file is a LevelDB-format table (SSTable, uncompressed) mapping each
variable name to a ``BundleEntryProto`` (dtype, shape, shard, offset, size, masked crc32c); the data
file holds the raw little-endian tensors. Only the handful of protobuf fields needed are decoded,
and every checksum (table blocks and tensors) is verified, so a corrupted file fails loudly.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

import google_crc32c
import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type (1 byte) + masked crc32c (4 bytes)
# tensorflow/core/framework/types.proto: the dtypes a checkpoint of numeric variables uses.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    2: np.dtype("<f8"),
    3: np.dtype("<i4"),
    4: np.dtype("u1"),
    5: np.dtype("<i2"),
    6: np.dtype("i1"),
    9: np.dtype("<i8"),
    10: np.dtype("?"),
    19: np.dtype("<f2"),
}


class CheckpointError(ValueError):
    """The checkpoint is malformed, corrupted or uses a feature this reader does not handle."""


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives in the data file (a decoded ``BundleEntryProto``)."""

    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int


def _varint(buffer: bytes, pos: int) -> tuple[int, int]:
    """Decode one base-128 varint (protobuf and LevelDB share the encoding)."""
    result = shift = 0
    while True:
        if pos >= len(buffer):
            raise CheckpointError("truncated varint")
        byte = buffer[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError("varint too long")


def _fields(message: bytes) -> Iterator[tuple[int, int | bytes]]:
    """Yield (field number, value) of a protobuf message: varints, fixed32/64 and byte strings."""
    pos = 0
    while pos < len(message):
        key, pos = _varint(message, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", message, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(message, pos)
            value, pos = message[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", message, pos)[0], pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        if pos > len(message):
            raise CheckpointError("truncated protobuf message")
        yield number, value


def _shape(message: bytes) -> tuple[int, ...]:
    """Decode a ``TensorShapeProto``: repeated ``dim`` (field 2), each with ``size`` (field 1)."""
    dims = []
    for number, value in _fields(message):
        if number == 2 and isinstance(value, bytes):
            sizes = [v for n, v in _fields(value) if n == 1 and isinstance(v, int)]
            dims.append(sizes[0] if sizes else 0)
        elif number == 3 and value:
            raise CheckpointError("tensor of unknown rank")
    return tuple(dims)


def _entry(message: bytes) -> TensorEntry:
    """Decode a ``BundleEntryProto``; sliced (partitioned) variables are not supported."""
    values: dict[int, int | bytes] = dict(_fields(message))
    if 7 in values:
        raise CheckpointError("partitioned (sliced) tensors are not supported")
    code = values.get(1, 0)
    if not isinstance(code, int) or code not in DTYPES:
        raise CheckpointError(f"unsupported tensor dtype code {code!r}")
    shape = values.get(2, b"")
    ints = {k: v for k, v in values.items() if isinstance(v, int)}
    return TensorEntry(
        dtype=DTYPES[code],
        shape=_shape(shape if isinstance(shape, bytes) else b""),
        shard_id=ints.get(3, 0),
        offset=ints.get(4, 0),
        size=ints.get(5, 0),
        crc32c=ints.get(6, 0),
    )


def _unmask(masked: int) -> int:
    """Undo LevelDB's crc masking (rotate right 17 after subtracting the mask delta)."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def _block(table: bytes, handle: bytes) -> bytes:
    """Return the verified contents of the block a ``BlockHandle`` (offset, size) points to."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    end = offset + size
    if end + BLOCK_TRAILER_BYTES > len(table):
        raise CheckpointError("block handle points past the end of the index file")
    kind = table[end]
    (masked,) = struct.unpack_from("<I", table, end + 1)
    if google_crc32c.value(table[offset : end + 1]) != _unmask(masked):
        raise CheckpointError(f"index block at offset {offset}: crc32c mismatch")
    if kind != 0:
        raise CheckpointError(f"compressed index block (type {kind}) is not supported")
    return table[offset:end]


def _block_items(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) of a table block: prefix-compressed keys, then the restart array."""
    if len(block) < 4:
        raise CheckpointError("block too short")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 * (restarts + 1)
    if limit < 0:
        raise CheckpointError("block restart array overflows the block")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + length > limit:
            raise CheckpointError("malformed block entry")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def read_index(index: bytes) -> dict[str, TensorEntry]:
    """Parse a bundle ``.index`` file into {variable name: entry}, skipping the bundle header."""
    if len(index) < FOOTER_BYTES:
        raise CheckpointError("index file shorter than a table footer")
    footer = index[-FOOTER_BYTES:]
    (magic,) = struct.unpack_from("<Q", footer, FOOTER_BYTES - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointError("not a TensorFlow checkpoint index (bad table magic)")
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size (the metaindex block is empty in bundles)
    index_handle = footer[pos:]
    entries: dict[str, TensorEntry] = {}
    for _, handle in _block_items(_block(index, index_handle)):
        for key, value in _block_items(_block(index, handle)):
            if key:  # the empty key holds the BundleHeaderProto
                entries[key.decode()] = _entry(value)
    return entries


def read_tensor(data: bytes, entry: TensorEntry) -> np.ndarray:
    """Copy one tensor out of the (single-shard) data file, checking its crc32c."""
    if entry.shard_id != 0:
        raise CheckpointError(f"shard {entry.shard_id} requested from a single-shard reader")
    raw = data[entry.offset : entry.offset + entry.size]
    if len(raw) != entry.size:
        raise CheckpointError("tensor extends past the end of the data file")
    if google_crc32c.value(raw) != _unmask(entry.crc32c):
        raise CheckpointError("tensor data crc32c mismatch")
    count = int(np.prod(entry.shape, dtype=np.int64))
    if count * entry.dtype.itemsize != entry.size:
        raise CheckpointError(f"tensor size {entry.size} does not match shape {entry.shape}")
    return (
        np.frombuffer(raw, dtype=entry.dtype)
        .reshape(entry.shape)
        .astype(entry.dtype.newbyteorder("="))
    )


def read_checkpoint(
    index: bytes, data: bytes, names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Read the named tensors (default: all) of a single-shard checkpoint."""
    entries = read_index(index)
    wanted = list(entries) if names is None else names
    missing = sorted(set(wanted) - set(entries))
    if missing:
        raise CheckpointError(f"checkpoint lacks {missing}")
    return {name: read_tensor(data, entries[name]) for name in wanted}
