"""Simultaneous-perturbation reward optimization (SPSA variant of dual perturbation).

What this module is for: every round all MUs perturb their rewards at once with random
signs Delta_m in {-1, +1} (r +/- c_k Delta, in box-normalised units), the followers
re-solve twice (two follower solves per round, whatever M is), and each MU estimates its own
slope as (U_m(r+) - U_m(r-)) / (2 c_k Delta_m) -- the other MUs' perturbations enter as
zero-mean noise. Steps use Spall's gain sequences a_k = a / (k + 1 + A)^0.602,
c_k = c / (k + 1)^0.101 on the normalised reward u = (r - r_lo) / (r_hi - r_lo) and the
normalised utility U / utility scale. The answer is the Polyak-Ruppert average of the
iterates of the second half of the run. Cheap per round but slow to reach tight
tolerances (about 1e-5 relative regret after 3,000 rounds on 3 x 12 markets): the
certificate says how far it got. It stops early when the answer moves less than
``step_tolerance`` over 50 rounds.

References: J. C. Spall, "Implementation of the simultaneous perturbation algorithm for
stochastic optimization", IEEE Trans. Aerospace and Electronic Systems 34(3), 1998;
B. T. Polyak and A. B. Juditsky, "Acceleration of stochastic approximation by averaging",
SIAM J. Control Optim. 30(4), 1992.

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
          average_from: float = 0.5, seed: int | None = None, progress=None, **options) -> EquilibriumResult:
    """SPSA over all MUs' rewards at once, with iterate averaging.

    Parameters
    ----------
    gain : a, the step gain (normalised units).
    perturbation : c, the perturbation size (fraction of each box).
    stability : A, Spall's stability constant.
    step_tolerance : stop when the answer moved less than this (normalised) over the last 50 rounds.
    average_from : the answer is the average of the iterates from this fraction of
        ``max_iterations`` on (Polyak-Ruppert averaging; 10-50x lower regret than the last
        iterate in our runs); 1.0 returns the last iterate.
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
    first_averaged = max(1, int(average_from * max_iterations))
    mean, averaged = u.copy(), 0
    marks: list[np.ndarray] = []
    status, history, it = "max_iterations", [], 0
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
        if it >= first_averaged:
            averaged += 1
            mean += (u - mean) / averaged if averaged > 1 else (u - mean)
        answer = mean if averaged else u
        history.append(move)
        if progress is not None:
            progress(it, move)
        if it % 50 == 0:
            marks.append(answer.copy())
            if len(marks) >= 2 and (averaged or first_averaged > max_iterations) and \
                    float(np.max(np.abs(marks[-1] - marks[-2]), initial=0.0)) < step_tolerance:
                status = "converged"
                break
    elapsed = time.perf_counter() - start
    answer = mean if averaged else u
    r = lo + width * answer
    return make_result(market, np.where(hi > lo, r, lo), solver="simultaneous-perturbation", iterations=it,
                       solve_time_s=elapsed, solver_status=status, follower_solves=2 * it * market.n_asps,
                       message=f"SPSA, {it} rounds (two follower solves each), average of the last {averaged}",
                       options={"gain": gain, "perturbation": perturbation, "stability": stability,
                                "step_tolerance": step_tolerance, "average_from": average_from,
                                "seed": market.seed if seed is None else seed,
                                "tolerance": tolerance, "max_iterations": max_iterations},
                       history=history)
