"""Batched small markets: K markets of the same shape solved and certified in one call.

What this module is for: sweeps and property tests solve thousands of small markets. ASPs
are independent and an MU interacts only with the MUs of its own ASP, so K disjoint markets
are one market whose ASPs and MUs are the union (block structure): an equilibrium of the
union is exactly an equilibrium of every market, and each MU's regret is the same number in
either. :func:`stack_markets` builds the union (ASP n of market k becomes ASP k N + n);
:func:`solve_batch` solves it in one vectorised call and slices the certificate per market
(regrets, reward-distance bounds, KKT residuals per ASP), so every market gets its own status.

Backends:

* ``"numpy"`` (default): the registry's solver (``dual-perturbation``) on the union;
* ``"torch"``: best-response Gauss-Seidel on the union in torch (each MU's exact best
  response to the others by golden-section search on its concave own utility, the k-th MU
  of every ASP at turn k), on CUDA when available, else CPU; the linear model only. The
  certificate is always the solver-independent numpy one.

The torch best-response loop is written here because no library offers batched
best-response dynamics for this game; it uses only the closed-form deviation formula of
``market.followers`` (transcribed to torch).

May import: numpy, torch (lazily), ``market`` and ``solvers.ascent`` / ``solvers.certificate``
/ ``solvers.registry`` / ``solvers.result``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from market.errors import UserError
from market.followers import best_response, kkt_residuals_per_asp
from market.search import golden_max
from market.model import Market
from solvers.certificate import Certificate, certify

BACKENDS = ("numpy", "torch")
_ASP_ARRAYS = ("accuracy", "seconds_per_token", "max_tokens", "compute_capacity", "bandwidth_capacity",
               "compute_cost", "bandwidth_cost")
_MU_ARRAYS = ("weight_accuracy", "weight_tokens", "weight_timeliness", "tokens_requested", "deadline_s",
              "payload_bits", "spectral_efficiency", "snr_hz", "value_per_qoe", "reward_min", "reward_max",
              "qoe_required")


def stack_markets(markets: list[Market]) -> Market:
    """The union of K markets of the same shape (N ASPs, M MUs, same model variant).

    ASP n of market k is ASP ``k * N + n`` of the union, MU m of market k is MU ``k * M + m``.
    """
    if not markets:
        raise UserError("solve_batch needs at least one market")
    first = markets[0]
    n, m = first.n_asps, first.n_mus
    for k, mk in enumerate(markets):
        if (mk.n_asps, mk.n_mus) != (n, m):
            raise UserError(f"market {k} has {mk.n_asps} ASPs x {mk.n_mus} MUs; the batch is {n} x {m}")
        if (mk.bandwidth_model, mk.asp_cost) != (first.bandwidth_model, first.asp_cost):
            raise UserError(f"market {k} has another model variant than market 0")
    arrays = {name: np.concatenate([getattr(mk, name) for mk in markets]) for name in _ASP_ARRAYS + _MU_ARRAYS}
    offsets = np.repeat(np.arange(len(markets)) * n, m)
    mu_asp = np.concatenate([mk.mu_asp for mk in markets]) + offsets
    return replace(first, asp_names=tuple(f"{k}:{a}" for k, mk in enumerate(markets) for a in mk.asp_names),
                   mu_names=tuple(f"{k}:{u}" for k, mk in enumerate(markets) for u in mk.mu_names),
                   mu_asp=mu_asp, name=f"batch of {len(markets)} x {first.name}", **arrays)


@dataclass
class BatchResult:
    """What :func:`solve_batch` returns: per-market rewards, certificates and statuses."""

    rewards: np.ndarray
    """(K, M) reward profiles (money per QoE)."""
    max_relative_regret: np.ndarray
    """(K,) each market's largest relative regret."""
    kkt_residual: np.ndarray
    """(K,) each market's largest relative follower KKT residual."""
    max_relative_reward_distance: np.ndarray
    """(K,) each market's largest bound on |reward - best response| / reward."""
    passed: np.ndarray
    """(K,) bool: the market's certificate passes (regret, KKT and QoE floors within ``tolerance``)."""
    floor_violation: np.ndarray
    """(K,) each market's largest QoE-floor shortfall (QoE units; 0 where no floor binds)."""
    tolerance: float
    """Certificate tolerance (relative)."""
    solve_time_s: float
    """Wall time of the batched solve (s)."""
    certificate_time_s: float
    """Wall time of the batched certificate (s)."""
    iterations: int
    """Rounds (sweeps) of the batched solve."""
    backend: str
    """``"numpy"`` or ``"torch:<device>"``."""
    union: Market = field(repr=False, default=None)
    """The union market that was solved."""
    certificate: Certificate = field(repr=False, default=None)
    """The union's certificate (slice it with :meth:`market_certificate`)."""
    resolved: dict = field(default_factory=dict)
    """Markets the batch left uncertified, re-solved alone (warm start from the batch's
    rewards): market index -> that solve's :class:`Certificate`."""

    @property
    def status(self) -> np.ndarray:
        """(K,) ``"converged"`` where the certificate passed, else ``"not_certified"``."""
        return np.where(self.passed, "converged", "not_certified")

    def market_certificate(self, k: int) -> Certificate:
        """Market k's own certificate (its MUs' regrets; the KKT residuals of its ASPs)."""
        if k in self.resolved:
            return self.resolved[k]
        m = self.rewards.shape[1]
        part = slice(k * m, (k + 1) * m)
        c = self.certificate
        return replace(c, regret=c.regret[part], relative_regret=c.relative_regret[part],
                       best_deviation=c.best_deviation[part], reward_distance=c.reward_distance[part],
                       rewards=c.rewards[part], kkt=self._kkt[k], floor_violation=float(self.floor_violation[k]))


def solve_batch(markets: list[Market], *, backend: str = "numpy", tolerance: float = 1e-6,
                max_iterations: int = 5000, solver: str = "dual-perturbation", device: str | None = None,
                resolve_failed: bool = True) -> BatchResult:
    """Solve and certify K same-shape markets in one vectorised call (see the module docstring).

    With ``resolve_failed`` (default) a market whose batch answer fails its certificate is
    re-solved alone, warm-started (``BatchResult.resolved`` lists them; usually none or a
    handful in 10^4); pass False to see the batch's own answers.
    """
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {BACKENDS}, got {backend!r}")
    union = stack_markets(markets)
    k, m, n = len(markets), markets[0].n_mus, markets[0].n_asps
    start = time.perf_counter()
    if backend == "numpy":
        from solvers.registry import REGISTRY

        spec = REGISTRY[solver]
        result = spec.load()(union, tolerance=tolerance, max_iterations=max_iterations, **spec.defaults)
        rewards, iterations, used = result.rewards, result.iterations, "numpy"
    else:
        rewards, iterations, used = best_response_torch(union, tolerance=tolerance, max_iterations=max_iterations,
                                                        device=device)
    solve_time = time.perf_counter() - start
    start = time.perf_counter()
    response = best_response(union, rewards)
    cert = certify(union, rewards, tolerance, response=response)
    per_asp = kkt_residuals_per_asp(union, response)
    kkt_k = {key: v.reshape(k, n).max(axis=1) for key, v in per_asp.items()}
    kkt_max = np.maximum.reduce(list(kkt_k.values()))
    rel = cert.relative_regret.reshape(k, m).max(axis=1)
    dist = (cert.reward_distance / cert.rewards).reshape(k, m).max(axis=1)
    shortfall = np.nan_to_num(union.qoe_required - response.qoe.total, nan=0.0).reshape(k, m)
    floor = np.maximum(shortfall, 0.0).max(axis=1)
    passed = (rel <= tolerance) & (kkt_max <= tolerance) & (floor <= tolerance)
    cert_time = time.perf_counter() - start
    out = BatchResult(rewards=rewards.reshape(k, m), max_relative_regret=rel, kkt_residual=kkt_max,
                      max_relative_reward_distance=dist, passed=passed, floor_violation=floor, tolerance=tolerance,
                      solve_time_s=solve_time, certificate_time_s=cert_time, iterations=iterations, backend=used,
                      union=union, certificate=cert)
    from market.followers import KKTResiduals

    out._kkt = [KKTResiduals(**{key: float(v[i]) for key, v in kkt_k.items()}) for i in range(k)]
    if resolve_failed:
        _resolve_alone(out, markets, solver, tolerance, max_iterations)
    return out


def _resolve_alone(batch: BatchResult, markets: list[Market], solver: str, tolerance: float,
                   max_iterations: int) -> None:
    """Re-solve, one by one, the markets whose batch answer failed its certificate (the union
    stops on one global test; a market at a capacity kink may need the Gauss-Seidel schedule
    on its own): with ``solver`` warm-started, then, if that fails too and the model is
    linear, with ``implicit-gradient`` (exact one-sided derivatives at kinks). Updates
    ``batch`` in place; ``resolved`` says which."""
    from solvers.registry import solve

    start = time.perf_counter()
    for k in np.flatnonzero(~batch.passed):
        result = solve(markets[k], solver, tolerance=tolerance, max_iterations=max_iterations,
                       initial_rewards=batch.rewards[k])
        if not result.certificate.passed and markets[k].is_closed_form:
            # the dual perturbation can stall where a capacity sits at its kink (docs/market.md);
            # the implicit-gradient solver knows the kinks
            result = solve(markets[k], "implicit-gradient", tolerance=tolerance, max_iterations=max_iterations)
        c = result.certificate
        batch.rewards[k] = result.rewards
        batch.max_relative_regret[k], batch.kkt_residual[k] = c.max_relative_regret, c.kkt_residual
        batch.max_relative_reward_distance[k] = c.max_relative_reward_distance
        batch.floor_violation[k] = c.floor_violation
        batch.passed[k] = c.passed
        batch.resolved[int(k)] = c
    batch.solve_time_s += time.perf_counter() - start


# ============================================================================ torch
def best_response_torch(market: Market, *, tolerance: float = 1e-6, max_iterations: int = 5000,
                        device: str | None = None, golden_iterations: int = 60, progress=None,
                        reward_tolerance: float = 1e-7) -> tuple[np.ndarray, int, str]:
    """Best-response Gauss-Seidel in torch (linear model): returns (rewards, sweeps, backend).

    Turn k moves the k-th MU of every ASP to its exact best response to the others (golden
    section on its box; U_m is concave in r_m, so it is global). Stops when a sweep moves no
    reward by more than ``reward_tolerance`` of its box, or after ``max_iterations`` sweeps.
    """
    try:
        import torch
    except ModuleNotFoundError:
        raise UserError("backend 'torch' needs torch (pip install 'aigc-incentive[learning]')") from None
    if not market.is_closed_form:
        raise UserError("backend 'torch' handles the linear model only (bandwidth_model='linear', asp_cost='linear')")
    from solvers.ascent import gauss_seidel_turns

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=float), dtype=torch.float64, device=dev)  # noqa: E731
    asp = torch.as_tensor(market.mu_asp, device=dev)
    needs = [t(market.timeliness_compute_need), t(market.timeliness_bandwidth_need)]
    caps = [t(market.compute_capacity)[asp], t(market.bandwidth_capacity)[asp]]
    costs = [t(market.compute_cost)[asp], t(market.bandwidth_cost)[asp]]
    ceiling, theta = t(market.qoe_ceiling), t(market.value_per_qoe)
    lo, hi = t(market.reward_min), t(market.reward_max)
    width = hi - lo
    r = 0.5 * (lo + hi)
    n_asps = market.n_asps
    turns = [torch.as_tensor(idx, device=dev) for idx in gauss_seidel_turns(market)]

    def totals(rewards):
        return [torch.zeros(n_asps, dtype=torch.float64, device=dev).index_add_(0, asp, torch.sqrt(need * rewards))
                for need in needs]

    def turn_utility(idx, others):
        """U of the MUs ``idx`` as a function of their trial rewards, others fixed (gathered once)."""
        parts = [(torch.sqrt(need[idx] * cost[idx]), need[idx] / cap[idx], torch.sqrt(need[idx]) * s / cap[idx])
                 for need, cap, cost, s in zip(needs, caps, costs, others)]
        top, value = ceiling[idx], theta[idx]

        def utility(trial):
            inv = torch.rsqrt(trial)
            q = top
            for free, fixed, shared in parts:
                q = q - torch.maximum(free * inv, fixed + shared * inv)
            return (value - trial) * q
        return utility

    sweeps = 0
    for sweeps in range(1, max_iterations + 1):
        sums = totals(r)
        largest = 0.0
        for idx in turns:
            ri = r[idx]
            others = [torch.clamp(total[asp[idx]] - torch.sqrt(need[idx] * ri), min=0.0)
                      for total, need in zip(sums, needs)]
            utility = turn_utility(idx, others)
            best, best_v = golden_max(utility, lo[idx], hi[idx], golden_iterations)
            # the ends of the box are candidates too (golden section never evaluates them)
            for end in (lo[idx], hi[idx]):
                ve = utility(end)
                best = torch.where(ve > best_v, end, best)
                best_v = torch.maximum(ve, best_v)
            keep = utility(ri) >= best_v  # never move to something no better
            new = torch.where(keep, ri, best)
            largest = max(largest, float(torch.max(torch.abs(new - ri) / width[idx])))
            for j, (need, total) in enumerate(zip(needs, sums)):
                sums[j] = total.index_add(0, asp[idx], torch.sqrt(need[idx] * new) - torch.sqrt(need[idx] * ri))
            r[idx] = new
        if progress is not None:
            progress(sweeps, largest)
        if largest <= reward_tolerance:
            break
    return r.cpu().numpy(), sweeps, f"torch:{dev.type}"
