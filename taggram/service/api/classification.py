"""The classification extension of the Open Inference Protocol (Triton's): an output asked for
with ``"parameters": {"classification": k}`` comes back as its ``k`` best classes instead of its
values, what ``tritonclient``'s ``InferRequestedOutput(name, class_count=k)`` asks for.

Each row of the output becomes ``k`` strings ``"<value>:<index>[:<label>]"``, best first, in a
``BYTES`` tensor of shape ``[batch, k]`` (``k`` capped at the output's width); the labels are the
model's tags for its probabilities output, and no label for an embedding. The value is written
as C's ``%f`` (six decimals), as Triton writes it.

Spec: https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_classification.md
"""

from __future__ import annotations

import struct

import numpy as np

PARAMETER = "classification"
DATATYPE = "BYTES"


def classify(values: np.ndarray, count: int, labels: list[str] | None) -> list[list[str]]:
    """The ``count`` best classes of each row of ``values`` (``[batch, classes]``, any float),
    best first as ``"value:index[:label]"``; ties keep the lower index first.

    ``labels`` name the classes in index order (``None``: indices only); ``count`` is capped at
    ``classes``.
    """
    rows = values.reshape(len(values), -1)
    count = min(count, rows.shape[1])
    order = np.argsort(-rows, axis=1, kind="stable")[:, :count]
    return [
        [
            f"{row[index]:f}:{index}" + (f":{labels[index]}" if labels else "")
            for index in map(int, indices)
        ]
        for row, indices in zip(rows, order, strict=True)
    ]


def to_bytes(rows: list[list[str]]) -> bytes:
    """A ``BYTES`` tensor in the binary tensor extension's layout: each element, row-major, as
    its UTF-8 length (4 bytes, little-endian) then its bytes."""
    encoded = [item.encode() for row in rows for item in row]
    return b"".join(struct.pack("<I", len(item)) + item for item in encoded)
