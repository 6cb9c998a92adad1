"""Training runs: files, checkpoints, resume after Ctrl-C or a crash, and learning.

Uses the toy contextual bandit of ``_toy_bandit.py`` (oracle utility 1 in every state).
"""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from market.errors import UserError
from provisioning.agents.d3pg import D3PGConfig, D3PGPolicy
from provisioning.training import TrainConfig, Validation, load_trained_policy, train
from tests.provisioning._toy_bandit import ToyBanditEnv, toy_problem

torch.set_num_threads(1)

TINY = dict(state_hidden=32, trunk_hidden=32, critic_hidden=32, batch_size=32, warmup_steps=40, actor_lr=1e-3, critic_lr=1e-3)


def tiny_d3pg(**overrides) -> D3PGConfig:
    return D3PGConfig(**{**TINY, **overrides})


def _run(tmp_path, name, steps=120, **kwargs):
    config = TrainConfig(agent="d3pg", total_steps=steps, seed=3, eval_every=40, eval_states=8)
    return train(toy_problem(), config, tmp_path / name, d3pg_config=tiny_d3pg(), progress=False, **kwargs)


def _actor_state(run_dir):
    return D3PGPolicy.load(run_dir / "policy.safetensors").actor.state_dict()


def test_run_writes_configs_curve_policy_and_result(tmp_path):
    result = _run(tmp_path, "run")
    run_dir = tmp_path / "run"
    assert result.finished and result.steps_done == 120
    assert [c["step"] for c in result.curve] == [40, 80, 120]
    saved = json.loads((run_dir / "d3pg_config.json").read_text())
    assert D3PGConfig.from_dict(saved) == tiny_d3pg()
    assert json.loads((run_dir / "train_config.json").read_text())["total_steps"] == 120
    res = json.loads((run_dir / "result.json").read_text())
    assert res["finished"] and res["steps_done"] == 120
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())
    for entry in result.curve[1:]:
        assert {"critic_loss", "actor_loss", "q1_mean", "saturated_share", "env_qoe", "seconds_per_step"} <= set(entry)
    policy = load_trained_policy(run_dir, "d3pg")
    assert policy.act(np.zeros(3, dtype=np.float32)).shape == (2,)


def test_existing_run_needs_resume(tmp_path):
    _run(tmp_path, "run", steps=40)
    with pytest.raises(UserError, match="--resume"):
        _run(tmp_path, "run", steps=40)
    again = _run(tmp_path, "run", steps=40, resume=True)  # finished: returned, not repeated
    assert again.finished and again.steps_done == 40


def test_ctrl_c_checkpoints_and_resume_is_exact(tmp_path, monkeypatch):
    reference = _run(tmp_path, "reference")
    calls = {"n": 0}
    original_step = ToyBanditEnv.step

    def step_then_ctrl_c(self, action):
        calls["n"] += 1
        if calls["n"] == 67:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C in the middle of the run
        return original_step(self, action)

    monkeypatch.setattr(ToyBanditEnv, "step", step_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "interrupted")
    progress = json.loads((tmp_path / "interrupted" / "progress.json").read_text())
    assert progress["steps_done"] == 67 and not progress["finished"]  # nothing finished was lost
    monkeypatch.setattr(ToyBanditEnv, "step", original_step)
    resumed = _run(tmp_path, "interrupted", resume=True)
    assert resumed.finished and resumed.steps_done == 120
    for key, value in _actor_state(tmp_path / "reference").items():
        torch.testing.assert_close(value, _actor_state(tmp_path / "interrupted")[key], rtol=0, atol=0)
    assert [c["fraction_of_oracle"] for c in resumed.curve] == [c["fraction_of_oracle"] for c in reference.curve]
    # the metrics logged between the last evaluation and the Ctrl-C were checkpointed with the
    # weights: the resumed learning curve equals the uninterrupted one, wall-clock fields aside
    timing = {"wall_seconds", "seconds_per_step"}
    assert [{k: v for k, v in c.items() if k not in timing} for c in resumed.curve] == [
        {k: v for k, v in c.items() if k not in timing} for c in reference.curve
    ]


def test_sigterm_is_deferred_to_a_checkpoint_like_ctrl_c(tmp_path, monkeypatch):
    calls = {"n": 0}
    original_step = ToyBanditEnv.step

    def step_then_sigterm(self, action):
        calls["n"] += 1
        if calls["n"] == 50:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_step(self, action)

    monkeypatch.setattr(ToyBanditEnv, "step", step_then_sigterm)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "terminated", steps=80)
    progress = json.loads((tmp_path / "terminated" / "progress.json").read_text())
    assert progress["steps_done"] == 50 and not progress["finished"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the guard put the handler back


def test_crash_resumes_from_the_last_periodic_checkpoint(tmp_path, monkeypatch):
    reference = _run(tmp_path, "reference")
    calls = {"n": 0}
    original_step = ToyBanditEnv.step

    def crash(self, action):
        calls["n"] += 1
        if calls["n"] == 95:
            raise RuntimeError("killed")
        return original_step(self, action)

    monkeypatch.setattr(ToyBanditEnv, "step", crash)
    with pytest.raises(RuntimeError):
        _run(tmp_path, "crashed")
    assert json.loads((tmp_path / "crashed" / "progress.json").read_text())["steps_done"] == 80
    monkeypatch.setattr(ToyBanditEnv, "step", original_step)
    resumed = _run(tmp_path, "crashed", resume=True)
    assert resumed.steps_done == 120
    for key, value in _actor_state(tmp_path / "reference").items():
        torch.testing.assert_close(value, _actor_state(tmp_path / "crashed")[key], rtol=0, atol=0)
    assert resumed.curve[-1]["fraction_of_oracle"] == reference.curve[-1]["fraction_of_oracle"]


def test_resume_refuses_a_different_run(tmp_path):
    _run(tmp_path, "run", steps=40)
    other = TrainConfig(agent="d3pg", total_steps=40, seed=4, eval_every=40, eval_states=8)
    with pytest.raises(UserError, match="seed"):
        train(toy_problem(), other, tmp_path / "run", d3pg_config=tiny_d3pg(), progress=False, resume=True)


def test_train_config_validation():
    with pytest.raises(UserError, match="unknown agent"):
        TrainConfig(agent="a2c")
    with pytest.raises(UserError, match="total_steps"):
        TrainConfig(agent="d3pg", total_steps=0)


@pytest.mark.slow
def test_d3pg_beats_random_on_the_toy_bandit(tmp_path):
    problem = toy_problem()
    validation = Validation(problem, 64)
    config = TrainConfig(agent="d3pg", total_steps=1200, seed=0, eval_every=400, eval_states=64)
    d3pg = tiny_d3pg(state_hidden=64, trunk_hidden=64, critic_hidden=64, batch_size=64, warmup_steps=200)
    result = train(problem, config, tmp_path / "learn", d3pg_config=d3pg, progress=False, validation=validation)
    random_eval = validation.evaluate(problem.make_random(0), "random")
    learned = result.curve[-1]["fraction_of_oracle"]
    assert learned > random_eval.fraction_of_oracle + 0.3
    assert learned > 0.9


def test_finished_run_cannot_be_silently_extended(tmp_path):
    _run(tmp_path, "run", steps=40)
    with pytest.raises(UserError, match="cannot be extended"):
        _run(tmp_path, "run", steps=80, resume=True)


def test_keep_best_without_selection_states_keeps_the_best_validation_evaluation(tmp_path):
    config = TrainConfig(agent="d3pg", total_steps=120, seed=3, eval_every=40, eval_states=8, keep_best=True)
    result = train(toy_problem(), config, tmp_path / "run", d3pg_config=tiny_d3pg(), progress=False)
    scores = [c["fraction_of_oracle"] for c in result.curve]
    assert "selection_fraction" not in result.curve[0]  # the toy validation has no selection states
    assert result.best["step"] == result.curve[int(np.argmax(scores))]["step"]
    assert result.best["selection_fraction"] == pytest.approx(max(scores))
    assert (result.best_dir / "policy.safetensors").is_file() and (tmp_path / "run" / "policy.safetensors").is_file()
    plain = _run(tmp_path, "plain")
    assert plain.best is None and plain.best_dir is None and not (tmp_path / "plain" / "best").exists()
