"""Implicit-gradient reward optimization: exact derivatives through the followers' KKT system.

What this module is for: the oracle the tests compare the perturbation solvers against.
Each MU's utility U_m = (theta_m - r_m) Q_m has, for the linear model, exact derivatives in
its own reward from the implicit-function theorem on the follower KKT conditions
(:func:`market.followers.closed_form_own_qoe_derivatives`):

    dU/dr = -Q + (theta - r) Q',   d2U/dr2 = -2 Q' + (theta - r) Q''   (<= 0: concave).

All MUs take a projected Newton ascent step at once (Jacobi) inside a per-MU trust radius
that halves when an MU's step changes direction; the solver stops when every MU's predicted
gain is below a hundredth of the tolerance (relative to its utility scale). It needs the
closed form, so it handles only ``bandwidth_model = "linear"``, ``asp_cost = "linear"``.

May import: numpy, ``market`` and ``solvers.result`` / ``solvers.dual_perturbation``.
"""
from __future__ import annotations

import time

import numpy as np

from market.followers import closed_form_deviation_qoe, closed_form_own_qoe_derivatives, closed_form_response
from market.model import Market
from solvers.dual_perturbation import initial_point
from solvers.result import EquilibriumResult, make_result


def utility_derivatives(market: Market, rewards: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, dU/dr_m, d2U/dr_m^2) per MU at ``rewards`` (own-reward derivatives, exact)."""
    r = np.asarray(rewards, dtype=float)
    q = closed_form_deviation_qoe(market, r, r)
    dq, d2q = closed_form_own_qoe_derivatives(market, r)
    margin = market.value_per_qoe - r
    return margin * q, -q + margin * dq, -2.0 * dq + margin * d2q


def solve(market: Market, *, tolerance: float = 1e-6, max_iterations: int = 5000, initial_rewards=None,
          damping: float = 1.0, progress=None, **options) -> EquilibriumResult:
    """Jacobi projected Newton ascent with exact (implicit) gradients.

    Parameters
    ----------
    market : Market (linear model only).
    tolerance : target relative regret (the solver stops at a hundredth of it, predicted).
    max_iterations : rounds.
    initial_rewards : (M,) warm start; default box midpoints.
    damping : fraction of the Newton step taken.
    progress : optional callable ``(iteration, max_relative_gain)``.
    """
    if options:
        raise TypeError(f"unknown option(s) for implicit-gradient: {', '.join(sorted(options))}")
    if not market.is_closed_form:
        raise ValueError("implicit-gradient needs bandwidth_model='linear' and asp_cost='linear'")
    start = time.perf_counter()
    lo, hi = market.reward_min, market.reward_max
    width = hi - lo
    r = initial_point(market, initial_rewards)
    scale = market.utility_scale
    trust = 0.5 * width
    last = np.zeros(market.n_mus)
    status, history, calm, it = "max_iterations", [], 0, 0
    for it in range(1, max_iterations + 1):
        _, grad, curv = utility_derivatives(market, r)
        with np.errstate(divide="ignore", invalid="ignore"):
            newton = np.where(curv < 0, -grad / curv, np.sign(grad) * trust)
        step = np.clip(np.nan_to_num(newton), -trust, trust)
        new = np.clip(r + damping * step, lo, hi)
        moved = new - r
        gain = np.abs(grad * moved + 0.5 * np.minimum(curv, 0.0) * moved**2)
        worst = float(np.max(gain / scale, initial=0.0))
        flipped = moved * last < 0
        trust = np.where(flipped, 0.5 * trust, np.minimum(1.5 * trust, 0.5 * width))
        last, r = moved, new
        history.append(worst)
        if progress is not None:
            progress(it, worst)
        calm = calm + 1 if worst <= 1e-2 * tolerance else 0
        if calm >= 2:
            status = "converged"
            break
    elapsed = time.perf_counter() - start
    return make_result(market, r, solver="implicit-gradient", iterations=it, solve_time_s=elapsed,
                       solver_status=status, follower_solves=it, response=closed_form_response(market, r),
                       message=f"Jacobi Newton with exact gradients, {it} rounds",
                       options={"damping": damping, "tolerance": tolerance, "max_iterations": max_iterations},
                       history=history)
