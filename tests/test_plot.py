"""The taggram picture's time columns (``taggram.plot.column_edges``)."""

from __future__ import annotations

import numpy as np
import pytest

from taggram.plot import column_edges

PATCH = 2.992


def test_columns_of_default_patches_and_the_end_aligned_tail() -> None:
    # 10 s of audio: 3 patches at the default hop, then one aligned to the end.
    starts = np.array([0.0, PATCH, 2 * PATCH, 10.0 - PATCH])
    edges = column_edges(starts, starts + PATCH, 10.0)
    assert edges[0] == 0.0 and edges[-1] == 10.0
    assert np.all(np.diff(edges) > 0)
    np.testing.assert_allclose(edges[1:3], [PATCH, 2 * PATCH])  # between centres = patch edges
    # The tail patch's column starts halfway between its centre and the previous one's.
    assert edges[3] == pytest.approx((2.5 * PATCH + (10.0 - PATCH / 2)) / 2)


def test_overlapping_patches_get_one_hop_wide_columns() -> None:
    hop = 1.0
    starts = np.arange(5) * hop
    edges = column_edges(starts, starts + PATCH, 5 * hop - hop + PATCH)
    np.testing.assert_allclose(np.diff(edges)[1:-1], hop)


def test_one_patch_covers_everything() -> None:
    edges = column_edges(np.array([0.0]), np.array([PATCH]), 1.5)
    np.testing.assert_allclose(edges, [0.0, PATCH])
