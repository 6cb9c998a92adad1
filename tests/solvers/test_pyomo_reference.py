"""The Pyomo/Ipopt reference formulation against the default solver.

Both answers must pass the certificate and agree (rewards within 1e-4 relative). The
equilibrium is not always unique: when an ASP's capacity sits exactly at the kink between
"slack" and "binding" (demand price == unit cost), a continuum of reward profiles are
equilibria, and a solver can stall there. Such a case is reported as an expected failure
(xfail, with the figures) only when the kink is present and at least one answer is
certified; otherwise the test fails. Every message names the certificate that fails.
"""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from market.generator import generate_scenario
from market.model import Market
from market.scenario import load_scenario
from solvers import solve
from solvers.registry import finalize
from solvers.pyomo_reference import IpoptUnavailableError, ipopt_unavailable_reason

REASON = ipopt_unavailable_reason()
needs_ipopt = pytest.mark.skipif(REASON is not None, reason=f"Pyomo reference unavailable: {REASON}")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL_SHIPPED = [p for p in sorted(glob.glob(os.path.join(ROOT, "scenarios", "*.toml")))
                 if os.path.basename(p) in ("default.toml", "small.toml")]


def _kink_asps(market: Market, rewards: np.ndarray, rel: float = 1e-3) -> list[str]:
    """ASPs whose capacity is (numerically) at the slack/binding kink at ``rewards``."""
    out = []
    for name, need, cap, cost in (("compute", market.timeliness_compute_need, market.compute_capacity,
                                   market.compute_cost),
                                  ("bandwidth", market.timeliness_bandwidth_need, market.bandwidth_capacity,
                                   market.bandwidth_cost)):
        demand_price = (market.per_asp_sum(np.sqrt(need * rewards)) / cap) ** 2
        for n in np.flatnonzero(np.abs(demand_price / np.maximum(cost, 1e-300) - 1.0) < rel):
            out.append(f"{market.asp_names[n]}.{name}")
    return out


def _describe(label, result) -> str:
    c = result.certificate
    fails = []
    if c.kkt_residual > c.tolerance:
        fails.append(f"follower KKT residual {c.kkt_residual:.3g} > {c.tolerance:g}")
    if c.max_relative_regret > c.tolerance:
        worst = int(np.argmax(c.relative_regret))
        fails.append(f"regret of {result.market.mu_names[worst]} {c.max_relative_regret:.3g} > {c.tolerance:g}")
    if c.floor_violation > c.tolerance:
        fails.append(f"QoE floor missed by {c.floor_violation:.3g}")
    return f"{label} ({result.status}): " + ("; ".join(fails) if fails else "certificate passes")


def _agree(market: Market, **pyomo_options):
    # A 1e-6 relative-regret certificate pins a reward only to about sqrt(1e-6) relative (the
    # utility is flat at its maximum), so for a 1e-4 comparison the default solver runs to a
    # 1e-10 target; both answers are then certified at the standard 1e-6.
    default = finalize(solve(market, "dual-perturbation", tolerance=1e-10), 1e-6, {})
    reference = solve(market, "pyomo", **pyomo_options)
    rel = np.abs(reference.rewards - default.rewards) / default.rewards
    report = (f"{market.name}: max relative reward difference {rel.max():.3g} "
              f"(MU {market.mu_names[int(np.argmax(rel))]}); "
              f"{_describe('default', default)}; {_describe('pyomo', reference)}")
    kinks = sorted(set(_kink_asps(market, default.rewards) + _kink_asps(market, reference.rewards)))
    if not (default.certificate.passed and reference.certificate.passed):
        # A known limitation, not a pass: at a capacity kink a solver may stall. Only accepted
        # when the other solver's answer is certified and the kink is there.
        one_passes = default.certificate.passed or reference.certificate.passed
        assert one_passes and kinks, report
        pytest.xfail(f"a solver fails its certificate at a capacity kink ({', '.join(kinks)}): " + report)
    if rel.max() > 1e-4:
        assert kinks, "both certified but different, and no capacity kink explains it: " + report
        pytest.xfail(f"non-unique equilibrium (capacity at the kink: {', '.join(kinks)}); " + report)
    return default, reference


@needs_ipopt
@pytest.mark.ipopt
@pytest.mark.parametrize("path", SMALL_SHIPPED, ids=os.path.basename)
def test_agrees_on_shipped_small_scenarios(path):
    _agree(Market.from_scenario(load_scenario(path)))


@needs_ipopt
@pytest.mark.ipopt
@pytest.mark.parametrize("asps,mus,seed", [(1, 3, 0), (2, 6, 1), (3, 12, 2), (3, 12, 3), (4, 16, 4)])
def test_agrees_on_generated_scenarios(asps, mus, seed):
    _agree(Market.from_scenario(generate_scenario(asps, mus, seed)))


@needs_ipopt
@pytest.mark.ipopt
def test_gauss_seidel_and_joint_systems_agree():
    market = Market.from_scenario(generate_scenario(2, 6, 5))
    joint = solve(market, "pyomo", method="joint")
    gs = solve(market, "pyomo", method="gauss-seidel")
    assert joint.certificate.passed, _describe("joint", joint)
    assert gs.certificate.passed, _describe("gauss-seidel", gs)
    if not (_kink_asps(market, joint.rewards) or _kink_asps(market, gs.rewards)):
        np.testing.assert_allclose(joint.rewards, gs.rewards, rtol=1e-4)
    assert joint.response.method == "pyomo"  # the certificate judged Pyomo's own KKT point


@needs_ipopt
@pytest.mark.ipopt
@pytest.mark.parametrize("variant", [{"asp_cost": "quadratic"}, {"bandwidth_model": "shannon"}])
def test_model_variants_pass_the_certificate(variant):
    market = Market.from_scenario(generate_scenario(2, 5, 7, **variant))
    reference = solve(market, "pyomo", method="joint")
    assert reference.certificate.passed, _describe("pyomo", reference)


@needs_ipopt
@pytest.mark.ipopt
def test_trajectory_recorded_per_round():
    market = Market.from_scenario(generate_scenario(1, 3, 0))
    result = solve(market, "pyomo", method="gauss-seidel")
    traj = np.asarray(result.options["trajectory"])
    assert traj.shape[1] == market.n_mus and traj.shape[0] >= 2
    np.testing.assert_allclose(traj[-1], result.rewards, rtol=1e-9)


def test_missing_ipopt_is_a_clear_error(monkeypatch):
    import solvers.pyomo_reference as ref

    monkeypatch.setattr(ref, "find_ipopt", lambda: None)
    market = Market.from_scenario(generate_scenario(1, 2, 0))
    with pytest.raises(IpoptUnavailableError, match="build_ipopt"):
        ref.solve(market)
