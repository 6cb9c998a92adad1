"""The round driver shared by the Newton-type reward solvers (schedules, trust, stopping).

What this module is for: :func:`run_rounds` moves the MUs' rewards by safeguarded,
projected Newton ascent steps on their own utilities, given a function that estimates each
MU's own slope and curvature (by perturbation in ``solvers.dual_perturbation``, exactly in
``solvers.implicit_gradient``). Schedules:

* ``"jacobi"``: all MUs move at once each round;
* ``"gauss-seidel"``: MUs move in turn. MUs at different ASPs do not interact (followers are
  independent), so the turn "the k-th MU of every ASP" is exactly sequential Gauss-Seidel,
  vectorised; a round is a sweep over all turns;
* ``"auto"`` (default): Jacobi while the largest predicted gain keeps falling; once it
  stalls (its minimum over the last 12 rounds is not half that of the 12 before) or cycles
  with period 2, switch to Gauss-Seidel. From a warm start (``initial_rewards``), which is
  presumably near an equilibrium where Jacobi could cycle, "auto" runs Gauss-Seidel. Jacobi can cycle where an
  ASP's capacity sits exactly at its kink (all its MUs cross the kink together);
  Gauss-Seidel cannot, since only one MU per ASP moves at a time.

Trust region per MU: a step is clipped to the trust radius, which drops to half the last
move when the MU's step changes direction and doubles otherwise (at most half its box).
An MU whose predicted gain is already below the stopping threshold does not move.
Stopping: when, for two rounds in a row, every MU's predicted gain of its full projected
Newton step (local quadratic model, ignoring the trust radius) is below a tenth of the
tolerance relative to its utility scale (or below a rigorous bound the estimator gives,
e.g. a stencil that brackets a maximum of a concave utility) AND the length of that step is
below ``reward_tolerance`` (default :data:`REWARD_TOLERANCE`, 1e-5) of the MU's reward: regret
is quadratic in the reward error, so the gain test alone leaves rewards about sqrt(tolerance)
off; or when that figure has stalled for 25 rounds
(it cannot fall further: e.g. a perturbation estimate at a kink). The certificate then
judges the answer.

May import: numpy, ``market`` and ``solvers.certificate`` (its golden-section search).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from market.errors import UserError
from market.model import Market
from market.search import golden_max

SCHEDULES = ("auto", "jacobi", "gauss-seidel")


def gauss_seidel_turns(market: Market) -> list[np.ndarray]:
    """The Gauss-Seidel turns: turn k holds the k-th MU (in index order) of every ASP.

    One stable argsort by ASP and a split, O(M log M): the same turns as selecting
    ``mu_ranks == k`` for every k, which is O(M x largest ASP).
    """
    ranks = mu_ranks(market)
    order = np.argsort(ranks, kind="stable")
    counts = np.bincount(ranks, minlength=int(ranks.max(initial=-1)) + 1)
    return np.split(order, np.cumsum(counts)[:-1]) if counts.size else []


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
    try:
        r = np.asarray(initial_rewards, dtype=float)
    except (TypeError, ValueError):
        raise UserError(f"initial_rewards must be {market.n_mus} finite numbers") from None
    if r.shape != (market.n_mus,) or not np.all(np.isfinite(r)):
        raise UserError(f"initial_rewards must be {market.n_mus} finite numbers, got shape {r.shape}")
    return market.clip_rewards(r)


def predicted_gain(r, slope, curv, lo, hi):
    """Utility gain of the full projected Newton step under the local quadratic model (>= 0).

    It ignores the trust radius, so a throttled step cannot fake convergence. Where the
    curvature is not negative, the gain of moving to the bound the slope points at is used.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        target = np.where(curv < 0, r - slope / curv, np.where(slope > 0, hi, lo))
    target = np.clip(np.where(np.isfinite(target), target, r), lo, hi)
    step = target - r
    model_curv = np.where(np.isfinite(curv), np.minimum(curv, 0.0), 0.0)
    return np.abs(slope * step + 0.5 * model_curv * step**2)


def newton_reach(r, slope, curv, lo, hi):
    """Length of the full projected Newton step (money per QoE): the model's distance to the
    MU's best response (to the bound the slope points at where the curvature is not negative)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        target = np.where(curv < 0, r - slope / curv, np.where(slope > 0, hi, lo))
    target = np.clip(np.where(np.isfinite(target), target, r), lo, hi)
    return np.abs(target - r)


@dataclass
class Rounds:
    """What :func:`run_rounds` returns."""

    rewards: np.ndarray
    """Final reward profile."""
    iterations: int
    """Rounds used (a Gauss-Seidel round is a sweep)."""
    status: str
    """``"converged"`` (stopping test met), ``"max_iterations"``, or ``"stalled"`` (the largest
    predicted gain did not fall by 10% in the last 25 rounds)."""
    history: list = field(default_factory=list)
    """Largest predicted relative gain per round."""
    evaluations: int = 0
    """Calls of the estimator."""
    schedule_used: str = ""
    """The schedule(s) actually run, e.g. ``"jacobi->gauss-seidel"``."""


@dataclass
class Estimate:
    """An estimator's answer for the MUs ``mus`` of one turn."""

    slope: np.ndarray
    """dU_m/dr_m at the current rewards (money per unit reward)."""
    curvature: np.ndarray
    """d2U_m/dr_m^2 (NaN where unknown)."""
    utility: np.ndarray
    """U_m at the current rewards (-inf where a QoE floor is missed)."""
    kinks: np.ndarray | None = None
    """Optional (K, J) own rewards where U_m has a kink; a step never crosses one."""
    stationary: np.ndarray | None = None
    """Optional: True where the MU is known to be at its best response (e.g. at a kink whose
    left slope is >= 0 and right slope <= 0)."""
    gain_bound: np.ndarray | None = None
    """Optional rigorous upper bound on each MU's available gain (inf where unknown); the
    stopping test uses the smaller of it and the Newton model's prediction."""


#: estimate(rewards, mus, perturbation) -> Estimate for the MUs ``mus``.
Estimator = Callable[[np.ndarray, np.ndarray, np.ndarray], Estimate]
#: evaluate(rewards, mus, trial) -> U_m(trial_m, r_{-m}) for the MUs ``mus``.
Evaluator = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

#: Default reward step tolerance, relative to each MU's reward: an MU counts as settled only
#: when its projected Newton step is below it too (regret alone is quadratic in the reward
#: error, so a 1e-6 regret pins a reward only to about 1e-3 of its box).
REWARD_TOLERANCE = 1e-5
ARMIJO = 1e-4
STALL_ROUNDS = 25
CALM_FRACTION = 0.1
SWITCH_ROUNDS = 12
LINE_SEARCH_ITERATIONS = 12
MAX_BACKTRACKS = 40


def _clip_at_kinks(r, step, kinks):
    """Shorten steps that would cross a kink so that they stop on it."""
    if kinks is None:
        return step
    for j in range(kinks.shape[1]):
        k = kinks[:, j]
        crosses = np.isfinite(k) & ((k - r) * (k - (r + step)) < 0)
        step = np.where(crosses, k - r, step)
    return step


def _cycling(history: list) -> bool:
    """A period-2 cycle of the largest predicted gain (Jacobi bouncing across a kink)."""
    if len(history) < 4:
        return False
    h = history[-4:]
    return (abs(h[3] - h[1]) <= 1e-3 * abs(h[3]) and abs(h[2] - h[0]) <= 1e-3 * abs(h[2])
            and abs(h[3] - h[2]) > 1e-2 * max(abs(h[3]), abs(h[2])))


def _newton_step(est, ri, lo_i, hi_i, trust_i, pert_i, scale_i, *, damping: float, tolerance: float,
                 reward_tolerance: float):
    """The step proposed for the MUs of one turn, before the line search.

    A Newton step on the estimated slope and curvature (the trust radius where the curvature is
    not negative), damped, clipped at the estimated kinks and to the reward box; zero for MUs
    that are stationary or already within the stopping threshold. Returns ``(step, gain, reach,
    finite)``: predicted utility gain and reward reach of the Newton step (money, money per QoE)
    and whether the MU's utility is finite (a missed QoE floor is not).
    """
    slope, curv, u_here = est.slope, est.curvature, est.utility
    finite = np.isfinite(u_here)
    with np.errstate(divide="ignore", invalid="ignore"):
        newton = np.where(curv < 0, -slope / curv, np.sign(slope) * trust_i)
    step = damping * np.clip(np.where(np.isfinite(newton), newton, 0.0), -trust_i, trust_i)
    step = _clip_at_kinks(ri, step, est.kinks)
    step = np.where(finite, step, trust_i)  # a missed QoE floor: raise the reward
    stationary = est.stationary if est.stationary is not None else np.zeros(ri.size, bool)
    gain = np.where(finite, predicted_gain(ri, slope, curv, lo_i, hi_i), np.inf)
    gain = np.where(stationary, 0.0, gain)
    reach = np.where(finite, newton_reach(ri, slope, curv, lo_i, hi_i), np.inf)
    reach = np.where(stationary, 0.0, reach)
    if est.gain_bound is not None:
        gain = np.minimum(gain, est.gain_bound)
        reach = np.where(np.isfinite(est.gain_bound), np.minimum(reach, pert_i), reach)
    # an MU already within the stopping threshold stays put: at a kink equilibrium a
    # needless small move would unsettle the other MUs of its ASP
    settled = (gain <= CALM_FRACTION * tolerance * scale_i) & (reach <= reward_tolerance * ri)
    step = np.where(stationary | settled, 0.0, step)
    step = np.clip(ri + step, lo_i, hi_i) - ri
    return step, gain, reach, finite


def _line_search(evaluate: Evaluator, r: np.ndarray, idx: np.ndarray, step: np.ndarray, est, finite: np.ndarray):
    """Armijo backtracking on each MU's own utility (others at ``r``), then golden section.

    A step is accepted if it raises the MU's utility by at least ``ARMIJO`` of the linear
    prediction; otherwise it shrinks to the peak of the quadratic through U(r), U'(r) and
    U(r + s) (between 0.1 and 0.5 of it), up to ``MAX_BACKTRACKS`` times. After a shrink the
    maximum along the step lies between the accepted and the last refused step (U concave):
    a golden-section search of that segment. Returns ``(step, rejected, evaluations)``;
    ``rejected`` marks MUs for which no step along the estimated slope raised U (step 0).
    """
    slope, u_here = est.slope, est.utility
    ri = r[idx]
    step = step.copy()
    check = (step != 0) & finite
    refused = np.zeros(idx.size)  # the last step refused, per MU (0: none)
    accepted_value = np.full(idx.size, -np.inf)
    evaluations = 0
    for _ in range(MAX_BACKTRACKS):
        if not np.any(check):
            break
        sub = np.flatnonzero(check)
        u_new = evaluate(r, idx[sub], ri[sub] + step[sub])
        evaluations += 1
        linear = slope[sub] * step[sub]
        good = u_new >= u_here[sub] + ARMIJO * linear
        check[sub[good]] = False
        accepted_value[sub[good]] = u_new[good]
        refused[sub[~good]] = step[sub[~good]]
        with np.errstate(divide="ignore", invalid="ignore"):
            excess = u_new - u_here[sub] - linear
            ratio = np.where(excess < 0, -linear / (2.0 * excess), 0.5)
        ratio = np.clip(np.where(np.isfinite(ratio), ratio, 0.5), 0.1, 0.5)
        step[sub[~good]] *= ratio[~good]
    rejected = check
    step = np.where(rejected, 0.0, step)
    seg = np.flatnonzero(~rejected & (refused != 0) & finite)
    if seg.size:
        a, b = np.minimum(step[seg], refused[seg]), np.maximum(step[seg], refused[seg])
        base = ri[seg]
        best, value = golden_max(lambda s_: evaluate(r, idx[seg], base + s_), a, b, LINE_SEARCH_ITERATIONS)
        evaluations += LINE_SEARCH_ITERATIONS + 2
        step[seg] = np.where(value > accepted_value[seg], best, step[seg])
    return step, rejected, evaluations


def run_rounds(market: Market, estimate: Estimator, evaluate: Evaluator, *, tolerance: float,
               max_iterations: int, initial_rewards=None, schedule: str = "auto", damping: float = 1.0,
               delta: float | None = None, progress=None, reward_tolerance: float = REWARD_TOLERANCE,
               moved=None) -> Rounds:
    """Projected Newton ascent rounds for all MUs (see the module docstring).

    Each MU's step is accepted only if it raises its own utility (others held at the current
    profile) by at least 1e-4 of the linear prediction (Armijo); otherwise it is shrunk to the
    peak of the quadratic through U(r), U'(r) and U(r + s) (between 0.1 and 0.5 of it), up to
    40 times; after a shrink, 12 golden-section steps between the accepted and the last
    refused step find the best point of that segment (it brackets the maximum along the step
    when the utility is concave, e.g. a capacity kink in between).

    ``delta`` sets the perturbation the estimator receives: it starts at ``delta`` times each
    box width (default 1e-3, or 1e-7 from a warm start) and follows half the MU's last move
    (floor 1e-7 of the width: below it roundoff spoils the curvature).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    lo, hi = market.reward_min, market.reward_max
    width = hi - lo
    r = initial_point(market, initial_rewards)
    scale = market.utility_scale
    if delta is None:  # a warm start is presumably close: probe finely from the start
        delta = 1e-3 if initial_rewards is None else 1e-7
    pert_max = np.maximum(delta * width, 1e-12 * hi)
    pert_min = np.maximum(1e-7 * width, 1e-12 * hi)
    pert = pert_max.copy()
    trust = 0.5 * width
    last_move = np.zeros(market.n_mus)
    everyone = np.arange(market.n_mus)
    turns_gs = None  # built on the first Gauss-Seidel round (Jacobi alone never needs them)
    mode = "jacobi" if schedule == "jacobi" or (schedule == "auto" and initial_rewards is None) else "gauss-seidel"
    used = [mode]
    history, calm, evaluations, status, it = [], 0, 0, "max_iterations", 0
    for it in range(1, max_iterations + 1):
        worst = 0.0
        if mode != "jacobi" and turns_gs is None:
            turns_gs = gauss_seidel_turns(market)
        for idx in ([everyone] if mode == "jacobi" else turns_gs):
            est = estimate(r, idx, pert[idx])
            ri, tr = r[idx], trust[idx]
            step, gain, reach, finite = _newton_step(
                est, ri, lo[idx], hi[idx], tr, pert[idx], scale[idx], damping=damping if mode == "jacobi" else 1.0,
                tolerance=tolerance, reward_tolerance=reward_tolerance)
            tried = np.abs(step)
            step, rejected, line_evaluations = _line_search(evaluate, r, idx, step, est, finite)
            evaluations += 1 + line_evaluations
            # the round's figure: the relative gain, or the reward step scaled so that it meets
            # the same threshold exactly when the step is within reward_tolerance of the box
            figure = np.maximum(gain / scale[idx],
                                CALM_FRACTION * tolerance * reach / np.maximum(reward_tolerance * ri, 1e-300))
            worst = max(worst, float(np.max(figure, initial=0.0)))
            flipped = step * last_move[idx] < 0
            trust[idx] = np.where(flipped, np.maximum(0.5 * np.abs(last_move[idx]), pert_min[idx]),
                                  np.minimum(2.0 * tr, 0.5 * width[idx]))
            last_move[idx] = np.where(step != 0, step, last_move[idx])
            # after a backtrack the next stencil spans the rejected step (e.g. across a kink);
            # after a rejection the slope was unreliable (a stencil across a kink): probe closer
            span = np.where(np.abs(step) < tried, 0.25 * tried, 0.5 * np.abs(step))
            span = np.where(rejected, 0.25 * pert[idx], span)
            pert[idx] = np.clip(span, pert_min[idx], pert_max[idx])
            r[idx] = ri + step
            if moved is not None:
                moved(r, idx)
        history.append(worst)
        if progress is not None:
            progress(it, worst)
        calm = calm + 1 if worst <= CALM_FRACTION * tolerance else 0
        if calm >= 2:
            status = "converged"
            break
        if len(history) >= 2 * STALL_ROUNDS and min(history[-STALL_ROUNDS:]) >= 0.9 * min(history[:-STALL_ROUNDS]) \
                and (schedule != "auto" or mode == "gauss-seidel"):
            status = "stalled"
            break
        if schedule == "auto" and mode == "jacobi" and (_cycling(history) or (
                len(history) >= 2 * SWITCH_ROUNDS
                and min(history[-SWITCH_ROUNDS:]) > 0.5 * min(history[-2 * SWITCH_ROUNDS:-SWITCH_ROUNDS]))):
            mode = "gauss-seidel"
            used.append(mode)
            trust = 0.5 * width
    return Rounds(rewards=r, iterations=it, status=status, history=history, evaluations=evaluations,
                  schedule_used="->".join(used))
