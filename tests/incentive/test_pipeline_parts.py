"""Pure parts of the end-to-end pipeline (no generation): the coupling (slots, weights, states,
latency scaling, priced trials, batched decisions), the one QoE formula, the headline ratio."""
import math

import numpy as np
import pytest

from provisioning import coupling as C


def test_slots_split_in_market_order_with_a_short_last_slot():
    assert C.slot_indices([4, 1, 7, 9, 2], 3) == [[4, 1, 7], [9, 2]]
    assert C.slot_indices([0, 1, 2], 3) == [[0, 1, 2]]
    assert C.slot_indices([], 3) == []


def test_weights_keep_ratios_and_have_mean_one():
    w = C.normalised_weights(np.array([0.2, 0.4, 0.6]))
    assert w.mean() == pytest.approx(1.0)
    assert w[1] / w[0] == pytest.approx(2.0) and w[2] / w[0] == pytest.approx(3.0)
    assert C.normalised_weights(np.zeros(2)).tolist() == [1.0, 1.0]


def test_distance_inverts_the_provisioning_channel():
    from provisioning.channel import mean_snr_per_watt
    from provisioning.scenario import default_provisioning_scenario_path, load_provisioning_scenario

    channel = load_provisioning_scenario(default_provisioning_scenario_path()).channel
    for e in (1.0, 3.0, 7.5):
        d = C.distance_from_link(e, channel)
        assert float(mean_snr_per_watt(d, channel)) == pytest.approx(2.0 ** e - 1.0, rel=1e-9)
    assert C.distance_from_link(7.5, channel) < C.distance_from_link(1.0, channel)


def _scenario(name="default"):
    from market.scenario import load_scenario

    return load_scenario(f"scenarios/{name}.toml")


def _base(scn):
    document = C.provisioning_document(scn.extra_tables.get("provisioning"), "test")
    return document, C.provisioning_config_for_market(document, user_weights=[1.0] * document["num_users"],
                                                      time_per_trial_s=1e-3)


def test_user_states_are_seeded_clipped_and_reported():
    scn = _scenario()
    _, base = _base(scn)
    ranges, channel = base.state, base.channel
    a = C.derive_user_state(scn.mus[0], 0, ranges, channel, seed=5, mu_index=0)
    b = C.derive_user_state(scn.mus[0], 0, ranges, channel, seed=5, mu_index=0)
    c = C.derive_user_state(scn.mus[0], 0, ranges, channel, seed=6, mu_index=0)
    assert a == b and a["difficulty"] != c["difficulty"]
    lo, hi = ranges.distance_m
    assert lo <= a["distance_m"] <= hi
    assert a["distance_clipped"] == (a["distance_derived_m"] != a["distance_m"])
    t_lo, t_hi = ranges.quality_threshold[0]
    assert t_lo <= a["quality_threshold"] <= t_hi
    narrow = C.derive_user_state(scn.mus[0], 0, ranges, channel, seed=5, mu_index=0, difficulty_range=(0.1, 0.2))
    assert 0.1 <= narrow["difficulty"] <= 0.2


def test_slot_problem_latency_factor_is_the_deadline_form():
    """ln(L_max/(N T'))/ln(1+N) with the scaled T' equals ln(T_m/(N t_m))/ln(1+N), t_m the market latency."""
    from provisioning.qoe import latency_factor

    document, _ = _base(_scenario())
    compute = np.array([0.05, 0.2, 0.01])
    rate = np.array([1e6, 5e6, 2e5])
    bits = np.array([2e5, 1e6, 1e4])
    deadline = np.array([2.0, 3.0, 0.5])
    cfg, record = C.slot_problem(document, max_latency_s=60.0, weights=[1.0, 1.0, 1.0], compute_s=compute,
                                 rate_bps=rate, payload_bits=bits, deadline_s=deadline, source="test")
    t = compute + bits / rate
    seconds = np.array(cfg.latency.seconds_per_trial())
    for n in range(1, cfg.max_trials + 1):
        ours = latency_factor(np.full(3, n), seconds, cfg.latency.max_latency_s)
        np.testing.assert_allclose(ours, np.log(deadline / (n * t)) / np.log1p(n), rtol=1e-9)
    assert np.all(cfg.max_trials * t < deadline)
    assert record["late_users"] == [] and cfg.num_users == 3


def test_config_for_market_takes_weights_times_and_rates():
    from market.errors import ScenarioError

    document = C.provisioning_document({"objective": {"qoe_weight": 3.0}}, "m.toml")
    config = C.provisioning_config_for_market(document, user_weights=[1.0, 2.0, 0.5, 4.0],
                                              time_per_trial_s=[0.5, 1.0, 2.0, 8.0], link_rate_bps=3.0e7,
                                              source="m.toml")
    assert config.num_users == 4 and config.objective.user_weights == (1.0, 2.0, 0.5, 4.0)
    assert config.objective.qoe_weight == 3.0 and config.latency.link_rate_bps == (3.0e7,) * 4
    assert config.latency.seconds_per_trial()[0] == pytest.approx(0.5 + 3.0e6 / 3.0e7)
    # 8.1 s per trial: N_max lowered so that N_max T < L_max = 60 s
    assert config.max_trials * max(config.latency.seconds_per_trial()) < config.latency.max_latency_s
    assert (config.max_trials + 1) * max(config.latency.seconds_per_trial()) >= config.latency.max_latency_s
    with pytest.raises(ScenarioError) as info:
        C.provisioning_document({"scenario": "nope"}, "m.toml")
    assert info.value.field == "provisioning.scenario"
    with pytest.raises(ScenarioError) as info:
        C.provisioning_config_for_market(document, user_weights=[1.0, -1.0], time_per_trial_s=1.0, source="m.toml")
    assert info.value.field == "objective.user_weights[1]"


def test_qoe_formula_is_the_market_qoe_also_with_trials():
    """The one QoE function, fed the market's own accuracy, tokens and latency, gives the market's QoE;
    with N trials the market's latency is N times the compute and payload and its accuracy the priced one."""
    from market.qoe import qoe_formula, qoe_parts
    from solvers.registry import solve

    scn = _scenario()
    result = solve(scn, "dual-perturbation")
    mk, resp = result.market, result.response
    w = (mk.weight_accuracy, mk.weight_tokens, mk.weight_timeliness)
    ours = qoe_formula(*w, mk.accuracy[mk.mu_asp], mk.tokens_delivered, mk.tokens_requested,
                       resp.qoe.latency_s, mk.deadline_s)
    np.testing.assert_allclose(ours.total, resp.qoe.total, rtol=1e-12, atol=1e-12)
    trials = np.arange(mk.n_mus) % 3 + 1
    accuracy = np.linspace(0.5, 0.9, mk.n_mus)
    priced = mk.with_trials(trials, accuracy=accuracy)
    parts = qoe_parts(priced, resp.compute, resp.bandwidth)
    from market.qoe import transmission_rate

    latency = (trials * mk.tokens_delivered * mk.seconds_per_token[mk.mu_asp] / resp.compute
               + trials * mk.payload_bits / transmission_rate(mk, resp.bandwidth))
    np.testing.assert_allclose(parts.latency_s, latency, rtol=1e-12)
    np.testing.assert_allclose(parts.accuracy, mk.weight_accuracy * accuracy, rtol=1e-12)
    np.testing.assert_allclose(priced.timeliness_compute_need, trials * mk.timeliness_compute_need, rtol=1e-12)
    zero = qoe_formula(0.5, 0.5, 0.0, 1.0, 10, 10, math.inf, 1.0)
    assert float(zero.total) == pytest.approx(1.0)  # a zero weight contributes zero whatever the latency
    with pytest.raises(ValueError):
        mk.with_trials(np.zeros(mk.n_mus))


def test_priced_market_reads_the_best_of_n_table():
    from market.model import Market

    scn = _scenario("llm-example")
    mk = Market.from_scenario(scn)
    table = {"trials": [1, 2, 4], "ber": [0.0, 0.1], "accuracy": [[0.8, 0.6], [0.9, 0.7], [0.95, 0.75]], "samples": 10}
    n = int(mk.mu_asp[0])
    trials = np.full(mk.n_mus, 2)
    priced = C.priced_market(mk, trials, np.full(mk.n_mus, 0.05), {n: table})
    mine = mk.mus_of(n)
    np.testing.assert_allclose(priced.accuracy_received[mine], 0.8)  # (0.9 + 0.7) / 2
    others = np.setdiff1d(np.arange(mk.n_mus), mine)
    np.testing.assert_allclose(priced.accuracy_received[others], mk.accuracy[mk.mu_asp[others]])
    np.testing.assert_allclose(priced.payload_bits, 2 * mk.payload_bits)


def test_batched_oracle_equals_the_per_slot_oracle():
    from provisioning.oracle import oracle_allocation, oracle_allocations_per_state
    from provisioning.state import sample_states

    document, base = _base(_scenario())
    rng = np.random.default_rng(0)
    configs = [C.provisioning_config_for_market(document, user_weights=rng.uniform(0.2, 2.0, 3),
                                                time_per_trial_s=rng.uniform(0.1, 2.0, 3)) for _ in range(12)]
    configs = [c for c in configs if c.max_trials == base.max_trials]
    states = sample_states(base, len(configs), seed=1)
    batched = oracle_allocations_per_state(configs, states)
    for cfg, state, got in zip(configs, states, batched):
        alone = oracle_allocation(cfg, state)
        assert got.utility == pytest.approx(alone.utility, rel=1e-9, abs=1e-12)


def _slot(policy_utility, oracle_utility, fraction=None):
    return C.SlotRecord(slot="a#0", asp="a", users=["u"], size=1, partial=policy_utility is None, padded=False,
                        method="x", p_total_w=1.0, max_trials=8, weights=[1.0], trials=[1], power_w=[1.0],
                        utility=0.0, oracle_utility=oracle_utility, policy_utility=policy_utility,
                        fraction_of_oracle=fraction, oracle_exact=True, oracle_trials=[1], oracle_power_w=[1.0],
                        state={}, latency_model={})


def test_headline_ratio_says_what_it_leaves_out_and_oracle_runs_have_none():
    from incentive.assemble import policy_headline

    slots = [_slot(0.9, 1.0, 0.9), _slot(-2.0, -1.0), _slot(None, 0.5)]
    head = policy_headline(slots, "d3pg")
    assert head["ratio"] == pytest.approx(0.9) and head["slots_counted"] == 1 and head["slots_left_out"] == 2
    assert sum(head["left_out"].values()) == 2
    assert any("optimum <= 0" in k for k in head["left_out"]) and any("partial" in k for k in head["left_out"])
    assert policy_headline(slots, "oracle") is None


def test_provisioning_table_fields_set_by_the_coupling_are_rejected():
    from market.errors import ScenarioError

    with pytest.raises(ScenarioError) as err:
        C.provisioning_document({"objective": {"user_weights": [1.0, 2.0, 3.0]}}, "x.toml")
    assert "provisioning.objective.user_weights" in str(err.value) and "x.toml" in str(err.value)


def test_config_rejects_bad_values():
    from incentive.pipeline import PipelineConfig
    from market.errors import UserError

    for field, value in (("provision", "ppo"), ("samples", 0), ("max_rounds", 0), ("seed", 2**64)):
        with pytest.raises(UserError, match=field):
            PipelineConfig(**{field: value}).resolved()
    quick = PipelineConfig(quick=True).resolved()
    assert quick.samples <= 6 and quick.calibration_samples <= 10


def test_a_calibrated_scenario_reads_its_tables_back():
    """The default is calibrated: the market prices trials with its accuracy tables and provisioning
    uses its measured quality tables (10 p on the 0-10 scale); the LLM example is not calibrated."""
    from incentive.pipeline import PipelineConfig, check_inputs
    from provisioning.quality import InterpolatedQualityModel

    inputs = check_inputs("scenarios/default.toml", PipelineConfig(provision="oracle"))
    assert inputs.uncalibrated == [] and set(inputs.accuracy_tables) == {0, 1, 2}
    table = inputs.scenario.extra_tables["backend"]["calibrated"]["digits-small"]
    model = inputs.setup.quality_models["asp0-small"]
    assert isinstance(model, InterpolatedQualityModel)
    assert model.mean_log_score[0] == pytest.approx(table["quality"]["mean_log_score"][0] + math.log(10.0))
    assert table["accuracy_table"]["accuracy"][0][0] == pytest.approx(inputs.market.accuracy[0])
    example = check_inputs("scenarios/llm-example.toml", PipelineConfig(provision="oracle"))
    assert example.uncalibrated and example.accuracy_tables == {} and example.setup.quality_models == {}
