"""The gymnasium environment: checkers, determinism, legal decoding, reward = expected utility."""
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from provisioning.env import ProvisioningEnv, decode_action, encode_allocation
from provisioning.policies import RandomPolicy, StaticPolicy
from provisioning.scenario import default_provisioning_scenario_path, load_provisioning_scenario, provisioning_scenarios_dir
from provisioning.state import State, sample_states

CONFIG = load_provisioning_scenario(default_provisioning_scenario_path())
STATES = sample_states(CONFIG, 8, seed=99)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", ["paper-3users", "users-10"])
def test_passes_gymnasium_and_sb3_checkers(name):
    config = load_provisioning_scenario(provisioning_scenarios_dir() / f"{name}.toml")
    gym_check_env(ProvisioningEnv(config, seed=0), skip_render_check=True)
    sb3_check_env(ProvisioningEnv(config, seed=0), warn=True)


def rollout(env, steps=20, seed=None):
    env.reset(seed=seed)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps, env.action_space.shape[0]))
    trace = []
    for action in actions:
        obs, _ = env.reset()
        _, reward, terminated, truncated, info = env.step(action)
        assert terminated and not truncated
        trace.append((obs.copy(), reward))
    return trace


def test_deterministic_under_a_seed():
    a = rollout(ProvisioningEnv(CONFIG, seed=3))
    b = rollout(ProvisioningEnv(CONFIG, seed=3))
    c = rollout(ProvisioningEnv(CONFIG, seed=4))
    for (oa, ra), (ob, rb) in zip(a, b):
        np.testing.assert_array_equal(oa, ob)
        assert ra == rb
    assert any(not np.array_equal(oa, oc) for (oa, _), (oc, _) in zip(a, c))
    # reset(seed=...) overrides the constructor seed in the same way
    d = rollout(ProvisioningEnv(CONFIG), seed=3)
    assert all(np.array_equal(oa, od) for (oa, _), (od, _) in zip(a, d))


def test_sampled_mode_is_deterministic_under_a_seed():
    a = rollout(ProvisioningEnv(CONFIG, seed=5, reward_mode="sampled"))
    b = rollout(ProvisioningEnv(CONFIG, seed=5, reward_mode="sampled"))
    assert [r for _, r in a] == [r for _, r in b]
    expected = rollout(ProvisioningEnv(CONFIG, seed=5))
    assert [r for _, r in a] != [r for _, r in expected]


action_values = st.floats(allow_nan=True, allow_infinity=True, width=32)


@given(
    action=arrays(np.float32, 2 * CONFIG.num_users, elements=action_values),
    index=st.integers(0, len(STATES) - 1),
)
def test_every_action_decodes_to_a_legal_allocation(action, index):
    state = STATES[index]
    trials, power = decode_action(CONFIG, state, action)
    assert trials.dtype.kind == "i"
    assert np.all((trials >= 1) & (trials <= CONFIG.max_trials))
    assert np.all(np.isfinite(power)) and np.all(power >= 0)
    assert power.sum() <= state.p_total_w


@given(
    trials=arrays(np.int64, CONFIG.num_users, elements=st.integers(1, CONFIG.max_trials)),
    shares=arrays(np.float64, CONFIG.num_users, elements=st.floats(0.0, 1.0)),
    index=st.integers(0, len(STATES) - 1),
)
def test_encode_is_the_inverse_of_decode(trials, shares, index):
    state = STATES[index]
    shares = shares / max(1.0, shares.sum())
    power = shares * state.p_total_w
    action = encode_allocation(CONFIG, state, trials, power)
    assert action.dtype == np.float32 and np.all(np.abs(action) <= 1.0)
    decoded_trials, decoded_power = decode_action(CONFIG, state, action)
    np.testing.assert_array_equal(decoded_trials, trials)
    np.testing.assert_allclose(decoded_power, power, atol=1e-6 * state.p_total_w)


def test_step_reward_equals_expected_utility_and_info():
    env = ProvisioningEnv(CONFIG, seed=1)
    state = STATES[0]
    obs, info = env.reset(options={"state": state})
    assert env.state == state and info["state"] == state.to_dict()
    np.testing.assert_array_equal(obs, env.observation(state))
    action = np.array([-0.5, 0.1, 0.9, -0.2, 0.3, 0.0], dtype=np.float32)
    _, reward, terminated, truncated, info = env.step(action)
    trials, power = env.decode_action(action)
    assert reward == pytest.approx(env.expected_utility(state, trials, power), rel=1e-12)
    for key in ("qoe", "cost", "utility", "trials", "power", "penalty", "reward", "qoe_violations", "trial_violations", "budget_violated"):
        assert key in info
    assert info["reward"] == pytest.approx(info["utility"] - info["penalty"])
    np.testing.assert_array_equal(info["trials"], trials)
    assert terminated and not truncated


def test_set_state_and_observation_contents():
    env = ProvisioningEnv(CONFIG, seed=0)
    state = State([0.0, 0.5, 1.0], [20.0, 135.0, 250.0], [7.4, 8.05, 8.7], 2.0)
    obs = env.set_state(state)
    q = CONFIG.num_users
    assert obs.shape == (4 * q + 1,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs[:q], [0.0, 0.5, 1.0], atol=1e-7)  # difficulty
    np.testing.assert_allclose(obs[q : 2 * q], [0.0, 0.5, 1.0], atol=1e-6)  # distance
    np.testing.assert_allclose(obs[2 * q : 3 * q], [0.0, 0.5, 1.0], atol=1e-6)  # thresholds
    assert obs[3 * q] == pytest.approx(1.0) and obs[4 * q - 1] == pytest.approx(0.0, abs=1e-6)  # channel: near best, far worst
    assert obs[-1] == pytest.approx(1.0)  # P_total at the top of its range
    with pytest.raises(ValueError):
        env.set_state(State([0.1], [50.0], [8.0], 1.0))


def test_policies_act_and_allocate_agree():
    env = ProvisioningEnv(CONFIG, seed=0)
    static = StaticPolicy(CONFIG)
    for state in STATES:
        env.set_state(state)
        trials, power = env.decode_action(static.act(env.observation()))
        static_trials, static_power = static.allocate(state)
        np.testing.assert_array_equal(trials, [4, 4, 4])
        np.testing.assert_array_equal(trials, static_trials)
        np.testing.assert_allclose(power, static_power, rtol=1e-6)
    random_a, random_b = RandomPolicy(CONFIG, seed=2), RandomPolicy(CONFIG, seed=2)
    np.testing.assert_array_equal(random_a.act(None), random_b.act(None))
    trials, power = random_a.allocate(STATES[0])
    assert power.sum() <= STATES[0].p_total_w


def test_sample_states_is_seeded_and_within_ranges():
    env = ProvisioningEnv(CONFIG)
    a, b = env.sample_states(30, seed=7), env.sample_states(30, seed=7)
    assert a == b and a != env.sample_states(30, seed=8)
    for state in a:
        assert np.all((state.distance_m >= 20.0) & (state.distance_m <= 250.0))
        assert 0.5 <= state.p_total_w <= 2.0
        assert State.from_dict(state.to_dict()) == state
