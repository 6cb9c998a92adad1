"""Dual-perturbation reward optimization (design note, our reading of the name).

What this module is for: the default solver. MUs cannot see the ASPs' private data, so they
cannot differentiate through the followers; each round, every MU perturbs its own reward
both ways (r_m +/- delta_m, one-sided at a bound of its box), the followers re-solve, and the
MU forms the two-sided differences of its utility. The three values give the slope and the
curvature of U_m in its own reward, so the MU takes a damped, safeguarded Newton ascent step
projected onto its box (plain ascent where the curvature is not negative). Schedules:

* ``"jacobi"``: all MUs move at once;
* ``"gauss-seidel"``: MUs move in turn. MUs at different ASPs do not interact (followers
  are independent), so the turn of "the k-th MU of every ASP" is exactly sequential
  Gauss-Seidel and is vectorised.

Only follower responses are used (``market.leaders.deviation_utility``), so every follower
variant is handled: the closed form re-solve is O(1) per MU, the cvxpy variants re-solve
the MU's own ASP. The perturbation size shrinks with the steps so that the final slopes are
accurate; the solver stops when the predicted gain of every MU (its Newton model) is below
a hundredth of the tolerance relative to its utility scale. The certificate judges the answer.

May import: numpy, ``market`` and ``solvers.result``.
"""
from __future__ import annotations

import time

import numpy as np

from market.followers import best_response
from market.leaders import deviation_utility
from market.model import Market
from solvers.result import EquilibriumResult, make_result


def mu_ranks(market: Market) -> np.ndarray:
    """(M,) position of each MU among the MUs of its ASP (0, 1, ...), in index order."""
    order = np.argsort(market.mu_asp, kind="stable")
    ranks = np.empty(market.n_mus, dtype=np.intp)
    sorted_asp = market.mu_asp[order]
    starts = np.searchsorted(sorted_asp, sorted_asp, side="left")
    ranks[order] = np.arange(market.n_mus) - starts
    return ranks


def initial_point(market: Market, initial_rewards=None) -> np.ndarray:
    """The starting rewards: ``initial_rewards`` projected on the box, else the box midpoints."""
    if initial_rewards is None:
        return 0.5 * (market.reward_min + market.reward_max)
    r = np.asarray(initial_rewards, dtype=float)
    if r.shape != (market.n_mus,) or not np.all(np.isfinite(r)):
        raise ValueError(f"initial_rewards must be {market.n_mus} finite numbers")
    return market.clip_rewards(r)


def stencil(r, pert, lo, hi):
    """Three distinct trial rewards (x0 < x1 < x2) in the box, one of them ``r``.

    Centred (r - delta, r, r + delta) inside the box; one-sided (r, r + delta, r + 2 delta)
    or (r - 2 delta, r - delta, r) at a bound. Returns the (M, 3) array.
    """
    pert = np.minimum(pert, 0.5 * (hi - lo))
    x0 = np.where(r - pert < lo, r, np.where(r + pert > hi, r - 2 * pert, r - pert))
    x0 = np.maximum(x0, lo)
    return np.stack([x0, x0 + pert, np.minimum(x0 + 2 * pert, hi)], axis=1)


def newton_step(r, points, values, trust):
    """Safeguarded Newton ascent step from three utility values at ``points`` (M, 3).

    The quadratic through the three points gives the slope at ``r`` and the curvature;
    the step is -slope/curvature where the curvature is negative (else the trust radius
    in the slope's direction), clipped to ``trust``. A missed QoE floor (-inf utility at
    the current reward) pushes the reward up. Returns (step, slope, curvature).
    """
    x0, x1, x2 = points[:, 0], points[:, 1], points[:, 2]
    u0, u1, u2 = values[:, 0], values[:, 1], values[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        d01 = (u1 - u0) / (x1 - x0)
        d12 = (u2 - u1) / (x2 - x1)
        curv = 2.0 * (d12 - d01) / (x2 - x0)
        slope = d01 + 0.5 * curv * (2 * r - x0 - x1)
        newton = np.where(curv < 0, -slope / curv, np.sign(slope) * trust)
    degenerate = ~(x2 > x0)
    slope = np.where(degenerate, 0.0, slope)
    newton = np.where(np.isfinite(newton) & ~degenerate, newton, 0.0)
    step = np.clip(newton, -trust, trust)
    u_here = np.where(points[:, 0] == r, u0, np.where(points[:, 1] == r, u1, u2))
    step = np.where(~np.isfinite(u_here), trust, step)
    return step, np.where(np.isfinite(slope), slope, 0.0), curv


def solve(market: Market, *, tolerance: float = 1e-6, max_iterations: int = 5000, initial_rewards=None,
          schedule: str = "jacobi", delta: float = 1e-3, damping: float = 1.0, progress=None,
          **options) -> EquilibriumResult:
    """Dual-perturbation reward optimization.

    Parameters
    ----------
    market : Market
    tolerance : target relative regret; the solver stops at a hundredth of it (predicted).
    max_iterations : rounds (a Gauss-Seidel round lets every MU move once).
    initial_rewards : (M,) warm start (projected on the boxes); default box midpoints.
    schedule : ``"jacobi"`` or ``"gauss-seidel"``.
    delta : initial perturbation, as a fraction of each MU's box width.
    damping : fraction of the Newton step taken (Jacobi; 1 = full step).
    progress : optional callable ``(iteration, max_relative_gain)`` called every round.

    Returns
    -------
    EquilibriumResult
        With ``solver_status`` "converged" or "max_iterations" (certified by ``solvers.solve``).
    """
    if options:
        raise TypeError(f"unknown option(s) for dual-perturbation: {', '.join(sorted(options))}")
    if schedule not in ("jacobi", "gauss-seidel"):
        raise ValueError(f"schedule must be 'jacobi' or 'gauss-seidel', got {schedule!r}")
    start = time.perf_counter()
    lo, hi = market.reward_min, market.reward_max
    width = hi - lo
    r = initial_point(market, initial_rewards)
    scale = market.utility_scale
    pert = np.maximum(delta * width, 1e-12 * hi)
    pert_min = np.maximum(1e-7 * width, 1e-12 * hi)
    trust = 0.5 * width
    last_move = np.zeros(market.n_mus)
    ranks = mu_ranks(market)
    turns = [ranks == k for k in range(int(ranks.max()) + 1)] if schedule == "gauss-seidel" and market.n_mus else [None]
    per_solve = market.n_asps if not market.is_closed_form else 1
    solves, history, status, it, calm = 0, [], "max_iterations", 0, 0
    for it in range(1, max_iterations + 1):
        worst = 0.0
        for turn in turns:
            points = stencil(r, pert, lo, hi)
            values = deviation_utility(market, r, points)
            solves += 3 * market.n_mus if not market.is_closed_form else 3
            step, slope, curv = newton_step(r, points, values, trust)
            factor = damping if schedule == "jacobi" else 1.0
            new = np.clip(r + factor * step, lo, hi)
            moved = new - r
            gain = slope * moved + 0.5 * np.where(np.isfinite(curv), np.minimum(curv, 0.0), 0.0) * moved**2
            gain = np.where(np.isfinite(values).all(axis=1), np.abs(gain), np.inf)
            active = np.ones(market.n_mus, bool) if turn is None else turn
            new = np.where(active, new, r)
            gain = np.where(active, gain, 0.0)
            moved = np.where(active, moved, 0.0)
            worst = max(worst, float(np.max(gain / scale, initial=0.0)))
            flipped = active & (moved * last_move < 0)
            trust = np.where(flipped, 0.5 * trust, np.where(active, np.minimum(1.5 * trust, 0.5 * width), trust))
            last_move = np.where(active, moved, last_move)
            pert = np.where(active, np.clip(0.5 * np.abs(moved), pert_min, delta * width), pert)
            r = new
        history.append(worst)
        if progress is not None:
            progress(it, worst)
        calm = calm + 1 if worst <= 1e-2 * tolerance else 0
        if calm >= 2:
            status = "converged"
            break
    elapsed = time.perf_counter() - start
    response = best_response(market, r)
    return make_result(market, r, solver="dual-perturbation", iterations=it, solve_time_s=elapsed,
                       solver_status=status, follower_solves=solves * per_solve,
                       message=f"{schedule} schedule, {it} rounds", response=response,
                       options={"schedule": schedule, "delta": delta, "damping": damping,
                                "tolerance": tolerance, "max_iterations": max_iterations},
                       history=history)
