"""Solvers against the oracle, the known answer, the registry contract and the statuses."""
from __future__ import annotations

import numpy as np
import pytest

import solvers
from market.errors import UserError
from market.generator import generate_scenario
from market.model import Market
from solvers.certificate import certify
from solvers.implicit_gradient import utility_derivatives
from solvers.registry import REGISTRY, SolverSpec
from solvers.result import STATUSES
from tests.market.known_answer import KNOWN_REWARDS, known_answer_scenario

PERTURBATION_SOLVERS = ["dual-perturbation", "dual-perturbation-jacobi", "dual-perturbation-gs"]


@pytest.fixture(scope="module")
def market() -> Market:
    """A market whose equilibrium has no ASP exactly at its capacity threshold (see below)."""
    return Market.from_scenario(generate_scenario(4, 24, seed=5))


def asps_at_threshold(result) -> int:
    """ASPs whose capacity is exactly used with a zero multiplier (a kink of every MU's utility)."""
    mk, resp = result.market, result.response
    out = 0
    for name in ("compute", "bandwidth"):
        used = mk.per_asp_sum(getattr(resp, name)) / getattr(mk, f"{name}_capacity")
        mult = getattr(resp, f"{name}_multiplier")
        out += int(np.sum((mult < 1e-6 * getattr(mk, f"{name}_cost")) & (used > 1 - 1e-6)))
    return out


def test_implicit_gradient_matches_finite_differences(market):
    """The oracle's gradient and curvature against central differences of the utility."""
    from market.leaders import deviation_utility

    r = np.random.default_rng(0).uniform(market.reward_min, market.reward_max)
    _, grad, curv = utility_derivatives(market, r)
    h = 1e-5 * r
    up, mid, dn = (deviation_utility(market, r, t) for t in (r + h, r, r - h))
    assert np.allclose(grad, (up - dn) / (2 * h), rtol=1e-6, atol=1e-9)
    assert np.allclose(curv, (up - 2 * mid + dn) / h**2, rtol=1e-2, atol=1e-6)


@pytest.mark.parametrize("solver", ["implicit-gradient", *PERTURBATION_SOLVERS])
def test_known_answer(solver):
    """The hand-derived equilibrium r = (1, 1, 1) (derivation in tests/market/known_answer.py)."""
    result = solvers.solve(known_answer_scenario(), solver, tolerance=1e-12)
    assert result.status == "converged"
    expected = np.array([KNOWN_REWARDS[n] for n in result.market.mu_names])
    assert np.allclose(result.rewards, expected, atol=1e-4)


def test_known_answer_certificate_is_exact():
    mk = Market.from_scenario(known_answer_scenario())
    cert = certify(mk, np.ones(3), 1e-12)
    assert cert.passed and cert.max_relative_regret < 1e-13 and cert.kkt_residual < 1e-13
    off = certify(mk, np.array([1.0, 1.5, 1.0]), 1e-6)
    assert not off.passed and off.regret[1] > 1e-3 and off.best_deviation[1] == pytest.approx(1.0, rel=1e-2)


@pytest.mark.parametrize("solver", PERTURBATION_SOLVERS)
def test_perturbation_solvers_agree_with_oracle(market, solver):
    oracle = solvers.solve(market, "implicit-gradient", tolerance=1e-10)
    assert asps_at_threshold(oracle) == 0  # smooth equilibrium: the comparison below is meaningful
    result = solvers.solve(market, solver, tolerance=1e-10)
    assert oracle.status == result.status == "converged"
    # a regret of 1e-10 leaves rewards uncertain to ~1e-5 (flat optimum), which moves the
    # other MUs' utilities at first order: compare utilities to 1e-5, rewards to 1e-3
    assert np.allclose(result.utility, oracle.utility, rtol=1e-5)
    assert np.allclose(result.rewards, oracle.rewards, rtol=1e-3)


@pytest.mark.parametrize("solver", ["implicit-gradient", "dual-perturbation"])
def test_threshold_equilibria_are_certified(solver):
    """Where an ASP sits exactly at its capacity threshold, every MU there has a kink at its
    reward and equilibria need not be unique; each solver must still reach a certified one."""
    mk = Market.from_scenario(generate_scenario(4, 24, seed=8))
    result = solvers.solve(mk, solver)
    assert asps_at_threshold(result) >= 1
    assert result.status == "converged" and result.certificate.max_relative_regret < 1e-6
    assert "gauss-seidel" in result.options["schedule_used"]


def test_simultaneous_perturbation_gets_close(market):
    result = solvers.solve(market, "simultaneous-perturbation", max_iterations=3000)
    oracle = solvers.solve(market, "implicit-gradient")
    assert result.status in STATUSES
    assert result.certificate.max_relative_regret < 1e-3  # measured 1.7e-5 (iterate averaging)
    start = certify(market, 0.5 * (market.reward_min + market.reward_max))
    assert result.certificate.nashconv < 0.05 * start.nashconv
    assert np.allclose(result.rewards, oracle.rewards, atol=0.05 * np.max(market.reward_max))


@pytest.mark.parametrize("bandwidth_model,asp_cost", [("shannon", "linear"), ("linear", "quadratic")])
def test_dual_perturbation_solves_variants(bandwidth_model, asp_cost):
    mk = Market.from_scenario(generate_scenario(2, 5, seed=4, bandwidth_model=bandwidth_model, asp_cost=asp_cost))
    result = solvers.solve(mk, "dual-perturbation")
    assert result.status == "converged", result.certificate.to_dict()
    assert result.response.method == "dual"
    with pytest.raises(UserError, match="does not handle"):
        solvers.solve(mk, "implicit-gradient")


def test_status_only_converged_when_certificate_passes(market):
    result = solvers.solve(market, "dual-perturbation", max_iterations=1)
    assert not result.certificate.passed
    assert result.status == "max_iterations" and result.solver_status == "max_iterations"
    assert result.to_dict()["certificate"]["passed"] is False


def test_registry_contract():
    for name, spec in REGISTRY.items():
        assert spec.name == name and spec.module and spec.function and spec.description
        assert set(spec.variants) == {"bandwidth_model", "asp_cost"}
    assert REGISTRY["pyomo"].module == "solvers.pyomo_reference" and REGISTRY["pyomo"].function == "solve"
    assert set(STATUSES) == {"converged", "not_certified", "max_iterations", "infeasible", "error"}


def test_missing_solver_module_is_a_clean_user_error(monkeypatch, market):
    monkeypatch.setitem(REGISTRY, "ghost", SolverSpec("ghost", "solvers.no_such_module", "solve", description="x"))
    with pytest.raises(UserError, match="not available in this build"):
        solvers.solve(market, "ghost")
    with pytest.raises(UserError, match="unknown solver"):
        solvers.solve(market, "nope")


def test_solvers_are_imported_lazily():
    import subprocess
    import sys

    code = ("import sys, solvers; solvers.solve('scenarios/small.toml');"
            "print(sorted(m for m in sys.modules if m.startswith(('solvers.', 'cvxpy', 'pyomo', 'torch'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pyomo" not in out and "cvxpy" not in out and "torch" not in out
    assert "solvers.simultaneous_perturbation" not in out


def test_result_json_fields(market):
    result = solvers.solve(market)
    d = result.to_dict()
    assert d["version"] == 1 and d["status"] == "converged" and d["solver"] == "dual-perturbation"
    for key in ("iterations", "solve_time_s", "certificate_time_s", "mus", "asps", "certificate"):
        assert key in d
    mu_keys = {"name", "asp", "reward", "compute", "bandwidth", "latency_s", "qoe", "qoe_accuracy", "qoe_tokens",
               "qoe_timeliness", "payment", "utility", "regret"}
    assert mu_keys <= set(d["mus"][0]) and len(d["mus"]) == market.n_mus
    asp_keys = {"name", "compute_price", "bandwidth_price", "compute_used", "bandwidth_used", "revenue", "cost",
                "profit"}
    assert asp_keys <= set(d["asps"][0]) and len(d["asps"]) == market.n_asps
    assert {"kkt_residual", "max_regret", "nashconv", "tolerance", "passed"} <= set(d["certificate"])
    row = d["mus"][0]
    assert row["qoe"] == pytest.approx(row["qoe_accuracy"] + row["qoe_tokens"] + row["qoe_timeliness"])
    assert row["payment"] == pytest.approx(row["reward"] * row["qoe"])
    profit = sum(a["profit"] for a in d["asps"])
    assert profit == pytest.approx(sum(a["revenue"] - a["cost"] for a in d["asps"]))


def test_qoe_floor_infeasible_and_feasible():
    import dataclasses

    scn = known_answer_scenario()
    # a: Q(r) = 1 - 0.5 / sqrt(r) <= 1 - 0.5 / sqrt(2.5) = 0.684 on its box
    feasible = dataclasses.replace(scn, mus=(dataclasses.replace(scn.mus[0], qoe_required=0.6),) + scn.mus[1:])
    result = solvers.solve(feasible, "dual-perturbation")
    assert result.status == "converged"
    assert result.response.qoe.total[0] >= 0.6 - 1e-9
    assert result.rewards[0] == pytest.approx(1.5625, rel=1e-6)  # 1 - 0.5/sqrt(r) = 0.6 -> r = 1.5625
    impossible = dataclasses.replace(scn, mus=(dataclasses.replace(scn.mus[0], qoe_required=0.9),) + scn.mus[1:])
    result = solvers.solve(impossible, "dual-perturbation", max_iterations=200)
    assert result.status == "infeasible"
