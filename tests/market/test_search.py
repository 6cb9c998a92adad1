"""market.search.golden_max against hand values."""
from __future__ import annotations

import numpy as np

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
