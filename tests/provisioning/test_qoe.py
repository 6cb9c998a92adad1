"""QoE, cost, utility and penalties against hand values; the quality backend's statistics."""
import dataclasses

import numpy as np
import pytest

from provisioning.channel import expected_ber
from provisioning.qoe import cost, evaluate_allocation, latency_factor, qoe, quality_factor
from provisioning.quality import (
    InterpolatedQualityModel,
    QualityModel,
    SimulatedQualityModel,
    expected_log_best_quality,
    expected_max_std_normal,
    sample_log_best_quality,
)
from provisioning.scenario import default_provisioning_scenario_path, load_provisioning_scenario
from provisioning.state import State


@pytest.fixture(scope="module")
def config():
    return load_provisioning_scenario(default_provisioning_scenario_path())


def test_latency_factor_hand_values():
    # N = 1: ln(60 / 0.5) / ln 2 (the paper's log base N is undefined here)
    assert latency_factor(1, 0.5, 60.0) == pytest.approx(np.log(120.0) / np.log(2.0))
    assert latency_factor(4, 0.5, 60.0) == pytest.approx(np.log(30.0) / np.log(5.0))
    assert latency_factor(3, 2.0, 6.0) == pytest.approx(0.0)  # N T = L_max
    np.testing.assert_allclose(latency_factor(np.array([1, 2]), np.array([1.0, 1.0]), 10.0), [np.log(10) / np.log(2), np.log(5) / np.log(3)])


def test_quality_factor_and_qoe_hand_values():
    assert quality_factor(np.log(8.4), 8.2) == pytest.approx(np.log(8.4 / 8.2))
    expected = (np.log(120.0) / np.log(2.0)) * np.log(7.0 / 7.6)
    assert qoe(1, 0.5, 60.0, np.log(7.0), 7.6) == pytest.approx(expected)
    assert qoe(1, 0.5, 60.0, np.log(7.0), 7.6) < 0  # below the threshold, QoE is negative


def test_cost_hand_value():
    # C = N (c zeta + P) = 4 (0.004 * 25 + 0.3) = 1.6
    assert cost(4, 0.3, 0.004, 25) == pytest.approx(1.6)


def test_expected_max_of_standard_normals():
    assert expected_max_std_normal(1) == 0.0
    assert expected_max_std_normal(2) == pytest.approx(1 / np.sqrt(np.pi), rel=1e-10)
    assert expected_max_std_normal(3) == pytest.approx(1.5 / np.sqrt(np.pi), rel=1e-10)
    rng = np.random.default_rng(3)
    draws = rng.standard_normal((200_000, 8)).max(axis=1)
    assert float(expected_max_std_normal(8)) == pytest.approx(draws.mean(), abs=4 * draws.std() / np.sqrt(draws.size))


def test_simulated_backend_harder_prompts_have_lower_mean():
    model = SimulatedQualityModel()
    mean, spread, kappa = model.log_quality_params(np.array([0.0, 0.5, 1.0]))
    assert np.all(np.diff(mean) < 0)
    assert mean[0] == pytest.approx(np.log(model.score_easy))
    assert mean[-1] == pytest.approx(np.log(model.score_hard))
    assert np.all(np.diff(kappa) > 0)
    assert isinstance(model, QualityModel)


def test_sampled_log_best_quality_is_unbiased():
    rng = np.random.default_rng(5)
    trials = np.array([1, 3, 8])
    mean, std, kappa = np.log([8.0, 7.5, 8.3]), np.array([0.05, 0.07, 0.08]), np.array([3.0, 6.0, 10.0])
    ber = np.array([0.01, 0.002, 0.0])
    draws = np.array([sample_log_best_quality(trials, mean, std, kappa, ber, rng) for _ in range(20_000)])
    exact = expected_log_best_quality(trials, mean, std, kappa, ber)
    np.testing.assert_allclose(draws.mean(axis=0), exact, atol=4 * draws.std(axis=0).max() / np.sqrt(len(draws)))


def test_evaluate_allocation_matches_hand_computation(config):
    state = State([0.0, 0.5, 1.0], [50.0, 120.0, 240.0], [7.6, 8.2, 8.5], 1.2)
    trials, power = np.array([1, 4, 8]), np.array([0.2, 0.4, 0.6])
    out = evaluate_allocation(config, state, trials, power)
    obj, q = config.objective, config.quality
    beta = config.channel.nakagami_omega * 10 ** (config.channel.path_gain_at_1m_db / 10) * state.distance_m ** -3.0 / config.channel.noise_power_w
    eber = np.array([float(expected_ber(b * p, config.channel)) for b, p in zip(beta, power)])
    d = state.difficulty
    mu = np.log(q.score_easy) + d * (np.log(q.score_hard) - np.log(q.score_easy))
    s = q.log_spread_easy + d * (q.log_spread_hard - q.log_spread_easy)
    kappa = q.ber_sensitivity_easy + d * (q.ber_sensitivity_hard - q.ber_sensitivity_easy)
    e_n = np.array([0.0, float(expected_max_std_normal(4)), float(expected_max_std_normal(8))])
    lf = np.log(60.0 / (trials * 0.5)) / np.log(1 + trials)
    expected_qoe = lf * (mu + s * e_n - kappa * eber - np.log(state.quality_threshold))
    costs = trials * (0.004 * 25 + power)
    utility = obj.qoe_weight * expected_qoe.sum() - obj.cost_weight * costs.sum()
    violations = int(np.sum(expected_qoe < 0))
    np.testing.assert_allclose(out.expected_qoe, expected_qoe, rtol=1e-12)
    np.testing.assert_allclose(out.cost, costs, rtol=1e-12)
    assert out.utility == pytest.approx(utility, rel=1e-12)
    assert out.qoe_violations == violations
    assert out.reward == pytest.approx(utility - obj.penalty_per_user * violations, rel=1e-12)
    assert not out.budget_violated and out.trial_violations == 0


def test_penalties_for_illegal_allocations(config):
    state = State([0.2, 0.2, 0.2], [50.0, 50.0, 50.0], [7.6, 7.6, 7.6], 1.0)
    legal = evaluate_allocation(config, state, [2, 2, 2], [0.3, 0.3, 0.3])
    over_budget = evaluate_allocation(config, state, [2, 2, 2], [0.5, 0.5, 0.5])
    assert over_budget.budget_violated and not legal.budget_violated
    assert over_budget.penalty == pytest.approx(config.objective.penalty_budget + config.objective.penalty_per_user * over_budget.qoe_violations)
    bad_trials = evaluate_allocation(config, state, [0, 2, 9], [0.3, 0.3, 0.3])
    assert bad_trials.trial_violations == 2


def test_user_weights_scale_qoe_terms(config):
    state = State([0.2, 0.5, 0.9], [60.0, 90.0, 150.0], [7.6, 8.2, 8.5], 1.5)
    heavy = dataclasses.replace(config, objective=dataclasses.replace(config.objective, user_weights=(2.0, 1.0, 1.0)))
    a = evaluate_allocation(config, state, [2, 3, 4], [0.5, 0.5, 0.5])
    b = evaluate_allocation(heavy, state, [2, 3, 4], [0.5, 0.5, 0.5])
    assert b.utility - a.utility == pytest.approx(config.objective.qoe_weight * a.expected_qoe[0])


def test_sampled_reward_is_unbiased(config):
    state = State([0.3, 0.6, 0.9], [80.0, 150.0, 220.0], [7.6, 8.2, 8.5], 1.0)
    trials, power = [2, 4, 6], [0.2, 0.3, 0.5]
    exact = evaluate_allocation(config, state, trials, power)
    rng = np.random.default_rng(9)
    draws = np.array([evaluate_allocation(config, state, trials, power, rng=rng).reward for _ in range(4000)])
    assert draws.std() > 0
    assert abs(draws.mean() - exact.reward) < 4 * draws.std() / np.sqrt(draws.size)


def test_measured_quality_hook(config):
    measured = InterpolatedQualityModel((0.0, 1.0), (np.log(8.5), np.log(7.5)), (0.05, 0.09), (2.0, 9.0))
    mean, std, kappa = measured.log_quality_params([0.5])
    assert mean[0] == pytest.approx(0.5 * (np.log(8.5) + np.log(7.5)))
    state = State([0.5, 0.5, 0.5], [80.0, 80.0, 80.0], [8.0, 8.0, 8.0], 1.0)
    a = evaluate_allocation(config, state, [3, 3, 3], [0.3, 0.3, 0.3])
    b = evaluate_allocation(config, state, [3, 3, 3], [0.3, 0.3, 0.3], quality_model=measured)
    assert a.utility != b.utility
    with pytest.raises(ValueError):
        InterpolatedQualityModel((1.0, 0.0), (1.0, 1.0), (0.1, 0.1), (1.0, 1.0))
