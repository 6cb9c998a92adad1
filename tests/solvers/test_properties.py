"""Hypothesis properties of the market and its equilibrium over generated scenarios.

Where an ASP's capacity sits exactly at its threshold (slack/binding kink) equilibria need
not be unique, so the symmetry properties check that the transformed answer is certified in
the transformed market, and compare independent solves only where the equilibrium is smooth.

Scenarios come from the seeded generator with hypothesis choosing sizes, seeds and
modifications (an ASP with no MUs, an MU with zero timeliness weight). The "ci" profile
(HYPOTHESIS_PROFILE=ci) runs more examples.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import solvers
from market.followers import closed_form_deviation_qoe, closed_form_response, kkt_residuals
from market.generator import generate_scenario
from market.model import Market
from market.scenario import ASPSpec, QoEWeights, Scenario
from solvers.certificate import certify

TOL = 1e-6


@st.composite
def scenarios(draw, max_asps: int = 4, max_mus: int = 12) -> Scenario:
    n_asps = draw(st.integers(1, max_asps))
    n_mus = draw(st.integers(1, max_mus))
    scn = generate_scenario(n_asps, n_mus, seed=draw(st.integers(0, 2**31 - 1)))
    if draw(st.booleans()):  # an ASP nobody uses
        empty = ASPSpec(name="idle", accuracy=0.9, seconds_per_token=0.02, max_tokens=512.0, compute_capacity=10.0,
                        bandwidth_capacity=1e7, compute_cost=0.01, bandwidth_cost=1e-9)
        scn = dataclasses.replace(scn, asps=scn.asps + (empty,))
    if draw(st.booleans()):  # an MU that does not care about latency
        m = draw(st.integers(0, n_mus - 1))
        mus = list(scn.mus)
        mus[m] = dataclasses.replace(mus[m], weights=QoEWeights(accuracy=0.5, tokens=0.5, timeliness=0.0))
        scn = dataclasses.replace(scn, mus=tuple(mus))
    return scn


def at_threshold(market: Market, result) -> bool:
    """Whether some ASP sits exactly at its capacity kink (equilibria then need not be unique)."""
    resp = result.response
    for name in ("compute", "bandwidth"):
        used = market.per_asp_sum(getattr(resp, name)) / getattr(market, f"{name}_capacity")
        mult = getattr(resp, f"{name}_multiplier")
        if np.any((mult < 1e-6 * getattr(market, f"{name}_cost")) & (used > 1 - 1e-6)):
            return True
    return False


@given(scenarios(), st.integers(0, 2**31 - 1))
def test_followers_never_exceed_capacity_and_satisfy_kkt(scn, seed):
    mk = Market.from_scenario(scn)
    r = np.random.default_rng(seed).uniform(mk.reward_min, mk.reward_max)
    resp = closed_form_response(mk, r)
    assert np.all(resp.compute >= 0) and np.all(resp.bandwidth >= 0)
    assert np.all(mk.per_asp_sum(resp.compute) <= mk.compute_capacity * (1 + 1e-12))
    assert np.all(mk.per_asp_sum(resp.bandwidth) <= mk.bandwidth_capacity * (1 + 1e-12))
    assert kkt_residuals(mk, resp).max < 1e-9


@given(scenarios())
def test_equilibrium_is_certified(scn):
    mk = Market.from_scenario(scn)
    result = solvers.solve(mk, "dual-perturbation")
    cert = result.certificate
    assert result.status == "converged", cert.to_dict()
    assert cert.max_relative_regret <= TOL and cert.kkt_residual <= TOL
    assert np.all(mk.per_asp_sum(result.response.compute) <= mk.compute_capacity * (1 + 1e-12))
    assert np.all(mk.per_asp_sum(result.response.bandwidth) <= mk.bandwidth_capacity * (1 + 1e-12))


@given(scenarios(), st.randoms(use_true_random=False))
def test_permuting_mus_permutes_the_answer(scn, rnd):
    order = list(range(len(scn.mus)))
    rnd.shuffle(order)
    permuted = dataclasses.replace(scn, mus=tuple(scn.mus[i] for i in order))
    a, b = Market.from_scenario(scn), Market.from_scenario(permuted)
    ra = solvers.solve(a, "dual-perturbation")
    assert ra.status == "converged"
    # the permuted answer is an equilibrium of the permuted market, with permuted allocations
    moved = closed_form_response(b, ra.rewards[order])
    assert np.allclose(moved.compute, ra.response.compute[order], rtol=1e-12, atol=0)
    assert np.allclose(moved.bandwidth, ra.response.bandwidth[order], rtol=1e-12, atol=0)
    assert certify(b, ra.rewards[order], TOL).passed
    rb = solvers.solve(b, "dual-perturbation")
    assert rb.status == "converged"
    if not at_threshold(a, ra):  # unique equilibrium: an independent solve finds the same answer
        width = a.reward_max - a.reward_min
        # a relative regret of 1e-7 pins rewards only to ~sqrt(1e-7) of the box (flat optimum)
        assert np.all(np.abs(rb.rewards - ra.rewards[order]) <= 1e-2 * width[order])
        assert np.allclose(rb.utility, ra.utility[order], rtol=1e-3, atol=1e-9)


@given(scenarios(max_mus=8), st.floats(1e-3, 1e3))
def test_rescaling_money_rescales_rewards_and_keeps_allocations(scn, factor):
    a = Market.from_scenario(scn)
    b = a.with_money_scaled(factor)
    ra = solvers.solve(a, "dual-perturbation")
    assert ra.status == "converged"
    scaled = closed_form_response(b, factor * ra.rewards)
    assert np.allclose(scaled.compute, ra.response.compute, rtol=1e-10)
    assert np.allclose(scaled.bandwidth, ra.response.bandwidth, rtol=1e-10)
    assert certify(b, factor * ra.rewards, TOL).passed
    rb = solvers.solve(b, "dual-perturbation")
    assert rb.status == "converged"
    if not at_threshold(a, ra):  # unique equilibrium: an independent solve finds the same answer
        width = a.reward_max - a.reward_min
        assert np.all(np.abs(rb.rewards / factor - ra.rewards) <= 1e-2 * width)
        cap_f, cap_b = a.compute_capacity[a.mu_asp], a.bandwidth_capacity[a.mu_asp]
        assert np.all(np.abs(rb.response.compute - ra.response.compute) <= 1e-2 * cap_f)
        assert np.all(np.abs(rb.response.bandwidth - ra.response.bandwidth) <= 1e-2 * cap_b)


@given(scenarios(), st.integers(0, 2**31 - 1))
def test_qoe_rises_with_own_reward(scn, seed):
    mk = Market.from_scenario(scn)
    r = np.random.default_rng(seed).uniform(mk.reward_min, mk.reward_max)
    grid = np.linspace(mk.reward_min, mk.reward_max, 33).T
    q = closed_form_deviation_qoe(mk, r, grid)
    assert np.all(np.diff(q, axis=1) >= -1e-12)
    served = mk.weight_timeliness > 0
    # strictly, unless the MU is alone at an ASP whose capacity binds (then Q is flat)
    alone = np.bincount(mk.mu_asp, minlength=mk.n_asps)[mk.mu_asp] == 1
    assert np.all(q[served & ~alone, -1] > q[served & ~alone, 0])


@given(scenarios())
def test_idle_asp_and_latency_indifferent_mu(scn):
    mk = Market.from_scenario(scn)
    result = solvers.solve(mk, "dual-perturbation")
    assert result.status == "converged"
    idle = np.bincount(mk.mu_asp, minlength=mk.n_asps) == 0
    table = result.asp_table()
    assert np.all(table["compute_used"][idle] == 0) and np.all(table["profit"][idle] == 0)
    assert np.allclose(result.response.compute_price[idle], mk.compute_cost[idle])
    flat = mk.weight_timeliness == 0
    assert np.all(result.response.compute[flat] == 0) and np.all(result.response.bandwidth[flat] == 0)
    # QoE does not depend on its reward, so U = (theta - r) Q is best at the lowest reward
    assert np.allclose(result.rewards[flat], mk.reward_min[flat])
    assert np.all(np.isfinite(result.response.qoe.total))


@given(scenarios())
def test_warm_start_at_equilibrium_stays(scn):
    mk = Market.from_scenario(scn)
    first = solvers.solve(mk, "dual-perturbation")
    assume(first.status == "converged")
    again = solvers.solve(mk, "dual-perturbation", initial_rewards=first.rewards)
    assert again.status == "converged"
    assert again.iterations <= 10  # from a cold start it takes 10-70 rounds
    width = mk.reward_max - mk.reward_min
    assert np.all(np.abs(again.rewards - first.rewards) <= 1e-4 * width)
