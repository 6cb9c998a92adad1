"""The certificate attached to every answer: follower KKT residuals and each MU's regret.

What this module is for: :func:`certify` judges a reward profile independently of the
solver that produced it. Each MU's regret max_{r_m in box} U_m(r_m, r*_-m) - U_m(r*) is found
by a global one-dimensional search that uses only follower responses (never a solver's
gradient): a dense grid over the reward box (linear and geometric points), vectorised over
all MUs with numpy, then a golden-section polish inside the bracket around each MU's best
grid point. NashConv is the sum of regrets, exploitability the largest. Regrets are judged
relative to each MU's utility scale theta_m * max QoE (see ``Market.utility_scale``).

The polish is a vectorised golden-section search written here because scipy's bounded
scalar minimiser handles one MU at a time (a Python loop over 10,000 MUs) and
``scipy.optimize.elementwise.find_minimum`` needs a three-point bracket whose middle is
lower than both ends, which a maximum at the edge of the box does not give.

May import: numpy and ``market``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from market.followers import FollowerResponse, KKTResiduals, best_response, kkt_residuals
from market.leaders import deviation_utility
from market.model import Market

_GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class Certificate:
    """Evidence that a reward profile is (or is not) an equilibrium."""

    kkt: KKTResiduals
    """Relative follower KKT residuals (primal, dual, complementarity, stationarity)."""
    regret: np.ndarray
    """(M,) each MU's regret (money): best unilateral gain over its reward box."""
    relative_regret: np.ndarray
    """(M,) regret / utility scale (theta_m * max QoE)."""
    best_deviation: np.ndarray
    """(M,) the reward at which each MU's best deviation was found (money per QoE)."""
    tolerance: float
    """The tolerance the certificate was judged against (relative)."""
    grid_points: int
    """Grid points per MU of the regret search."""
    floor_violation: float = 0.0
    """Largest shortfall of delivered QoE below an MU's ``qoe_required`` (0 when all are met)."""

    @property
    def kkt_residual(self) -> float:
        """Largest relative KKT residual."""
        return self.kkt.max

    @property
    def max_regret(self) -> float:
        """Largest regret (money) = exploitability."""
        return float(np.max(self.regret, initial=0.0))

    @property
    def max_relative_regret(self) -> float:
        """Largest relative regret."""
        return float(np.max(self.relative_regret, initial=0.0))

    @property
    def nashconv(self) -> float:
        """Sum of regrets (money)."""
        return float(np.sum(self.regret))

    @property
    def exploitability(self) -> float:
        """Largest regret (money)."""
        return self.max_regret

    @property
    def passed(self) -> bool:
        """True when every relative regret and the KKT residual are within the tolerance."""
        return bool(self.max_relative_regret <= self.tolerance and self.kkt_residual <= self.tolerance
                    and self.floor_violation <= self.tolerance)

    def to_dict(self) -> dict:
        """JSON-ready summary (the ``certificate`` object of the result file)."""
        return {
            "kkt_residual": self.kkt_residual,
            "kkt": {"primal": self.kkt.primal, "dual": self.kkt.dual,
                    "complementarity": self.kkt.complementarity, "stationarity": self.kkt.stationarity},
            "max_regret": self.max_regret,
            "max_relative_regret": self.max_relative_regret,
            "nashconv": self.nashconv,
            "exploitability": self.exploitability,
            "tolerance": self.tolerance,
            "grid_points": self.grid_points,
            "floor_violation": self.floor_violation,
            "passed": self.passed,
        }


def regret_grid(market: Market, points: int) -> np.ndarray:
    """(M, points) trial rewards per MU: half linear, half geometric over the box, sorted."""
    lo, hi = market.reward_min[:, None], market.reward_max[:, None]
    n_lin = points // 2
    n_geo = points - n_lin
    u = np.linspace(0.0, 1.0, n_lin)[None, :]
    lin = lo + (hi - lo) * u
    v = np.linspace(0.0, 1.0, n_geo)[None, :]
    geo = lo * (hi / lo) ** v
    return np.sort(np.concatenate([lin, geo], axis=1), axis=1)


def golden_max(fun, lo: np.ndarray, hi: np.ndarray, iterations: int):
    """Vectorised golden-section maximisation of ``fun`` ((M,) -> (M,)) on [lo, hi] per entry."""
    a, b = lo.copy(), hi.copy()
    c = b - _GOLDEN * (b - a)
    d = a + _GOLDEN * (b - a)
    fc, fd = fun(c), fun(d)
    for _ in range(iterations):
        left = fc >= fd  # maximum in [a, d]
        a = np.where(left, a, c)
        b = np.where(left, d, b)
        new_c = b - _GOLDEN * (b - a)
        new_d = a + _GOLDEN * (b - a)
        probe = np.where(left, new_c, new_d)
        fp = fun(probe)
        c_next = np.where(left, new_c, d)
        d_next = np.where(left, c, new_d)
        fc, fd = np.where(left, fp, fd), np.where(left, fc, fp)
        c, d = c_next, d_next
    best = np.where(fc >= fd, c, d)
    return best, np.maximum(fc, fd)


def certify(market: Market, rewards: np.ndarray, tolerance: float = 1e-6, *,
            response: FollowerResponse | None = None, grid_points: int | None = None,
            polish_iterations: int | None = None) -> Certificate:
    """Certify a reward profile: follower KKT residuals and every MU's regret.

    Parameters
    ----------
    market : Market
    rewards : (M,) reward profile to judge (money per QoE).
    tolerance : relative tolerance for ``passed`` (regret / utility scale, KKT residuals).
    response : the followers' response at ``rewards`` (computed when omitted).
    grid_points : grid points per MU (default 256 with the closed form, 17 with cvxpy).
    polish_iterations : golden-section iterations (default 60, 30 with cvxpy).

    Notes
    -----
    Regret search: dense grid, then golden section inside [g_{i-1}, g_{i+1}] around the best
    grid point g_i (global for any utility whose maxima are no narrower than the grid).
    """
    r = market.clip_rewards(rewards)
    closed = market.is_closed_form
    points = grid_points or (256 if closed else 17)
    polish = polish_iterations or (60 if closed else 30)
    if response is None:
        response = best_response(market, r)
    kkt = kkt_residuals(market, response)
    current = deviation_utility(market, r, r)
    grid = regret_grid(market, points)
    values = deviation_utility(market, r, grid)
    best_i = np.argmax(values, axis=1)
    rows = np.arange(market.n_mus)
    best_x = grid[rows, best_i]
    best_v = values[rows, best_i]
    lo = grid[rows, np.maximum(best_i - 1, 0)]
    hi = grid[rows, np.minimum(best_i + 1, points - 1)]
    if market.n_mus:
        px, pv = golden_max(lambda t: deviation_utility(market, r, t), lo, hi, polish)
        better = pv > best_v
        best_x, best_v = np.where(better, px, best_x), np.where(better, pv, best_v)
    with np.errstate(invalid="ignore"):
        regret = np.where(np.isfinite(current), np.maximum(best_v - current, 0.0),
                          np.where(np.isfinite(best_v), np.inf, 0.0))
    rel = regret / market.utility_scale
    shortfall = np.nan_to_num(market.qoe_required - response.qoe.total, nan=0.0)
    return Certificate(kkt=kkt, regret=regret, relative_regret=rel, best_deviation=best_x,
                       tolerance=float(tolerance), grid_points=points,
                       floor_violation=float(np.max(np.maximum(shortfall, 0.0), initial=0.0)))
