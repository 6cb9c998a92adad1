"""Per-trial generation quality: the seeded simulated backend and the hook for measured qualities.

What this module is for
-----------------------
The QoE of the provisioning paper (eq. (23)) needs ``max_j Q_ij``, the best quality score among
the ``N_i`` images a user receives. This module says where the per-trial scores come from.

Model (a choice the paper leaves open; see ``docs/provisioning.md``). For a prompt of difficulty
``d`` in [0, 1] (0 easy, 1 hard) the score of one trial, after transmission, is::

    ln q_ij = mu(d) + s(d) * eps_ij - kappa(d) * BER_i,      eps_ij ~ N(0, 1) i.i.d.

* ``mu(d)`` interpolates the log of ``score_easy`` and ``score_hard`` (harder prompts, lower mean);
* ``s(d)`` interpolates ``log_spread_easy`` and ``log_spread_hard`` (harder prompts vary more,
  so extra trials help them more);
* ``kappa(d)`` interpolates ``ber_sensitivity_easy``/``_hard``: complex images carry more
  information and suffer more from bit errors (paper, Fig. 1);
* ``BER_i`` is the bit error rate of the user's link in this round (one channel realisation per
  user per round: all of a user's images share the coherence block).

Because the score is log-normal, the Weber-Fechner quality factor ``ln(max_j q_ij / q_th)`` has
an exact expectation: ``mu + s e_N - kappa E[BER] - ln q_th`` where ``e_N`` is the expected
maximum of ``N`` standard normals (:func:`expected_max_std_normal`, computed by quadrature).

The hook: any object with the :class:`QualityModel` protocol can replace the simulated backend.
:class:`InterpolatedQualityModel` takes per-prompt statistics measured by the real backend
(difficulty feature, mean and standard deviation of the log score, BER sensitivity) and
interpolates them in difficulty.

May import: numpy, scipy (nothing else of ours).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np
from scipy import integrate, stats

__all__ = [
    "QualityModel",
    "SimulatedQualityModel",
    "InterpolatedQualityModel",
    "expected_max_std_normal",
    "expected_log_best_quality",
    "sample_log_best_quality",
]


@lru_cache(maxsize=256)
def _expected_max_std_normal_scalar(n: int) -> float:
    if n == 1:
        return 0.0
    integrand = lambda x: x * n * stats.norm.pdf(x) * stats.norm.cdf(x) ** (n - 1)
    value, _ = integrate.quad(integrand, -12.0, 12.0, epsabs=1e-13, epsrel=1e-12, limit=200)
    return float(value)


def expected_max_std_normal(n) -> np.ndarray:
    """``e_N = E[max(Z_1, ..., Z_N)]`` for i.i.d. standard normals, by adaptive quadrature.

    ``e_N = int x N phi(x) Phi(x)^(N-1) dx``; ``e_1 = 0``, ``e_2 = 1/sqrt(pi)``.

    Parameters
    ----------
    n : int or array_like of int
        Number of trials (>= 1).

    Returns
    -------
    ndarray of float
    """
    n_arr = np.asarray(n, dtype=int)
    flat = np.array([_expected_max_std_normal_scalar(int(k)) for k in n_arr.ravel()], dtype=float)
    return flat.reshape(n_arr.shape)


@runtime_checkable
class QualityModel(Protocol):
    """Where per-trial quality scores come from (simulated or measured backend)."""

    def log_quality_params(self, difficulty) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``(mean_log_score, std_log_score, ber_sensitivity)`` per prompt difficulty."""
        ...


@dataclass(frozen=True)
class SimulatedQualityModel:
    """Seeded simulated backend: log-normal scores whose mean falls with prompt difficulty.

    Attributes
    ----------
    score_easy : float
        Median score (0-10 scale, like the paper's assessing agent) of one trial at difficulty 0.
    score_hard : float
        Median score of one trial at difficulty 1.
    log_spread_easy : float
        Standard deviation of the natural-log score at difficulty 0 (dimensionless).
    log_spread_hard : float
        Standard deviation of the natural-log score at difficulty 1.
    ber_sensitivity_easy : float
        ``kappa`` at difficulty 0: log-score lost per unit of BER (dimensionless).
    ber_sensitivity_hard : float
        ``kappa`` at difficulty 1.
    """

    score_easy: float = 8.8
    score_hard: float = 7.4
    log_spread_easy: float = 0.02
    log_spread_hard: float = 0.08
    ber_sensitivity_easy: float = 2.0
    ber_sensitivity_hard: float = 8.0

    def log_quality_params(self, difficulty):
        """Mean and spread of the log score and the BER sensitivity, linear in difficulty."""
        d = np.asarray(difficulty, dtype=float)
        mean = np.log(self.score_easy) + d * (np.log(self.score_hard) - np.log(self.score_easy))
        spread = self.log_spread_easy + d * (self.log_spread_hard - self.log_spread_easy)
        kappa = self.ber_sensitivity_easy + d * (self.ber_sensitivity_hard - self.ber_sensitivity_easy)
        return mean, spread, kappa


@dataclass(frozen=True)
class InterpolatedQualityModel:
    """Quality statistics measured per prompt by a real backend, interpolated in difficulty.

    Attributes
    ----------
    difficulty : tuple of float
        Difficulty feature of each measured prompt (strictly increasing).
    mean_log_score : tuple of float
        Mean natural-log score of one trial for each measured prompt.
    std_log_score : tuple of float
        Standard deviation of the log score for each measured prompt.
    ber_sensitivity : tuple of float
        Log score lost per unit BER, fitted from images passed through a real noisy channel.
    """

    difficulty: tuple
    mean_log_score: tuple
    std_log_score: tuple
    ber_sensitivity: tuple

    def __post_init__(self):
        lengths = {len(self.difficulty), len(self.mean_log_score), len(self.std_log_score), len(self.ber_sensitivity)}
        if len(lengths) != 1 or len(self.difficulty) < 1:
            raise ValueError("InterpolatedQualityModel: all tables must have the same non-zero length")
        if np.any(np.diff(np.asarray(self.difficulty, dtype=float)) <= 0):
            raise ValueError("InterpolatedQualityModel: difficulty must be strictly increasing")
        if np.any(np.asarray(self.std_log_score, dtype=float) < 0):
            raise ValueError("InterpolatedQualityModel: std_log_score must be >= 0")

    def log_quality_params(self, difficulty):
        """Piecewise-linear interpolation of the measured statistics (flat outside the range)."""
        d = np.asarray(difficulty, dtype=float)
        xs = np.asarray(self.difficulty, dtype=float)
        return (
            np.interp(d, xs, np.asarray(self.mean_log_score, dtype=float)),
            np.interp(d, xs, np.asarray(self.std_log_score, dtype=float)),
            np.interp(d, xs, np.asarray(self.ber_sensitivity, dtype=float)),
        )


def expected_log_best_quality(trials, mean_log, std_log, ber_sensitivity, expected_ber):
    """Exact ``E[ln max_j q_ij] = mu + s e_N - kappa E[BER]`` of the log-normal score model.

    Parameters
    ----------
    trials : array_like of int
        ``N_i >= 1``.
    mean_log, std_log, ber_sensitivity : array_like
        Per-user statistics from a :class:`QualityModel`.
    expected_ber : array_like
        ``E[BER_i]`` of eq. (10).
    """
    return (
        np.asarray(mean_log, dtype=float)
        + np.asarray(std_log, dtype=float) * expected_max_std_normal(trials)
        - np.asarray(ber_sensitivity, dtype=float) * np.asarray(expected_ber, dtype=float)
    )


def sample_log_best_quality(trials, mean_log, std_log, ber_sensitivity, ber, rng: np.random.Generator):
    """One draw of ``ln max_j q_ij`` given the realised BER of each user's link.

    Draws ``N_i`` i.i.d. normal log scores per user and keeps the best one. Its expectation
    over the scores and the channel equals :func:`expected_log_best_quality`.
    """
    trials = np.asarray(trials, dtype=int)
    mean_log = np.broadcast_to(np.asarray(mean_log, dtype=float), trials.shape)
    std_log = np.broadcast_to(np.asarray(std_log, dtype=float), trials.shape)
    best = np.empty(trials.shape, dtype=float)
    for i, n in enumerate(trials.ravel()):
        best.flat[i] = np.max(rng.standard_normal(int(n)))
    return mean_log + std_log * best - np.asarray(ber_sensitivity, dtype=float) * np.asarray(ber, dtype=float)
