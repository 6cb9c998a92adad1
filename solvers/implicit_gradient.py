"""Implicit-gradient reward optimization: exact derivatives through the followers' KKT system.

What this module is for: the oracle the tests compare the perturbation solvers against.
Each MU's utility U_m = (theta_m - r_m) Q_m has, for the linear model, exact derivatives in
its own reward from the implicit-function theorem on the follower KKT conditions
(:func:`market.followers.closed_form_own_qoe_derivatives`):

    dU/dr = -Q + (theta - r) Q',   d2U/dr2 = -2 Q' + (theta - r) Q''   (<= 0: concave).

The MUs take safeguarded projected Newton steps with these (``solvers.ascent``: schedules
"auto", "jacobi", "gauss-seidel"). Knowing the model, the oracle also knows where each MU's
utility has a kink (its ASP's capacity switching between slack and binding): steps stop on a
kink, and an MU on a kink whose left slope is >= 0 >= right slope is at its best response.
It needs the closed form, so it handles only ``bandwidth_model = "linear"``,
``asp_cost = "linear"``.

May import: numpy, ``market`` and ``solvers.ascent`` / ``solvers.result``.
"""
from __future__ import annotations

import time

import numpy as np

from market.followers import (KINK_RELATIVE_WIDTH, closed_form_deviation_qoe, closed_form_kinks, closed_form_own_qoe_derivatives,
                              closed_form_response)
from market.model import Market
from solvers.ascent import Estimate, run_rounds
from solvers.result import EquilibriumResult, make_result


def utility_derivatives(market: Market, rewards: np.ndarray, mus: np.ndarray | None = None, side: str = "right"):
    """(U, dU/dr_m, d2U/dr_m^2) at ``rewards`` for the MUs ``mus`` (default all), exactly.

    ``side`` picks the one-sided derivative at a capacity kink ("right" or "left").
    """
    r = np.asarray(rewards, dtype=float)
    idx = np.arange(market.n_mus) if mus is None else np.asarray(mus)
    q = closed_form_deviation_qoe(market, r, r[idx], idx)
    dq, d2q = closed_form_own_qoe_derivatives(market, r, idx, side=side)
    margin = market.value_per_qoe[idx] - r[idx]
    return margin * q, -q + margin * dq, -2.0 * dq + margin * d2q


def exact_estimate(market: Market, rewards: np.ndarray, idx: np.ndarray) -> Estimate:
    """Exact slope/curvature with kink handling: the step never crosses a kink, and an MU
    on a kink whose left slope is >= 0 and right slope <= 0 is at its best response."""
    u, right, curv_right = utility_derivatives(market, rewards, idx, side="right")
    _, left, curv_left = utility_derivatives(market, rewards, idx, side="left")
    kinks = closed_form_kinks(market, rewards, idx)
    r = np.asarray(rewards, dtype=float)[idx][:, None]
    near = np.isfinite(kinks) & (np.abs(r - kinks) <= KINK_RELATIVE_WIDTH * np.where(np.isfinite(kinks), kinks, 1))
    on_kink = near.any(axis=1)
    stationary = on_kink & (left >= 0) & (right <= 0)
    use_left = on_kink & (right <= 0) & (left < 0)
    slope = np.where(use_left, left, right)
    curv = np.where(use_left, curv_left, curv_right)
    return Estimate(slope=np.where(stationary, 0.0, slope), curvature=curv, utility=u,
                    kinks=np.where(near, np.nan, kinks), stationary=stationary)


def solve(market: Market, *, tolerance: float = 1e-6, max_iterations: int = 5000, initial_rewards=None,
          schedule: str = "auto", damping: float = 1.0, progress=None, **options) -> EquilibriumResult:
    """Projected Newton ascent with exact (implicit) gradients.

    Parameters
    ----------
    market : Market (linear model only).
    tolerance : target relative regret (the solver stops at a tenth of it, predicted).
    max_iterations : rounds.
    initial_rewards : (M,) warm start; default box midpoints.
    schedule : ``"auto"``, ``"jacobi"`` or ``"gauss-seidel"``.
    damping : fraction of the Newton step taken in Jacobi rounds.
    progress : optional callable ``(round, largest predicted relative gain)``.
    """
    if options:
        raise TypeError(f"unknown option(s) for implicit-gradient: {', '.join(sorted(options))}")
    if not market.is_closed_form:
        raise ValueError("implicit-gradient needs bandwidth_model='linear' and asp_cost='linear'")
    start = time.perf_counter()

    def estimate(r, idx, _pert):
        return exact_estimate(market, r, idx)

    def evaluate(r, idx, trial):
        return (market.value_per_qoe[idx] - trial) * closed_form_deviation_qoe(market, r, trial, idx)

    out = run_rounds(market, estimate, evaluate, tolerance=tolerance, max_iterations=max_iterations,
                     initial_rewards=initial_rewards, schedule=schedule, damping=damping, progress=progress)
    elapsed = time.perf_counter() - start
    return make_result(market, out.rewards, solver="implicit-gradient", iterations=out.iterations,
                       solve_time_s=elapsed, follower_solves=out.evaluations,
                       solver_status="not_certified" if out.status == "stalled" else out.status,
                       response=closed_form_response(market, out.rewards),
                       message=f"{out.schedule_used} Newton with exact gradients, {out.iterations} rounds",
                       options={"schedule": schedule, "schedule_used": out.schedule_used, "damping": damping,
                                "tolerance": tolerance, "max_iterations": max_iterations},
                       history=out.history)
