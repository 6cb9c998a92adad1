"""One battery over every policy and every registered learner (as SB3's test_save_load runs one
battery over MODEL_LIST): the Policy protocol and legal actions on the real provisioning
environment; for learners, a short run's save/load round trip and resume after a crash.

A learner added to :mod:`provisioning.agents.registry` is tested here without a new line.
"""
from __future__ import annotations

import functools
import json

import numpy as np
import pytest
import torch

from provisioning.agents.registry import BASELINE_POLICIES, REGISTRY, get
from provisioning.env import ProvisioningEnv
from provisioning.evaluation import problem_from_scenario, sampling_seed
from provisioning.policies import BASELINES, BestOfK, Policy, make_baseline
from provisioning.scenario import default_provisioning_scenario_path, load_provisioning_scenario
from provisioning.training import TrainConfig, train
from tests.provisioning._toy_bandit import ToyBanditEnv, toy_problem

torch.set_num_threads(1)

CONFIG = load_provisioning_scenario(default_provisioning_scenario_path())
STATES = ProvisioningEnv(CONFIG).sample_states(6, seed=11)

#: Small, fast settings per learner (networks, warm-up), so each run takes about a second.
TINY = {
    "d3pg": dict(state_hidden=32, trunk_hidden=32, critic_hidden=32, batch_size=32, warmup_steps=32,
                 actor_batch_size=None, gradient_steps_per_env_step=1, actor_update_every=1),
    "ppo": dict(ppo_n_steps=64, ppo_batch_size=32),
    "sac": dict(learning_starts=32, batch_size=32),
    "ddpg": dict(learning_starts=32, batch_size=32),
    "td3": dict(learning_starts=32, batch_size=32),
}


def tiny_config(agent: str):
    return get(agent).make_config(**TINY.get(agent, {}))


def _untrained(agent: str, env) -> Policy:
    trainer = get(agent).trainer_class()(env, tiny_config(agent), seed=0, total_steps=64)
    return trainer.validation_policy()


@functools.lru_cache(maxsize=1)
def _policies() -> dict[str, object]:
    env = ProvisioningEnv(CONFIG)
    out = {name: make_baseline(name, CONFIG, seed=1) for name in BASELINES}
    for agent in REGISTRY:
        out[agent] = _untrained(agent, env)
    return out


def test_the_registry_lists_the_learners_and_the_baselines():
    assert set(REGISTRY) >= {"d3pg", "ppo", "sac", "ddpg", "td3"}
    assert tuple(BASELINES) == BASELINE_POLICIES
    assert not set(REGISTRY) & set(BASELINES)


@pytest.mark.parametrize("name", [*BASELINES, *REGISTRY])
def test_policy_protocol_and_legal_actions(name):
    """Every policy is a Policy, acts on a batch and on one row, and every action decodes to a
    legal allocation (1 <= N <= N_max, P >= 0, sum P <= P_total)."""
    policy = _policies()[name]
    env = ProvisioningEnv(CONFIG)
    assert isinstance(policy, Policy) and policy.name == name
    observations = np.stack([env.observation(s) for s in STATES])
    actions = np.asarray(policy.act(observations, STATES))
    assert actions.shape == (len(STATES), 2 * CONFIG.num_users)
    assert np.all(np.isfinite(actions)) and np.all(np.abs(actions) <= 1.0 + 1e-12)
    single = np.asarray(policy.act(observations[0], [STATES[0]] if name == "oracle" else None))
    assert single.shape[-1] == 2 * CONFIG.num_users
    for state, action in zip(STATES, actions):
        env.set_state(state)
        trials, power = env.decode_action(action)
        assert np.all((1 <= trials) & (trials <= CONFIG.max_trials))
        assert np.all(power >= 0) and power.sum() <= state.p_total_w * (1 + 1e-12)


def test_the_oracle_policy_decodes_to_the_optimum():
    from provisioning.evaluation import evaluate_policy, oracle_utilities

    problem = problem_from_scenario()
    env = problem.make_env(None)
    values = oracle_utilities(problem.oracle_utility, STATES[:3])
    ev = evaluate_policy(env, problem.baseline("oracle"), STATES[:3], values)
    assert ev.fraction_of_oracle == pytest.approx(1.0, abs=1e-12)
    assert ev.mean_qoe is not None and ev.mean_cost is not None and ev.mean_cost > 0  # the env's breakdown


def test_best_of_k_takes_k_from_the_policy_configuration():
    policy = _policies()["d3pg"]
    assert BestOfK(policy.policy).k == policy.policy.config.best_of_k
    assert BestOfK(policy.policy, 3).k == 3
    with pytest.raises(ValueError, match="K >= 1"):
        BestOfK(policy.policy, 0)


def _short_run(tmp_path, agent, name, steps=96, **kwargs):
    config = TrainConfig(agent=agent, total_steps=steps, seed=2, eval_every=32, eval_states=4)
    return train(toy_problem(), config, tmp_path / name, learner_config=tiny_config(agent), progress=False, **kwargs)


@pytest.mark.parametrize("agent", sorted(REGISTRY))
def test_save_load_round_trip(tmp_path, agent):
    """The final policy file, loaded through the registry, acts exactly like the trained policy."""
    result = _short_run(tmp_path, agent, "run")
    assert result.finished and result.steps_done >= 96
    spec = get(agent)
    assert result.policy_path == tmp_path / "run" / spec.policy_file
    first, again = spec.load_policy(tmp_path / "run", seed=sampling_seed(2)), spec.load_policy(tmp_path / "run", seed=sampling_seed(2))
    obs = np.stack([ToyBanditEnv().reset(seed=i)[0] for i in range(5)])
    np.testing.assert_array_equal(first.act(obs), again.act(obs))
    assert first.act(obs).shape == (5, 2) and np.all(np.abs(first.act(obs)) <= 1)
    saved = json.loads((tmp_path / "run" / spec.config_file).read_text())
    assert spec.config_from_dict(saved) == tiny_config(agent)


@pytest.mark.parametrize("agent", sorted(REGISTRY))
def test_resume_after_a_crash(tmp_path, agent, monkeypatch):
    """A run killed between checkpoints resumes from the last one and finishes on the same
    evaluation grid; D3PG's learning curve equals the uninterrupted run's (bit-exact)."""
    reference = _short_run(tmp_path, agent, "reference")
    calls = {"n": 0}
    original = ToyBanditEnv.step

    def crash(self, action):
        calls["n"] += 1
        if calls["n"] == 80:
            raise RuntimeError("killed")
        return original(self, action)

    monkeypatch.setattr(ToyBanditEnv, "step", crash)
    with pytest.raises(RuntimeError):
        _short_run(tmp_path, agent, "crashed")
    progress = json.loads((tmp_path / "crashed" / "progress.json").read_text())
    assert not progress["finished"] and progress["steps_done"] == 64  # the last checkpoint before step 80
    monkeypatch.setattr(ToyBanditEnv, "step", original)
    resumed = _short_run(tmp_path, agent, "crashed", resume=True)
    assert resumed.finished
    assert [c["step"] for c in resumed.curve] == [c["step"] for c in reference.curve]
    if agent == "d3pg":
        assert [c["fraction_of_oracle"] for c in resumed.curve] == [c["fraction_of_oracle"] for c in reference.curve]


def test_training_shorter_than_the_warm_up_warns(tmp_path):
    config = TrainConfig(agent="d3pg", total_steps=32, seed=0, eval_every=32, eval_states=4)
    result = train(toy_problem(), config, tmp_path / "short", learner_config=tiny_config("d3pg"), progress=False)
    assert len(result.warnings) == 1 and "never learned" in result.warnings[0] and "32 random warm-up" in result.warnings[0]
    assert json.loads((tmp_path / "short" / "result.json").read_text())["warnings"] == result.warnings
    longer = train(toy_problem(), TrainConfig(agent="d3pg", total_steps=64, seed=0, eval_every=32, eval_states=4),
                   tmp_path / "long", learner_config=tiny_config("d3pg"), progress=False)
    assert longer.warnings == []
