"""market.search.golden_max against hand values."""
from __future__ import annotations

import numpy as np
import pytest

from market.search import golden_max


def test_finds_each_maximiser_and_brackets_it():
    centres = np.array([0.3, 2.0, 4.9, -1.0])
    lo, hi = np.array([0.0, 0.0, 0.0, -3.0]), np.array([5.0, 5.0, 5.0, 0.0])
    # |x - c| has no flat top, so every comparison is decided exactly and the bracket keeps c
    best, value, a, b = golden_max(lambda x: -np.abs(x - centres), lo, hi, 60, return_bracket=True)
    assert np.allclose(best, centres, atol=1e-10) and np.all(value <= 0) and np.all(value > -1e-10)
    assert np.all((a <= centres) & (centres <= b)) and np.all(b - a < 1e-10)


def test_a_maximiser_at_the_interval_end():
    best, value = golden_max(lambda x: x, np.array([1.0]), np.array([2.0]), 80)
    assert best[0] == np.float64(2.0) or abs(best[0] - 2.0) < 1e-12
    assert abs(value[0] - 2.0) < 1e-12


def test_golden_max_gives_the_same_answer_on_torch_tensors_as_on_numpy_arrays():
    torch = pytest.importorskip("torch")
    lo, hi = np.array([0.0, 1.0, -3.0]), np.array([2.0, 5.0, 4.0])
    peak = np.array([0.3, 4.2, -1.0])
    best_np, value_np = golden_max(lambda x: -(x - peak) ** 2, lo, hi, 60)
    peak_t = torch.as_tensor(peak)
    best_t, value_t = golden_max(lambda x: -(x - peak_t) ** 2, torch.as_tensor(lo), torch.as_tensor(hi), 60)
    assert isinstance(best_t, torch.Tensor)
    np.testing.assert_array_equal(best_t.numpy(), best_np)
    np.testing.assert_array_equal(value_t.numpy(), value_np)
    np.testing.assert_allclose(best_np, peak, atol=1e-9)
