"""Evaluation against the oracle; the `incentive provision evaluate` report and its CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from provisioning.evaluation import evaluate_policy, held_out_states, oracle_utilities, spread
from tests.provisioning._toy_bandit import (
    ToyBanditEnv,
    ToyOraclePolicy,
    ToyRandomPolicy,
    ToyStaticPolicy,
    best_action,
    toy_oracle_utility,
)


class _ObservationOracle:
    """Acts from observations only (the toy observation is the state itself)."""

    name = "best"

    def act(self, obs, states=None):
        return np.stack([best_action(o) for o in np.atleast_2d(obs)])


def _setup(n=16):
    env = ToyBanditEnv()
    states = held_out_states(env, n, seed=5)
    return env, states, oracle_utilities(toy_oracle_utility, states)


def test_oracle_policy_scores_one_and_others_less():
    env, states, oracle = _setup()
    assert np.allclose(oracle, 1.0)
    best = evaluate_policy(env, _ObservationOracle(), states, oracle)
    assert best.policy == "best" and best.fraction_of_oracle == pytest.approx(1.0, abs=1e-6)
    assert evaluate_policy(env, ToyOraclePolicy(), states, oracle).fraction_of_oracle == pytest.approx(1.0, abs=1e-12)
    static = evaluate_policy(env, ToyStaticPolicy(), states, oracle, name="static")
    random = evaluate_policy(env, ToyRandomPolicy(seed=0), states, oracle, name="random")
    assert random.fraction_of_oracle < static.fraction_of_oracle < 1.0
    assert static.mean_qoe is None and static.mean_cost is None  # the toy env has no QoE/cost breakdown


def test_fraction_is_a_ratio_of_means():
    env, states, _ = _setup(8)
    oracle = np.linspace(1.0, 3.0, len(states))
    ev = evaluate_policy(env, ToyStaticPolicy(), states, oracle)
    assert ev.fraction_of_oracle == pytest.approx(np.mean(ev.utilities) / oracle.mean())
    assert ev.n_states == 8 and len(ev.utilities) == 8


def test_held_out_states_are_reproducible_and_seed_dependent():
    env = ToyBanditEnv()
    a, b, c = held_out_states(env, 4, 1), held_out_states(env, 4, 1), held_out_states(env, 4, 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_spread():
    s = spread([0.9, 1.0, 1.1])
    assert s["mean"] == pytest.approx(1.0) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    assert spread([float("nan")])["n"] == 0


def test_evaluate_report_on_the_default_scenario_static(tmp_path):
    """The evaluate command on the real default scenario (static policy: no training needed)."""
    pytest.importorskip("provisioning.oracle")
    from incentive.cli import main

    out = tmp_path / "static.json"
    assert main(["provision", "evaluate", "--policy", "static", "--episodes", "8", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["fraction_of_oracle"] == pytest.approx(report["static_fraction_of_oracle"])
    assert report["fraction_of_oracle"] < 1.0
    assert {"mean_qoe", "mean_cost", "mean_utility", "fraction_of_oracle_spread", "random_fraction_of_oracle"} <= set(report)


def test_evaluate_oracle_scores_one(tmp_path):
    pytest.importorskip("provisioning.oracle")
    from incentive.commands.provision import _resolve_scenario, evaluate_report

    report = evaluate_report("oracle", _resolve_scenario(None), episodes=6)
    assert report["fraction_of_oracle"] == pytest.approx(1.0, abs=1e-9)


def test_evaluate_shipped_d3pg_policy():
    """The shipped policy exists for the default scenario and is evaluated on held-out states."""
    pytest.importorskip("provisioning.oracle")
    from incentive.commands.provision import _resolve_scenario, evaluate_report

    report = evaluate_report("d3pg", _resolve_scenario(None), episodes=16)
    assert report["shipped_card"]["steps"] > 0
    assert report["fraction_of_oracle"] > report["static_fraction_of_oracle"]
    assert report["fraction_of_oracle"] > report["random_fraction_of_oracle"]
    assert report["fraction_of_oracle_spread"]["n"] == 5


def test_cli_errors_are_clean(capsys, tmp_path):
    from incentive.cli import main

    assert main(["provision", "evaluate", "--policy", "sac"]) == 2
    assert "--run" in capsys.readouterr().err
    assert main(["provision", "evaluate", "--policy", "static", "--scenario", "no-such-scenario"]) == 2
    assert "no-such-scenario" in capsys.readouterr().err
    assert main(["provision", "evaluate", "--policy", "ppo", "--run", str(tmp_path)]) == 2
    assert main(["provision", "train", "--agent", "d3pg", "--steps", "0", "--out", str(tmp_path / "x")]) == 2


def test_protocol_arguments_are_checked_before_work():
    from market.errors import UserError
    from provisioning.evaluation import EvaluationProtocol

    for bad in (dict(best_of_k=0), dict(best_of_k=-3), dict(episodes=0), dict(state_seed=-1), dict(state_seed=2**63),
                dict(sampling_seeds=0)):
        with pytest.raises(UserError):
            EvaluationProtocol(**bad)
    assert EvaluationProtocol().best_of_k is None  # K comes from the policy's configuration


def test_report_of_a_run_takes_k_from_its_config_and_says_n_1(tmp_path):
    """One finished D3PG run on the default scenario: best-of-K uses the run's ``best_of_k`` (3
    here, not a literal 16), and a single evaluation is reported as n=1 without a spread."""
    from provisioning.evaluation import EvaluationProtocol, evaluation_report, problem_from_scenario
    from provisioning.scenario import default_provisioning_scenario_path
    from provisioning.training import TrainConfig, train, tuned_d3pg_config

    scenario = default_provisioning_scenario_path()
    tiny = tuned_d3pg_config(state_hidden=16, trunk_hidden=16, critic_hidden=16, batch_size=16, actor_batch_size=8,
                             warmup_steps=16, best_of_k=3)
    config = TrainConfig(agent="d3pg", total_steps=24, seed=1, eval_every=24, eval_states=2, scenario=str(scenario))
    train(problem_from_scenario(scenario), config, tmp_path / "seed_1", learner_config=tiny, progress=False)
    report = evaluation_report("d3pg", scenario, run=tmp_path, protocol=EvaluationProtocol(episodes=3))
    assert report["best_of_k"] == 3
    assert report["fraction_of_oracle_spread"]["n"] == 1 and report["fraction_of_oracle_spread"]["std"] is None
    assert any("n=1" in note for note in report["notes"])
    with_k = evaluation_report("d3pg", scenario, run=tmp_path, protocol=EvaluationProtocol(episodes=3, best_of_k=5))
    assert with_k["best_of_k"] == 5
