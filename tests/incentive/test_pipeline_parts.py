"""Pure parts of the end-to-end pipeline (no generation): slots, weights, states, latency scaling,
the measured-QoE formula against the market's."""
import math

import numpy as np
import pytest

from incentive import pipeline as P


def test_slots_split_in_market_order_with_a_short_last_slot():
    assert P.slot_indices([4, 1, 7, 9, 2], 3) == [[4, 1, 7], [9, 2]]
    assert P.slot_indices([0, 1, 2], 3) == [[0, 1, 2]]
    assert P.slot_indices([], 3) == []


def test_weights_keep_ratios_and_have_mean_one():
    w = P.normalised_weights(np.array([0.2, 0.4, 0.6]))
    assert w.mean() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(2.0) and w[2] / w[0] == pytest.approx(3.0)
    assert P.normalised_weights(np.zeros(2)).tolist() == [1.0, 1.0]


def test_trial_limit_keeps_every_user_inside_its_deadline():
    latency = np.array([0.1, 0.3, np.inf])
    deadline = np.array([1.0, 1.0, 1.0])
    n = P.slot_trial_limit(latency, deadline, 8)
    assert n == 3  # 3 x 0.3 < 1 <= 4 x 0.3
    assert np.all(n * latency[:2] < deadline[:2])
    assert P.slot_trial_limit(np.array([2.0]), np.array([1.0]), 8) == 1
    assert P.slot_trial_limit(np.array([1e-6]), np.array([1.0]), 8) == 8


def test_distance_inverts_the_provisioning_channel():
    from provisioning.channel import mean_snr_per_watt
    from provisioning.scenario import default_provisioning_scenario_path, load_provisioning_scenario

    channel = load_provisioning_scenario(default_provisioning_scenario_path()).channel
    for e in (1.0, 3.0, 7.5):
        d = P.distance_from_link(e, channel)
        assert float(mean_snr_per_watt(d, channel)) == pytest.approx(2.0 ** e - 1.0, rel=1e-9)
    assert P.distance_from_link(7.5, channel) < P.distance_from_link(1.0, channel)


def _default_scenario():
    from market.scenario import load_scenario

    return load_scenario("scenarios/default.toml")


def test_user_states_are_seeded_clipped_and_reported():
    scn = _default_scenario()
    base = P.base_provisioning_config(scn)
    ranges, channel = base.state, base.channel
    a = P.derive_user_state(scn.mus[0], 0, ranges, channel, seed=5, mu_index=0)
    b = P.derive_user_state(scn.mus[0], 0, ranges, channel, seed=5, mu_index=0)
    c = P.derive_user_state(scn.mus[0], 0, ranges, channel, seed=6, mu_index=0)
    assert a == b and a["difficulty"] != c["difficulty"]
    lo, hi = ranges.distance_m
    assert lo <= a["distance_m"] <= hi
    assert a["distance_clipped"] == (a["distance_derived_m"] != a["distance_m"])
    t_lo, t_hi = ranges.quality_threshold[0]
    assert t_lo <= a["quality_threshold"] <= t_hi


def test_slot_problem_latency_factor_is_the_deadline_form():
    """ln(L_max/(N T'))/ln(1+N) with the scaled T' equals ln(T_m/(N t_m))/ln(1+N), t_m the market latency."""
    from provisioning.qoe import latency_factor

    compute = np.array([0.05, 0.2, 0.01])
    rate = np.array([1e6, 5e6, 2e5])
    bits = np.array([2e5, 1e6, 1e4])
    deadline = np.array([2.0, 3.0, 0.5])
    cfg, record = P.slot_problem({}, max_latency_s=60.0, weights=[1.0, 1.0, 1.0], compute_s=compute, rate_bps=rate,
                                 payload_bits=bits, deadline_s=deadline, source="test")
    t = compute + bits / rate
    seconds = np.array(cfg.latency.seconds_per_trial())
    for n in range(1, cfg.max_trials + 1):
        ours = latency_factor(np.full(3, n), seconds, cfg.latency.max_latency_s)
        expected = np.log(deadline / (n * t)) / np.log1p(n)
        np.testing.assert_allclose(ours, expected, rtol=1e-9)
    assert np.all(cfg.max_trials * t < deadline)
    assert record["late_users"] == [] and cfg.num_users == 3


def test_measured_qoe_is_the_market_formula():
    """Fed the market's own accuracy, tokens and latency, the measured-QoE formula returns the market's QoE."""
    from market.model import Market
    from solvers.registry import solve

    scn = _default_scenario()
    result = solve(scn, "dual-perturbation")
    mk, q = result.market, result.response.qoe
    for m in range(mk.n_mus):
        w = (mk.weight_accuracy[m], mk.weight_tokens[m], mk.weight_timeliness[m])
        ours = P.measured_qoe(w, float(mk.accuracy[mk.mu_asp[m]]), float(mk.tokens_delivered[m]),
                              float(mk.tokens_requested[m]), float(q.latency_s[m]), float(mk.deadline_s[m]))
        assert ours["qoe"] == pytest.approx(float(q.total[m]), rel=1e-12, abs=1e-12)
        assert ours["qoe_timeliness"] == pytest.approx(float(q.timeliness[m]), abs=1e-12)
    zero = P.measured_qoe((0.5, 0.5, 0.0), 1.0, 10, 10, math.inf, 1.0)
    assert zero["qoe"] == pytest.approx(1.0)  # a zero weight contributes zero whatever the latency
    assert isinstance(Market, type)


def test_provisioning_table_fields_set_by_the_pipeline_are_rejected(tmp_path):
    from market.errors import ScenarioError
    from market.scenario import Scenario

    data = _default_scenario().to_dict()
    data["provisioning"] = {"objective": {"user_weights": [1.0, 2.0, 3.0]}}
    scn = Scenario.from_dict(data, file="x.toml")
    with pytest.raises(ScenarioError) as err:
        P.base_provisioning_config(scn)
    assert "provisioning.objective.user_weights" in str(err.value) and "x.toml" in str(err.value)


def test_provisioning_table_overrides_are_validated():
    from market.errors import ScenarioError
    from market.scenario import Scenario

    data = _default_scenario().to_dict()
    data["provisioning"] = {"objective": {"qoe_weight": -1.0}}
    with pytest.raises(ScenarioError) as err:
        P.base_provisioning_config(Scenario.from_dict(data, file="y.toml"))
    assert "qoe_weight" in str(err.value)
    data["provisioning"] = {"objective": {"qoe_weight": 3.0}}
    assert P.base_provisioning_config(Scenario.from_dict(data, file="y.toml")).objective.qoe_weight == 3.0


def test_config_rejects_bad_values():
    from market.errors import UserError

    with pytest.raises(UserError, match="provision"):
        P.PipelineConfig(provision="ppo").resolved()
    with pytest.raises(UserError, match="samples"):
        P.PipelineConfig(samples=0).resolved()
    quick = P.PipelineConfig(quick=True).resolved()
    assert quick.samples <= 6 and quick.calibration_samples <= 10
