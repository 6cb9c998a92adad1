"""The certificate attached to every answer: follower KKT residuals and each MU's regret.

What this module is for: :func:`certify` judges a reward profile independently of the
solver that produced it. Each MU's regret max_{r_m in box} U_m(r_m, r*_-m) - U_m(r*) is found
by a global one-dimensional search that uses only follower responses (never a solver's
gradient): a dense grid over the reward box (linear and geometric points), vectorised over
a chunk of MUs at a time with numpy (memory O(chunk x grid), not O(M x grid); the per-ASP
sums the deviation formula needs are computed once), then a golden-section polish inside
the bracket around each MU's best grid point. Each MU's utility is concave in its own
reward, so the final bracket also bounds its distance to its best response in reward. NashConv is the sum of regrets, exploitability the largest. Regrets are judged
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

from market.followers import DeviationSums, FollowerResponse, KKTResiduals, best_response, kkt_residuals
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
    reward_distance: np.ndarray | None = None
    """(M,) bound on |r_m - MU m's best response to r*_-m| (money per QoE), from the concavity
    of U_m in its own reward: the farther end of the final search bracket. A small regret
    bounds the reward error only through the curvature (regret ~ |U''| d^2 / 2); this is
    the direct bound a user reading off rewards needs."""
    rewards: np.ndarray | None = None
    """(M,) the reward profile judged (for relative distances)."""

    @property
    def max_relative_reward_distance(self) -> float:
        """Largest reward_distance / r_m (0 when not computed)."""
        if self.reward_distance is None or self.rewards is None or not len(self.rewards):
            return 0.0
        return float(np.max(self.reward_distance / self.rewards))

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
            "max_relative_reward_distance": self.max_relative_reward_distance,
            "passed": self.passed,
        }


def regret_grid(market: Market, points: int, mus: np.ndarray | None = None) -> np.ndarray:
    """(M, points) trial rewards per MU (or per MU of ``mus``): half linear, half geometric
    over the box, sorted."""
    idx = slice(None) if mus is None else mus
    lo, hi = market.reward_min[idx, None], market.reward_max[idx, None]
    n_lin = points // 2
    n_geo = points - n_lin
    u = np.linspace(0.0, 1.0, n_lin)[None, :]
    lin = lo + (hi - lo) * u
    v = np.linspace(0.0, 1.0, n_geo)[None, :]
    geo = lo * (hi / lo) ** v
    return np.sort(np.concatenate([lin, geo], axis=1), axis=1)


def golden_max(fun, lo: np.ndarray, hi: np.ndarray, iterations: int, *, return_bracket: bool = False):
    """Vectorised golden-section maximisation of ``fun`` ((M,) -> (M,)) on [lo, hi] per entry.

    Returns (best point, best value), and with ``return_bracket`` also the final bracket
    (a, b), which holds a maximiser of every unimodal (e.g. concave) ``fun``.
    """
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
    if return_bracket:
        return best, np.maximum(fc, fd), a, b
    return best, np.maximum(fc, fd)


#: MUs per chunk of the regret search: memory is O(chunk x grid points), not O(M x grid points).
CHUNK_MUS = 8192


def certify(market: Market, rewards: np.ndarray, tolerance: float = 1e-6, *,
            response: FollowerResponse | None = None, grid_points: int | None = None,
            polish_iterations: int | None = None, chunk_mus: int = CHUNK_MUS) -> Certificate:
    """Certify a reward profile: follower KKT residuals and every MU's regret.

    Parameters
    ----------
    market : Market
    rewards : (M,) reward profile to judge (money per QoE).
    tolerance : relative tolerance for ``passed`` (regret / utility scale, KKT residuals).
    response : the followers' response at ``rewards`` (computed when omitted).
    grid_points : grid points per MU (default 256 with the closed form, 17 with cvxpy).
    polish_iterations : golden-section iterations (default 60, 30 with cvxpy).
    chunk_mus : MUs searched at once (memory O(chunk_mus x grid_points); the regrets do not
        depend on it: each MU's search is independent and the per-ASP sums are shared).

    Notes
    -----
    Regret search: dense grid, then golden section inside [g_{i-1}, g_{i+1}] around the best
    grid point g_i (global for any utility whose maxima are no narrower than the grid).
    Each MU's utility is concave in its own reward, so its best response lies in the final
    golden-section bracket: ``reward_distance`` (the farther end of that bracket from r_m)
    bounds |r_m - best response| up to the rounding of U near its flat top.
    """
    r = market.clip_rewards(rewards)
    closed = market.is_closed_form
    points = grid_points or (256 if closed else 17)
    polish = polish_iterations or (60 if closed else 30)
    if response is None:
        response = best_response(market, r)
    kkt = kkt_residuals(market, response)
    sums = DeviationSums(market, r) if closed else None
    n = market.n_mus
    regret, best_dev, distance = np.empty(n), np.empty(n), np.empty(n)
    for start in range(0, n, max(1, int(chunk_mus))):
        idx = np.arange(start, min(n, start + max(1, int(chunk_mus))))
        regret[idx], best_dev[idx], distance[idx] = _regret_chunk(market, r, idx, points, polish, sums)
    rel = regret / market.utility_scale
    shortfall = np.nan_to_num(market.qoe_required - response.qoe.total, nan=0.0)
    return Certificate(kkt=kkt, regret=regret, relative_regret=rel, best_deviation=best_dev,
                       tolerance=float(tolerance), grid_points=points,
                       floor_violation=float(np.max(np.maximum(shortfall, 0.0), initial=0.0)),
                       reward_distance=distance, rewards=r)


def _regret_chunk(market: Market, r: np.ndarray, idx: np.ndarray, points: int, polish: int, sums):
    """Regret, best deviation and reward-distance bound of the MUs ``idx`` (one chunk)."""
    def value(trial):
        return deviation_utility(market, r, trial, idx, sums=sums)

    current = value(r[idx])
    grid = regret_grid(market, points, idx)
    values = value(grid)
    best_i = np.argmax(values, axis=1)
    rows = np.arange(idx.size)
    best_x = grid[rows, best_i]
    best_v = values[rows, best_i]
    # the bracket: the nearest grid points strictly below and above the best one (the linear
    # and geometric halves share both ends of the box, so index +-1 can be the same point)
    below = np.sum(grid < best_x[:, None], axis=1) - 1
    above = points - np.sum(grid > best_x[:, None], axis=1)
    lo = grid[rows, np.maximum(below, 0)]
    hi = grid[rows, np.minimum(above, points - 1)]
    px, pv, a, b = golden_max(value, lo, hi, polish, return_bracket=True)
    better = pv > best_v
    best_x, best_v = np.where(better, px, best_x), np.where(better, pv, best_v)
    with np.errstate(invalid="ignore"):
        regret = np.where(np.isfinite(current), np.maximum(best_v - current, 0.0),
                          np.where(np.isfinite(best_v), np.inf, 0.0))
    ri = r[idx]
    distance = np.where(np.isfinite(current), np.maximum(np.abs(ri - a), np.abs(ri - b)), np.inf)
    return regret, best_x, distance
