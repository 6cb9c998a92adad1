"""The exact optimum ("oracle") of the provisioning problem, state by state.

What this module is for
-----------------------
The yardstick of every provisioning result: for one state, the allocation of integer trials and
powers that maximises the penalised expected utility of eq. (22) / section V-C
(:meth:`provisioning.env.ProvisioningEnv.expected_utility`).

Method (why it is exact)
------------------------
The objective separates over users and couples them only through ``sum P_i <= P_total``.
For user ``i`` with ``N`` trials::

    v_i(N, P) = A_iN (base_iN - kappa_i H(beta_i P)) - eta_c N c zeta - eta_c N P - rho [P < Pmin_iN]

with ``A_iN = eta_q w_i LF_i(N) > 0``, ``H`` the expected BER of eq. (10) as a function of the
mean SNR (convex and decreasing: it is a shadowing average of the convex, decreasing Nakagami
BER) and ``Pmin_iN`` the least power meeting the QoE floor (22b). Cutting each user's range at
``Pmin`` gives at most ``2 N_max`` *options* per user (``N`` trials, floor met or not), on each
of which ``v_i`` is concave in ``P`` with box bounds. For a fixed option per user the problem is
a separable concave maximisation under one linear budget, solved exactly by its KKT conditions:
``P_i(lambda) = clip(P*_i(lambda), lo_i, hi_i)`` with ``A kappa beta |H'(beta P*)| = eta_c N + lambda``
and ``lambda >= 0`` found by bisection so that the budget holds (water-filling). The oracle
enumerates every combination of options (``(2 N_max)^Q``; 4,096 for the 3-user scenario),
visiting them in decreasing order of a Lagrangian upper bound (``sum_i max_P [v_i - lambda P]
+ lambda P_total`` for a near-dual-optimal ``lambda``, valid for any ``lambda >= 0``) and
stopping when no remaining combination can beat the best found, so the maximum is global.
:func:`oracle_allocations` does the same for many states at once (vectorised over states).

Numerics: ``H`` and ``H'`` are tabulated once per channel on a 0.002-wide grid of ``ln(mean SNR)``
from exact values (:func:`provisioning.channel.expected_ber` and its exact derivative) and read
by cubic Hermite interpolation (error below 1e-12); the inverse of ``H'`` is read by linear
interpolation (its error moves ``P*`` by ~1e-7 relatively, which changes the utility only at
second order, ~1e-13). The returned utility is recomputed with the exact model.

We use this 1-D water-filling rather than cvxpy because the expected BER (an incomplete beta
function averaged over shadowing) is not a DCP atom; the method is the textbook KKT solution of
a separable concave resource-allocation problem, written by hand because no library ships it.

For many users (``(2 N_max)^Q`` too large) :func:`oracle_allocation` switches to Lagrangian
(dual) decomposition: it returns a feasible allocation, an upper bound (the dual value) and says
whether the gap closed (``exact``).

May import: numpy, ``market.search`` (golden-section search), ``provisioning.*``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from market.search import golden_max
from provisioning.channel import ChannelParams, expected_ber, expected_ber_derivative
from provisioning.qoe import evaluate_allocation, latency_factor
from provisioning.quality import QualityModel, expected_max_std_normal
from provisioning.scenario import ProvisioningConfig
from provisioning.state import State

__all__ = ["OracleResult", "oracle_allocation", "oracle_allocations", "oracle_allocations_per_state", "BerTable"]

#: Most option combinations enumerated before switching to the dual method.
MAX_ENUMERATED_COMBINATIONS = 200_000

#: Most (2 x max_trials)^users option combinations solved by the batched enumeration of
#: :func:`oracle_allocations` (above it, ``method="auto"`` solves state by state).
MAX_BATCHED_COMBINATIONS = 20_000
_CHUNK = 512
_BISECTION_STEPS = 56  # geometric, over 1e-24..1: final relative width ~1e-15


@dataclass(frozen=True)
class OracleResult:
    """The optimum for one state.

    Attributes
    ----------
    trials : ndarray of int (Q,)
        Optimal ``N_i``.
    power : ndarray of float (Q,)
        Optimal ``P_i``, watts (``sum <= P_total``).
    utility : float
        Expected penalised utility of ``(trials, power)``, computed with the exact model
        (equals ``ProvisioningEnv.expected_utility``).
    upper_bound : float
        A proven upper bound on the optimum (equals ``utility`` up to numerics when ``exact``).
    exact : bool
        True when the optimum is certified (full enumeration, or a closed duality gap).
    method : str
        ``"enumeration"`` or ``"dual"``.
    """

    trials: np.ndarray
    power: np.ndarray
    utility: float
    upper_bound: float
    exact: bool
    method: str


class BerTable:
    """``H(y) = E[BER](e^y)`` and ``G(y) = -dE[BER]/dgbar`` on a uniform grid of ``y = ln gbar``.

    Built from exact values; :meth:`ber` is a cubic Hermite interpolant (uses the exact slope),
    :meth:`y_of_marginal` and :meth:`y_of_ber` invert monotone tables by linear interpolation.
    """

    def __init__(self, channel: ChannelParams, y_low: float = -50.0, y_high: float = 60.0, step: float = 0.002):
        y = np.arange(y_low, y_high + step / 2, step)
        gbar = np.exp(y)
        ber = expected_ber(gbar, channel)
        slope_gbar = expected_ber_derivative(gbar, channel)
        keep = (ber > 1e-280) & (slope_gbar < 0)
        last = int(np.nonzero(keep)[0][-1]) + 1
        self.y = y[:last]
        self.step = step
        self.ber_values = ber[:last]
        self.slope_y = (slope_gbar * gbar)[:last]  # dH/dy
        self.log_marginal = np.log(-slope_gbar[:last])  # ln G, strictly decreasing
        self.log_ber = np.log(self.ber_values)  # decreasing
        # increasing copies for np.interp (contiguous, made once)
        self._y_rev = np.ascontiguousarray(self.y[::-1])
        self._log_marginal_rev = np.ascontiguousarray(self.log_marginal[::-1])
        self._log_ber_rev = np.ascontiguousarray(self.log_ber[::-1])

    def ber(self, y):
        """``H(y)`` by cubic Hermite interpolation; 1/2 below the grid, 0 above it."""
        y = np.asarray(y, dtype=float)
        position = np.nan_to_num((y - self.y[0]) / self.step, nan=0.0, posinf=len(self.y), neginf=-1.0)
        k = np.clip(np.floor(position), 0, len(self.y) - 2).astype(np.int64)
        t = np.clip(position - k, 0.0, 1.0)
        t2, t3 = t * t, t * t * t
        value = (
            (2 * t3 - 3 * t2 + 1) * self.ber_values[k]
            + (t3 - 2 * t2 + t) * self.step * self.slope_y[k]
            + (-2 * t3 + 3 * t2) * self.ber_values[k + 1]
            + (t3 - t2) * self.step * self.slope_y[k + 1]
        )
        value = np.where(y < self.y[0], 0.5, value)
        return np.where(y > self.y[-1], 0.0, value)

    def y_of_marginal(self, log_target):
        """``y`` with ``ln G(y) = log_target`` (clamped to the grid ends)."""
        return np.interp(log_target, self._log_marginal_rev, self._y_rev)

    def y_of_ber(self, ber_target):
        """``y`` with ``H(y) = ber_target`` for ``0 < ber_target < 1/2``, refined by Newton steps."""
        target = np.asarray(ber_target, dtype=float)
        y = np.interp(np.log(target), self._log_ber_rev, self._y_rev)
        for _ in range(3):
            position = (y - self.y[0]) / self.step
            k = np.clip(np.round(position).astype(np.int64), 0, len(self.y) - 1)
            slope = np.minimum(self.slope_y[k], -1e-300)
            y = np.clip(y - (self.ber(y) - target) / slope, self.y[0], self.y[-1])
        return y


@lru_cache(maxsize=16)
def _table(channel: ChannelParams) -> BerTable:
    return BerTable(channel)


@dataclass(frozen=True)
class _Options:
    """Per-user options (N, floor met or not) as arrays of shape (Q, O)."""

    trials: np.ndarray  # int
    gain: np.ndarray  # A kappa: utility lost per unit BER
    log_beta: np.ndarray  # ln(mean SNR per watt), broadcast
    constant: np.ndarray  # A base - fixed cost - penalty
    price: np.ndarray  # eta_c N: utility lost per watt
    low: np.ndarray
    high: np.ndarray
    valid: np.ndarray  # bool


def _options(config: ProvisioningConfig, state: State, quality_model: QualityModel, table: BerTable) -> _Options:
    """Options of one state (arrays of shape (Q, O))."""
    return _options_arrays(
        config, quality_model, table,
        state.difficulty, state.mean_snr_per_watt(config), state.quality_threshold, np.asarray(state.p_total_w),
    )


def _options_arrays(config: ProvisioningConfig, quality_model: QualityModel, table: BerTable,
                    difficulty, beta, quality_threshold, p_total, user_weights=None, seconds_per_trial=None) -> _Options:
    """Options for states given as arrays of shape (..., Q) (``p_total``: shape (...)).

    ``user_weights`` and ``seconds_per_trial`` (shape (..., Q)) replace the config's per state
    (the pipeline's slots differ only in them).

    Returns arrays of shape (..., Q, 2 N_max): column ``k < N_max`` is "``k+1`` trials, QoE
    floor met" (power in ``[Pmin, P_total]``), column ``N_max + k`` is "``k+1`` trials, floor
    missed" (power in ``[0, Pmin]``, penalty paid).
    """
    obj = config.objective
    n_max = config.max_trials
    n = np.arange(1, n_max + 1)
    difficulty = np.asarray(difficulty, dtype=float)
    lead = difficulty.shape  # (..., Q)
    if seconds_per_trial is None:
        seconds_per_trial = config.latency.seconds_per_trial()
    seconds = np.asarray(seconds_per_trial, dtype=float)[..., None]
    lf = latency_factor(n, seconds, config.latency.max_latency_s)  # (..., Q, N)
    mean_log, std_log, kappa = (np.broadcast_to(np.asarray(v, dtype=float), lead) for v in quality_model.log_quality_params(difficulty))
    base = mean_log[..., None] + std_log[..., None] * expected_max_std_normal(n) - np.log(np.asarray(quality_threshold, dtype=float))[..., None]
    weights = np.asarray(obj.user_weights if user_weights is None else user_weights, dtype=float)[..., None]
    amplitude = np.broadcast_to(obj.qoe_weight * weights * lf, base.shape)  # (..., Q, N)
    min_qoe = np.asarray(obj.min_qoe, dtype=float)[:, None]
    beta = np.asarray(beta, dtype=float)
    p_total = np.asarray(p_total, dtype=float)[..., None, None]
    # least power meeting the QoE floor: kappa H(beta P) <= base - Qth/LF
    slack = base - min_qoe / lf  # quality factor margin at zero BER
    kappa2 = np.broadcast_to(kappa[..., None], slack.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        ber_cap = np.where(kappa2 > 0, slack / kappa2, np.where(slack >= 0, np.inf, -np.inf))
    p_min = np.full(slack.shape, np.inf)
    p_min[ber_cap >= 0.5] = 0.0
    inner = (ber_cap > 0) & (ber_cap < 0.5)
    if np.any(inner):
        beta_full = np.broadcast_to(beta[..., None], slack.shape)
        y = table.y_of_ber(ber_cap[inner])
        p_min[inner] = np.exp(y) / beta_full[inner]
    fixed = obj.cost_weight * n * obj.compute_cost_per_step * obj.diffusion_steps
    price = obj.cost_weight * n
    shape = lead + (2 * n_max,)
    trials = np.broadcast_to(np.concatenate([n, n]), shape).copy()
    gain = np.concatenate([amplitude, amplitude], axis=-1) * kappa[..., None]
    constant_met = amplitude * base - fixed
    constant = np.concatenate([constant_met, constant_met - obj.penalty_per_user], axis=-1)
    low = np.concatenate([p_min, np.zeros_like(p_min)], axis=-1)
    high = np.concatenate([np.broadcast_to(p_total, p_min.shape), np.minimum(p_min, p_total)], axis=-1)
    valid = np.concatenate([p_min <= p_total, p_min > 0], axis=-1)
    low = np.where(valid, low, 0.0)
    high = np.where(valid, high, 0.0)
    return _Options(
        trials=trials,
        gain=gain,
        log_beta=np.broadcast_to(np.log(beta)[..., None], shape).copy(),
        constant=constant,
        price=np.broadcast_to(np.concatenate([price, price]), shape).copy(),
        low=low,
        high=high,
        valid=valid,
    )


def _response(table: BerTable, gain, log_beta, price, low, high, shadow_price):
    """KKT power ``clip(P*, low, high)`` with ``gain beta G(beta P*) = price + shadow_price``."""
    with np.errstate(divide="ignore"):
        log_target = np.log(price + shadow_price) - np.log(gain) - log_beta
    y = table.y_of_marginal(log_target)
    unconstrained = np.where(gain > 0, np.exp(y - log_beta), 0.0)
    return np.clip(unconstrained, low, high)


def _value(table: BerTable, gain, log_beta, constant, price, power):
    with np.errstate(divide="ignore"):
        y = np.log(power) + log_beta
    return constant - gain * table.ber(y) - price * power


def _split(table: BerTable, opt: dict, p_total):
    """Exact power split for a batch of option combinations (arrays of shape (C, Q)).

    ``p_total`` is one budget for all rows or one per row (shape (C,)).
    """
    gain, log_beta, price, low, high = opt["gain"], opt["log_beta"], opt["price"], opt["low"], opt["high"]
    p_total = np.broadcast_to(np.asarray(p_total, dtype=float), (gain.shape[0],))
    power = _response(table, gain, log_beta, price, low, high, 0.0)
    over = power.sum(axis=1) > p_total
    if np.any(over):
        sub = {k: v[over] for k, v in opt.items()}
        budget = p_total[over]
        # bracket: at shadow price `hi` every user sits at (or within 1e-12 P_total of) its lower bound
        floor = np.maximum(sub["low"], 1e-12 * budget[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            marginal_at_floor = sub["gain"] * np.exp(sub["log_beta"] + np.interp(np.log(floor) + sub["log_beta"], table.y, table.log_marginal))
        hi = np.maximum(np.nanmax(np.where(np.isfinite(marginal_at_floor), marginal_at_floor, 0.0), axis=1), 1e-300) * 2.0 + 1.0
        lo = hi * 1e-24
        for _ in range(_BISECTION_STEPS):
            mid = np.sqrt(lo * hi)  # geometric bisection: lambda spans many decades
            p = _response(table, sub["gain"], sub["log_beta"], sub["price"], sub["low"], sub["high"], mid[:, None])
            too_much = p.sum(axis=1) > budget
            lo = np.where(too_much, mid, lo)
            hi = np.where(too_much, hi, mid)
        power[over] = _response(table, sub["gain"], sub["log_beta"], sub["price"], sub["low"], sub["high"], hi[:, None])
    total = power.sum(axis=1)
    scale = np.where(total > p_total, p_total / np.maximum(total, 1e-300), 1.0)
    power = power * scale[:, None]  # rounding guard; never binding by more than ~1e-12
    return power


def _gather(options: _Options, index: np.ndarray) -> dict:
    """Arrays of shape (C, Q) for combinations ``index`` (C, Q) of option columns."""
    rows = np.arange(index.shape[1])[None, :]
    return {
        "gain": options.gain[rows, index],
        "log_beta": options.log_beta[rows, index],
        "price": options.price[rows, index],
        "low": options.low[rows, index],
        "high": options.high[rows, index],
        "constant": options.constant[rows, index],
        "trials": options.trials[rows, index],
    }


def _lagrangian_terms(table: BerTable, options: _Options, shadow_prices: np.ndarray):
    """``max_P v_o(P) - lambda P`` per option for each ``lambda`` (shape (L, Q, O))."""
    lam = shadow_prices[:, None, None]
    power = _response(table, options.gain, options.log_beta, options.price, options.low, options.high, lam)
    value = _value(table, options.gain, options.log_beta, options.constant, options.price, power)
    return np.where(options.valid, value - lam * power, -np.inf)


def _best_shadow_price(table: BerTable, options: _Options, p_total: float) -> float:
    """A shadow price close to the minimiser of the (convex) dual function, by two grid passes.

    Any ``lambda >= 0`` yields a valid bound; a good one only makes the pruning tighter.
    """
    grid = np.concatenate([[0.0], np.geomspace(1e-8, 1e8, 97)])
    for _ in range(2):
        dual = _lagrangian_terms(table, options, grid).max(axis=2).sum(axis=1) + grid * p_total
        k = int(np.argmin(dual))
        if grid[k] == 0.0:
            return 0.0
        low, high = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
        grid = np.concatenate([[0.0], np.geomspace(max(low, 1e-12), high, 65)])
    return float(grid[int(np.argmin(dual))])


def _enumerate(config: ProvisioningConfig, state: State, options: _Options, table: BerTable):
    """Branch-and-bound over option combinations with Lagrangian upper bounds."""
    shadow_price = _best_shadow_price(table, options, state.p_total_w)
    bound = _lagrangian_terms(table, options, np.array([shadow_price]))[0]
    per_user = [np.nonzero(options.valid[i])[0] for i in range(config.num_users)]
    combos = np.stack(np.meshgrid(*per_user, indexing="ij"), axis=-1).reshape(-1, config.num_users)
    rows = np.arange(config.num_users)[None, :]
    combo_bound = bound[rows, combos].sum(axis=1) + shadow_price * state.p_total_w
    order = np.argsort(-combo_bound, kind="stable")
    combos, combo_bound = combos[order], combo_bound[order]
    best_value, best = -np.inf, None
    start, chunk_size = 0, 16
    while start < len(combos):
        if combo_bound[start] <= best_value + 1e-12:
            break
        chunk = combos[start : start + chunk_size]
        start += chunk_size
        chunk_size = min(chunk_size * 4, _CHUNK)
        opt = _gather(options, chunk)
        feasible = opt["low"].sum(axis=1) <= state.p_total_w * (1 + 1e-12)
        if not np.all(feasible):
            opt = {k: v[feasible] for k, v in opt.items()}
            if not len(opt["gain"]):
                continue
        power = _split(table, {k: opt[k] for k in ("gain", "log_beta", "price", "low", "high")}, state.p_total_w)
        value = _value(table, opt["gain"], opt["log_beta"], opt["constant"], opt["price"], power).sum(axis=1)
        k = int(np.argmax(value))
        if value[k] > best_value:
            best_value, best = float(value[k]), (opt["trials"][k].copy(), power[k].copy())
    return best, best_value


def _dual(config: ProvisioningConfig, state: State, options: _Options, table: BerTable):
    """Lagrangian decomposition for many users: feasible allocation plus dual upper bound."""
    p_total = state.p_total_w

    def per_user_best(shadow_price):
        power = _response(table, options.gain, options.log_beta, options.price, options.low, options.high, shadow_price)
        value = _value(table, options.gain, options.log_beta, options.constant, options.price, power)
        lagrangian = np.where(options.valid, value - shadow_price * power, -np.inf)
        choice = np.argmax(lagrangian, axis=1)
        rows = np.arange(len(choice))
        return choice, power[rows, choice], lagrangian[rows, choice].sum() + shadow_price * p_total

    choice, power, dual_value = per_user_best(0.0)
    best_bound = dual_value
    if power.sum() > p_total:
        lo, hi = 0.0, 1.0
        while per_user_best(hi)[1].sum() > p_total and hi < 1e30:
            hi *= 4.0
        # minimise the convex dual function over [lo, hi] (golden section on its negative)
        _, best_negative, bracket_lo, bracket_hi = golden_max(
            lambda x: np.array([-per_user_best(float(x[0]))[2]]), np.array([lo]), np.array([hi]), 120, return_bracket=True)
        a, b = float(bracket_lo[0]), float(bracket_hi[0])
        best_bound = min(-float(best_negative[0]), per_user_best(0.0)[2])
        candidates = []
        for shadow_price in (a, b, b * (1 + 1e-6), hi):
            ch, _, _ = per_user_best(shadow_price)
            candidates.append(ch)
    else:
        candidates = [choice]
    best_value, best = -np.inf, None
    for ch in candidates:
        index = ch[None, :]
        opt = _gather(options, index)
        if opt["low"].sum() > p_total * (1 + 1e-12):
            continue
        power = _split(table, {k: opt[k] for k in ("gain", "log_beta", "price", "low", "high")}, p_total)
        value = float(_value(table, opt["gain"], opt["log_beta"], opt["constant"], opt["price"], power).sum())
        if value > best_value:
            best_value, best = value, (opt["trials"][0].copy(), power[0].copy())
    return best, best_value, float(best_bound)


def oracle_allocation(
    config: ProvisioningConfig,
    state: State,
    *,
    quality_model: QualityModel | None = None,
    method: str = "auto",
) -> OracleResult:
    """The exact optimum of the penalised expected utility in one state.

    Parameters
    ----------
    config : ProvisioningConfig
    state : State
    quality_model : QualityModel, optional
        Defaults to the scenario's simulated backend.
    method : {"auto", "enumeration", "dual"}
        ``auto`` enumerates when at most :data:`MAX_ENUMERATED_COMBINATIONS` option
        combinations exist (always for the 3-user scenario), else uses the dual method.

    Returns
    -------
    OracleResult
    """
    quality_model = config.quality if quality_model is None else quality_model
    table = _table(config.channel)
    options = _options(config, state, quality_model, table)
    combinations = math.prod(max(int(v.sum()), 1) for v in options.valid)
    if method == "auto":
        method = "enumeration" if combinations <= MAX_ENUMERATED_COMBINATIONS else "dual"
    if method == "enumeration":
        best, value = _enumerate(config, state, options, table)
        bound = value
    elif method == "dual":
        best, value, bound = _dual(config, state, options, table)
    else:
        raise ValueError(f"method must be 'auto', 'enumeration' or 'dual', got {method!r}")
    if best is None:  # every option combination infeasible: cannot happen (unsat options have low = 0)
        raise RuntimeError("oracle found no feasible allocation")
    trials, power = best
    outcome = evaluate_allocation(config, state, trials, power, quality_model=quality_model)
    exact = method == "enumeration" or bound - value <= 1e-9 * max(1.0, abs(value))
    return OracleResult(
        trials=trials.astype(np.int64),
        power=power,
        utility=float(outcome.reward),
        upper_bound=float(max(bound, outcome.reward)),
        exact=bool(exact),
        method=method,
    )


def _batch_shadow_prices(table: BerTable, options: _Options, p_total: np.ndarray) -> np.ndarray:
    """:func:`_best_shadow_price` for a batch of states (options of shape (S, Q, O))."""
    expand = lambda a: a[:, None]  # (S, 1, Q, O)
    opts = _Options(*(expand(getattr(options, f)) for f in _Options.__dataclass_fields__))
    grid = np.broadcast_to(np.concatenate([[0.0], np.geomspace(1e-6, 1e6, 31)]), (len(p_total), 32))
    for _ in range(2):
        lam = grid[:, :, None, None]
        power = _response(table, opts.gain, opts.log_beta, opts.price, opts.low, opts.high, lam)
        value = _value(table, opts.gain, opts.log_beta, opts.constant, opts.price, power)
        terms = np.where(opts.valid, value - lam * power, -np.inf)
        dual = terms.max(axis=3).sum(axis=2) + grid * p_total[:, None]
        k = np.argmin(dual, axis=1)
        rows = np.arange(len(k))
        best = grid[rows, k]
        low = grid[rows, np.maximum(k - 1, 0)]
        high = grid[rows, np.minimum(k + 1, grid.shape[1] - 1)]
        fraction = np.linspace(0.0, 1.0, 17)[None, :]
        refined = np.exp(np.log(np.maximum(low, 1e-12))[:, None] * (1 - fraction) + np.log(np.maximum(high, 1e-12))[:, None] * fraction)
        grid = np.concatenate([np.zeros((len(k), 1)), refined], axis=1)
        grid = np.where((best == 0.0)[:, None], 0.0, grid)
    return best


def _enumerate_batch(config: ProvisioningConfig, options: _Options, p_total: np.ndarray, table: BerTable, top: int = 32):
    """Branch-and-bound for a batch of states: solve the ``top`` best-bounded combinations of
    every state at once; a state is certified when its best value reaches the bound of its
    first unsolved combination (otherwise the caller falls back to :func:`_enumerate`)."""
    s_count, q, o = options.gain.shape
    shadow = _batch_shadow_prices(table, options, p_total)
    lam = shadow[:, None, None]
    power0 = _response(table, options.gain, options.log_beta, options.price, options.low, options.high, lam)
    value0 = _value(table, options.gain, options.log_beta, options.constant, options.price, power0)
    bound = np.where(options.valid, value0 - lam * power0, -np.inf)  # (S, Q, O)
    combos = np.stack(np.meshgrid(*([np.arange(o)] * q), indexing="ij"), axis=-1).reshape(-1, q)  # (C, Q)
    combo_bound = bound[:, np.arange(q)[None, :], combos].sum(axis=2) + (shadow * p_total)[:, None]  # (S, C)
    top = min(top, combos.shape[0] - 1)
    part = np.argpartition(-combo_bound, top, axis=1)[:, : top + 1]
    order = np.argsort(-np.take_along_axis(combo_bound, part, axis=1), axis=1)
    part = np.take_along_axis(part, order, axis=1)
    threshold = np.take_along_axis(combo_bound, part[:, top:], axis=1)[:, 0]
    chosen = combos[part[:, :top]]  # (S, K, Q)
    s_idx = np.arange(s_count)[:, None, None]
    q_idx = np.arange(q)[None, None, :]
    gathered = {f: getattr(options, f)[s_idx, q_idx, chosen] for f in ("gain", "log_beta", "price", "low", "high", "constant", "trials", "valid")}
    budget = np.broadcast_to(p_total[:, None], (s_count, top))
    feasible = gathered["valid"].all(axis=2) & (gathered["low"].sum(axis=2) <= budget * (1 + 1e-12))
    flat = {f: gathered[f].reshape(s_count * top, q) for f in ("gain", "log_beta", "price", "low", "high")}
    flat["low"] = np.where(feasible.reshape(-1, 1), flat["low"], 0.0)
    power = _split(table, flat, budget.reshape(-1)).reshape(s_count, top, q)
    value = _value(table, gathered["gain"], gathered["log_beta"], gathered["constant"], gathered["price"], power).sum(axis=2)
    value = np.where(feasible, value, -np.inf)
    k = np.argmax(value, axis=1)
    rows = np.arange(s_count)
    best_value = value[rows, k]
    certified = best_value >= threshold - 1e-12
    return gathered["trials"][rows, k], power[rows, k], best_value, certified


def oracle_allocations(
    config: ProvisioningConfig,
    states,
    *,
    quality_model: QualityModel | None = None,
    method: str = "auto",
    batch_size: int = 256,
) -> list[OracleResult]:
    """:func:`oracle_allocation` for each state of ``states``, vectorised over states.

    For the enumeration method the states are processed in batches: the best-bounded option
    combinations of every state are solved together, and any state whose optimum is not
    certified by the batch step (its best value below the bound of its first unsolved
    combination) is solved again by :func:`oracle_allocation`. Results equal the per-state
    ones.
    """
    states = list(states)
    quality_model = config.quality if quality_model is None else quality_model
    full = (2 * config.max_trials) ** config.num_users
    if method == "dual" or (method == "auto" and full > MAX_BATCHED_COMBINATIONS) or not states:
        return [oracle_allocation(config, s, quality_model=quality_model, method=method) for s in states]
    return _enumerate_pairs([config] * len(states), states, quality_model, batch_size, per_pair=False)


def oracle_allocations_per_state(configs, states, *, quality_model: QualityModel | None = None,
                                 batch_size: int = 256) -> list[OracleResult]:
    """:func:`oracle_allocation` for pairs ``(configs[i], states[i])``, vectorised over the pairs.

    The configs may differ only in ``objective.user_weights`` and the latency's seconds per
    trial (the pipeline's slots of one ASP); ``num_users``, ``max_trials``, the channel, the
    other objective fields and ``L_max`` must be equal (else ``ValueError``). As in
    :func:`oracle_allocations`, a pair whose optimum the batch step does not certify is solved
    again by :func:`oracle_allocation`, so the results equal the per-pair ones.
    """
    configs, states = list(configs), list(states)
    if len(configs) != len(states):
        raise ValueError("one config per state")
    if not states:
        return []
    first = configs[0]
    quality_model = first.quality if quality_model is None else quality_model
    shared = lambda c: (c.num_users, c.max_trials, c.channel, c.latency.max_latency_s,  # noqa: E731
                        tuple(v for k, v in vars(c.objective).items() if k != "user_weights"))
    if any(shared(c) != shared(first) for c in configs):
        raise ValueError("configs must differ only in user weights and seconds per trial")
    if (2 * first.max_trials) ** first.num_users > MAX_BATCHED_COMBINATIONS:
        return [oracle_allocation(c, s, quality_model=quality_model) for c, s in zip(configs, states)]
    return _enumerate_pairs(configs, states, quality_model, batch_size, per_pair=True)


def _enumerate_pairs(configs: list, states: list, quality_model: QualityModel, batch_size: int, *,
                     per_pair: bool) -> list[OracleResult]:
    """The batched enumeration of :func:`oracle_allocations` and :func:`oracle_allocations_per_state`.

    ``configs[0]`` supplies everything shared; with ``per_pair`` each pair's user weights and
    seconds per trial are stacked into the option arrays. A pair the batch step does not
    certify is solved again by :func:`oracle_allocation`.
    """
    first = configs[0]
    table = _table(first.channel)
    results: list[OracleResult] = []
    for start in range(0, len(states), batch_size):
        batch, cfgs = states[start:start + batch_size], configs[start:start + batch_size]
        p_total = np.array([s.p_total_w for s in batch])
        overrides = {}
        if per_pair:
            overrides = dict(
                user_weights=np.stack([np.asarray(c.objective.user_weights, dtype=float) for c in cfgs]),
                seconds_per_trial=np.stack([np.asarray(c.latency.seconds_per_trial(), dtype=float) for c in cfgs]))
        options = _options_arrays(
            first, quality_model, table, np.stack([s.difficulty for s in batch]),
            np.stack([s.mean_snr_per_watt(first) for s in batch]), np.stack([s.quality_threshold for s in batch]),
            p_total, **overrides)
        trials, power, _, certified = _enumerate_batch(first, options, p_total, table)
        for i, (cfg, state) in enumerate(zip(cfgs, batch)):
            if not certified[i]:
                results.append(oracle_allocation(cfg, state, quality_model=quality_model, method="enumeration"))
                continue
            outcome = evaluate_allocation(cfg, state, trials[i], power[i], quality_model=quality_model)
            results.append(OracleResult(
                trials=trials[i].astype(np.int64), power=power[i].copy(), utility=float(outcome.reward),
                upper_bound=float(outcome.reward), exact=True, method="enumeration",
            ))
    return results
