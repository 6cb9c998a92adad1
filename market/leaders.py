"""The leaders: each MU's utility and payment (design note, "Leaders").

What this module is for: U_m(r) = (theta_m - r_m) Q_m(r), the payment r_m Q_m, and the
utility of a unilateral deviation (MU m alone moves to a trial reward, the followers
re-solve) which the solvers and the certificate maximise. A QoE floor Q^req_m makes a
deviation that misses it worth -inf.

May import: numpy and ``market.model`` / ``market.followers``.
"""
from __future__ import annotations

import numpy as np

from market.followers import DeviationSums, deviation_qoe
from market.model import Market


def utility(market: Market, rewards: np.ndarray, qoe: np.ndarray) -> np.ndarray:
    """U_m = (theta_m - r_m) Q_m (money), per MU; ``qoe`` as delivered at ``rewards``."""
    return (market.value_per_qoe - np.asarray(rewards, dtype=float)) * np.asarray(qoe, dtype=float)


def payment(rewards: np.ndarray, qoe: np.ndarray) -> np.ndarray:
    """What each MU pays its ASP, r_m Q_m (money)."""
    return np.asarray(rewards, dtype=float) * np.asarray(qoe, dtype=float)


def floor_penalised(market: Market, qoe: np.ndarray, value: np.ndarray, mus: np.ndarray | None = None) -> np.ndarray:
    """``value`` where Q >= Q^req (or no floor), -inf elsewhere; broadcasts a trailing grid axis."""
    idx = slice(None) if mus is None else np.asarray(mus)
    req = market.qoe_required[idx].reshape(-1, *(1,) * (np.ndim(qoe) - 1))
    ok = np.isnan(req) | (qoe >= req - 1e-12)
    return np.where(ok, value, -np.inf)


def deviation_utility(market: Market, rewards: np.ndarray, trial: np.ndarray,
                      mus: np.ndarray | None = None, *, sums: DeviationSums | None = None) -> np.ndarray:
    """U_m(trial_m, r_{-m}) for each MU (``trial`` (M,) or (M, G)); -inf where the floor fails.

    With ``mus`` (indices) only those MUs deviate and ``trial`` has one row per entry.
    ``sums``: the followers' :class:`market.followers.DeviationSums` at ``rewards`` (optional).
    """
    t = np.asarray(trial, dtype=float)
    idx = slice(None) if mus is None else np.asarray(mus)
    q = deviation_qoe(market, rewards, t, mus, sums=sums)
    theta = market.value_per_qoe[idx].reshape(-1, *(1,) * (t.ndim - 1))
    return floor_penalised(market, q, (theta - t) * q, mus)
