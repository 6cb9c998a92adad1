"""The followers: each ASP's optimal allocation of compute and bandwidth given the rewards.

What this module is for: the ASP problem of the design note ("Followers")

    max_{f, b >= 0}  sum_m r_m Q_m - cost(f, b)   s.t.  sum f <= F_n,  sum b <= B_n,

solved (i) in closed form for the linear model: with x^k_m the timeliness needs
(:class:`market.model.Market`), shadow price pi^k_n = max(k^k_n, (sum_j sqrt(x^k_j r_j) / C^k_n)^2)
and y^k_m = sqrt(x^k_m r_m / pi^k_n) (exact KKT point; unique); and (ii) through cvxpy for the
variants without a closed form (``bandwidth_model = "shannon"``, ``asp_cost = "quadratic"``),
with the rewards as DPP parameters so that a re-solve reuses the compiled problem, and
(iii) for every variant by dual decomposition (:func:`dual_response`): per-MU stationarity
roots and a capacity-multiplier root, vectorised with ``scipy.optimize.elementwise.find_root``.
(iii) is what the solvers use for the variants: it is exact to root precision (cvxpy's
interior point stops near 1e-6 relative stationarity) and batches thousands of ASP re-solves
into one call; (ii) is the independent reference it is tested against.

It also offers the *deviation response* the leaders and the certificate need: the QoE each
MU m gets if it alone changes its reward to a trial value (others fixed). ASPs are
independent, so only MU m's own ASP re-solves; in closed form that is
Q_m(t) = Q^max_m - sum_k max( sqrt(x^k_m k^k / t), (x^k_m + sqrt(x^k_m / t) S^k_{-m}) / C^k )
with S^k_{-m} = sum_{j != m at a(m)} sqrt(x^k_j r_j): an O(1) formula per MU and trial,
vectorised here over all MUs and a grid of trials.

May import: numpy, cvxpy (lazily, inside functions) and ``market.model`` / ``market.qoe``.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from market.errors import InfeasibleError
from market.model import Market
from market.qoe import QoEParts, bandwidth_loss, bandwidth_loss_slope, compute_loss, qoe_parts


@dataclass(frozen=True)
class FollowerResponse:
    """The ASPs' allocation at a reward profile, with prices and QoE.

    Prices: in the linear model ``compute_price`` is pi^f_n = k^f_n + mu^f_n (money per
    compute unit) and ``bandwidth_price`` pi^b_n = k^b_n + mu^b_n (money per Hz), where mu is
    the capacity multiplier (positive exactly when the capacity binds). With the quadratic
    compute cost, ``compute_price`` is the capacity multiplier mu^f_n alone (the marginal
    cost 2 k^f f_m differs per MU).
    """

    rewards: np.ndarray
    """(M,) the reward profile r (money per QoE)."""
    compute: np.ndarray
    """(M,) f_m, compute units."""
    bandwidth: np.ndarray
    """(M,) b_m, Hz."""
    compute_price: np.ndarray
    """(N,) compute shadow price (money per compute unit)."""
    bandwidth_price: np.ndarray
    """(N,) bandwidth shadow price (money per Hz)."""
    compute_multiplier: np.ndarray
    """(N,) mu^f_n >= 0, multiplier of the compute capacity constraint."""
    bandwidth_multiplier: np.ndarray
    """(N,) mu^b_n >= 0, multiplier of the bandwidth capacity constraint."""
    qoe: QoEParts
    """Per-MU QoE, its three parts and the latency."""
    method: str = "closed-form"
    """``"closed-form"`` or ``"cvxpy"``."""


# ============================================================================ closed form
def _sqrt_need_reward(need: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    return np.sqrt(need * rewards)


def closed_form_response(market: Market, rewards: np.ndarray) -> FollowerResponse:
    """Exact follower optimum of the linear model (design note, "Followers").

    Parameters
    ----------
    market : Market
    rewards : (M,) array, money per QoE, positive.
    """
    r = np.asarray(rewards, dtype=float)
    allocations, prices, multipliers = [], [], []
    for need, cap, cost in (
        (market.timeliness_compute_need, market.compute_capacity, market.compute_cost),
        (market.timeliness_bandwidth_need, market.bandwidth_capacity, market.bandwidth_cost),
    ):
        root = _sqrt_need_reward(need, r)
        total = market.per_asp_sum(root)
        price = np.maximum(cost, (total / cap) ** 2)
        p_mu = price[market.mu_asp]
        with np.errstate(divide="ignore", invalid="ignore"):
            alloc = np.where(need > 0, root / np.sqrt(np.where(p_mu > 0, p_mu, 1.0)), 0.0)
        # price 0 (zero cost, no demand) only happens when every need at the ASP is 0.
        allocations.append(alloc)
        prices.append(price)
        multipliers.append(price - cost)
    qoe = qoe_parts(market, allocations[0], allocations[1])
    return FollowerResponse(rewards=r, compute=allocations[0], bandwidth=allocations[1],
                            compute_price=prices[0], bandwidth_price=prices[1],
                            compute_multiplier=multipliers[0], bandwidth_multiplier=multipliers[1],
                            qoe=qoe, method="closed-form")


class DeviationSums:
    """Per-ASP sums S^k_n = sum_{j at n} sqrt(x^k_j r_j) at a reward profile, kept up to date.

    What the closed-form deviation formula needs besides the deviating MU's own data. Built
    once in O(M) and updated in O(N + K) when K MUs move (:meth:`move`), so that a solver
    turn or a certificate chunk over a few MUs costs O(K), not O(M).
    """

    def __init__(self, market: Market, rewards: np.ndarray):
        self.market = market
        self.rewards = np.array(rewards, dtype=float)
        self.needs = (market.timeliness_compute_need, market.timeliness_bandwidth_need)
        self.roots = [_sqrt_need_reward(need, self.rewards) for need in self.needs]
        self.totals = [market.per_asp_sum(root) for root in self.roots]

    def others(self, idx) -> list[np.ndarray]:
        """Per resource, S_{-m} = S_{a(m)} - sqrt(x_m r_m) for the MUs ``idx``."""
        asp = self.market.mu_asp[idx]
        return [np.maximum(total[asp] - root[idx], 0.0) for total, root in zip(self.totals, self.roots)]

    def terms(self, idx) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per resource (compute, bandwidth), for the MUs ``idx`` (indices or a slice): the need
        x^k_m, the capacity C^k and unit cost k of the MU's ASP, and S_{-m}, as the deviation
        formula and its kinks use them."""
        m = self.market
        asp = m.mu_asp[idx]
        return [(need[idx], cap[asp], cost[asp], others) for need, cap, cost, others in zip(
            self.needs, (m.compute_capacity, m.bandwidth_capacity), (m.compute_cost, m.bandwidth_cost),
            self.others(idx))]

    def move(self, idx: np.ndarray, new_rewards: np.ndarray) -> None:
        """MUs ``idx`` (distinct) now offer ``new_rewards``: update the roots and the sums."""
        idx = np.asarray(idx)
        self.rewards[idx] = new_rewards
        n = self.market.n_asps
        for need, root, total in zip(self.needs, self.roots, self.totals):
            new_root = _sqrt_need_reward(need[idx], self.rewards[idx])
            total += np.bincount(self.market.mu_asp[idx], weights=new_root - root[idx], minlength=n)
            root[idx] = new_root


def closed_form_deviation_qoe(market: Market, rewards: np.ndarray, trial: np.ndarray,
                              mus: np.ndarray | None = None, *, sums: DeviationSums | None = None) -> np.ndarray:
    """QoE of each MU m if it alone sets its reward to ``trial[m]`` (others stay at ``rewards``).

    ``trial`` is (M,) or (M, G) (a grid of G trial rewards per MU). With ``mus`` (indices),
    only those MUs deviate and ``trial`` has one row per entry of ``mus``. Exact (closed form).
    ``sums`` (the :class:`DeviationSums` of ``rewards``) saves the O(M) pass over all MUs.
    """
    t = np.asarray(trial, dtype=float)
    idx = np.arange(market.n_mus) if mus is None else np.asarray(mus)
    if sums is None:
        sums = DeviationSums(market, rewards)
    extra = (1,) * (t.ndim - 1)
    q = market.qoe_ceiling[idx].reshape(-1, *extra) + np.zeros_like(t)
    inv_sqrt_t = 1.0 / np.sqrt(t)
    for terms in sums.terms(idx):
        need, cap, cost, others = (a.reshape(-1, *extra) for a in terms)
        free = np.sqrt(need * cost) * inv_sqrt_t
        bound = (need + np.sqrt(need) * inv_sqrt_t * others) / cap
        q = q - np.maximum(free, bound)
    return q


KINK_RELATIVE_WIDTH = 1e-9
"""An own reward within this relative distance of a kink counts as on the kink."""


def closed_form_kinks(market: Market, rewards: np.ndarray, mus: np.ndarray | None = None) -> np.ndarray:
    """(K, 2) own rewards at which MU m's ASP switches between slack and binding capacity
    (compute, bandwidth), others fixed: the capacity binds iff S_{-m} + sqrt(x r) >= C sqrt(k),
    i.e. iff r >= ((C sqrt(k) - S_{-m}) / sqrt(x))^2. NaN where there is no switch (always
    binding, never binding, or no need for the resource)."""
    r_all = np.asarray(rewards, dtype=float)
    idx = slice(None) if mus is None else np.asarray(mus)
    cols = []
    for need, cap, cost, others in DeviationSums(market, r_all).terms(idx):
        head = cap * np.sqrt(cost) - others
        with np.errstate(divide="ignore", invalid="ignore"):
            kink = np.where((head > 0) & (need > 0), (head / np.sqrt(need)) ** 2, np.nan)
        cols.append(kink)
    return np.stack(cols, axis=1)


def closed_form_own_qoe_derivatives(market: Market, rewards: np.ndarray, mus: np.ndarray | None = None,
                                    side: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """(dQ_m/dr_m, d2Q_m/dr_m^2) at ``rewards``, exactly, others fixed (linear model).

    The implicit-function theorem applied to the follower's KKT system
    (r_j x_j / y_j^2 = pi, sum_j y_j = C when the capacity binds) gives dy_m/dr_m, and
    dQ_m/dr_m = sum_k x^k_m / y_m^2 dy_m/dr_m reduces to 0.5 a^k_m r^{-3/2} per resource with
    a^k_m = sqrt(x k) when the capacity is slack and sqrt(x) S_{-m} / C when it binds;
    d2Q = -0.75 a r^{-5/2}. On a kink (:func:`closed_form_kinks`, within
    :data:`KINK_RELATIVE_WIDTH`) ``side`` picks the one-sided derivative: ``"right"``
    (binding branch) or ``"left"`` (slack branch). With ``mus`` only those MUs are returned.
    """
    r_all = np.asarray(rewards, dtype=float)
    idx = slice(None) if mus is None else np.asarray(mus)
    r = r_all[idx]
    kinks = closed_form_kinks(market, r_all, mus)
    coef = np.zeros_like(r)
    for j, (need, cap, cost, others) in enumerate(DeviationSums(market, r_all).terms(idx)):
        kink = kinks[:, j]
        has = np.isfinite(kink)
        near = has & (np.abs(r - kink) <= KINK_RELATIVE_WIDTH * np.where(has, kink, 1.0))
        always = (cap * np.sqrt(cost) - others) <= 0
        above = has & (r > kink)
        binding = always | np.where(near, side == "right", above)
        coef += np.where(binding, np.sqrt(need) * others / cap, np.sqrt(need * cost))
    return 0.5 * coef * r**-1.5, -0.75 * coef * r**-2.5


# ============================================================================ cvxpy
class CvxpyFollower:
    """The follower problems in cvxpy, one per ASP, with the rewards as DPP parameters.

    Variables are scaled to fractions of capacity and money to the MUs' reward scale, so the
    conic solver (Clarabel) sees O(1) numbers even when Hz are ~1e7 and prices ~1e-8.
    Handles every model variant (it is the only solver for ``shannon`` / ``quadratic``).
    """

    def __init__(self, market: Market, *, solver: str = "CLARABEL"):
        import cvxpy as cp

        self.market, self.solver, self._cp = market, solver, cp
        self.money_scale = float(np.median(market.reward_max)) if market.n_mus else 1.0
        self.problems = []
        for n in range(market.n_asps):
            self.problems.append(self._build(n))

    def _build(self, n: int):
        cp, mk = self._cp, self.market
        mus = mk.mus_of(n)
        active = mus[mk.weight_timeliness[mus] > 0]
        if active.size == 0:
            return None
        k = active.size
        F, B = mk.compute_capacity[n], mk.bandwidth_capacity[n]
        reward = cp.Parameter(k, nonneg=True)
        f = cp.Variable(k, nonneg=True)
        b = cp.Variable(k, nonneg=True)
        need_f = mk.timeliness_compute_need[active] / F
        comp_loss = cp.multiply(need_f, cp.inv_pos(f))
        if mk.bandwidth_model == "linear":
            band_loss = cp.multiply(mk.timeliness_bandwidth_need[active] / B, cp.inv_pos(b))
        else:
            coef = mk.weight_timeliness[active] * mk.payload_bits[active] / mk.deadline_s[active] / B * np.log(2.0)
            snr_frac = mk.snr_hz[active] / B
            # rate / B = b log2(1 + s / b) = -rel_entr(b, b + s) / ln 2 (concave)
            band_loss = cp.multiply(coef, cp.inv_pos(-cp.rel_entr(b, b + snr_frac)))
        cost_f = mk.compute_cost[n] * F / self.money_scale
        cost_b = mk.bandwidth_cost[n] * B / self.money_scale
        if mk.asp_cost == "quadratic":
            compute_cost = mk.compute_cost[n] * F**2 / self.money_scale * cp.sum_squares(f)
        else:
            compute_cost = cost_f * cp.sum(f)
        objective = cp.Minimize(reward @ comp_loss + reward @ band_loss + compute_cost + cost_b * cp.sum(b))
        cap_f = cp.sum(f) <= 1.0
        cap_b = cp.sum(b) <= 1.0
        problem = cp.Problem(objective, [cap_f, cap_b])
        assert problem.is_dcp(dpp=True)
        return dict(problem=problem, reward=reward, f=f, b=b, cap_f=cap_f, cap_b=cap_b, active=active)

    def _solve_asp(self, n: int, rewards_active: np.ndarray):
        entry = self.problems[n]
        entry["reward"].value = rewards_active / self.money_scale
        try:
            entry["problem"].solve(solver=self.solver, tol_gap_abs=1e-12, tol_gap_rel=1e-12,
                                   tol_feas=1e-12, max_iter=400)
        except self._cp.error.SolverError:
            entry["problem"].solve(solver="SCS", eps=1e-9, max_iters=100000)
        if entry["f"].value is None:
            raise InfeasibleError(f"cvxpy could not solve the follower problem of ASP {self.market.asp_names[n]!r} "
                                  f"(status {entry['problem'].status})")
        mk = self.market
        f = np.maximum(entry["f"].value, 0.0) * mk.compute_capacity[n]
        b = np.maximum(entry["b"].value, 0.0) * mk.bandwidth_capacity[n]
        mu_f = max(float(entry["cap_f"].dual_value), 0.0) * self.money_scale / mk.compute_capacity[n]
        mu_b = max(float(entry["cap_b"].dual_value), 0.0) * self.money_scale / mk.bandwidth_capacity[n]
        return f, b, mu_f, mu_b

    def respond(self, rewards: np.ndarray) -> FollowerResponse:
        """Solve every ASP's problem at ``rewards``."""
        mk = self.market
        r = np.asarray(rewards, dtype=float)
        compute, bandwidth = np.zeros(mk.n_mus), np.zeros(mk.n_mus)
        mu_f, mu_b = np.zeros(mk.n_asps), np.zeros(mk.n_asps)
        for n, entry in enumerate(self.problems):
            if entry is None:
                continue
            act = entry["active"]
            compute[act], bandwidth[act], mu_f[n], mu_b[n] = self._solve_asp(n, r[act])
        quadratic = mk.asp_cost == "quadratic"
        return FollowerResponse(
            rewards=r, compute=compute, bandwidth=bandwidth,
            compute_price=mu_f if quadratic else mk.compute_cost + mu_f,
            bandwidth_price=mk.bandwidth_cost + mu_b,
            compute_multiplier=mu_f, bandwidth_multiplier=mu_b,
            qoe=qoe_parts(mk, compute, bandwidth), method="cvxpy")

    def deviation_qoe(self, rewards: np.ndarray, trial: np.ndarray) -> np.ndarray:
        """As :func:`closed_form_deviation_qoe`, by re-solving MU m's ASP per trial value."""
        mk = self.market
        r = np.asarray(rewards, dtype=float)
        t = np.asarray(trial, dtype=float)
        grid = t.reshape(mk.n_mus, -1)
        out = np.empty_like(grid)
        fixed = mk.qoe_accuracy + mk.qoe_tokens
        for m in range(mk.n_mus):
            n = mk.mu_asp[m]
            entry = self.problems[n]
            if entry is None or mk.weight_timeliness[m] == 0:
                out[m] = fixed[m]
                continue
            act = entry["active"]
            pos = int(np.flatnonzero(act == m)[0])
            local = r[act].copy()
            for g, value in enumerate(grid[m]):
                local[pos] = value
                f, b, _, _ = self._solve_asp(n, local)
                loss = compute_loss(mk, f[pos:pos + 1], act[pos:pos + 1])[0] + \
                    bandwidth_loss(mk, b[pos:pos + 1], act[pos:pos + 1])[0]
                out[m, g] = fixed[m] + mk.weight_timeliness[m] - loss
        return out.reshape(t.shape)


_CVXPY_CACHE: "weakref.WeakKeyDictionary[Market, CvxpyFollower]" = weakref.WeakKeyDictionary()


def cvxpy_follower(market: Market) -> CvxpyFollower:
    """The (cached) :class:`CvxpyFollower` of ``market``."""
    follower = _CVXPY_CACHE.get(market)
    if follower is None:
        follower = _CVXPY_CACHE[market] = CvxpyFollower(market)
    return follower


# ============================================================================ dual decomposition
def _marginal_value(market: Market, resource: str, y: np.ndarray, rewards: np.ndarray, mus: np.ndarray) -> np.ndarray:
    """r_m * (QoE gained per unit of resource) at allocation y (money per unit)."""
    if resource == "compute":
        need = market.timeliness_compute_need[mus]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(need > 0, rewards * need / y**2, 0.0)
    return rewards * bandwidth_loss_slope(market, y, mus)


def _marginal_cost(market: Market, resource: str, y: np.ndarray, unit_cost: np.ndarray) -> np.ndarray:
    """Derivative of the ASP's cost in one MU's allocation (money per unit)."""
    if resource == "compute" and market.asp_cost == "quadratic":
        return 2.0 * unit_cost * y
    return unit_cost + 0.0 * y


def _batch_allocate(market: Market, resource: str, members: np.ndarray, rewards: np.ndarray, asp: np.ndarray):
    """Solve B independent single-resource ASP problems by dual decomposition.

    Each row b is ASP ``asp[b]`` with MUs ``members[b]`` (padded with -1) at ``rewards[b]``.
    Given the capacity multiplier mu, each MU's allocation is the root of
    marginal value = marginal cost + mu (monotone; ``scipy.optimize.elementwise.find_root``,
    vectorised over all rows and MUs); mu is 0 when the capacity is slack, else the root of
    sum_m y_m(mu) = C (outer ``find_root`` over the rows that bind). Returns (y (B, K), mu (B,)).
    """
    from scipy.optimize.elementwise import find_root

    cap = getattr(market, f"{resource}_capacity")[asp]
    unit = getattr(market, f"{resource}_cost")[asp]
    need = (market.timeliness_compute_need if resource == "compute" else market.timeliness_bandwidth_need)
    safe = np.where(members >= 0, members, 0)
    valid = (members >= 0) & (need[safe] > 0)
    count = np.maximum(valid.sum(axis=1), 1)
    closed_inner = (resource == "compute" and market.asp_cost == "linear") or \
        (resource == "bandwidth" and market.bandwidth_model == "linear")

    def excess(y, r, mm, k, mu):
        return _marginal_value(market, resource, y, r, mm) - _marginal_cost(market, resource, y, k) - mu

    def allocate(mu: np.ndarray, rows: np.ndarray) -> np.ndarray:
        # bracket / clip each MU at twice the capacity (not at it): with a zero unit cost an MU
        # alone would otherwise sit on a plateau y = C for a range of multipliers
        c = 2.0 * cap[rows][:, None] * np.ones(members.shape[1])
        r, mm, v = rewards[rows], safe[rows], valid[rows]
        k = unit[rows][:, None] + 0.0 * c
        mu_ = mu[:, None] + 0.0 * c
        at_cap = excess(c, r, mm, k, mu_) >= 0
        solve = v & ~at_cap
        y = np.where(v, c, 0.0)
        if closed_inner:  # marginal value r x / y^2 against a constant marginal cost k + mu
            price = k + mu_
            with np.errstate(divide="ignore", invalid="ignore"):
                y = np.where(solve, np.sqrt(r * need[mm] / np.where(price > 0, price, 1.0)), y)
        elif np.any(solve):
            res = find_root(excess, (1e-15 * c[solve], c[solve]), args=(r[solve], mm[solve], k[solve], mu_[solve]))
            y[solve] = res.x
        return y

    rows_all = np.arange(len(asp))
    y = allocate(np.zeros(len(asp)), rows_all)
    mu = np.zeros(len(asp))
    binding = y.sum(axis=1) > cap
    if np.any(binding):
        rows = rows_all[binding]
        share = (cap[rows] / count[rows])[:, None] + 0.0 * rewards[rows]
        top = np.where(valid[rows], excess(share, rewards[rows], safe[rows], unit[rows][:, None] + 0.0 * share, 0.0), 0.0)
        mu_hi = np.maximum(top.max(axis=1), 1e-300) * 1.01 + 1e-300
        res = find_root(lambda m, rr: allocate(m, rr).sum(axis=1) / cap[rr] - 1.0,
                        (np.zeros(rows.size), mu_hi), args=(rows,))
        mu[rows] = res.x
        y[rows] = allocate(res.x, rows)
    return y, mu


def _asp_members(market: Market) -> np.ndarray:
    """(N, K) MU indices per ASP, padded with -1 (K = most MUs at one ASP)."""
    counts = np.bincount(market.mu_asp, minlength=market.n_asps)
    width = max(int(counts.max(initial=0)), 1)
    members = -np.ones((market.n_asps, width), dtype=np.intp)
    for n in range(market.n_asps):
        idx = market.mus_of(n)
        members[n, : idx.size] = idx
    return members


def dual_response(market: Market, rewards: np.ndarray) -> FollowerResponse:
    """Follower optimum of any model variant by dual decomposition (numpy + scipy roots).

    Exact to root-finding precision (KKT residuals ~1e-12); agrees with the closed form
    on the linear model and with :class:`CvxpyFollower` on every variant (tested).
    """
    r = np.asarray(rewards, dtype=float)
    members = _asp_members(market)
    asp = np.arange(market.n_asps)
    r_rows = np.where(members >= 0, r[np.where(members >= 0, members, 0)], 0.0)
    alloc, mult = {}, {}
    for resource in ("compute", "bandwidth"):
        y, mu = _batch_allocate(market, resource, members, r_rows, asp)
        out = np.zeros(market.n_mus)
        out[members[members >= 0]] = y[members >= 0]
        alloc[resource], mult[resource] = out, mu
    quadratic = market.asp_cost == "quadratic"
    return FollowerResponse(
        rewards=r, compute=alloc["compute"], bandwidth=alloc["bandwidth"],
        compute_price=mult["compute"] if quadratic else market.compute_cost + mult["compute"],
        bandwidth_price=market.bandwidth_cost + mult["bandwidth"],
        compute_multiplier=mult["compute"], bandwidth_multiplier=mult["bandwidth"],
        qoe=qoe_parts(market, alloc["compute"], alloc["bandwidth"]), method="dual")


def dual_deviation_qoe(market: Market, rewards: np.ndarray, trial: np.ndarray,
                       mus: np.ndarray | None = None) -> np.ndarray:
    """As :func:`closed_form_deviation_qoe` for any variant: one ASP re-solve per (MU, trial),
    all of them batched into one vectorised dual-decomposition solve."""
    r = np.asarray(rewards, dtype=float)
    t = np.asarray(trial, dtype=float)
    who = np.arange(market.n_mus) if mus is None else np.asarray(mus)
    grid = t.reshape(who.size, -1)
    n_grid = grid.shape[1]
    members = _asp_members(market)
    mu_idx = np.repeat(who, n_grid)
    asp = market.mu_asp[mu_idx]
    rows_members = members[asp]
    r_rows = np.where(rows_members >= 0, r[np.where(rows_members >= 0, rows_members, 0)], 0.0)
    own = rows_members == mu_idx[:, None]
    r_rows = np.where(own, grid.reshape(-1)[:, None], r_rows)
    q = (market.qoe_accuracy + market.qoe_tokens + market.weight_timeliness)[mu_idx]
    for resource in ("compute", "bandwidth"):
        y, _ = _batch_allocate(market, resource, rows_members, r_rows, asp)
        y_own = np.sum(np.where(own, y, 0.0), axis=1)
        if resource == "compute":
            q = q - compute_loss(market, y_own, mu_idx)
        else:
            q = q - bandwidth_loss(market, y_own, mu_idx)
    return q.reshape(t.shape)


# ============================================================================ dispatch
def best_response(market: Market, rewards: np.ndarray, *, method: str = "auto") -> FollowerResponse:
    """The followers' optimum at ``rewards``.

    ``method``: ``"auto"`` (closed form when the model has one, else dual decomposition),
    ``"closed-form"``, ``"dual"`` or ``"cvxpy"``.
    """
    if method == "auto":
        method = "closed-form" if market.is_closed_form else "dual"
    if method == "dual":
        return dual_response(market, rewards)
    if method == "closed-form":
        if not market.is_closed_form:
            raise ValueError("the closed form applies only to bandwidth_model='linear', asp_cost='linear'")
        return closed_form_response(market, rewards)
    if method == "cvxpy":
        return cvxpy_follower(market).respond(rewards)
    raise ValueError(f"unknown follower method {method!r}")


def deviation_qoe(market: Market, rewards: np.ndarray, trial: np.ndarray,
                  mus: np.ndarray | None = None, *, sums: DeviationSums | None = None) -> np.ndarray:
    """QoE each MU gets if it alone moves its reward to ``trial`` ((M,) or (M, G)).

    With ``mus`` only those MUs deviate (``trial`` has one row per entry of ``mus``).
    ``sums``: the :class:`DeviationSums` of ``rewards`` (closed form only; ignored otherwise).
    """
    if market.is_closed_form:
        return closed_form_deviation_qoe(market, rewards, trial, mus, sums=sums)
    return dual_deviation_qoe(market, rewards, trial, mus)


# ============================================================================ KKT
@dataclass(frozen=True)
class KKTResiduals:
    """Relative KKT residuals of the followers' problems (each >= 0; 0 at an exact optimum)."""

    primal: float
    """Capacity violation / capacity, and negative allocations / capacity (max over ASPs, resources)."""
    dual: float
    """Negative capacity multipliers, relative to the shadow price."""
    complementarity: float
    """mu (C - sum y) / (price C): multiplier times slack, relative."""
    stationarity: float
    """|r_m * marginal QoE - marginal cost - mu| / (r_m * marginal QoE + marginal cost + mu), per MU."""

    @property
    def max(self) -> float:
        """The largest of the four."""
        return max(self.primal, self.dual, self.complementarity, self.stationarity)


def kkt_residuals_per_asp(market: Market, response: FollowerResponse) -> dict[str, np.ndarray]:
    """Relative KKT residuals of each ASP's problem: ``{"primal", "dual", "complementarity",
    "stationarity"}`` -> (N,) arrays (the largest over both resources and the ASP's MUs)."""
    mk, r, n = market, response.rewards, market.n_asps
    out = {k: np.zeros(n) for k in ("primal", "dual", "complementarity", "stationarity")}
    with np.errstate(divide="ignore", invalid="ignore"):
        for name in ("compute", "bandwidth"):
            y = getattr(response, name)
            cap = getattr(mk, f"{name}_capacity")
            unit = getattr(mk, f"{name}_cost")
            mult = getattr(response, f"{name}_multiplier")
            used = mk.per_asp_sum(y)
            negative = np.zeros(n)
            np.maximum.at(negative, mk.mu_asp, np.maximum(-y, 0.0) / cap[mk.mu_asp])
            out["primal"] = np.maximum.reduce([out["primal"], np.maximum(used - cap, 0.0) / cap, negative])
            scale_n = np.maximum(np.abs(mult) + unit, 1e-300)
            out["dual"] = np.maximum(out["dual"], np.maximum(-mult, 0.0) / scale_n)
            out["complementarity"] = np.maximum(out["complementarity"], np.abs(mult * (cap - used)) / (scale_n * cap))
            if name == "compute":
                need = mk.timeliness_compute_need
                value = r * np.where(need > 0, need / y**2, 0.0)
                marginal_cost = 2 * unit[mk.mu_asp] * y if mk.asp_cost == "quadratic" else unit[mk.mu_asp]
            else:
                value = r * bandwidth_loss_slope(mk, y)
                marginal_cost = unit[mk.mu_asp]
            active = mk.weight_timeliness > 0
            lhs = value - marginal_cost - mult[mk.mu_asp]
            denom = value + marginal_cost + np.abs(mult[mk.mu_asp])
            res = np.where(active, np.abs(lhs) / np.where(denom > 0, denom, 1.0), 0.0)
            res = np.where(np.isfinite(res), res, np.inf)
            np.maximum.at(out["stationarity"], mk.mu_asp, res)
    return out


def kkt_residuals(market: Market, response: FollowerResponse) -> KKTResiduals:
    """Relative KKT residuals of ``response`` for every ASP's problem (any model variant):
    the largest over the ASPs of :func:`kkt_residuals_per_asp`."""
    per_asp = kkt_residuals_per_asp(market, response)
    return KKTResiduals(**{k: float(np.max(v, initial=0.0)) for k, v in per_asp.items()})
