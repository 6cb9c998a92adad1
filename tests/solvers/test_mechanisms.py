"""Alternative mechanisms and comparison metrics (solvers.mechanisms)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from market.generator import generate_scenario
from market.model import Market
from solvers.mechanisms import (MECHANISMS, asp_pricing, equal_split, mechanism_metrics, percent_change,
                                proportional, resource_cost, run_mechanisms, single_dimension, social_optimum,
                                uniform)


@pytest.fixture(scope="module")
def market():
    return Market.from_scenario(generate_scenario(3, 12, 11))


@pytest.fixture(scope="module")
def outcomes(market):
    out, skipped = run_mechanisms(market)
    assert not skipped
    return out


def test_every_mechanism_runs_and_respects_capacity(market, outcomes):
    assert set(outcomes) == set(MECHANISMS)
    for name, o in outcomes.items():
        assert np.all(o.compute >= 0) and np.all(o.bandwidth >= 0), name
        assert np.all(market.per_asp_sum(o.compute) <= market.compute_capacity * (1 + 1e-6)), name
        assert np.all(market.per_asp_sum(o.bandwidth) <= market.bandwidth_capacity * (1 + 1e-6)), name
        assert np.all(np.isfinite(o.payment)), name


def test_equal_split_uses_whole_capacity_in_equal_shares(market):
    o = equal_split(market)
    np.testing.assert_allclose(market.per_asp_sum(o.compute), market.compute_capacity, rtol=1e-12)
    for n in range(market.n_asps):
        mus = market.mus_of(n)
        np.testing.assert_allclose(o.compute[mus], market.compute_capacity[n] / len(mus))
    np.testing.assert_allclose(o.payment, resource_cost(market, o.compute, o.bandwidth))


def test_proportional_share_follows_rewards(market):
    rewards = np.linspace(1.0, 2.0, market.n_mus) * market.reward_min
    o = proportional(market, rewards)
    r = market.clip_rewards(rewards)
    for n in range(market.n_asps):
        mus = market.mus_of(n)
        np.testing.assert_allclose(o.bandwidth[mus] / market.bandwidth_capacity[n], r[mus] / r[mus].sum())


def test_uniform_offers_one_reward_and_beats_other_common_levels(market):
    o = uniform(market)
    level = o.extra["level"]
    np.testing.assert_allclose(o.rewards, market.clip_rewards(np.full(market.n_mus, level)))
    total = np.sum((market.value_per_qoe - o.rewards) * o.qoe.total)
    from market.followers import best_response

    for other in (0.5 * level, 0.9 * level, 1.1 * level, 2.0 * level):
        r = market.clip_rewards(np.full(market.n_mus, other))
        q = best_response(market, r).qoe.total
        assert total >= np.sum((market.value_per_qoe - r) * q) - 1e-9


def test_social_optimum_bounds_every_mechanism_welfare(market, outcomes):
    best = mechanism_metrics(market, outcomes["social-optimum"])["welfare"]
    for name, o in outcomes.items():
        assert mechanism_metrics(market, o)["welfare"] <= best * (1 + 1e-6) + 1e-9, name


def test_social_optimum_matches_closed_form_when_capacity_is_ample(market):
    # With capacity far above demand, f = sqrt(theta x^f / k^f) and b = sqrt(theta x^b / k^b).
    big = replace(market, compute_capacity=market.compute_capacity * 1e6,
                  bandwidth_capacity=market.bandwidth_capacity * 1e6)
    o = social_optimum(big)
    theta = big.value_per_qoe
    f = np.sqrt(theta * big.timeliness_compute_need / big.compute_cost[big.mu_asp])
    np.testing.assert_allclose(o.compute, f, rtol=2e-3)


@pytest.mark.parametrize("variant", [{"asp_cost": "quadratic"}, {"bandwidth_model": "shannon"}])
def test_social_optimum_handles_variants(variant):
    mk = Market.from_scenario(generate_scenario(2, 6, 3, **variant))
    o = social_optimum(mk)
    assert o.status == "ok"
    # no feasible perturbation of the allocation improves welfare: compare to equal split
    assert mechanism_metrics(mk, o)["welfare"] >= mechanism_metrics(mk, equal_split(mk))["welfare"] - 1e-9


def test_asp_pricing_buyers_have_nonnegative_surplus(market):
    o = asp_pricing(market)
    value = market.value_per_qoe * o.qoe.total
    surplus = value - o.payment
    assert np.all(surplus[o.served] >= -1e-9)
    assert np.all(o.compute[~o.served] == 0)
    prices = np.asarray(o.extra["compute_price"])
    assert np.all(prices >= market.compute_cost - 1e-15)


def test_asp_pricing_refuses_shannon():
    mk = Market.from_scenario(generate_scenario(1, 3, 0, bandwidth_model="shannon"))
    with pytest.raises(ValueError, match="linear"):
        asp_pricing(mk)
    _, skipped = run_mechanisms(mk, names=("proposed", "asp-pricing"))
    assert "asp-pricing" in skipped


def test_single_dimension_contracts(market):
    acc = single_dimension(market, "accuracy")
    np.testing.assert_allclose(acc.rewards, market.reward_min)
    tim = single_dimension(market, "timeliness")
    # the true QoE is judged with the real weights: accuracy part unchanged by the contract
    np.testing.assert_allclose(tim.qoe.accuracy, market.qoe_accuracy)
    with pytest.raises(ValueError):
        single_dimension(market, "tokens")


def test_percent_change_sign_and_zero():
    assert percent_change(35.1, 100.0) == pytest.approx(-64.9)
    assert np.isnan(percent_change(1.0, 0.0))


def test_unknown_mechanism_is_rejected(market):
    with pytest.raises(ValueError, match="unknown mechanism"):
        run_mechanisms(market, names=("proposed", "lottery"))
