"""Confidence intervals: Wilson against a textbook value, bootstrap covers the mean."""
from __future__ import annotations

import numpy as np
import pytest

from provisioning.backend.stats import bootstrap_mean_interval, wilson_interval


def test_wilson_matches_reference_value():
    # Wilson interval for 81/100 at 95%: (0.7222, 0.8749) (e.g. statsmodels proportion_confint method="wilson")
    lo, hi = wilson_interval(81, 100)
    assert lo == pytest.approx(0.7222, abs=5e-4) and hi == pytest.approx(0.8749, abs=5e-4)


def test_wilson_edges_stay_in_unit_interval():
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert 0 < wilson_interval(0, 10)[1] < 0.35
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.exponential(1.0, size=20)
    large = rng.exponential(1.0, size=2000)
    lo_s, hi_s = bootstrap_mean_interval(small)
    lo_l, hi_l = bootstrap_mean_interval(large)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert hi_l - lo_l < hi_s - lo_s
