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


def test_optimum_equals_brute_force_and_beats_every_action(tiny):
    config, users, table, _ = tiny
    for seed in (0, 1):
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
