"""The uniqueness probe and the robustness draws of ``incentive stress``.

The probe must agree with what the certificate and the Pyomo reference say: on the shipped
scenarios and on generated markets away from a kink it reports one equilibrium, certified,
which the other solvers find too; at a kink it reports the distinct certified equilibria and
names the capacity at its kink, and the Pyomo answer is a certified equilibrium at that kink.
The Pyomo tests are marked ``ipopt`` and skip without the executable.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import solvers
from market.errors import UserError
from market.followers import best_response
from market.generator import generate_scenario
from market.model import Market
from market.scenario import load_scenario, write_scenario
from solvers import testing as mt
from solvers.certificate import certify
from solvers.pyomo_reference import ipopt_unavailable_reason
from solvers.stress import (CLUSTER_TOLERANCE, parse_perturbations, perturbed_scenarios, probe_uniqueness,
                            robustness, sobol_starts)

ROOT = Path(__file__).resolve().parents[2]
REASON = ipopt_unavailable_reason()
needs_ipopt = pytest.mark.skipif(REASON is not None, reason=f"Pyomo reference unavailable: {REASON}")


def _slack(n_asps, n_mus, seed):
    return mt.with_slack_capacities(generate_scenario(n_asps, n_mus, seed))


def _kinked(n_asps=2, n_mus=6, seed=1, asp=0):
    return mt.with_capacity_at_kink(_slack(n_asps, n_mus, seed), asp, 0.005)


def _width(market):
    return market.reward_max - market.reward_min


def _agrees_with(probe, market, rewards) -> bool:
    """Whether ``rewards`` lies within the cluster tolerance of one of the probe's equilibria."""
    return any(np.max(np.abs(eq.rewards - rewards) / _width(market)) <= 2 * CLUSTER_TOLERANCE for eq in probe.equilibria)


def _check_unique(scn, starts=8):
    market = Market.from_scenario(scn)
    probe = probe_uniqueness(scn, starts=starts, workers=1)
    assert probe.unique and probe.certified == starts, probe.summary()
    assert probe.summary().startswith("unique (spread")
    assert probe.spread <= CLUSTER_TOLERANCE
    eq = probe.equilibria[0]
    assert certify(market, eq.rewards, market.tolerance).passed
    assert mt.at_capacity_kink(market, solvers.solve(market).response) == []
    return market, probe


@pytest.mark.parametrize("name", ["default.toml", "small.toml", "medium.toml"])
def test_shipped_scenarios_are_unique_and_the_certified_solvers_agree(name):
    scn = load_scenario(ROOT / "scenarios" / name)
    market, probe = _check_unique(scn, starts=8 if name != "medium.toml" else 4)
    for solver in ("dual-perturbation", "implicit-gradient"):
        assert _agrees_with(probe, market, solvers.solve(market, solver, tolerance=1e-10).rewards), solver


@pytest.mark.slow
@pytest.mark.parametrize("name", ["large.toml", "variants.toml"])
def test_shipped_large_and_variant_scenarios_are_unique(name):
    scn = load_scenario(ROOT / "scenarios" / name)
    market, probe = _check_unique(scn, starts=4)
    assert _agrees_with(probe, market, solvers.solve(market, tolerance=1e-10).rewards)


def test_generated_markets_away_from_a_kink_are_unique():
    for scn in (generate_scenario(4, 24, 5), _slack(3, 10, 2)):
        market, probe = _check_unique(scn)
        assert _agrees_with(probe, market, solvers.solve(market, "implicit-gradient", tolerance=1e-10).rewards)


def test_generated_market_at_a_kink_lists_the_equilibria_and_names_the_kink():
    scn = _kinked()
    market = Market.from_scenario(scn)
    probe = probe_uniqueness(scn, starts=8, workers=1)
    assert not probe.unique, probe.summary()
    assert probe.differing_asps == [market.asp_names[0]]
    assert probe.cause == [f"{market.asp_names[0]} compute capacity at its kink"]
    text = probe.summary()
    assert text.startswith("NOT unique") and "compute capacity at its kink" in text
    for eq in probe.equilibria:  # every listed equilibrium is certified, and sits at the kink
        assert certify(market, eq.rewards, market.tolerance).passed
        assert f"{market.asp_names[0]}.compute" in mt.at_capacity_kink(market, best_response(market, eq.rewards))
    # the other ASP is smooth: all equilibria agree there
    other = market.mus_of(1)
    reps = np.array([eq.rewards[other] for eq in probe.equilibria])
    assert np.all(np.ptp(reps, axis=0) / _width(market)[other] <= CLUSTER_TOLERANCE)


def test_generated_4x24_kink_market_is_reported_not_unique():
    scn = generate_scenario(4, 24, 9)  # one of the 5 in 12 generated 4x24 markets at a kink
    probe = probe_uniqueness(scn, starts=8, workers=2)
    assert not probe.unique and probe.cause == ["asp1 compute capacity at its kink"], probe.summary()


def test_pool_and_serial_give_the_same_answers():
    scn = load_scenario(ROOT / "scenarios" / "small.toml")
    serial = probe_uniqueness(scn, starts=4, workers=1)
    pooled = probe_uniqueness(scn, starts=4, workers=2)
    for a, b in zip(serial.records, pooled.records):
        assert a["index"] == b["index"] and np.array_equal(a["rewards"], b["rewards"])


def test_sobol_starts_fill_the_boxes():
    market = Market.from_scenario(load_scenario(ROOT / "scenarios" / "default.toml"))
    starts = sobol_starts(market, 32, seed=1)
    assert starts.shape == (32, market.n_mus)
    assert np.all(starts >= market.reward_min) and np.all(starts <= market.reward_max)
    unit = (starts - market.reward_min) / _width(market)
    assert np.all(unit.min(axis=0) < 0.1) and np.all(unit.max(axis=0) > 0.9)  # low-discrepancy: both ends reached


@needs_ipopt
@pytest.mark.ipopt
@pytest.mark.parametrize("name", ["default.toml", "small.toml"])
def test_pyomo_reference_finds_the_probes_equilibrium_on_shipped_scenarios(name):
    scn = load_scenario(ROOT / "scenarios" / name)
    market, probe = _check_unique(scn)
    reference = solvers.solve(market, "pyomo")
    assert reference.status == "converged"
    assert _agrees_with(probe, market, reference.rewards)


@needs_ipopt
@pytest.mark.ipopt
def test_pyomo_reference_agrees_away_from_a_kink():
    scn = _slack(2, 6, 2)
    market, probe = _check_unique(scn)
    reference = solvers.solve(market, "pyomo")
    assert reference.status == "converged" and _agrees_with(probe, market, reference.rewards)


@needs_ipopt
@pytest.mark.ipopt
def test_pyomo_reference_at_a_kink_is_a_certified_equilibrium_on_the_same_kink():
    scn = _kinked()
    market = Market.from_scenario(scn)
    probe = probe_uniqueness(scn, starts=8, workers=1)
    reference = solvers.solve(market, "pyomo")
    assert reference.status == "converged"
    # (judged on the closed-form followers at Pyomo's rewards: Pyomo's own KKT point is Scholtes-relaxed)
    assert f"{market.asp_names[0]}.compute" in mt.at_capacity_kink(market, best_response(market, reference.rewards))
    # where the market is smooth (the other ASP) Pyomo agrees with every probe equilibrium
    other = market.mus_of(1)
    for eq in probe.equilibria:
        assert np.max(np.abs(eq.rewards[other] - reference.rewards[other]) / _width(market)[other]) <= 2e-3


# ---------------------------------------------------------------------------- robustness
def test_perturbation_flags_are_validated():
    assert parse_perturbations(["compute_capacity=0.2", "weights=0.05"]) == {"compute_capacity": 0.2, "weights": 0.05}
    for bad in (["capacity=0.2"], ["compute_capacity"], ["compute_capacity=x"], ["compute_capacity=1.5"]):
        with pytest.raises(UserError, match="--perturb"):
            parse_perturbations(bad)


def test_draws_are_valid_and_within_bounds():
    base = load_scenario(ROOT / "scenarios" / "default.toml")
    draws = perturbed_scenarios(base, {"compute_capacity": 0.2, "weights": 0.05, "value_per_qoe": 0.3}, 16, seed=3)
    assert len(draws) == 16
    ratios = np.array([[a.compute_capacity / b.compute_capacity for a, b in zip(d.asps, base.asps)] for d in draws])
    assert np.all((ratios >= 0.8) & (ratios <= 1.2)) and ratios.std() > 0.05
    for d in draws:
        for mu in d.mus:
            assert mu.reward_max <= mu.value_per_qoe and mu.reward_min <= mu.reward_max
            w = mu.weights
            assert w.accuracy + w.tokens + w.timeliness == pytest.approx(1.0)
    again = perturbed_scenarios(base, {"compute_capacity": 0.2, "weights": 0.05, "value_per_qoe": 0.3}, 16, seed=3)
    assert [d.to_dict() for d in draws] == [d.to_dict() for d in again]


def test_robustness_percentiles_and_worst_case_scenario_round_trip(tmp_path):
    base = load_scenario(ROOT / "scenarios" / "small.toml")
    rob = robustness(base, {"compute_capacity": 0.3}, samples=8, seed=0, workers=1)
    assert rob.certified_fraction == 1.0
    welfare = [r["welfare"] for r in rob.records]
    assert rob.worst == int(np.argmin(welfare))
    assert rob.percentiles["welfare"][5] <= rob.percentiles["welfare"][50] <= rob.percentiles["welfare"][95]
    path = write_scenario(rob.draw(rob.worst), tmp_path / "worst.toml")
    again = solvers.solve(load_scenario(path))
    from solvers.stress import outcomes

    assert outcomes(again)["welfare"] == pytest.approx(min(welfare), rel=1e-6)
