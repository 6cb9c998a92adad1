"""Alternative mechanisms on the same market, and the metrics that compare them.

What this module is for: each mechanism maps a :class:`market.Market` to rewards,
allocations and payments (a :class:`MechanismOutcome`); :func:`mechanism_metrics` turns an
outcome into the figures of the comparison (overhead, service cost, ASP resource use,
QoE and its parts, utilities, welfare). The mechanisms (see ``docs/mechanisms.md``):

``proposed``
    The personalized-QoE EPEC equilibrium (default solver through ``solvers.solve``).
``uniform``
    One reward for every MU (no personalization), the level that maximises the MUs'
    total utility (1-D search), clipped to each MU's box; ASPs best-respond.
``equal-split``
    Each ASP divides its whole capacity equally among its MUs. MUs pay the ASP's cost of
    what they receive (cost recovery, the ASP breaks even).
``proportional``
    Each ASP divides its whole capacity in proportion to the proposed equilibrium's
    rewards (same bids, a different allocation rule); MUs pay ``r Q`` as in the proposed one.
``timeliness-only`` / ``accuracy-only``
    The EPEC solved with every MU's weights replaced by (0, 0, 1) / (1, 0, 0), judged
    under the true three-part QoE; payments ``r Q_contract``. Under accuracy-only the
    contract does not depend on the allocation, so rewards sit at ``reward_min`` and the
    ASP, with no incentive, is taken to give an equal split of its capacity (best effort).
``asp-pricing``
    Each ASP posts unit prices for compute and bandwidth; MUs buy the bundle that
    maximises ``theta Q - payment`` (or nothing, if that is negative); the ASP picks the
    profit-maximising prices within capacity by a log-spaced grid search
    (linear bandwidth model only).
``social-optimum``
    ``max sum theta Q - cost`` within capacity (cvxpy, any model variant): the welfare
    bound. Payments at cost recovery.

Why hand-written here: these are the project's own baseline definitions; every
optimisation inside uses cvxpy (social optimum) or the market's followers.

May import: numpy, cvxpy (lazily), ``market`` and ``solvers``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from market.followers import best_response
from market.model import Market
from market.qoe import QoEParts, qoe_parts

#: Mechanism names in display order.
MECHANISMS = ("proposed", "uniform", "equal-split", "proportional", "timeliness-only", "accuracy-only",
              "asp-pricing", "social-optimum")


@dataclass
class MechanismOutcome:
    """Rewards, allocations and payments of one mechanism on one market."""

    name: str
    """Mechanism name (see :data:`MECHANISMS`)."""
    rewards: np.ndarray
    """(M,) reward per unit QoE (money per QoE); for price/cost-based mechanisms payment / QoE."""
    compute: np.ndarray
    """(M,) compute allocated, compute units."""
    bandwidth: np.ndarray
    """(M,) bandwidth allocated, Hz."""
    qoe: QoEParts
    """True three-part QoE at the allocation (0 for MUs not served)."""
    payment: np.ndarray
    """(M,) money each MU pays its ASP."""
    served: np.ndarray
    """(M,) bool, MU received service."""
    status: str = "ok"
    """``"ok"``, or what went wrong (e.g. the equilibrium's certificate status)."""
    notes: str = ""
    """How the outcome was obtained."""
    extra: dict = field(default_factory=dict)
    """Mechanism-specific data (posted prices, solver result, ...)."""


# ----------------------------------------------------------------------------- helpers
def _served_qoe(market: Market, compute, bandwidth, served) -> QoEParts:
    parts = qoe_parts(market, compute, bandwidth)
    if np.all(served):
        return parts
    z = lambda a: np.where(served, a, 0.0)  # noqa: E731
    return QoEParts(accuracy=z(parts.accuracy), tokens=z(parts.tokens), timeliness=z(parts.timeliness),
                    latency_s=np.where(served, parts.latency_s, np.inf), total=z(parts.total))


def resource_cost(market: Market, compute: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """(M,) the ASP's cost of serving each MU (money): k^f f (or k^f f^2) + k^b b."""
    kf = market.compute_cost[market.mu_asp]
    kb = market.bandwidth_cost[market.mu_asp]
    cf = kf * compute**2 if market.asp_cost == "quadratic" else kf * compute
    return cf + kb * bandwidth


def _from_rewards(market: Market, name: str, rewards: np.ndarray, notes: str, status: str = "ok",
                  extra: dict | None = None) -> MechanismOutcome:
    resp = best_response(market, rewards)
    served = np.ones(market.n_mus, bool)
    return MechanismOutcome(name=name, rewards=resp.rewards, compute=resp.compute, bandwidth=resp.bandwidth,
                            qoe=resp.qoe, payment=resp.rewards * resp.qoe.total, served=served, status=status,
                            notes=notes, extra=dict(extra or {}))


def _cost_recovery(market: Market, name: str, compute, bandwidth, notes: str, served=None) -> MechanismOutcome:
    served = np.ones(market.n_mus, bool) if served is None else served
    qoe = _served_qoe(market, compute, bandwidth, served)
    pay = resource_cost(market, compute, bandwidth)
    with np.errstate(divide="ignore", invalid="ignore"):
        rewards = np.where(qoe.total > 0, pay / qoe.total, 0.0)
    return MechanismOutcome(name=name, rewards=rewards, compute=compute, bandwidth=bandwidth, qoe=qoe,
                            payment=pay, served=served, notes=notes)


def _equal_split_allocation(market: Market) -> tuple[np.ndarray, np.ndarray]:
    counts = np.bincount(market.mu_asp, minlength=market.n_asps).astype(float)
    share = 1.0 / np.maximum(counts, 1.0)
    return (market.compute_capacity * share)[market.mu_asp], (market.bandwidth_capacity * share)[market.mu_asp]


# ----------------------------------------------------------------------------- mechanisms
def proposed(market: Market, *, solver: str = "dual-perturbation", result=None) -> MechanismOutcome:
    """The EPEC equilibrium by ``solver`` (or an already computed ``result``)."""
    import solvers

    if result is None:
        result = solvers.solve(market, solver)
    out = _from_rewards(market, "proposed", result.rewards,
                        f"personalized-QoE equilibrium by {result.solver} ({result.status})",
                        status="ok" if result.status == "converged" else result.status,
                        extra={"result": result})
    return out


def uniform(market: Market, *, grid_points: int | None = None, polish_iterations: int | None = None) -> MechanismOutcome:
    """One common reward (clipped to each box) maximising the MUs' total utility.

    A geometric grid over ``[min reward_min, max reward_max]`` (200 points with the closed-form
    follower, 40 with cvxpy), then golden-section polish inside the best grid bracket.
    """
    closed = market.is_closed_form
    grid_points = grid_points or (200 if closed else 40)
    polish_iterations = polish_iterations or (40 if closed else 20)
    lo, hi = float(market.reward_min.min()), float(market.reward_max.max())
    grid = np.geomspace(lo, hi, grid_points)

    def total(level: float) -> float:
        r = market.clip_rewards(np.full(market.n_mus, level))
        q = best_response(market, r).qoe.total
        return float(np.sum((market.value_per_qoe - r) * q))

    values = np.array([total(x) for x in grid])
    i = int(np.argmax(values))
    best_level, best_value = float(grid[i]), float(values[i])
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, grid_points - 1)]
    from market.search import golden_max  # the project's one golden-section search

    level, value = golden_max(lambda x: np.array([total(float(x[0]))]), np.array([a]), np.array([b]), polish_iterations)
    if value[0] > best_value:
        best_level, best_value = float(level[0]), float(value[0])
    return _from_rewards(market, "uniform", market.clip_rewards(np.full(market.n_mus, best_level)),
                         f"common reward {best_level:.6g} (money per QoE) maximising total MU utility",
                         extra={"level": best_level})


def equal_split(market: Market) -> MechanismOutcome:
    """Whole capacity split equally among each ASP's MUs; payments at cost recovery."""
    f, b = _equal_split_allocation(market)
    return _cost_recovery(market, "equal-split", f, b, "capacity split equally, MUs pay the resource cost")


def proportional(market: Market, rewards: np.ndarray) -> MechanismOutcome:
    """Whole capacity split in proportion to ``rewards`` (the proposed equilibrium's)."""
    r = market.clip_rewards(rewards)
    total = market.per_asp_sum(r)[market.mu_asp]
    f = market.compute_capacity[market.mu_asp] * r / total
    b = market.bandwidth_capacity[market.mu_asp] * r / total
    qoe = qoe_parts(market, f, b)
    return MechanismOutcome(name="proportional", rewards=r, compute=f, bandwidth=b, qoe=qoe, payment=r * qoe.total,
                            served=np.ones(market.n_mus, bool),
                            notes="capacity split in proportion to the proposed rewards; MUs pay r Q")


def single_dimension(market: Market, dimension: str, *, solver: str = "dual-perturbation") -> MechanismOutcome:
    """The EPEC with every MU's QoE reduced to one dimension, judged under the true QoE."""
    import solvers

    M = market.n_mus
    ones, zeros = np.ones(M), np.zeros(M)
    name = f"{dimension}-only"
    if dimension == "timeliness":
        contract = replace(market, weight_accuracy=zeros, weight_tokens=zeros, weight_timeliness=ones)
        result = solvers.solve(contract, solver)
        resp = best_response(contract, result.rewards)
        qoe = qoe_parts(market, resp.compute, resp.bandwidth)
        return MechanismOutcome(name=name, rewards=result.rewards, compute=resp.compute, bandwidth=resp.bandwidth,
                                qoe=qoe, payment=result.rewards * resp.qoe.total, served=np.ones(M, bool),
                                status="ok" if result.status == "converged" else result.status,
                                notes=f"EPEC on timeliness-only QoE by {solver} ({result.status}); pays r Q_timeliness",
                                extra={"result": result})
    if dimension == "accuracy":
        contract = replace(market, weight_accuracy=ones, weight_tokens=zeros, weight_timeliness=zeros)
        rewards = market.reward_min.copy()  # the contract's QoE ignores the allocation: pay the least
        f, b = _equal_split_allocation(market)
        qoe = qoe_parts(market, f, b)
        return MechanismOutcome(name=name, rewards=rewards, compute=f, bandwidth=b, qoe=qoe,
                                payment=rewards * contract.qoe_accuracy, served=np.ones(M, bool),
                                notes="accuracy-only contract: rewards at reward_min, best-effort equal split")
    raise ValueError(f"dimension must be 'timeliness' or 'accuracy', got {dimension!r}")


def asp_pricing(market: Market, *, grid_points: int = 80) -> MechanismOutcome:
    """ASP-led posted prices (Stackelberg with the ASPs as leaders), linear bandwidth model.

    MU m facing prices (p^f, p^b) buys f = sqrt(theta x^f / p^f), b = sqrt(theta x^b / p^b)
    (maximising theta Q - p^f f - p^b b), giving surplus theta Q^max - 2 sqrt(theta x^f p^f)
    - 2 sqrt(theta x^b p^b); it buys nothing when that is negative. Each ASP searches a
    log-spaced price grid for the largest profit whose demand fits its capacity.
    """
    if market.bandwidth_model != "linear":
        raise ValueError("asp-pricing is implemented for bandwidth_model = 'linear' only")
    M = market.n_mus
    f, b = np.zeros(M), np.zeros(M)
    served = np.zeros(M, bool)
    prices = np.zeros((market.n_asps, 2))
    theta, xf, xb = market.value_per_qoe, market.timeliness_compute_need, market.timeliness_bandwidth_need
    qmax = market.qoe_ceiling
    for n in range(market.n_asps):
        mus = market.mus_of(n)
        if len(mus) == 0:
            continue
        t, a_f, a_b, q0 = theta[mus], xf[mus], xb[mus], qmax[mus]
        kf, kb = market.compute_cost[n], market.bandwidth_cost[n]
        F, B = market.compute_capacity[n], market.bandwidth_capacity[n]

        def price_grid(need, cost, cap):
            pos = need > 0
            if not np.any(pos):
                return np.array([max(cost, 1e-30)])
            reservation = t[pos] * q0[pos] ** 2 / (4 * need[pos])  # surplus 0 buying this resource alone
            clearing = (np.sum(np.sqrt(t[pos] * need[pos])) / cap) ** 2
            lo = max(cost, 1e-6 * min(clearing, reservation.min()), 1e-30)
            hi = max(reservation.max(), clearing, lo * 10)
            return np.geomspace(lo, hi, grid_points)

        gf, gb = price_grid(a_f, kf, F), price_grid(a_b, kb, B)
        PF, PB = np.meshgrid(gf, gb, indexing="ij")
        pf, pb = PF[..., None], PB[..., None]
        surplus = t * q0 - 2 * np.sqrt(t * a_f * pf) - 2 * np.sqrt(t * a_b * pb)
        buy = surplus >= 0
        df = np.where(buy & (a_f > 0), np.sqrt(t * a_f / pf), 0.0)
        db = np.where(buy & (a_b > 0), np.sqrt(t * a_b / pb), 0.0)
        cost_f = kf * df**2 if market.asp_cost == "quadratic" else kf * df
        profit = np.sum(pf * df + pb * db - cost_f - kb * db, axis=-1)
        fits = (df.sum(-1) <= F * (1 + 1e-9)) & (db.sum(-1) <= B * (1 + 1e-9))
        profit = np.where(fits, profit, -np.inf)
        i, j = np.unravel_index(int(np.argmax(profit)), profit.shape)
        f[mus], b[mus], served[mus] = df[i, j], db[i, j], buy[i, j]
        prices[n] = gf[i], gb[j]
    pay = prices[market.mu_asp, 0] * f + prices[market.mu_asp, 1] * b
    qoe = _served_qoe(market, f, b, served)
    with np.errstate(divide="ignore", invalid="ignore"):
        rewards = np.where(qoe.total > 0, pay / qoe.total, 0.0)
    return MechanismOutcome(name="asp-pricing", rewards=rewards, compute=f, bandwidth=b, qoe=qoe, payment=pay,
                            served=served, notes="ASPs post profit-maximising unit prices; MUs buy or opt out",
                            extra={"compute_price": prices[:, 0].tolist(), "bandwidth_price": prices[:, 1].tolist()})


def social_optimum(market: Market) -> MechanismOutcome:
    """Maximise sum_m theta_m Q_m - ASP resource cost within capacity (cvxpy; the welfare bound)."""
    import cvxpy as cp

    M, N = market.n_mus, market.n_asps
    theta = market.value_per_qoe
    money = float(theta.max())
    cap_f = market.compute_capacity[market.mu_asp]
    cap_b = market.bandwidth_capacity[market.mu_asp]
    kf_mu = market.compute_cost[market.mu_asp]
    kb_mu = market.bandwidth_cost[market.mu_asp]
    xf, xb = market.timeliness_compute_need, market.timeliness_bandwidth_need
    # Per-MU units: the uncapacitated optimum of the linear model (or the capacity, if smaller),
    # so that every variable is O(1) at the optimum whatever the physical scales.
    with np.errstate(divide="ignore", invalid="ignore"):
        unit_f = np.where(kf_mu > 0, np.sqrt(theta * xf / np.where(kf_mu > 0, kf_mu, 1.0)), cap_f)
        unit_b = np.where(kb_mu > 0, np.sqrt(theta * xb / np.where(kb_mu > 0, kb_mu, 1.0)), cap_b)
    unit_f = np.where(unit_f > 0, np.minimum(unit_f, cap_f), cap_f)
    unit_b = np.where(unit_b > 0, np.minimum(unit_b, cap_b), cap_b)
    f, b = cp.Variable(M, nonneg=True), cp.Variable(M, nonneg=True)  # f_m / unit_f_m, b_m / unit_b_m
    loss_f = cp.multiply(theta * xf / (unit_f * money), cp.inv_pos(f))
    if market.bandwidth_model == "linear":
        loss_b = cp.multiply(theta * xb / (unit_b * money), cp.inv_pos(b))
    else:
        raw = market.weight_timeliness * market.payload_bits / market.deadline_s
        snr_units = market.snr_hz / unit_b
        # rate / unit_b = u log2(1 + snr / (unit_b u)) = -rel_entr(u, u + snr/unit_b) / ln 2 (concave)
        rate_units = -cp.rel_entr(b, b + snr_units) / np.log(2.0)
        loss_b = cp.multiply(theta * raw / (unit_b * money), cp.inv_pos(rate_units))
    if market.asp_cost == "quadratic":
        cost_f = cp.multiply(kf_mu * unit_f**2 / money, cp.square(f))
    else:
        cost_f = cp.multiply(kf_mu * unit_f / money, f)
    cost_b = cp.multiply(kb_mu * unit_b / money, b)
    active_f = xf > 0
    active_b = market.weight_timeliness > 0
    objective = cp.Minimize(cp.sum(cp.multiply(active_f, loss_f)) + cp.sum(cp.multiply(active_b, loss_b))
                            + cp.sum(cost_f) + cp.sum(cost_b))
    onehot = np.zeros((N, M))
    onehot[market.mu_asp, np.arange(M)] = 1.0
    constraints = [(onehot * (unit_f / cap_f)) @ f <= 1.0, (onehot * (unit_b / cap_b)) @ b <= 1.0]
    constraints += [f[~active_f] == 0] if np.any(~active_f) else []
    constraints += [b[~active_b] == 0] if np.any(~active_b) else []
    problem = cp.Problem(objective, constraints)
    try:
        problem.solve(solver=cp.CLARABEL)
    except cp.SolverError:
        problem.solve(solver=cp.SCS, eps=1e-9)
    if f.value is None:
        raise RuntimeError(f"social optimum: cvxpy status {problem.status}")
    compute = np.maximum(f.value, 0.0) * unit_f * active_f
    bandwidth = np.maximum(b.value, 0.0) * unit_b * active_b
    out = _cost_recovery(market, "social-optimum", compute, bandwidth,
                         f"max total MU value - resource cost (cvxpy {problem.status}); MUs pay the resource cost")
    out.status = "ok" if problem.status == "optimal" else problem.status
    return out


def run_mechanisms(market: Market, *, solver: str = "dual-perturbation", names=MECHANISMS,
                   proposed_result=None) -> tuple[dict[str, MechanismOutcome], dict[str, str]]:
    """Every mechanism in ``names`` on ``market``.

    Returns ``(outcomes, skipped)``: outcomes by name, and for each mechanism that does not
    apply to this market's model variant, the reason.
    """
    unknown = [n for n in names if n not in MECHANISMS]
    if unknown:
        raise ValueError(f"unknown mechanism {unknown[0]!r}; known: {', '.join(MECHANISMS)}")
    base = proposed(market, solver=solver, result=proposed_result)
    builders = {
        "proposed": lambda: base,
        "uniform": lambda: uniform(market),
        "equal-split": lambda: equal_split(market),
        "proportional": lambda: proportional(market, base.rewards),
        "timeliness-only": lambda: single_dimension(market, "timeliness", solver=solver),
        "accuracy-only": lambda: single_dimension(market, "accuracy", solver=solver),
        "asp-pricing": lambda: asp_pricing(market),
        "social-optimum": lambda: social_optimum(market),
    }
    outcomes, skipped = {}, {}
    for name in names:
        if name == "asp-pricing" and market.bandwidth_model != "linear":
            skipped[name] = "implemented for bandwidth_model = 'linear' only"
            continue
        outcomes[name] = builders[name]()
    return outcomes, skipped


# ----------------------------------------------------------------------------- metrics
#: Metric name -> (unit, description). "lower is better" for overhead, cost and resource use.
METRICS = {
    "overhead_share": ("fraction", "average resource share per MU, mean of f/F and b/B (overhead)"),
    "compute_per_mu": ("compute units", "average compute per MU"),
    "bandwidth_per_mu": ("Hz", "average bandwidth per MU"),
    "payment_per_mu": ("money", "average MU payment (service cost)"),
    "asp_resource_use": ("fraction", "ASP resource consumption: used / capacity, mean of compute and bandwidth"),
    "qoe": ("QoE", "average QoE"),
    "qoe_accuracy": ("QoE", "average accuracy part"),
    "qoe_tokens": ("QoE", "average token part"),
    "qoe_timeliness": ("QoE", "average timeliness part"),
    "latency_s": ("s", "median latency of served MUs"),
    "mu_utility": ("money", "average MU utility theta Q - payment"),
    "asp_profit": ("money", "total ASP profit: payments - resource cost"),
    "welfare": ("money", "total MU value theta Q - resource cost"),
    "served": ("fraction", "fraction of MUs served"),
}


def mechanism_metrics(market: Market, outcome: MechanismOutcome) -> dict[str, float]:
    """The comparison figures of one outcome (see :data:`METRICS` for units)."""
    mk, o = market, outcome
    F, B = mk.compute_capacity[mk.mu_asp], mk.bandwidth_capacity[mk.mu_asp]
    value = mk.value_per_qoe * o.qoe.total
    cost = resource_cost(mk, o.compute, o.bandwidth)
    lat = o.qoe.latency_s[o.served & np.isfinite(o.qoe.latency_s)]
    used = 0.5 * (mk.per_asp_sum(o.compute).sum() / mk.compute_capacity.sum()
                  + mk.per_asp_sum(o.bandwidth).sum() / mk.bandwidth_capacity.sum())
    return {
        "overhead_share": float(np.mean(0.5 * (o.compute / F + o.bandwidth / B))),
        "compute_per_mu": float(np.mean(o.compute)),
        "bandwidth_per_mu": float(np.mean(o.bandwidth)),
        "payment_per_mu": float(np.mean(o.payment)),
        "asp_resource_use": float(used),
        "qoe": float(np.mean(o.qoe.total)),
        "qoe_accuracy": float(np.mean(o.qoe.accuracy)),
        "qoe_tokens": float(np.mean(o.qoe.tokens)),
        "qoe_timeliness": float(np.mean(o.qoe.timeliness)),
        "latency_s": float(np.median(lat)) if lat.size else float("nan"),
        "mu_utility": float(np.mean(value - o.payment)),
        "asp_profit": float(np.sum(o.payment - cost)),
        "welfare": float(np.sum(value - cost)),
        "served": float(np.mean(o.served)),
    }


def percent_change(proposed_value: float, other_value: float) -> float:
    """100 (proposed - other) / |other| (negative: the proposed mechanism is lower); NaN if other is 0."""
    if other_value == 0 or not np.isfinite(other_value) or not np.isfinite(proposed_value):
        return float("nan")
    return 100.0 * (proposed_value - other_value) / abs(other_value)
