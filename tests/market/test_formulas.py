"""Each formula of the model against hand-computed values (design note: QoE, followers, leaders)."""
from __future__ import annotations

import numpy as np
import pytest

from market.followers import (closed_form_deviation_qoe, closed_form_own_qoe_derivatives, closed_form_response,
                              kkt_residuals)
from market.leaders import deviation_utility, payment, utility
from market.model import Market
from market.qoe import latency_parts, qoe_parts, transmission_rate
from market.scenario import Scenario
from tests.market.known_answer import (KNOWN_BANDWIDTH, KNOWN_COMPUTE, KNOWN_PRICES, KNOWN_QOE, KNOWN_UTILITY,
                                       known_answer_document, known_answer_scenario)


@pytest.fixture
def known() -> Market:
    return Market.from_scenario(known_answer_scenario())


def test_qoe_hand_values():
    doc = known_answer_document()
    # MU a: weights 0.2 / 0.3 / 0.5, asks 2000 tokens from an ASP capped at 1000.
    doc["mu"][0].update(weights={"accuracy": 0.2, "tokens": 0.3, "timeliness": 0.5}, tokens_requested=2000.0)
    mk = Market.from_scenario(Scenario.from_dict(doc))
    compute = np.array([4.0, 5.0, 5.0])
    bandwidth = np.array([1.0e6, 2.5e6, 2.5e6])
    t_c, t_b = latency_parts(mk, compute, bandwidth)
    # a: l = 1000, c = 0.01 -> 10 s of work at unit compute / 4 = 2.5 s; 1e6 bit / (2 * 1e6) = 0.5 s
    assert t_c[0] == pytest.approx(2.5) and t_b[0] == pytest.approx(0.5)
    q = qoe_parts(mk, compute, bandwidth)
    assert q.accuracy[0] == pytest.approx(0.2 * 0.8)
    assert q.tokens[0] == pytest.approx(0.3 * 1000 / 2000)
    assert q.timeliness[0] == pytest.approx(0.5 * (1 - 3.0 / 1.0))  # late: negative timeliness
    assert q.total[0] == pytest.approx(0.16 + 0.15 - 1.0)
    assert q.latency_s[1] == pytest.approx(100 * 0.01 / 5 + 1e6 / (2 * 2.5e6))
    assert transmission_rate(mk, bandwidth)[1] == pytest.approx(2 * 2.5e6)


def test_zero_timeliness_weight_contributes_zero_whatever_the_allocation():
    doc = known_answer_document()
    doc["mu"][0]["weights"] = {"accuracy": 0.5, "tokens": 0.5, "timeliness": 0.0}
    mk = Market.from_scenario(Scenario.from_dict(doc))
    q = qoe_parts(mk, np.array([0.0, 5.0, 5.0]), np.array([0.0, 1e6, 1e6]))
    assert q.timeliness[0] == 0.0 and np.isinf(q.latency_s[0])
    assert q.total[0] == pytest.approx(0.5 * 0.8 + 0.5)
    resp = closed_form_response(mk, np.array([1.0, 1.0, 1.0]))
    assert resp.compute[0] == 0.0 and resp.bandwidth[0] == 0.0


def test_shannon_rate_hand_value():
    doc = known_answer_document()
    doc["market"]["bandwidth_model"] = "shannon"
    mk = Market.from_scenario(Scenario.from_dict(doc))
    # spectral efficiency 2 at B_ref = 1e6 Hz -> snr_hz = (2^2 - 1) * 1e6 = 3e6 Hz
    assert mk.snr_hz[0] == pytest.approx(3e6)
    b = np.array([1e6, 3e6, 6e6])
    expected = b * np.log2(1 + 3e6 / b)  # 2e6, 3e6, 6e6 * log2(1.5)
    assert np.allclose(transmission_rate(mk, b), expected)
    assert transmission_rate(mk, b)[0] == pytest.approx(2e6)


def test_distance_gives_snr_from_path_loss():
    doc = known_answer_document()
    del doc["mu"][0]["spectral_efficiency"]
    doc["mu"][0]["distance_m"] = 100.0
    doc["asp"][0]["transmit_power_w"] = 2.0
    doc["market"].update(path_loss_exponent=3.0, path_loss_reference_gain=1e-3, noise_psd_w_per_hz=1e-20)
    mk = Market.from_scenario(Scenario.from_dict(doc))
    gain = 1e-3 * 100.0**-3
    assert mk.snr_hz[0] == pytest.approx(2.0 * gain / 1e-20)
    assert mk.spectral_efficiency[0] == pytest.approx(np.log2(1 + mk.snr_hz[0] / 1e6))


def test_closed_form_follower_known_answer(known):
    r = np.ones(3)
    resp = closed_form_response(known, r)
    names = known.mu_names
    assert np.allclose(resp.compute, [KNOWN_COMPUTE[n] for n in names], rtol=1e-12)
    assert np.allclose(resp.bandwidth, [KNOWN_BANDWIDTH[n] for n in names], rtol=1e-12)
    assert np.allclose(resp.qoe.total, [KNOWN_QOE[n] for n in names], rtol=1e-12)
    for n, asp in enumerate(known.asp_names):
        assert resp.compute_price[n] == pytest.approx(KNOWN_PRICES[asp][0], rel=1e-12)
        assert resp.bandwidth_price[n] == pytest.approx(KNOWN_PRICES[asp][1], rel=1e-12)
    # slack ASP: multiplier 0; binding ASP: multiplier = price - cost > 0, capacity exactly used
    assert resp.compute_multiplier[0] == 0 and resp.bandwidth_multiplier[0] == 0
    assert resp.compute_multiplier[1] == pytest.approx(0.03) and resp.bandwidth_multiplier[1] == pytest.approx(7e-8)
    assert known.per_asp_sum(resp.compute)[1] == pytest.approx(10.0)
    assert kkt_residuals(known, resp).max < 1e-12
    u = utility(known, r, resp.qoe.total)
    assert np.allclose(u, [KNOWN_UTILITY[n] for n in names])
    assert np.allclose(payment(r, resp.qoe.total), resp.qoe.total)


def test_deviation_formula_equals_full_resolve():
    mk = Market.from_scenario(known_answer_scenario())
    rng = np.random.default_rng(0)
    from market.generator import generate_scenario

    big = Market.from_scenario(generate_scenario(3, 15, seed=2))
    for market in (mk, big):
        r = rng.uniform(market.reward_min, market.reward_max)
        trial = rng.uniform(market.reward_min, market.reward_max)
        dev = closed_form_deviation_qoe(market, r, trial)
        for m in range(market.n_mus):
            moved = r.copy()
            moved[m] = trial[m]
            assert dev[m] == pytest.approx(closed_form_response(market, moved).qoe.total[m], rel=1e-12, abs=1e-12)


def test_own_qoe_derivatives_match_finite_differences():
    from market.generator import generate_scenario

    mk = Market.from_scenario(generate_scenario(3, 15, seed=4))
    r = np.random.default_rng(1).uniform(mk.reward_min, mk.reward_max)
    dq, d2q = closed_form_own_qoe_derivatives(mk, r)
    h = 1e-4 * r
    q = lambda t: closed_form_deviation_qoe(mk, r, t)  # noqa: E731
    fd1 = (q(r + h) - q(r - h)) / (2 * h)
    fd2 = (q(r + h) - 2 * q(r) + q(r - h)) / h**2
    assert np.allclose(dq, fd1, rtol=1e-6)
    assert np.allclose(d2q, fd2, rtol=1e-3)
    assert np.all(dq >= 0) and np.all(d2q <= 0)  # increasing and concave in the own reward


def test_leader_utility_of_deviation_and_floor():
    doc = known_answer_document()
    doc["mu"][0]["qoe_required"] = 0.55
    mk = Market.from_scenario(Scenario.from_dict(doc))
    r = np.ones(3)
    # a: Q(r) = 1 - 0.5 / sqrt(r): 0.5 at r = 1 (misses the floor), 1 - 0.5/sqrt(2.25) = 2/3 at r = 2.25
    u = deviation_utility(mk, r, np.array([[1.0, 2.25]] * 3))
    assert u[0, 0] == -np.inf
    assert u[0, 1] == pytest.approx((3 - 2.25) * (1 - 0.5 / 1.5))
    assert u[1, 0] == pytest.approx(3.6)


def test_money_rescaling_keeps_allocations(known):
    r = np.array([0.7, 1.3, 0.9])
    a = closed_form_response(known, r)
    b = closed_form_response(known.with_money_scaled(1000.0), 1000.0 * r)
    assert np.allclose(a.compute, b.compute, rtol=1e-12) and np.allclose(a.bandwidth, b.bandwidth, rtol=1e-12)
    assert np.allclose(b.compute_price, 1000 * a.compute_price, rtol=1e-12)
