"""Confidence intervals of the backend's measurements.

What this module is for: Wilson score intervals for accuracies (binomial proportions; exact
enough at 100 samples and never outside [0, 1]) and percentile-bootstrap intervals for
mean latencies (no normality assumption; fixed seed so reports are reproducible).
Hand-written because the backend may not import scipy/statsmodels; both are a few lines.

May import: numpy.
"""
from __future__ import annotations

import math

import numpy as np

#: Two-sided 95% normal quantile.
Z95: float = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927); ``(0, 1)`` when ``trials == 0``."""
    if trials <= 0:
        return (0.0, 1.0)
    p = successes / trials
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends at 0 and n (no rounding)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return (low, high)


def bootstrap_mean_interval(values, resamples: int = 2000, seed: int = 0, level: float = 0.95
                            ) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (Efron 1979)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (float("nan"), float("nan"))
    if data.size == 1:
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return (float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha)))
