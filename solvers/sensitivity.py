"""Sensitivity of an equilibrium to every numeric scenario parameter (implicit function theorem).

What this module is for: given a certified equilibrium r* of a scenario, the derivative of
the equilibrium (rewards, QoE, utilities, payments, allocations, prices, profits) with
respect to each numeric field of the scenario file (:func:`scenario_parameters`), computed
by the implicit function theorem on the equilibrium conditions (:func:`equilibrium_sensitivity`).

The equilibrium conditions (design note, "Leaders" and "Followers"; linear model). At r*
each ASP resource is in one *regime* (:func:`detect_regime`): binding (price
pi = (S / C)^2 with S = sum_j sqrt(x_j r_j)) or slack (pi = unit cost); each MU is interior
or at a bound of its reward box. With the regime fixed, the conditions are smooth:

    G_m(r, p) = dU_m/dr_m = -Q_m + (theta_m - r_m) Q'_m = 0          (interior MUs)
    r_m = reward_min_m (or reward_max_m)                              (MUs at a bound)

and dr/dp = -(dG/dr)^-1 dG/dp. The partial derivatives of G and of every output are taken
by the *complex step* (f(x + i h d) = f(x) + i h f'(x) d + O(h^2), exact to rounding with
h = 1e-20: no subtraction, no step to tune) on a complex-safe evaluation of the closed form
(:func:`_evaluate`). dG/dr is block diagonal (MUs interact only through their ASP) and is
built with one complex evaluation per MU rank within an ASP; the system is solved per ASP
block (dense LU, ``scipy.linalg``; ``scipy.sparse.linalg.splu`` for the whole market when
market-wide fields are parameters). Output derivatives are total: the outputs are evaluated at
(r + i h dr/dp, p + i h e_p) in one batched call.

Kinks. Where a capacity sits at its threshold (demand price = unit cost, within
``kink_tolerance``), a reward at a bound has a zero own-slope, or a request equals the
model's token limit, no single smooth system holds: the equilibrium is not locally unique
(design note: "uniqueness is not proven"; the kink is where it fails), and a two-sided
derivative would be wrong. For the parameters of such an ASP and its MUs the derivatives
are reported *one-sided*: (O(p + h) - O(p)) / h and (O(p) - O(p - h)) / h, where O(p +- h)
is the equilibrium the solver continues to from r* (warm start) on that ASP's sub-market
(ASPs are independent, so only that block is re-solved). ``left`` and ``right`` then
differ and ``one_sided`` is set; elsewhere ``left == right`` is the exact derivative.
The model variants without a closed form (Shannon rate, quadratic cost) are not covered
(:class:`NotImplementedError`): their follower has no closed form to differentiate, and
difference quotients of their slower re-solves cost minutes per scenario.

Nothing here is a general-purpose AD tool (the project has no JAX); the complex step needs
only numpy, which is why it is written here.

May import: numpy, scipy, ``market`` and ``solvers`` (registry, result, ascent, implicit_gradient).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from market.errors import UserError
from market.model import Market
from market.scenario import Scenario

#: Complex-step size (relative to nothing: complex-step derivatives have no cancellation).
COMPLEX_STEP = 1e-20
#: A capacity is "at its kink" when |S / (C sqrt(k)) - 1| is at most this.
KINK_TOLERANCE = 1e-5
#: Largest |dU_m/dr_m| / QoE ceiling of an interior MU, after polishing, at a smooth equilibrium.
FOC_TOLERANCE = 1e-9
#: Relative step of the one-sided differences at a kink.
DIFFERENCE_STEP = 1e-5

ASP_FIELDS = ("accuracy", "seconds_per_token", "max_tokens", "compute_capacity", "bandwidth_capacity",
              "compute_cost", "bandwidth_cost")
MU_FIELDS = ("weights.accuracy", "weights.tokens", "weights.timeliness", "tokens_requested", "deadline_s",
             "payload_bits", "spectral_efficiency", "distance_m", "value_per_qoe", "reward_min", "reward_max")
LINK_FIELDS = ("reference_bandwidth_hz", "noise_psd_w_per_hz", "path_loss_exponent", "path_loss_reference_gain")
#: Per-MU and per-ASP outputs whose derivatives are reported.
MU_OUTPUTS = ("reward", "qoe", "utility", "payment", "compute", "bandwidth")
ASP_OUTPUTS = ("compute_price", "bandwidth_price", "profit")
#: Market-wide sums/means derived from the per-entity outputs (linear in them).
AGGREGATES = ("welfare", "mu_utility_total", "asp_profit_total", "payment_total", "mean_qoe", "mean_reward")
_WEIGHT_PRIMITIVE = {"weights.accuracy": "weight_accuracy", "weights.tokens": "weight_tokens",
                     "weights.timeliness": "weight_timeliness"}
_LN2 = math.log(2.0)


# ============================================================================ parameters
@dataclass(frozen=True)
class Parameter:
    """One numeric field of the scenario file, e.g. ``asp[1].compute_capacity``."""

    name: str
    """Dotted field name as in scenario error messages, e.g. ``mu[3].weights.timeliness``."""
    label: str
    """Readable name with the entity's name, e.g. ``asp1.compute_capacity``."""
    value: float
    """Its value in the scenario."""
    block: int
    """Index of the ASP whose sub-market it affects; -1 for a market-wide field."""
    table: str
    """``"asp"``, ``"mu"`` or ``"market"``."""
    index: int
    """Entity index in its table (0 for ``"market"``)."""
    field: str
    """Field within the table, e.g. ``"weights.timeliness"``."""


def scenario_parameters(scenario: Scenario) -> list[Parameter]:
    """Every numeric field that moves the equilibrium, in file order.

    ASP fields :data:`ASP_FIELDS` (and ``transmit_power_w`` where an MU of the ASP gives
    ``distance_m``); MU fields :data:`MU_FIELDS` (the link field the MU gives); the
    ``[market]`` path-loss fields when some MU gives ``distance_m``. Solver settings
    (tolerance, seed, iterations) and ``qoe_required`` are not parameters of the model's
    smooth part and are left out. A weight is moved with the other two rescaled to keep the
    sum 1 (see :func:`with_parameter`).
    """
    market = Market.from_scenario(scenario)
    out: list[Parameter] = []
    uses_distance = np.array([m.distance_m is not None for m in scenario.mus])
    for n, asp in enumerate(scenario.asps):
        names = list(ASP_FIELDS)
        if np.any(uses_distance & (market.mu_asp == n)):
            names.append("transmit_power_w")
        for f in names:
            out.append(Parameter(f"asp[{n}].{f}", f"{asp.name}.{f}", float(getattr(asp, f)), n, "asp", n, f))
    for m, mu in enumerate(scenario.mus):
        for f in MU_FIELDS:
            value = _get(mu, f)
            if value is None:
                continue
            out.append(Parameter(f"mu[{m}].{f}", f"{mu.name}.{f}", float(value), int(market.mu_asp[m]), "mu", m, f))
    if uses_distance.any():
        for f in LINK_FIELDS:
            out.append(Parameter(f"market.{f}", f"market.{f}", float(getattr(scenario.market, f)), -1, "market", 0, f))
    return out


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def with_parameter(scenario: Scenario, parameter: Parameter, value: float) -> Scenario:
    """The scenario with ``parameter`` set to ``value`` (a weight moves the other two in proportion)."""
    if parameter.table == "market":
        return dataclasses.replace(scenario, market=dataclasses.replace(scenario.market, **{parameter.field: value}))
    if parameter.table == "asp":
        asps = list(scenario.asps)
        asps[parameter.index] = dataclasses.replace(asps[parameter.index], **{parameter.field: value})
        return dataclasses.replace(scenario, asps=tuple(asps))
    mus = list(scenario.mus)
    mu = mus[parameter.index]
    if parameter.field.startswith("weights."):
        key = parameter.field.split(".")[1]
        w = dataclasses.asdict(mu.weights)
        rest = 1.0 - w[key]
        others = [k for k in w if k != key]
        for k in others:
            w[k] = (w[k] * (1.0 - value) / rest) if rest > 0 else (1.0 - value) / 2.0
        w[key] = value
        mu = dataclasses.replace(mu, weights=type(mu.weights)(**w))
    else:
        mu = dataclasses.replace(mu, **{parameter.field: value})
    mus[parameter.index] = mu
    return dataclasses.replace(scenario, mus=tuple(mus))


def _direction(scenario: Scenario, market: Market, p: Parameter) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """d(market primitive arrays)/d(parameter): {primitive: (indices, coefficients)}."""
    if p.table == "asp":
        if p.field == "transmit_power_w":  # e = log2(1 + snr / B_ref), snr proportional to P
            mus = np.flatnonzero((market.mu_asp == p.index) & _distance_mask(scenario))
            return {"spectral_efficiency": (mus, _de_dlog_snr(scenario, market, mus) / p.value)}
        return {p.field: (np.array([p.index]), np.array([1.0]))}
    if p.table == "mu":
        m = np.array([p.index])
        if p.field in _WEIGHT_PRIMITIVE:
            key = p.field.split(".")[1]
            w = {"accuracy": market.weight_accuracy[p.index], "tokens": market.weight_tokens[p.index],
                 "timeliness": market.weight_timeliness[p.index]}
            rest = 1.0 - w[key]
            out = {_WEIGHT_PRIMITIVE[p.field]: (m, np.array([1.0]))}
            for k in w:
                if k != key:
                    out[_WEIGHT_PRIMITIVE["weights." + k]] = (m, np.array([-w[k] / rest if rest > 0 else -0.5]))
            return out
        if p.field == "distance_m":  # snr proportional to d^-alpha
            alpha = scenario.market.path_loss_exponent
            return {"spectral_efficiency": (m, -alpha * _de_dlog_snr(scenario, market, m) / p.value)}
        return {p.field: (m, np.array([1.0]))}
    mus = np.flatnonzero(_distance_mask(scenario))
    dlog = _de_dlog_snr(scenario, market, mus)
    if p.field == "path_loss_exponent":
        dist = np.array([scenario.mus[i].distance_m for i in mus])
        return {"spectral_efficiency": (mus, -np.log(dist) * dlog)}
    if p.field == "path_loss_reference_gain":
        return {"spectral_efficiency": (mus, dlog / p.value)}
    if p.field == "noise_psd_w_per_hz":
        return {"spectral_efficiency": (mus, -dlog / p.value)}
    # reference_bandwidth_hz: e = log2(1 + snr / B) with snr fixed by the link
    snr = market.snr_hz[mus]
    return {"spectral_efficiency": (mus, -snr / (p.value**2 * (1.0 + snr / p.value) * _LN2))}


def _distance_mask(scenario: Scenario) -> np.ndarray:
    return np.array([m.distance_m is not None for m in scenario.mus])


def _de_dlog_snr(scenario: Scenario, market: Market, mus: np.ndarray) -> np.ndarray:
    """de / d(log snr) for e = log2(1 + snr / B_ref)."""
    q = market.snr_hz[mus] / scenario.market.reference_bandwidth_hz
    return q / ((1.0 + q) * _LN2)


# ============================================================================ regimes
@dataclass(frozen=True)
class Regime:
    """Which smooth piece of the equilibrium conditions holds at a reward profile."""

    binding: np.ndarray
    """(2, N) bool: capacity binds (row 0 compute, row 1 bandwidth)."""
    capacity_kink: np.ndarray
    """(2, N) bool: demand price within the kink tolerance of the unit cost."""
    capacity_ratio: np.ndarray
    """(2, N) S / (C sqrt(k)) (1 at the kink; inf with a zero unit cost)."""
    capped: np.ndarray
    """(M,) bool: the request exceeds the model's token limit (l = l^max)."""
    token_kink: np.ndarray
    """(M,) bool: the request equals the token limit."""
    at_lower: np.ndarray
    """(M,) bool: reward at reward_min (also when the box is a point)."""
    at_upper: np.ndarray
    """(M,) bool: reward at reward_max."""
    bound_kink: np.ndarray
    """(M,) bool: at a bound with an own-slope of zero (within 1e-9 of the QoE ceiling)."""
    floor: np.ndarray
    """(M,) bool: the MU has a QoE floor (outside this module's smooth system)."""
    foc_residual: np.ndarray
    """(M,) |dU_m/dr_m| / QoE ceiling for interior MUs (0 elsewhere): ~0 at a smooth equilibrium."""

    @property
    def interior(self) -> np.ndarray:
        """(M,) bool: reward strictly inside its box."""
        return ~(self.at_lower | self.at_upper)

    def kink_blocks(self, market: Market, foc_tolerance: float | None = None) -> np.ndarray:
        """(N,) bool: ASPs whose block is not one smooth system (a kink, a floor, or, with
        ``foc_tolerance``, a first-order condition that does not hold under the detected regime)."""
        mu_bad = self.token_kink | self.bound_kink | self.floor
        if foc_tolerance is not None:
            mu_bad = mu_bad | (self.foc_residual > foc_tolerance)
        return self.capacity_kink.any(axis=0) | (np.bincount(market.mu_asp, weights=mu_bad, minlength=market.n_asps) > 0)

    def describe(self, market: Market, blocks=None) -> list[str]:
        """Readable kinks, e.g. ``asp1 compute capacity at its kink (demand price / unit cost = 1.000002)``."""
        out = []
        for k, res in enumerate(("compute", "bandwidth")):
            for n in np.flatnonzero(self.capacity_kink[k]):
                if blocks is None or blocks[n]:
                    out.append(f"{market.asp_names[n]} {res} capacity at its kink "
                               f"(demand price / unit cost = {self.capacity_ratio[k, n] ** 2:.7f})")
        for m in range(market.n_mus):
            if blocks is not None and not blocks[market.mu_asp[m]]:
                continue
            if self.token_kink[m]:
                out.append(f"{market.mu_names[m]}: tokens_requested equals its ASP's max_tokens")
            if self.bound_kink[m]:
                out.append(f"{market.mu_names[m]}: reward at a bound of its box with zero own slope")
            if self.floor[m]:
                out.append(f"{market.mu_names[m]}: QoE floor (qoe_required)")
        return out


def capacity_state(market: Market, rewards: np.ndarray):
    """(S (2, N), ratio S / (C sqrt k) (2, N)) at ``rewards`` (linear-model demand)."""
    r = np.asarray(rewards, dtype=float)
    sums, ratios = [], []
    for need, cap, cost in ((market.timeliness_compute_need, market.compute_capacity, market.compute_cost),
                            (market.timeliness_bandwidth_need, market.bandwidth_capacity, market.bandwidth_cost)):
        s = market.per_asp_sum(np.sqrt(need * r))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(cost > 0, s / (cap * np.sqrt(cost)), np.where(s > 0, np.inf, 0.0))
        sums.append(s)
        ratios.append(ratio)
    return np.array(sums), np.array(ratios)


def detect_regime(market: Market, rewards: np.ndarray, kink_tolerance: float = KINK_TOLERANCE) -> Regime:
    """The regime (binding/slack capacities, MUs at bounds) at ``rewards`` and where it is ambiguous."""
    r = np.asarray(rewards, dtype=float)
    _, ratio = capacity_state(market, r)
    kink = np.isfinite(ratio) & (np.abs(ratio - 1.0) <= kink_tolerance) & (ratio > 0)
    binding = ratio > 1.0
    width = market.reward_max - market.reward_min
    at_lower = r <= market.reward_min + 1e-9 * width
    at_upper = (r >= market.reward_max - 1e-9 * width) & ~at_lower
    limit = market.max_tokens[market.mu_asp]
    capped = market.tokens_requested > limit
    token_kink = market.tokens_requested == limit
    partial = Regime(binding=binding, capacity_kink=kink, capacity_ratio=ratio, capped=capped,
                     token_kink=token_kink, at_lower=at_lower, at_upper=at_upper,
                     bound_kink=np.zeros(market.n_mus, bool), floor=~np.isnan(market.qoe_required),
                     foc_residual=np.zeros(market.n_mus))
    foc = np.real(_evaluate(market, partial, _primitives(market), r)["foc"]) / market.qoe_ceiling
    at_bound = at_lower | at_upper
    bound_kink = at_bound & (width > 0) & (np.abs(foc) <= 1e-9)
    residual = np.where(at_bound, 0.0, np.abs(foc))
    return dataclasses.replace(partial, bound_kink=bound_kink, foc_residual=residual)


# ============================================================================ evaluation
_ASP_PRIMS = ASP_FIELDS
_MU_PRIMS = ("weight_accuracy", "weight_tokens", "weight_timeliness", "tokens_requested", "deadline_s",
             "payload_bits", "spectral_efficiency", "value_per_qoe", "reward_min", "reward_max")


def _primitives(market: Market) -> dict[str, np.ndarray]:
    """The market's primitive arrays (what the scenario's fields map to)."""
    return {k: getattr(market, k) for k in _ASP_PRIMS + _MU_PRIMS}


def _asp_sum(market: Market, values: np.ndarray) -> np.ndarray:
    """Per-ASP sums of (M,) or (M, B) arrays, complex-safe."""
    onehot = sp.csr_matrix((np.ones(market.n_mus), (market.mu_asp, np.arange(market.n_mus))),
                           shape=(market.n_asps, market.n_mus))
    return onehot @ values


def _evaluate(market: Market, regime: Regime, prims: dict[str, np.ndarray], r: np.ndarray) -> dict[str, np.ndarray]:
    """Equilibrium conditions and outputs under a fixed regime; complex-safe, broadcasts a trailing axis.

    ``prims`` holds (N[, B]) and (M[, B]) arrays (see :func:`_primitives`), ``r`` (M[, B]).
    Returns ``foc`` (dU_m/dr_m), the per-MU outputs :data:`MU_OUTPUTS` (``reward`` is ``r``)
    and the per-ASP outputs :data:`ASP_OUTPUTS`.
    """
    asp = market.mu_asp
    extra = (1,) * (np.ndim(r) - 1)

    def mu_mask(mask):
        return mask.reshape(mask.shape + extra)

    tokens = np.where(mu_mask(regime.capped), prims["max_tokens"][asp], prims["tokens_requested"])
    w_t = prims["weight_timeliness"]
    ceiling = (prims["weight_accuracy"] * prims["accuracy"][asp] + prims["weight_tokens"] * tokens
               / prims["tokens_requested"] + w_t)
    needs = (w_t * tokens * prims["seconds_per_token"][asp] / prims["deadline_s"],
             w_t * prims["payload_bits"] / (prims["spectral_efficiency"] * prims["deadline_s"]))
    base_needs = (market.timeliness_compute_need, market.timeliness_bandwidth_need)
    q, slope, alloc, prices = ceiling, 0.0, [], []
    for k, (res, need) in enumerate(zip(("compute", "bandwidth"), needs)):
        active = mu_mask(base_needs[k] > 0)
        cap, cost = prims[f"{res}_capacity"], prims[f"{res}_cost"]
        safe_need = np.where(active, need, 1.0)
        root = np.where(active, np.sqrt(safe_need * r), 0.0)
        total = _asp_sum(market, root)
        bind = regime.binding[k].reshape(regime.binding[k].shape + extra)
        price = np.where(bind, (total / cap) ** 2, cost + 0.0 * total)
        safe_price = np.where(price == 0, 1.0, price)
        p_mu = safe_price[asp]
        q = q - np.where(active, np.sqrt(safe_need * p_mu / r), 0.0)
        others = total[asp] - root
        coef = np.where(bind[asp], np.sqrt(safe_need) * others / cap[asp], np.sqrt(safe_need * cost[asp]))
        slope = slope + np.where(active, 0.5 * coef * r**-1.5, 0.0)
        alloc.append(np.where(active, np.sqrt(safe_need * r / p_mu), 0.0))
        prices.append(price)
    theta = prims["value_per_qoe"]
    utility = (theta - r) * q
    payment = r * q
    cost_total = prims["compute_cost"] * _asp_sum(market, alloc[0]) + prims["bandwidth_cost"] * _asp_sum(market, alloc[1])
    return {"foc": -q + (theta - r) * slope, "reward": r + 0.0 * q, "qoe": q, "utility": utility,
            "payment": payment, "compute": alloc[0], "bandwidth": alloc[1], "compute_price": prices[0],
            "bandwidth_price": prices[1], "profit": _asp_sum(market, payment) - cost_total}


# ============================================================================ results
@dataclass
class Sensitivity:
    """Derivatives of the equilibrium outputs with respect to the scenario's parameters.

    ``left[o]`` and ``right[o]`` are sparse (entities x parameters) matrices of one-sided
    derivatives of output ``o`` (per MU for :data:`MU_OUTPUTS`, per ASP for
    :data:`ASP_OUTPUTS`); where the equilibrium is smooth they are equal and exact.
    Units: output unit per parameter unit (e.g. money per compute unit).
    """

    parameters: list[Parameter]
    """The parameters (columns)."""
    base: dict[str, np.ndarray]
    """Output values at the equilibrium."""
    left: dict[str, sp.csc_matrix]
    """One-sided derivatives as the parameter decreases."""
    right: dict[str, sp.csc_matrix]
    """One-sided derivatives as the parameter increases."""
    method: np.ndarray
    """(P,) ``"implicit"`` (exact, two-sided) or ``"one-sided"`` (kink)."""
    kinks: list[str] = field(default_factory=list)
    """Readable description of the kinks found (empty when the equilibrium is smooth)."""
    kink_blocks: np.ndarray | None = None
    """(N,) bool: ASPs whose parameters got one-sided derivatives."""
    continuation_failures: int = 0
    """Re-solves of the one-sided differences whose certificate failed."""

    @property
    def one_sided(self) -> np.ndarray:
        """(P,) bool: no two-sided derivative exists (a kink); use ``left`` and ``right``."""
        return self.method == "one-sided"

    def derivative(self, output: str) -> sp.csc_matrix:
        """Exact two-sided derivatives; the columns of one-sided (kink) parameters are 0."""
        keep = sp.diags((~self.one_sided).astype(float))
        return (0.5 * (self.left[output] + self.right[output]) @ keep).tocsc()

    def aggregate_base(self) -> dict[str, float]:
        """Values of the :data:`AGGREGATES` at the equilibrium."""
        return _aggregate({k: self.base[k][:, None] for k in self.base}, dense=True, count=len(self.base["qoe"]))

    def aggregate(self, side: str = "right") -> dict[str, np.ndarray]:
        """(P,) derivative of each aggregate, ``side`` ``"left"`` or ``"right"``."""
        mats = self.left if side == "left" else self.right
        return _aggregate(mats, dense=False, count=len(self.base["qoe"]))

    def elasticities(self, side: str = "right") -> dict[str, np.ndarray]:
        """(P,) elasticity (d log output / d log parameter) of each aggregate; NaN where the base is 0."""
        values = np.array([p.value for p in self.parameters])
        base = self.aggregate_base()
        out = {}
        for name, d in self.aggregate(side).items():
            with np.errstate(divide="ignore", invalid="ignore"):
                out[name] = np.where(base[name] != 0, d * values / base[name], np.nan)
        return out


def _aggregate(mats, *, dense: bool, count: int) -> dict[str, np.ndarray]:
    def col_sum(name):
        m = mats[name]
        return np.asarray(m.sum(axis=0)).ravel()

    util, profit = col_sum("utility"), col_sum("profit")
    out = {"welfare": util + profit, "mu_utility_total": util, "asp_profit_total": profit,
           "payment_total": col_sum("payment"), "mean_qoe": col_sum("qoe") / count,
           "mean_reward": col_sum("reward") / count}
    if dense:
        return {k: float(v[0]) for k, v in out.items()}
    return out


# ============================================================================ the computation
def _batched_direction(scenario, market, params, columns):
    """Complex perturbation directions for a chunk of parameters: ({primitive: (len, B)}, scale (B,)).

    Each direction is d(primitive)/d(parameter) times the parameter's magnitude (its scale),
    so that the complex step is small relative to every primitive whatever the parameter's
    units (a noise density of 4e-21 W/Hz moves spectral efficiencies by 1e20 per unit)."""
    prims = _primitives(market)
    dirs = {k: np.zeros(v.shape + (len(columns),)) for k, v in prims.items()}
    scale = np.array([abs(params[j].value) or 1.0 for j in columns])
    for b, j in enumerate(columns):
        for prim, (idx, coef) in _direction(scenario, market, params[j]).items():
            dirs[prim][idx, b] += coef * scale[b]
    return dirs, scale


def _implicit(scenario: Scenario, market: Market, rewards: np.ndarray, regime: Regime, params, columns,
              chunk: int = 256):
    """Exact derivatives of every output for the parameters ``columns`` (smooth blocks only):
    {output: (entities, len(columns)) array}. Run per ASP block (small dense systems) by
    :func:`equilibrium_sensitivity`; on the whole market only for market-wide fields."""
    h = COMPLEX_STEP
    r = np.asarray(rewards, dtype=float)
    M = market.n_mus
    prims0 = _primitives(market)
    # dG/dr: one complex evaluation per MU rank within its ASP (MUs interact only within an ASP)
    from solvers.ascent import mu_ranks

    ranks = mu_ranks(market)
    n_ranks = int(ranks.max(initial=-1)) + 1
    members = -np.ones((market.n_asps, max(n_ranks, 1)), dtype=np.intp)
    members[market.mu_asp, ranks] = np.arange(M)
    pert = (ranks[:, None] == np.arange(n_ranks)[None, :]).astype(float)
    batched = {k: np.repeat(v[..., None], n_ranks, axis=-1) for k, v in prims0.items()}
    g = _evaluate(market, regime, batched, r[:, None] + 1j * h * pert)["foc"].imag / h
    col = members[market.mu_asp]  # (M, n_ranks): the rank-k MU of m's ASP
    ok = col >= 0
    jac = sp.csc_matrix((g[ok], (np.nonzero(ok)[0], col[ok])), shape=(M, M))
    free = regime.interior & ~(market.reward_min == market.reward_max)
    inner = np.flatnonzero(free)
    solve_inner = None
    if inner.size:
        j_inner = jac[inner][:, inner]
        if inner.size <= 2000:  # a block (or a small market): dense LU is fastest
            from scipy.linalg import lu_factor, lu_solve

            factors = lu_factor(j_inner.toarray())
            solve_inner = lambda b: lu_solve(factors, b)  # noqa: E731
        else:
            solve_inner = splu(j_inner.tocsc()).solve
    bounds_low, bounds_high = regime.at_lower, regime.at_upper
    out = {name: [] for name in MU_OUTPUTS + ASP_OUTPUTS}
    columns = list(columns)
    for start in range(0, len(columns), chunk):
        cols = columns[start:start + chunk]
        dirs, scale = _batched_direction(scenario, market, params, cols)
        dr = np.where(bounds_low[:, None], dirs["reward_min"], 0.0) + np.where(bounds_high[:, None], dirs["reward_max"], 0.0)
        prims_c = {k: prims0[k][..., None] + 1j * h * dirs[k] for k in prims0}
        rhs = _evaluate(market, regime, prims_c, r[:, None] + 1j * h * dr)["foc"].imag / h
        if solve_inner is not None:
            dr[inner] = -solve_inner(np.ascontiguousarray(rhs[inner]))
        vals = _evaluate(market, regime, prims_c, r[:, None] + 1j * h * dr)
        for name in out:  # per unit of the parameter (the direction was per unit of its scale)
            out[name].append(vals[name].imag / (h * scale))
    return {name: np.concatenate(mats, axis=1) for name, mats in out.items()}


def _block_scenario(scenario: Scenario, market: Market, n: int) -> tuple[Scenario, np.ndarray]:
    """The sub-market of ASP ``n`` (the ASP and its MUs) and the indices of those MUs."""
    mus = market.mus_of(n)
    sub_mus = tuple(dataclasses.replace(scenario.mus[m], asp=scenario.asps[n].name) for m in mus)
    return dataclasses.replace(scenario, asps=(scenario.asps[n],), mus=sub_mus), mus


def _outputs(result) -> dict[str, np.ndarray]:
    """Per-MU and per-ASP outputs of a solved result (names as :data:`MU_OUTPUTS`, :data:`ASP_OUTPUTS`)."""
    table = result.asp_table()
    return {"reward": result.rewards, "qoe": result.response.qoe.total, "utility": result.utility,
            "payment": result.payment, "compute": result.response.compute, "bandwidth": result.response.bandwidth,
            "compute_price": table["compute_price"], "bandwidth_price": table["bandwidth_price"],
            "profit": table["profit"]}


def polish(market: Market, rewards: np.ndarray, iterations: int = 60, max_move: float = 1e-2,
           movable: np.ndarray | None = None) -> np.ndarray:
    """Jacobi Newton steps on every MU's exact own first-order condition (linear model).

    A certified solve stops where each MU's remaining gain is below the tolerance, which
    leaves first-order residuals of about sqrt(tolerance); difference quotients need the
    equilibrium to rounding precision. Uses the implicit-gradient oracle's own-reward
    derivatives (``solvers.implicit_gradient.utility_derivatives``, independent of this
    module's complex-step system). Only the MUs ``movable`` (bool (M,), default all) move.
    An ASP's MUs keep their rewards when the polish would move one of them by more than
    ``max_move`` of its box (a kink: Newton does not apply there).
    """
    from solvers.implicit_gradient import utility_derivatives

    r0 = market.clip_rewards(rewards)
    r = r0.copy()
    width = np.where(market.reward_max > market.reward_min, market.reward_max - market.reward_min, 1.0)
    for _ in range(iterations):
        _, slope, curv = utility_derivatives(market, r)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(curv < 0, -slope / curv, 0.0)
        step = np.where(np.isfinite(step), step, 0.0)
        if movable is not None:
            step = np.where(movable, step, 0.0)
        new = market.clip_rewards(r + step)
        done = np.max(np.abs(new - r) / width, initial=0.0) <= 1e-16
        r = new
        if done:
            break
    moved = np.zeros(market.n_asps)
    np.maximum.at(moved, market.mu_asp, np.abs(r - r0) / width)
    runaway = (moved > max_move)[market.mu_asp]  # per ASP: blocks are independent
    return np.where(runaway, r0, r)


def continuation_solve(scenario: Scenario, rewards: np.ndarray, *, solver: str | None = None,
                       smooth: bool = False):
    """Re-solve ``scenario`` warm-started at ``rewards`` to a tight tolerance; returns the result.

    ``smooth``: the equilibrium is known to be away from kinks, so (linear model) it is
    polished to rounding precision with :func:`polish` before certification.
    """
    import solvers
    from solvers.result import make_result

    market = Market.from_scenario(scenario)
    name = solver or ("implicit-gradient" if market.is_closed_form else "dual-perturbation")
    tight = 1e-13 if market.is_closed_form else 1e-11
    result = solvers.solve(market, name, tolerance=tight, initial_rewards=rewards)
    if smooth and market.is_closed_form and result.response is not None:
        result = make_result(market, polish(market, result.rewards), solver=result.solver,
                             iterations=result.iterations, solve_time_s=result.solve_time_s,
                             solver_status=result.solver_status, message=result.message + "; polished")
    return solvers.registry.finalize(result, market.tolerance, {})


def block_differences(scenario: Scenario, rewards: np.ndarray, block: int, params: list[Parameter],
                      columns: list[int], *, step: float = DIFFERENCE_STEP):
    """One-sided difference quotients of ASP ``block``'s outputs by warm-started re-solves of its sub-market.

    Returns (MU indices of the block, {output: (left (K, B), right (K, B))}, failures): left
    = (O(p) - O(p - h)) / h, right = (O(p + h) - O(p)) / h with h = ``step`` |p| (``step``
    when p = 0); NaN on a side whose step leaves the field's valid range.
    """
    market = Market.from_scenario(scenario)
    sub, mus = _block_scenario(scenario, market, block)
    r0 = np.asarray(rewards, dtype=float)[mus]
    # the base is the same tight continuation at the unperturbed value (not r0 itself, which a
    # looser solve left up to ~sqrt(tolerance) away along a kink's continuum)
    base = _outputs(continuation_solve(sub, r0))
    left = {k: [] for k in MU_OUTPUTS + ASP_OUTPUTS}
    right = {k: [] for k in left}
    failures = 0
    for j in columns:
        p = params[j]
        local = _localize(p, mus)
        h = step * abs(p.value) if p.value != 0 else step
        outs = {}
        for sign in (+1, -1):
            try:
                moved = Scenario.from_dict(with_parameter(sub, local, p.value + sign * h).to_dict())
            except UserError:  # the step leaves the field's valid range: that side is not reported
                outs[sign] = None
                continue
            res = continuation_solve(moved, r0)
            failures += int(res.status != "converged")
            outs[sign] = _outputs(res)
        for k in left:
            nan = np.full(len(base[k]), np.nan)
            right[k].append((outs[+1][k] - base[k]) / h if outs[+1] is not None else nan)
            left[k].append((base[k] - outs[-1][k]) / h if outs[-1] is not None else nan)
    pack = {k: (np.array(left[k]).T, np.array(right[k]).T) for k in left}
    return mus, pack, failures


def _localize(p: Parameter, mus: np.ndarray) -> Parameter:
    """``p`` as a parameter of its ASP's sub-market (ASP index 0, MU index within ``mus``)."""
    return Parameter(p.name, p.label, p.value, 0, p.table, _local_index(p, mus), p.field)


def _sub_regime(regime: Regime, n: int, mus: np.ndarray) -> Regime:
    """The regime of ASP ``n``'s sub-market (MUs ``mus``)."""
    per_asp = {f: getattr(regime, f)[:, [n]] for f in ("binding", "capacity_kink", "capacity_ratio")}
    per_mu = {f.name: getattr(regime, f.name)[mus] for f in dataclasses.fields(Regime) if f.name not in per_asp}
    return Regime(**per_asp, **per_mu)


def _local_index(p: Parameter, mus: np.ndarray) -> int:
    if p.table == "mu":
        return int(np.flatnonzero(mus == p.index)[0])
    return 0


def _evaluate_at(scenario: Scenario, rewards: np.ndarray):
    """A result object for ``rewards`` on ``scenario`` (followers' response, no solve)."""
    from solvers.result import make_result

    market = Market.from_scenario(scenario)
    return make_result(market, rewards, solver="given", iterations=0, solve_time_s=0.0)


def equilibrium_sensitivity(scenario: Scenario, rewards: np.ndarray, *, kink_tolerance: float = KINK_TOLERANCE,
                            progress=None) -> Sensitivity:
    """Derivatives of the equilibrium at ``rewards`` with respect to every scenario parameter.

    Parameters
    ----------
    scenario : Scenario
        The scenario (its parameters are :func:`scenario_parameters`).
    rewards : (M,) array
        A certified equilibrium of it (money per QoE), e.g. ``solvers.solve(...).rewards``.
    kink_tolerance : float
        Relative distance of S / (C sqrt k) from 1 within which a capacity counts as at its kink.
    progress : callable(int), optional
        Called with the number of parameters finished after each block.

    Returns
    -------
    Sensitivity
    """
    market = Market.from_scenario(scenario)
    if not market.is_closed_form:
        raise NotImplementedError(
            f"sensitivity needs the closed-form follower (bandwidth_model='linear', asp_cost='linear'); "
            f"this scenario has bandwidth_model={market.bandwidth_model!r}, asp_cost={market.asp_cost!r}")
    r = np.asarray(rewards, dtype=float)
    params = scenario_parameters(scenario)
    P = len(params)
    blocks_of = np.array([p.block for p in params])
    kinked = detect_regime(market, r, kink_tolerance).kink_blocks(market)
    r = polish(market, r, movable=~kinked[market.mu_asp])  # first-order residual ~1e-7 -> rounding
    regime = detect_regime(market, r, kink_tolerance)
    kinked = regime.kink_blocks(market, foc_tolerance=FOC_TOLERANCE)
    base = _outputs(_evaluate_at(scenario, r))
    triplets = {side: {k: ([], [], []) for k in base} for side in ("left", "right")}

    def put(rows_mu, rows_asp, cols, mats_left, mats_right):
        """Store (entities, len(cols)) blocks of derivatives at global rows and columns."""
        for side, mats in (("left", mats_left), ("right", mats_right)):
            for k, block in mats.items():
                rr = rows_mu if k in MU_OUTPUTS else rows_asp
                nz = np.nonzero(np.nan_to_num(block, nan=1.0))
                store = triplets[side][k]
                store[0].append(np.asarray(rr)[nz[0]])
                store[1].append(np.asarray(cols)[nz[1]])
                store[2].append(block[nz])

    method = np.array(["implicit"] * P, dtype=object)
    global_cols = [j for j in range(P) if blocks_of[j] < 0]
    if global_cols:  # market-wide link fields move every block: the whole market at once
        mats = _implicit(scenario, market, r, regime, params, global_cols)
        put(np.arange(market.n_mus), np.arange(market.n_asps), global_cols, mats, mats)
        if progress:
            progress(len(global_cols))
    failures = 0
    for n in range(market.n_asps):
        cols = [j for j in range(P) if blocks_of[j] == n]
        mus = market.mus_of(n)
        if not cols or mus.size == 0:  # an ASP that serves nobody moves nothing
            continue
        if kinked[n]:
            mus, pack, fails = block_differences(scenario, r, n, params, cols)
            failures += fails
            put(mus, [n], cols, {k: v[0] for k, v in pack.items()}, {k: v[1] for k, v in pack.items()})
            method[cols] = "one-sided"
        else:
            sub, mus = _block_scenario(scenario, market, n)
            local = [_localize(params[j], mus) for j in cols]
            mats = _implicit(sub, Market.from_scenario(sub), r[mus], _sub_regime(regime, n, mus), local,
                             range(len(cols)))
            put(mus, [n], cols, mats, mats)
        if progress:
            progress(len(cols))

    def build(side, k):
        rows, cols, vals = (np.concatenate(x) if x else np.zeros(0) for x in triplets[side][k])
        return sp.csc_matrix((vals, (rows.astype(np.intp), cols.astype(np.intp))), shape=(len(base[k]), P))

    return Sensitivity(parameters=params, base=base, left={k: build("left", k) for k in base},
                       right={k: build("right", k) for k in base}, method=method,
                       kinks=regime.describe(market, kinked), kink_blocks=kinked, continuation_failures=failures)
