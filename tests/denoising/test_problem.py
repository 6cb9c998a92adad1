"""The allocation problem on the rendering test double: reward (27), cache, environment and exact optimum."""
import itertools

import numpy as np
import pytest

from provisioning.denoising.generation import GenerationCache, GenerationKey, RenderingGenerator
from provisioning.denoising.problem import (Allocation, DenoiseEnv, QoETable, decode_action, draw_state,
                                            encode_allocation, link_ber, optimum, outcome)


def test_ber_levels_round_up_and_fall_with_power(tiny):
    config = tiny[0]
    bers = [link_ber(config, -10.0, p) for p in (0.0, 6.0, 12.0, 24.0, 40.0)]
    assert all(b in config.ber_levels for b in bers)
    assert bers == sorted(bers, reverse=True) and bers[0] > bers[-1]


def test_reward_is_eq27_with_penalties(tiny):
    config, users, table, _ = tiny
    state = draw_state(config, users, seed=3)
    # t_k = 9 > E_k / delta_k = 8: one unit of device excess per device
    res = outcome(config, table, state, Allocation(1, (2, 2), (1, 1)))
    assert res.device_excess.tolist() == [1.0, 1.0]
    expected = res.qoe.sum() - 2.0 - np.maximum(0, config.qoe_threshold - res.qoe).sum() - res.server_excess
    assert res.reward == pytest.approx(expected)
    assert np.all((res.qoe >= 0) & (res.qoe <= 1))


def test_cache_serves_repeats_and_survives_restart(tiny, tmp_path):
    config, users, table, cache = tiny
    state = draw_state(config, users, seed=5)
    first = outcome(config, table, state, Allocation(2, (0, 1), (0, 1)))
    generated = cache.misses
    again = outcome(config, QoETable(config, cache, table.judge), state, Allocation(2, (0, 1), (0, 1)))
    assert cache.misses == generated and cache.memory_hits >= 2 and again.reward == first.reward
    fresh = GenerationCache(RenderingGenerator(), cache.directory.parent.parent)
    key = GenerationKey(state.server_prompt, state.users[1].prompt, 6, 6, float(first.ber[1]), state.seed)
    assert np.array_equal(fresh.image(key), cache.image(key)) and fresh.disk_hits == 1 and fresh.misses == 0


def test_action_codec_round_trips(tiny):
    config = tiny[0]
    for i0, tks, ps in itertools.product(range(3), itertools.product(range(3), repeat=2), itertools.product(range(2), repeat=2)):
        alloc = Allocation(i0, tks, ps)
        assert decode_action(config, encode_allocation(config, alloc)) == alloc
    assert decode_action(config, np.ones(5)) == Allocation(2, (2, 2), (1, 1))


@pytest.mark.parametrize("budgets", [(8.0,), (2.0, 6.0, 9.0)])
def test_optimum_equals_brute_force_and_beats_every_action(tiny, budgets):
    from dataclasses import replace

    config, users, table, _ = tiny
    config = replace(config, device_budget=budgets)
    for seed in (0, 1, 2):
        state = draw_state(config, users, seed)
        alloc, best = optimum(config, table, state)
        rewards = [outcome(config, table, state, Allocation(i0, tks, ps)).reward
                   for i0, tks, ps in itertools.product(range(3), itertools.product(range(3), repeat=2),
                                                        itertools.product(range(2), repeat=2))]
        assert best.reward == pytest.approx(max(rewards))


def test_best_fixed_allocation_equals_brute_force_over_states(tiny):
    from provisioning.denoising.problem import best_fixed_allocation

    config, users, table, _ = tiny
    states = [draw_state(config, users, seed) for seed in (0, 1, 2)]
    grid = [Allocation(i0, tks, ps) for i0, tks, ps in itertools.product(
        range(3), itertools.product(range(3), repeat=2), itertools.product(range(2), repeat=2))]
    totals = [sum(outcome(config, table, s, a).reward for s in states) for a in grid]
    fixed = best_fixed_allocation(config, table, states)
    assert sum(outcome(config, table, s, fixed).reward for s in states) == pytest.approx(max(totals))
    # hindsight per state is at least as good as one allocation for all states
    assert sum(optimum(config, table, s)[1].reward for s in states) >= max(totals) - 1e-9


def test_environment_contract(tiny):
    from gymnasium.utils.env_checker import check_env

    config, users, table, _ = tiny
    env = DenoiseEnv(config, users, table, seed=0)
    obs, _ = env.reset(seed=4)
    assert env.observation_space.contains(obs)
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    assert terminated and np.isfinite(reward) and {"sum_qoe", "threshold_violations", "t0"} <= set(info)
    check_env(env, skip_render_check=True)


def test_mean_qoe_is_the_mean_over_the_noise_seeds(tiny):
    from dataclasses import replace

    config, users, table, _ = tiny
    assert config.qoe_of_allocation == "mean"
    state = draw_state(config, users, seed=2)
    alloc = Allocation(1, (1, 2), (0, 1))
    one_image = replace(config, qoe_of_allocation="one-image")
    per_seed = np.array([outcome(one_image, table, replace(state, seed=s), alloc).qoe for s in range(config.noise_seeds)])
    assert outcome(config, table, state, alloc).qoe == pytest.approx(per_seed.mean(axis=0))
    assert np.ptp(per_seed, axis=0).max() > 1e-3  # the seeds' images differ: the mean is not one image's QoE
    # one-image mode reads the state's own seed
    assert outcome(one_image, table, state, alloc).qoe == pytest.approx(per_seed[state.seed])


def test_device_budgets_are_drawn_per_device_observed_and_penalised(tiny):
    from dataclasses import replace

    from provisioning.denoising.problem import observation

    config, users, table, _ = tiny
    config = replace(config, device_budget=(2.0, 6.0, 9.0))
    states = [draw_state(config, users, seed) for seed in range(60)]
    budgets = np.array([s.device_budget for s in states])
    assert set(budgets.ravel()) == {2.0, 6.0, 9.0} and (budgets[:, 0] != budgets[:, 1]).any()
    state = next(s for s in states if s.device_budget.tolist() == [2.0, 9.0])
    result = outcome(config, table, state, Allocation(0, (1, 2), (0, 0)))  # t_k = 6 on E_k = 2, 9 on E_k = 9
    assert result.device_excess.tolist() == [4.0, 0.0]
    other = replace(state, device_budget=np.array([9.0, 9.0]))
    assert not np.array_equal(observation(config, state), observation(config, other))
    # a device step over the budget costs more than any QoE: the optimum keeps t_k within E_k
    assert optimum(config, table, state)[1].tk[0] == 2
    with pytest.raises(Exception, match="--device-budget"):
        replace(config, device_budget=(4.0, 0.0)).validate()


def test_split_half_ceiling_scores_the_halves_against_each_other(tiny):
    from dataclasses import replace

    from provisioning.denoising.problem import split_half_ceiling

    config, users, table, _ = tiny
    states = [draw_state(config, users, seed) for seed in (0, 1)]
    ceiling = split_half_ceiling(config, table, states)
    a, b = (0, 1), (2, 3)
    chosen = [optimum(config, table, s, a)[0] for s in states]
    expected = (np.mean([outcome(config, table, s, c, b).reward for s, c in zip(states, chosen)])
                / np.mean([optimum(config, table, s, b)[1].reward for s in states]))
    assert ceiling["seeds_per_half"] == 2 and ceiling["per_half"][0] == pytest.approx(expected)
    assert all(f <= 1 + 1e-9 for f in ceiling["per_half"])  # an optimum is never beaten on its own seeds
    assert split_half_ceiling(replace(config, qoe_of_allocation="one-image"), table, states) is None


def _budgeted(tiny, server_budget=5.0):
    from dataclasses import replace

    config, users, table, _ = tiny
    return replace(config, device_budget=(2.0, 6.0, 9.0), server_budget=server_budget,
                   action_decoding="within-budgets"), users, table


def test_decoding_within_budgets_is_feasible_and_leaves_feasible_allocations_alone(tiny):
    from dataclasses import replace

    config, users, table = _budgeted(tiny)
    grid = [Allocation(i0, tks, ps) for i0, tks, ps in itertools.product(
        range(3), itertools.product(range(3), repeat=2), itertools.product(range(2), repeat=2))]
    plain = replace(config, action_decoding="grid")
    for seed in range(4):
        state = draw_state(config, users, seed)
        changed = 0
        for alloc in grid:
            action = encode_allocation(config, alloc)
            assert decode_action(plain, action, state) == decode_action(plain, action) == alloc
            decoded = decode_action(config, action, state)
            result = outcome(plain, table, state, decoded)
            assert result.server_excess == 0 and result.device_excess.sum() == 0
            feasible = outcome(plain, table, state, alloc)
            if feasible.server_excess == 0 and feasible.device_excess.sum() == 0:
                assert decoded == alloc
            else:
                changed += 1
        assert changed > 0  # the budgets bind in these states, so the projection was exercised
        best, _ = optimum(plain, table, state)
        assert decode_action(config, encode_allocation(config, best), state) == best  # the optimum is reachable
    with pytest.raises(ValueError, match="needs the state"):
        decode_action(config, np.zeros(5))


def test_decoding_within_budgets_lowers_the_best_links_power_first_then_t0(tiny):
    config, users, table = _budgeted(tiny, server_budget=4.0)
    state = draw_state(config, users, 0)
    state.gain_db = np.array([-10.0, -5.0])
    state.device_budget = np.array([9.0, 9.0])
    # t0 = 2 at (24, 24) dBW: 1 + 4.8 > 4; lowering the better link (device 1) to 6 dBW gives 4.0
    assert decode_action(config, encode_allocation(config, Allocation(1, (2, 2), (1, 1))), state) == Allocation(1, (2, 2), (1, 0))
    # t0 = 6 does not fit even at the lowest powers (3 + 1.2 > 4): t0 drops to 2
    assert decode_action(config, encode_allocation(config, Allocation(2, (2, 2), (0, 0))), state) == Allocation(1, (2, 2), (0, 0))


def test_environment_within_budgets_never_pays_a_budget_penalty(tiny):
    config, users, table = _budgeted(tiny)
    env = DenoiseEnv(config, users, table, seed=0)
    env.action_space.seed(0)
    for episode in range(12):
        env.reset(seed=episode)
        _, _, _, _, info = env.step(env.action_space.sample())
        assert info["server_excess"] == 0 and info["device_excess"] == 0
    with pytest.raises(Exception, match="--action-decoding"):
        type(config)(action_decoding="clip").validate()


def test_decoding_server_steps_picks_t0_and_runs_the_devices_by_the_rule(tiny):
    from dataclasses import replace

    from provisioning.denoising.learning import LocalOnlyPolicy
    from provisioning.denoising.problem import action_dim, best_reachable, server_steps_allocation

    config, users, table = _budgeted(tiny)
    steps = replace(config, action_decoding="server-steps")
    assert action_dim(steps) == 1 and action_dim(config) == 1 + 2 * config.devices
    env = DenoiseEnv(steps, users, table, seed=0)
    assert env.action_space.shape == (1,)
    plain = replace(config, action_decoding="grid")
    top_power = len(config.power_levels_dbw) - 1
    for seed in range(4):
        state = draw_state(steps, users, seed)
        local = LocalOnlyPolicy(config).allocation(state)
        decoded = [decode_action(steps, [x], state) for x in np.linspace(-1, 1, 13)]
        # t0 follows the action's bin, in order; every t0 on the grid is hit
        assert [a.t0_index for a in decoded] == sorted(a.t0_index for a in decoded)
        assert {a.t0_index for a in decoded} == set(range(len(config.t0_grid)))
        for alloc in decoded:
            result = outcome(plain, table, state, alloc)
            assert result.server_excess == 0 and result.device_excess.sum() == 0
            assert alloc.tk_index == local.tk_index  # every device the most steps its budget allows
            if alloc.t0_index == 0:
                assert alloc == local  # no server steps: the local rule, nothing sent
            else:
                # the highest powers (24) leaves: raising any one link by a level breaks it
                assert all(p == top_power or outcome(plain, table, state, Allocation(
                    alloc.t0_index, alloc.tk_index, alloc.power_index[:k] + (p + 1,) + alloc.power_index[k + 1:])
                ).server_excess > 0 for k, p in enumerate(alloc.power_index))
        assert decode_action(steps, encode_allocation(steps, decoded[-1]), state) == decoded[-1]
        best, result = best_reachable(steps, table, state)
        assert best in [server_steps_allocation(steps, state, i) for i in range(len(config.t0_grid))]
        assert result.reward <= optimum(plain, table, state)[1].reward + 1e-9
        assert result.reward >= max(outcome(plain, table, state, a).reward for a in decoded) - 1e-9
    with pytest.raises(ValueError, match="needs the state"):
        decode_action(steps, np.zeros(1))
