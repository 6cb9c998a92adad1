"""Simultaneous-perturbation reward optimization (SPSA variant of dual perturbation).

What this module is for: every round all MUs perturb their rewards at once with random
signs Delta_m in {-1, +1} (r +/- c_k Delta, in box-normalised units), the followers
re-solve twice (two follower solves per round, whatever M is), and each MU estimates its own
slope as (U_m(r+) - U_m(r-)) / (2 c_k Delta_m) -- the other MUs' perturbations enter as
zero-mean noise. Steps use Spall's gain sequences a_k = a / (k + 1 + A)^0.602,
c_k = c / (k + 1)^0.101 on the normalised reward u = (r - r_lo) / (r_hi - r_lo) and the
normalised utility U / utility scale. Cheap per round but slow to reach tight tolerances:
the certificate says how far it got. It stops when the largest normalised move, averaged
over the last 50 rounds, falls below ``step_tolerance``.

Reference: J. C. Spall, "Implementation of the simultaneous perturbation algorithm for
stochastic optimization", IEEE Trans. Aerospace and Electronic Systems 34(3), 1998.

May import: numpy, ``market`` and ``solvers.result`` / ``solvers.dual_perturbation``.
"""
from __future__ import annotations

import time

import numpy as np

from market.followers import best_response
from market.leaders import floor_penalised, utility
from market.model import Market
from solvers.ascent import initial_point
from solvers.result import EquilibriumResult, make_result


def _utilities(market: Market, rewards: np.ndarray) -> np.ndarray:
    q = best_response(market, rewards).qoe.total
    return floor_penalised(market, q, utility(market, rewards, q))


def solve(market: Market, *, tolerance: float = 1e-6, max_iterations: int = 5000, initial_rewards=None,
          gain: float = 0.2, perturbation: float = 0.02, stability: float = 50.0, step_tolerance: float = 1e-7,
          seed: int | None = None, progress=None, **options) -> EquilibriumResult:
    """SPSA over all MUs' rewards at once.

    Parameters
    ----------
    gain : a, the step gain (normalised units).
    perturbation : c, the perturbation size (fraction of each box).
    stability : A, Spall's stability constant.
    step_tolerance : stop when the mean largest normalised move of the last 50 rounds is below this.
    seed : random seed (default the scenario's ``seed``).
    """
    if options:
        raise TypeError(f"unknown option(s) for simultaneous-perturbation: {', '.join(sorted(options))}")
    start = time.perf_counter()
    rng = np.random.default_rng(market.seed if seed is None else seed)
    lo, hi = market.reward_min, market.reward_max
    width = np.where(hi > lo, hi - lo, 1.0)
    u = (initial_point(market, initial_rewards) - lo) / width
    scale = market.utility_scale
    status, history, moves, it = "max_iterations", [], [], 0
    for it in range(1, max_iterations + 1):
        a_k = gain / (it + stability) ** 0.602
        c_k = perturbation / it**0.101
        sign = rng.choice([-1.0, 1.0], size=market.n_mus)
        u_plus = np.clip(u + c_k * sign, 0.0, 1.0)
        u_minus = np.clip(u - c_k * sign, 0.0, 1.0)
        v_plus = _utilities(market, lo + width * u_plus) / scale
        v_minus = _utilities(market, lo + width * u_minus) / scale
        with np.errstate(invalid="ignore", divide="ignore"):
            slope = (v_plus - v_minus) / (u_plus - u_minus)
        slope = np.where(np.isfinite(slope), slope, np.where(np.isfinite(v_plus), -1.0, 1.0))
        new = np.clip(u + a_k * slope, 0.0, 1.0)
        move = float(np.max(np.abs(new - u), initial=0.0))
        u = new
        moves.append(move)
        history.append(move)
        if progress is not None:
            progress(it, move)
        if it >= 50 and np.mean(moves[-50:]) < step_tolerance:
            status = "converged"
            break
    elapsed = time.perf_counter() - start
    r = lo + width * u
    return make_result(market, np.where(hi > lo, r, lo), solver="simultaneous-perturbation", iterations=it,
                       solve_time_s=elapsed, solver_status=status, follower_solves=2 * it * market.n_asps,
                       message=f"SPSA, {it} rounds (two follower solves each)",
                       options={"gain": gain, "perturbation": perturbation, "stability": stability,
                                "step_tolerance": step_tolerance, "seed": market.seed if seed is None else seed,
                                "tolerance": tolerance, "max_iterations": max_iterations},
                       history=history)
