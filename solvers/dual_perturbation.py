"""Dual-perturbation reward optimization (design note, our reading of the name).

What this module is for: the default solver. MUs cannot see the ASPs' private data, so they
cannot differentiate through the followers; each round, every MU perturbs its own reward
both ways (r_m +/- delta_m; one-sided, r_m + delta_m and r_m + 2 delta_m, at a bound of its
box), the followers re-solve, and the MU forms the differences of its utility. The three
values give the slope and the curvature of U_m in its own reward, so the MU takes a
safeguarded (trust radius, Armijo backtracking and a line search on its own utility),
projected Newton ascent step (``solvers.ascent``: Jacobi, Gauss-Seidel or the default
"auto" = Jacobi falling back to Gauss-Seidel when Jacobi stalls at a capacity kink).

Only follower responses are used (``market.leaders.deviation_utility``), so every follower
variant is handled: in closed form the re-solve for one MU's deviation is O(1); for the
Shannon / quadratic variants it is a batched dual-decomposition re-solve of the MU's ASP.
The perturbation shrinks with the steps, so the final slopes are accurate.

May import: numpy, ``market`` and ``solvers.ascent`` / ``solvers.result``.
"""
from __future__ import annotations

import time

import numpy as np

from market.followers import DeviationSums, best_response
from market.leaders import deviation_utility
from market.model import Market
from solvers.ascent import Estimate, run_rounds
from solvers.result import EquilibriumResult, make_result


def stencil(r, pert, lo, hi):
    """Three distinct trial rewards (x0 < x1 < x2) in the box, one of them ``r``.

    Centred (r - delta, r, r + delta) inside the box; one-sided (r, r + delta, r + 2 delta)
    or (r - 2 delta, r - delta, r) at a bound. Returns the (K, 3) array.
    """
    pert = np.minimum(pert, 0.5 * (hi - lo))
    x0 = np.where(r - pert < lo, r, np.where(r + pert > hi, r - 2 * pert, r - pert))
    x0 = np.maximum(x0, lo)
    return np.stack([x0, x0 + pert, np.minimum(x0 + 2 * pert, hi)], axis=1)


def slope_and_curvature(r, points, values):
    """Slope at ``r`` and curvature of the quadratic through three (point, utility) pairs.

    Returns (slope, curvature); both are 0 / NaN where a utility is -inf (a QoE floor missed).
    """
    x0, x1, x2 = points[:, 0], points[:, 1], points[:, 2]
    u0, u1, u2 = values[:, 0], values[:, 1], values[:, 2]
    finite = np.isfinite(values).all(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        d01 = (u1 - u0) / (x1 - x0)
        d12 = (u2 - u1) / (x2 - x1)
        curv = 2.0 * (d12 - d01) / (x2 - x0)
        slope = d01 + 0.5 * curv * (2 * r - x0 - x1)
    ok = finite & (x2 > x0)
    return np.where(ok, slope, 0.0), np.where(ok, curv, np.nan)


def bracket_bound(r, points, values):
    """Upper bound on the gain available to an MU whose utility is concave, from its stencil.

    If the three values bracket a maximum (rising into r, falling after it), concavity puts
    U below the secant lines through r, so no reward gains more than
    max(d01 (x2 - r), -d12 (r - x0)) within the stencil, and nothing beyond it. At a bound of
    the box with the utility falling away from the bound, the bound is 0. Else inf.
    """
    x0, x1, x2 = points[:, 0], points[:, 1], points[:, 2]
    u0, u1, u2 = values[:, 0], values[:, 1], values[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        d01 = (u1 - u0) / (x1 - x0)
        d12 = (u2 - u1) / (x2 - x1)
    centred = x1 == r
    bracket = centred & (d01 >= 0) & (d12 <= 0)
    bound = np.where(bracket, np.maximum(d01 * (x2 - r), -d12 * (r - x0)), np.inf)
    at_low = (x0 == r) & (d01 <= 0)
    at_high = (x2 == r) & (d12 >= 0)
    bound = np.where(at_low | at_high, 0.0, bound)
    return np.where(np.isfinite(values).all(axis=1), bound, np.inf)


def solve(market: Market, *, tolerance: float = 1e-6, max_iterations: int = 5000, initial_rewards=None,
          schedule: str = "auto", delta: float | None = None, damping: float = 1.0, progress=None,
          **options) -> EquilibriumResult:
    """Dual-perturbation reward optimization.

    Parameters
    ----------
    market : Market
    tolerance : target relative regret; the solver stops at a tenth of it (predicted).
    max_iterations : rounds (a Gauss-Seidel round lets every MU move once).
    initial_rewards : (M,) warm start (projected on the boxes); default box midpoints.
    schedule : ``"auto"``, ``"jacobi"`` or ``"gauss-seidel"`` (see ``solvers.ascent``).
    delta : initial perturbation, as a fraction of each MU's box width (default 1e-3; 1e-7 when
        ``initial_rewards`` is given).
    damping : fraction of the Newton step taken in Jacobi rounds (1 = full step).
    progress : optional callable ``(round, largest predicted relative gain)``.

    Returns
    -------
    EquilibriumResult
        ``solver_status`` "converged" or "max_iterations"; ``solvers.solve`` certifies it.
    """
    if options:
        raise TypeError(f"unknown option(s) for dual-perturbation: {', '.join(sorted(options))}")
    start = time.perf_counter()
    lo, hi = market.reward_min, market.reward_max
    solves = [0]
    # closed form: the per-ASP sums of the deviation formula, kept up to date as MUs move, so
    # that a turn over K MUs costs O(K) instead of a pass over all M (run_rounds calls
    # estimate/evaluate with the profile of its last `moved` call)
    state = {"sums": None}

    def moved(r, idx):
        if state["sums"] is None or idx.size == market.n_mus:
            state["sums"] = None  # rebuilt from scratch at the next call (no drift from updates)
        else:
            state["sums"].move(idx, r[idx])

    def sums_at(r):
        if not market.is_closed_form:
            return None
        if state["sums"] is None:
            state["sums"] = DeviationSums(market, r)
        return state["sums"]

    def estimate(r, idx, pert):
        ri = r[idx]
        points = stencil(ri, pert, lo[idx], hi[idx])
        values = deviation_utility(market, r, points, idx, sums=sums_at(r))
        solves[0] += 3 * idx.size
        slope, curv = slope_and_curvature(ri, points, values)
        here = np.select([points[:, 0] == ri, points[:, 1] == ri], [values[:, 0], values[:, 1]], values[:, 2])
        return Estimate(slope=slope, curvature=curv, utility=here, gain_bound=bracket_bound(ri, points, values))

    def evaluate(r, idx, trial):
        solves[0] += idx.size
        return deviation_utility(market, r, trial, idx, sums=sums_at(r))

    out = run_rounds(market, estimate, evaluate, tolerance=tolerance, max_iterations=max_iterations,
                     initial_rewards=initial_rewards, schedule=schedule, damping=damping, delta=delta,
                     progress=progress, moved=moved)
    elapsed = time.perf_counter() - start
    return make_result(market, out.rewards, solver="dual-perturbation", iterations=out.iterations,
                       solve_time_s=elapsed, follower_solves=solves[0],
                       solver_status="not_certified" if out.status == "stalled" else out.status,
                       message=f"{out.schedule_used} schedule, {out.iterations} rounds",
                       response=best_response(market, out.rewards),
                       options={"schedule": schedule, "schedule_used": out.schedule_used, "delta": delta,
                                "damping": damping, "tolerance": tolerance, "max_iterations": max_iterations},
                       history=out.history)
