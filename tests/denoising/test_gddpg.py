"""G-DDPG in the agent registry, and a short training smoke run on the rendering test double."""
import numpy as np
import pytest

from provisioning.agents.registry import REGISTRY, get
from provisioning.denoising.gddpg import SingleCritic
from provisioning.denoising.problem import DenoiseEnv, decode_action, draw_state, observation, optimum, outcome
from provisioning.denoising.runs import CompareConfig, compare, learner_overrides


def test_registered_next_to_d3pg_and_the_baselines():
    assert {"gddpg", "d3pg", "ddpg", "td3", "sac"} <= set(REGISTRY)
    config = get("gddpg").make_config(warmup_steps=10)
    assert config.actor_update_every == 1 and config.warmup_steps == 10


def test_gddpg_trains_a_few_hundred_steps(tiny, tmp_path):
    config, users, table, cache = tiny
    env = DenoiseEnv(config, users, table, seed=0)
    spec = get("gddpg")
    small = dict(state_hidden=32, trunk_hidden=32, critic_hidden=32)
    trainer = spec.trainer_class()(env, spec.make_config(**learner_overrides("gddpg", 300, 500), **small), seed=0,
                                   total_steps=300)
    assert isinstance(trainer.learner.critic, SingleCritic)
    rows = trainer.advance(300, lambda: False, lambda: None)
    served = table.stats()["share_of_lookups_without_generation"]
    assert served > 0.3, served  # 600 QoE lookups over a finite key space (users x grid x BER levels x noise seeds)
    assert len(rows) == 300 and trainer.learner.updates == 300 - 75
    assert np.isfinite([r["critic_loss"] for r in rows if "critic_loss" in r]).all()
    policy = trainer.validation_policy()
    state = draw_state(config, users, 123)
    action = policy.act(observation(config, state))
    assert action.shape == (5,) and np.all(np.abs(action) <= 1)
    assert outcome(config, table, state, decode_action(config, action)).reward <= optimum(config, table, state)[1].reward + 1e-9
    # the final policy file round-trips through the registry loader
    trainer.save_policy(tmp_path / "policy.safetensors", {})
    loaded = spec.load_file(tmp_path / "policy.safetensors")
    assert loaded.act(observation(config, state)).shape == (5,)


def test_compare_reports_every_policy_against_the_optimum(tiny):
    from provisioning.denoising.learning import DenoiseProblem

    config, users, table, _ = tiny
    result = compare(DenoiseProblem(config, users[:2], users, table),
                     CompareConfig(policies=("ddpg", "random", "optimum"), seeds=2, train_steps=40, held_out_states=3,
                                   eval_every=20, eval_states=2))
    optimum_row = result["policies"]["optimum"]
    assert optimum_row["fraction_of_optimum"]["mean"] == pytest.approx(1.0)
    for name in ("ddpg", "random"):
        row = result["policies"][name]
        assert row["sum_qoe"]["n"] == 2 and row["fraction_of_optimum"]["max"] <= 1.0 + 1e-9
