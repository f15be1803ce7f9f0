"""A provider's Embeddings in either form: lists of floats or a float32 array, the other
made on first use."""

from __future__ import annotations

import numpy as np
import pytest

from providers.embeddings.base import Embeddings


def test_lists_become_float32_rows() -> None:
    result = Embeddings(model="m", vectors=[[0.6, 0.8], [1.0, 0.0]])
    assert result.rows.dtype == np.float32
    assert result.rows.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)], [1.0, 0.0]]
    assert result.rows is result.rows  # made once


def test_rows_become_lists_and_are_handed_on_without_a_copy() -> None:
    rows = np.array([[0.6, 0.8]], dtype=np.float32)
    result = Embeddings(model="m", rows=rows)
    assert result.rows is rows
    assert result.vectors == [[pytest.approx(0.6), pytest.approx(0.8)]]


def test_no_vectors_make_no_rows() -> None:
    assert Embeddings(model="m", vectors=[]).rows.shape == (0, 0)


def test_one_form_exactly() -> None:
    with pytest.raises(TypeError):
        Embeddings(model="m")
    with pytest.raises(TypeError):
        Embeddings(model="m", vectors=[[1.0]], rows=np.ones((1, 1), dtype=np.float32))
