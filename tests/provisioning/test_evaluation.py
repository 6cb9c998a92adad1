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
    assert static.mean_qoe == pytest.approx(static.mean_utility + 0.5) or static.mean_qoe is None


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
