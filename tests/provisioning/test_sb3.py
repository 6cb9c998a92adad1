"""Stable-Baselines3 baselines: construction with matched settings, a short run, save/load."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from market.errors import MissingArtifactError, UserError
from provisioning.agents.sb3 import ALGORITHMS, SB3Config, SB3Policy, load_model, make_model
from provisioning.training import TrainConfig, load_trained_policy, train
from tests.provisioning._toy_bandit import ToyBanditEnv, toy_problem

torch.set_num_threads(1)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_models_get_the_matched_settings(algorithm):
    model = make_model(ToyBanditEnv(seed=0), SB3Config(algorithm=algorithm), seed=7, buffer_size=500)
    assert model.seed == 7
    if algorithm == "ppo":
        assert model.n_steps == 256
    else:
        assert model.learning_starts == 1000
        assert model.buffer_size == 500
    if algorithm in ("ddpg", "td3"):
        assert np.allclose(model.action_noise._sigma, 0.1)


def test_unknown_algorithm_is_a_clear_error():
    with pytest.raises(UserError, match="algorithm"):
        SB3Config(algorithm="a2c")


@pytest.mark.parametrize("algorithm", ["sac", "ppo"])
def test_short_run_save_load_round_trip(tmp_path, algorithm):
    config = TrainConfig(agent=algorithm, total_steps=256, seed=1, eval_every=128, eval_states=8)
    sb3 = SB3Config(algorithm=algorithm, learning_starts=64, ppo_n_steps=128, ppo_batch_size=32)
    result = train(toy_problem(), config, tmp_path / algorithm, sb3_config=sb3, progress=False)
    assert result.finished and result.steps_done == 256
    assert [c["step"] for c in result.curve] == [128, 256]
    assert json.loads((tmp_path / algorithm / "sb3_config.json").read_text())["algorithm"] == algorithm
    policy = load_trained_policy(tmp_path / algorithm, algorithm)
    again = SB3Policy(load_model(tmp_path / algorithm / "policy.zip", algorithm))
    obs = np.array([0.2, -0.3, 0.5], dtype=np.float32)
    np.testing.assert_array_equal(policy.act(obs), again.act(obs))
    assert policy.act(obs).shape == (2,)


def test_sb3_resume_after_a_crash_continues_from_the_checkpoint(tmp_path, monkeypatch):
    config = TrainConfig(agent="td3", total_steps=192, seed=0, eval_every=64, eval_states=4)
    sb3 = SB3Config(algorithm="td3", learning_starts=32)
    calls = {"n": 0}
    original = ToyBanditEnv.step

    def crash(self, action):
        calls["n"] += 1
        if calls["n"] == 150:
            raise RuntimeError("killed")
        return original(self, action)

    monkeypatch.setattr(ToyBanditEnv, "step", crash)
    with pytest.raises(RuntimeError):
        train(toy_problem(), config, tmp_path / "td3", sb3_config=sb3, progress=False)
    assert json.loads((tmp_path / "td3" / "progress.json").read_text())["steps_done"] == 128
    monkeypatch.setattr(ToyBanditEnv, "step", original)
    result = train(toy_problem(), config, tmp_path / "td3", sb3_config=sb3, progress=False, resume=True)
    assert result.finished and result.steps_done == 192
    assert [c["step"] for c in result.curve] == [64, 128, 192]


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(MissingArtifactError, match="train one"):
        load_model(tmp_path / "nothing.zip", "sac")
