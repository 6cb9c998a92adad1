"""The one result object every solver returns, and its JSON form (result format version 1).

What this module is for: :class:`EquilibriumResult` (documented fields), the canonical
status set :data:`STATUSES`, :func:`make_result` which solvers call with their reward
profile, and :meth:`EquilibriumResult.to_dict` which produces the result JSON documented in
``docs/market.md``.

May import: numpy and ``market``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from market.atomic import json_ready
from market.followers import FollowerResponse, best_response
from market.leaders import payment, utility
from market.model import Market

#: Version of the result JSON format.
RESULT_VERSION = 1

#: The canonical statuses. "converged" only when the certificate passes.
STATUSES = {
    "converged": "the certificate passed: KKT residuals and every MU's relative regret within tolerance",
    "not_certified": "the solver stopped but the certificate did not pass (figures reported)",
    "max_iterations": "the iteration limit was reached and the certificate did not pass",
    "infeasible": "no reward profile meets the constraints (e.g. a QoE floor), or a follower problem failed",
    "error": "the solver failed (message says why); no certified answer",
}


@dataclass
class EquilibriumResult:
    """A solver's answer with its certificate.

    ``status`` is one of :data:`STATUSES`; ``solver_status`` is what the solver itself
    claimed before certification (same vocabulary).
    """

    status: str
    """Final status (see :data:`STATUSES`); set from the certificate by ``solvers.solve``."""
    solver: str
    """Registry name of the solver."""
    market: Market
    """The market that was solved (not serialised)."""
    rewards: np.ndarray
    """(M,) reward profile r (money per QoE)."""
    response: FollowerResponse | None
    """The followers' optimum at ``rewards`` (allocations, prices, QoE)."""
    iterations: int = 0
    """Iterations (rounds) the solver used."""
    solve_time_s: float = 0.0
    """Wall time of the solver alone (s)."""
    certificate_time_s: float = 0.0
    """Wall time of the certificate (s)."""
    certificate: Any = None
    """:class:`solvers.certificate.Certificate`, attached by ``solvers.solve``."""
    solver_status: str = "converged"
    """What the solver claimed before certification."""
    message: str = ""
    """Human-readable detail (why it stopped, what failed)."""
    follower_solves: int = 0
    """Follower problems solved (closed-form evaluations count as one per ASP re-solve)."""
    options: dict = field(default_factory=dict)
    """The options the solver ran with (saved with the result)."""
    history: list = field(default_factory=list)
    """Per-iteration largest relative step (for progress plots); may be empty."""

    # ---------------------------------------------------------------- derived figures
    @property
    def utility(self) -> np.ndarray:
        """(M,) U_m = (theta_m - r_m) Q_m."""
        return utility(self.market, self.rewards, self.response.qoe.total)

    @property
    def payment(self) -> np.ndarray:
        """(M,) r_m Q_m."""
        return payment(self.rewards, self.response.qoe.total)

    def asp_table(self) -> dict[str, np.ndarray]:
        """Per-ASP arrays: prices, capacity used, revenue, cost, profit (money)."""
        mk, resp = self.market, self.response
        used_f, used_b = mk.per_asp_sum(resp.compute), mk.per_asp_sum(resp.bandwidth)
        if mk.asp_cost == "quadratic":
            cost_f = mk.compute_cost * mk.per_asp_sum(resp.compute**2)
        else:
            cost_f = mk.compute_cost * used_f
        cost = cost_f + mk.bandwidth_cost * used_b
        revenue = mk.per_asp_sum(self.payment)
        return {"compute_price": resp.compute_price, "bandwidth_price": resp.bandwidth_price,
                "compute_used": used_f, "bandwidth_used": used_b,
                "compute_capacity": mk.compute_capacity, "bandwidth_capacity": mk.bandwidth_capacity,
                "revenue": revenue, "cost": cost, "profit": revenue - cost}

    def to_columns(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The per-MU and per-ASP tables as columns (numpy arrays; names as object arrays):
        what the columnar result writes. The per-MU columns are those of the JSON ``mus``
        rows plus ``relative_regret`` and ``reward_distance`` (the certificate's bound on the
        distance to the MU's best response)."""
        mk, resp, q = self.market, self.response, self.response.qoe
        cert = self.certificate
        nan = np.full(mk.n_mus, np.nan)
        names = np.asarray(mk.asp_names, dtype=object)
        mus = {
            "name": np.asarray(mk.mu_names, dtype=object), "asp": names[mk.mu_asp],
            "reward": self.rewards, "compute": resp.compute, "bandwidth": resp.bandwidth,
            "latency_s": q.latency_s, "qoe": q.total, "qoe_accuracy": q.accuracy, "qoe_tokens": q.tokens,
            "qoe_timeliness": q.timeliness, "payment": self.payment, "utility": self.utility,
            "regret": cert.regret if cert is not None else nan,
            "relative_regret": cert.relative_regret if cert is not None else nan,
            "reward_distance": cert.reward_distance if cert is not None and cert.reward_distance is not None else nan,
        }
        asps = {"name": names, **self.asp_table()}
        return mus, asps

    def to_dict(self, max_rows: int | None = None) -> dict:
        """The result JSON (format version :data:`RESULT_VERSION`; see ``docs/market.md``).

        ``max_rows`` keeps only the first rows of ``mus`` and ``asps`` (for printing).
        """
        mk = self.market
        out: dict[str, Any] = {
            "version": RESULT_VERSION,
            "scenario": mk.name,
            "status": self.status,
            "solver_status": self.solver_status,
            "solver": self.solver,
            "message": self.message,
            "iterations": int(self.iterations),
            "follower_solves": int(self.follower_solves),
            "solve_time_s": float(self.solve_time_s),
            "certificate_time_s": float(self.certificate_time_s),
            "options": json_ready(self.options),
            "mus": [],
            "asps": [],
            "certificate": self.certificate.to_dict() if self.certificate is not None else None,
        }
        if self.response is None:
            return out
        resp, q = self.response, self.response.qoe
        regret = self.certificate.regret if self.certificate is not None else np.full(mk.n_mus, np.nan)
        util, pay = self.utility, self.payment
        for m in range(mk.n_mus if max_rows is None else min(mk.n_mus, max_rows)):
            out["mus"].append({
                "name": mk.mu_names[m], "asp": mk.asp_names[mk.mu_asp[m]],
                "reward": _num(self.rewards[m]), "compute": _num(resp.compute[m]),
                "bandwidth": _num(resp.bandwidth[m]), "latency_s": _num(q.latency_s[m]),
                "qoe": _num(q.total[m]), "qoe_accuracy": _num(q.accuracy[m]),
                "qoe_tokens": _num(q.tokens[m]), "qoe_timeliness": _num(q.timeliness[m]),
                "payment": _num(pay[m]), "utility": _num(util[m]), "regret": _num(regret[m]),
            })
        table = self.asp_table()
        for n in range(mk.n_asps if max_rows is None else min(mk.n_asps, max_rows)):
            row = {"name": mk.asp_names[n]}
            row.update({k: _num(v[n]) for k, v in table.items()})
            out["asps"].append(row)
        return out


def _num(x: Any) -> float | None:
    """A JSON number, or None for NaN/inf (e.g. the latency of an MU that gets no resources)."""
    x = float(x)
    return x if math.isfinite(x) else None


def make_result(market: Market, rewards: np.ndarray, *, solver: str, iterations: int, solve_time_s: float,
                solver_status: str = "converged", message: str = "", follower_solves: int = 0,
                options: dict | None = None, history: list | None = None,
                response: FollowerResponse | None = None) -> EquilibriumResult:
    """Build a result for ``rewards`` (followers' response computed if not given).

    ``status`` starts as ``solver_status``; ``solvers.solve`` replaces it after certifying.
    """
    if solver_status not in STATUSES:
        raise ValueError(f"unknown status {solver_status!r}")
    r = market.clip_rewards(rewards)
    if response is None:
        response = best_response(market, r)
    return EquilibriumResult(status=solver_status, solver=solver, market=market, rewards=r, response=response,
                             iterations=iterations, solve_time_s=solve_time_s, solver_status=solver_status,
                             message=message, follower_solves=follower_solves, options=dict(options or {}),
                             history=list(history or []))
