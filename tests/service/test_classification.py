"""The classification extension's strings and their binary layout, as Triton writes them."""

from __future__ import annotations

import numpy as np
from tritonclient.utils import deserialize_bytes_tensor

from taggram.service.api.classification import classify, to_bytes


def test_the_best_classes_come_first_as_value_index_label() -> None:
    # The extension's own example: [1.1, 3.3, 0.5, 2.4], top 2.
    values = np.array([[1.1, 3.3, 0.5, 2.4], [0.0, 0.0, 1.0, 0.0]], np.float32)
    assert classify(values, 2, None) == [["3.300000:1", "2.400000:3"], ["1.000000:2", "0.000000:0"]]
    labels = ["a", "b", "c", "d"]
    assert classify(values[:1], 1, labels) == [["3.300000:1:b"]]


def test_more_classes_than_the_output_has_gives_them_all() -> None:
    assert len(classify(np.zeros((1, 3), np.float32), 10, None)[0]) == 3


def test_bytes_are_length_prefixed_as_tritonclient_reads_them() -> None:
    rows = [["0.500000:1:rock", "0.250000:0:jazz"]]
    decoded = deserialize_bytes_tensor(to_bytes(rows))
    assert [item.decode() for item in decoded] == rows[0]
