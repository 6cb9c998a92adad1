"""The streaming certificate, the per-MU reward-distance bound, and the cheap solver paths.

Chunked regrets must equal the all-at-once regrets bit for bit; the reward-distance bound
must hold against a known best response; the incremental per-ASP sums and the lazy
Gauss-Seidel turn list must equal their from-scratch versions.
"""
from __future__ import annotations

import numpy as np
import pytest

from market.followers import DeviationSums, closed_form_deviation_qoe
from market.generator import generate_scenario
from market.model import Market
from solvers import solve
from solvers.ascent import gauss_seidel_turns, mu_ranks
from solvers.certificate import certify


@pytest.fixture(scope="module")
def solved():
    market = Market.from_scenario(generate_scenario(4, 60, seed=21))
    return market, solve(market, "implicit-gradient", tolerance=1e-10)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_regrets_identical(solved, chunk):
    market, result = solved
    rng = np.random.default_rng(0)
    rewards = market.clip_rewards(result.rewards * rng.uniform(0.9, 1.1, market.n_mus))
    whole = certify(market, rewards, chunk_mus=market.n_mus)
    part = certify(market, rewards, chunk_mus=chunk)
    assert np.array_equal(whole.regret, part.regret)
    assert np.array_equal(whole.best_deviation, part.best_deviation)
    assert np.array_equal(whole.reward_distance, part.reward_distance)
    assert whole.max_regret > 0  # the perturbed profile is not an equilibrium


def test_reward_distance_bounds_the_distance_to_the_best_response(solved):
    market, result = solved
    base = result.certificate
    assert base.passed and base.max_relative_reward_distance < 1e-4
    rng = np.random.default_rng(1)
    for m in rng.choice(market.n_mus, 8, replace=False):
        r = result.rewards.copy()
        width = market.reward_max[m] - market.reward_min[m]
        r[m] = np.clip(r[m] + 0.2 * width * rng.choice([-1, 1]), market.reward_min[m], market.reward_max[m])
        moved = abs(r[m] - result.rewards[m])
        cert = certify(market, r)
        # MU m's best response to the others is (within base's bound) its equilibrium reward
        assert cert.reward_distance[m] >= moved - base.reward_distance[m] - 1e-12
        assert cert.reward_distance[m] <= moved + base.reward_distance[m] + 1e-6 * width  # and not vacuous


def test_deviation_sums_update_equals_rebuild(solved):
    market, result = solved
    rng = np.random.default_rng(2)
    sums = DeviationSums(market, result.rewards)
    r = result.rewards.copy()
    for _ in range(5):
        idx = rng.choice(market.n_mus, 9, replace=False)
        r[idx] = market.clip_rewards(r * 1.05)[idx]
        sums.move(idx, r[idx])
    fresh = DeviationSums(market, r)
    for a, b in zip(sums.totals, fresh.totals):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    trial = np.stack([market.reward_min, market.reward_max], axis=1)
    np.testing.assert_allclose(closed_form_deviation_qoe(market, r, trial, sums=sums),
                               closed_form_deviation_qoe(market, r, trial), rtol=1e-12)


def test_gauss_seidel_turns_match_the_rank_definition():
    market = Market.from_scenario(generate_scenario(5, 83, seed=3))
    ranks = mu_ranks(market)
    expected = [np.flatnonzero(ranks == k) for k in range(ranks.max() + 1)]
    turns = gauss_seidel_turns(market)
    assert len(turns) == len(expected)
    for got, want in zip(turns, expected):
        assert np.array_equal(got, want)
        assert np.unique(market.mu_asp[got]).size == got.size  # one MU per ASP per turn
