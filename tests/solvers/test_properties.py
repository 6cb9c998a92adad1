"""Hypothesis properties of the market and its equilibrium, through the public testing API.

The strategies and checks are :mod:`solvers.testing` (documented in docs/stress.md), the same
ones users run on their own scenario families. Where an ASP's capacity sits exactly at its
threshold (slack/binding kink) equilibria need not be unique, so the symmetry checks judge
the transformed answer with the certificate and compare independent solves only where the
equilibrium is unique. The "ci" profile (HYPOTHESIS_PROFILE=ci) runs more examples.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import solvers
from market.followers import best_response, kkt_residuals
from market.model import Market
from solvers import testing as mt
from solvers.sensitivity import detect_regime

SMALL = Path(__file__).resolve().parents[2] / "scenarios" / "small.toml"


@given(mt.scenarios(), st.integers(0, 2**31 - 1))
def test_followers_never_exceed_capacity_and_satisfy_kkt(scn, seed):
    mk = Market.from_scenario(scn)
    r = np.random.default_rng(seed).uniform(mk.reward_min, mk.reward_max)
    resp = best_response(mk, r)
    mt.check_capacities_respected(mk, resp)
    assert kkt_residuals(mk, resp).max < 1e-9


@given(mt.scenarios())
def test_equilibrium_is_certified_and_within_capacity(scn):
    mk = Market.from_scenario(scn)
    result = mt.check_certified(mk)
    mt.check_capacities_respected(mk, result)


@settings(max_examples=5)
@given(mt.scenarios(asps=(1, 2), mus=(1, 5), bandwidth_models=("linear", "shannon"),
                    asp_costs=("linear", "quadratic"), idle_asp=False))
def test_model_variants_are_certified(scn):
    mk = Market.from_scenario(scn)
    mt.check_capacities_respected(mk, mt.check_certified(mk))


@given(mt.scenarios(), st.data())
def test_permuting_mus_permutes_the_answer(scn, data):
    mt.check_permutation_invariance(scn, data.draw(st.permutations(range(len(scn.mus)))))


@given(mt.scenarios(mus=(1, 8)), st.floats(1e-3, 1e3))
def test_rescaling_money_rescales_rewards_and_keeps_allocations(scn, factor):
    mt.check_money_rescaling(scn, factor)


@given(mt.scenarios(), st.integers(0, 2**31 - 1))
def test_qoe_rises_with_own_reward(scn, seed):
    mk = Market.from_scenario(scn)
    mt.check_qoe_monotone_in_own_reward(mk, np.random.default_rng(seed).uniform(mk.reward_min, mk.reward_max))


@given(mt.scenarios())
def test_idle_asp_and_latency_indifferent_mu(scn):
    mk = Market.from_scenario(scn)
    result = mt.check_certified(mk)
    idle = np.bincount(mk.mu_asp, minlength=mk.n_asps) == 0
    table = result.asp_table()
    assert np.all(table["compute_used"][idle] == 0) and np.all(table["profit"][idle] == 0)
    assert np.allclose(result.response.compute_price[idle], mk.compute_cost[idle])
    flat = mk.weight_timeliness == 0
    assert np.all(result.response.compute[flat] == 0) and np.all(result.response.bandwidth[flat] == 0)
    # QoE does not depend on its reward, so U = (theta - r) Q is best at the lowest reward
    assert np.allclose(result.rewards[flat], mk.reward_min[flat])
    assert np.all(np.isfinite(result.response.qoe.total))


@given(mt.scenarios())
def test_warm_start_at_equilibrium_stays(scn):
    mk = Market.from_scenario(scn)
    first = solvers.solve(mk, "dual-perturbation")
    assume(first.status == "converged")
    mt.check_warm_start_stays_put(mk, first)  # from a cold start it takes 10-70 rounds


@given(mt.scenarios(regime="slack", mus=(1, 10)))
def test_slack_regime_is_unique_and_two_solvers_agree(scn):
    mk = Market.from_scenario(scn)
    result = mt.check_certified(mk)
    regime = detect_regime(mk, result.rewards)
    assert not regime.binding.any() and not regime.capacity_kink.any()
    assert mt.check_solvers_agree(mk, "dual-perturbation", "implicit-gradient")  # compared, not skipped


@settings(max_examples=10)
@given(mt.scenarios(regime="kink", asps=(1, 3), mus=(2, 10)))
def test_kink_regime_sits_at_a_kink_and_is_certified_or_says_so(scn):
    import solvers

    mk = Market.from_scenario(scn)
    default = solvers.solve(mk, "dual-perturbation")
    if default.status == "converged":
        result = mt.check_certified(mk, default)
        # at the kink the two answers need not coincide: the check certifies both and skips the comparison
        assert mt.check_solvers_agree(mk, "dual-perturbation", "implicit-gradient") is False
    else:
        # Known (docs/market.md): at a kink the default solver can stop a hair short of its
        # certificate (rarely: 0.1-0.25% of generated markets). It must say so, and the exact
        # implicit-gradient solver must then certify the market.
        assert default.status in ("not_certified", "max_iterations") and not default.certificate.passed
        result = mt.check_certified(mk, solver="implicit-gradient")
    assert mt.at_capacity_kink(mk, result.response)


@settings(max_examples=5)
@given(st.data())
def test_scenario_family_stays_valid_and_shrinks_to_the_base(data):
    from market.scenario import load_scenario

    base = load_scenario(SMALL)
    scn = data.draw(mt.scenario_family(base, {"compute_capacity": 0.3, "weights": 0.1}))
    assert len(scn.mus) == len(base.mus)
    ratio = np.array([a.compute_capacity / b.compute_capacity for a, b in zip(scn.asps, base.asps)])
    assert np.all((ratio >= 0.7 - 1e-12) & (ratio <= 1.3 + 1e-12))
    mt.check_certified(scn)


def test_checks_fail_on_broken_answers():
    """The checks are not vacuous: each rejects a deliberately wrong answer."""
    from market.scenario import load_scenario

    scn = load_scenario(SMALL)
    mk = Market.from_scenario(scn)
    good = mt.check_certified(mk)
    bad = solvers.registry.finalize(solvers.result.make_result(mk, mk.reward_max, solver="given", iterations=0,
                                                               solve_time_s=0.0), mk.tolerance, {})
    with pytest.raises(mt.PropertyViolation, match="certificate"):
        mt.check_certified(mk, bad)
    over = dataclasses.replace(good.response, compute=good.response.compute * 1.5)
    with pytest.raises(mt.PropertyViolation, match="uses"):
        mt.check_capacities_respected(mk, over)
    with pytest.raises(mt.PropertyViolation, match="warm start"):
        mt.check_warm_start_stays_put(mk, bad)
