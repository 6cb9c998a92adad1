"""Compare every provisioning policy over seeds: the data of the paper's Figs. 14-15.

What this module is for: train (or load finished / resume unfinished) D3PG and the SB3
baselines for the same budget of environment steps and the same seeds, evaluate every policy
(plus static, random and the oracle) on the same held-out states, and write

- ``curves.csv``: agent, seed, step, validation fraction of the oracle and mean utility
  (learning curves, Fig. 14 left);
- ``converged.csv``: one row per policy and seed on the held-out test states (Fig. 14 right);
- ``decisions.csv``: trials and power share per user of each policy in the paper's Fig. 15
  example state (``provisioning.state.paper_example_state``; the first held-out state for
  scenarios with another number of users);
- ``summary.json``: per-policy spread over seeds, and D3PG's relative improvement over SAC and
  PPO in utility and in QoE (the paper's +67.8% / +7.0% claims).

Runs are trained seed by seed (all agents for seed 0, then seed 1, ...) so that a comparison
stopped early still holds complete seeds; every run checkpoints and resumes.

May import: ``market`` (atomic IO, errors), numpy and the rest of ``provisioning``.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from market.atomic import atomic_write_json, atomic_write_text
from provisioning.evaluation import (
    TEST_STATES_SEED,
    ActionPolicy,
    evaluate_policy,
    held_out_states,
    oracle_utilities,
    spread,
)
from provisioning.training import (
    TrainConfig,
    Validation,
    jsonable,
    load_trained_policy,
    problem_from_scenario,
    train,
)


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _relative(a: float, b: float) -> float:
    """``(a - b) / |b|``: relative improvement of ``a`` over ``b``."""
    return float((a - b) / abs(b)) if abs(b) > 1e-12 else float("nan")


def run_comparison(
    scenario: str | Path,
    out: str | Path,
    *,
    agents: list[str],
    seeds: int = 5,
    steps: int = 3000,
    episodes: int = 256,
    eval_every: int = 500,
    eval_states: int = 64,
    progress: bool = True,
    d3pg_config=None,
) -> dict:
    """Train/load all ``agents`` x ``seeds`` and evaluate; returns the summary (also written).

    Parameters
    ----------
    scenario : path
        Provisioning scenario file.
    out : path
        Output folder (runs in ``<out>/<agent>/seed_<k>``).
    agents : list of str
        Learners among d3pg, ppo, sac, ddpg, td3.
    seeds, steps : int
        Seeds 0..seeds-1 and the environment-step budget of every run.
    episodes : int
        Held-out test states for the converged utilities.
    eval_every, eval_states : int
        Learning-curve interval and validation states.
    """
    out = Path(out)
    problem = problem_from_scenario(scenario)
    validation = Validation(problem, eval_states)
    runs: dict[tuple[str, int], Path] = {}
    for seed in range(seeds):
        for agent in agents:
            config = TrainConfig(
                agent=agent, total_steps=steps, seed=seed, eval_every=eval_every, eval_states=eval_states, scenario=str(scenario)
            )
            run_dir = out / agent / f"seed_{seed}"
            train(problem, config, run_dir, resume=True, progress=progress, validation=validation, d3pg_config=d3pg_config)
            runs[(agent, seed)] = run_dir

    env = problem.make_env(None)
    states = held_out_states(env, episodes, TEST_STATES_SEED)
    oracle_values = oracle_utilities(problem.oracle_utility, states)
    evaluations: dict[str, list] = {"oracle": [], "static": [], "random": []}
    decisions_policies: dict[str, object] = {}
    evaluations["static"].append(evaluate_policy(env, problem.make_static(), states, oracle_values, name="static"))
    decisions_policies["static"] = problem.make_static()
    for seed in range(seeds):
        evaluations["random"].append(evaluate_policy(env, problem.make_random(seed), states, oracle_values, name="random"))
    decisions_policies["random"] = problem.make_random(0)
    curve_rows, converged_rows = [], []
    for (agent, seed), run_dir in runs.items():
        policy = load_trained_policy(run_dir, agent, seed=10_000 + seed)
        ev = evaluate_policy(env, policy, states, oracle_values, name=agent)
        evaluations.setdefault(agent, []).append(ev)
        if seed == 0:
            decisions_policies[agent] = load_trained_policy(run_dir, agent, seed=10_000)
        if agent == "d3pg":
            policy.reseed(10_000 + seed)
            best = evaluate_policy(
                env, ActionPolicy(lambda o, p=policy: p.act_best_of_k(o)), states, oracle_values, name="d3pg-best-of-k"
            )
            evaluations.setdefault("d3pg-best-of-k", []).append(best)
        progress = json.loads((run_dir / "progress.json").read_text())
        for point in progress.get("curve", []):
            curve_rows.append([agent, seed, point["step"], point.get("fraction_of_oracle"), point.get("mean_utility")])

    oracle_mean = float(np.mean(oracle_values))
    converged_rows.append(["oracle", 0, 1.0, oracle_mean, None, None, None])
    for name, evs in evaluations.items():
        for i, ev in enumerate(evs):
            converged_rows.append([name, i, ev.fraction_of_oracle, ev.mean_utility, ev.mean_qoe, ev.mean_cost, ev.mean_trials])

    # Fig. 15: the decisions of each policy in the paper's example state (3 users), else in
    # the first held-out state
    state = states[0]
    try:
        from provisioning.state import paper_example_state

        example = paper_example_state()
        if example.num_users == env.num_users:
            state = example
    except ImportError:  # pragma: no cover - older provisioning.state
        pass
    decision_rows = []
    from provisioning.oracle import oracle_allocation
    from provisioning.scenario import load_provisioning_scenario

    config = load_provisioning_scenario(problem.scenario_path)
    best = oracle_allocation(config, state)
    choices = {"oracle": (np.asarray(best.trials), np.asarray(best.power))}
    for name, pol in decisions_policies.items():
        obs, _ = env.reset(options={"state": state})
        if hasattr(pol, "allocate"):
            choices[name] = pol.allocate(state)
        else:
            choices[name] = env.decode_action(pol.act(obs))
    for name, (trials, power) in choices.items():
        outcome = env.evaluate(state, trials, power)
        for user in range(len(trials)):
            decision_rows.append(
                [
                    name,
                    user,
                    float(state.quality_threshold[user]),
                    float(state.difficulty[user]),
                    float(state.distance_m[user]),
                    int(trials[user]),
                    float(power[user] / state.p_total_w),
                    float(outcome.expected_qoe[user]),
                    float(outcome.reward),
                ]
            )

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out / "curves.csv", _csv_text(["agent", "seed", "step", "fraction_of_oracle", "mean_utility"], curve_rows)
    )
    atomic_write_text(
        out / "converged.csv",
        _csv_text(["policy", "seed", "fraction_of_oracle", "mean_utility", "mean_qoe", "mean_cost", "mean_trials"], converged_rows),
    )
    atomic_write_text(
        out / "decisions.csv",
        _csv_text(
            ["policy", "user", "quality_threshold", "difficulty", "distance_m", "trials", "power_share", "expected_qoe", "state_reward"],
            decision_rows,
        ),
    )
    policies = {
        name: {
            "fraction_of_oracle": spread([e.fraction_of_oracle for e in evs]),
            "mean_utility": spread([e.mean_utility for e in evs]),
            "mean_qoe": spread([e.mean_qoe for e in evs]),
            "mean_cost": spread([e.mean_cost for e in evs]),
        }
        for name, evs in evaluations.items()
    }
    policies["oracle"] = {
        "fraction_of_oracle": spread([1.0]),
        "mean_utility": spread([oracle_mean]),
        "mean_qoe": spread([evaluate_policy(env, _OracleAllocator(config), states, oracle_values).mean_qoe]),
        "mean_cost": spread([]),
    }
    claims = {}
    if "d3pg" in policies:
        for base in ("sac", "ppo"):
            if base in policies:
                claims[f"d3pg_over_{base}_utility"] = _relative(
                    policies["d3pg"]["mean_utility"]["mean"], policies[base]["mean_utility"]["mean"]
                )
                claims[f"d3pg_over_{base}_qoe"] = _relative(policies["d3pg"]["mean_qoe"]["mean"], policies[base]["mean_qoe"]["mean"])
        baselines = [n for n in policies if n not in ("d3pg", "d3pg-best-of-k", "oracle")]
        claims["d3pg_above_every_baseline_mean"] = all(
            policies["d3pg"]["fraction_of_oracle"]["mean"] > policies[n]["fraction_of_oracle"]["mean"] for n in baselines
        )
    summary = {
        "scenario": str(scenario),
        "agents": agents,
        "seeds": seeds,
        "steps": steps,
        "held_out_states": episodes,
        "held_out_seed": TEST_STATES_SEED,
        "oracle_mean_utility": oracle_mean,
        "policies": policies,
        "paper_claims": {"paper_d3pg_over_sac_qoe": 0.678, "paper_d3pg_over_ppo_qoe": 0.070, **claims},
        "decision_state": state.to_dict(),
        "wall_seconds": {
            agent: spread(
                [
                    float(json.loads((runs[(agent, s)] / "progress.json").read_text()).get("wall_seconds", 0.0))
                    for s in range(seeds)
                ]
            )
            for agent in agents
        },
    }
    summary = jsonable(summary)
    atomic_write_json(out / "summary.json", summary)
    summary["curves"] = curve_rows
    return summary


class _OracleAllocator:
    def __init__(self, config):
        from provisioning.oracle import oracle_allocation

        self.config = config
        self._solve = oracle_allocation

    def allocate(self, state):
        result = self._solve(self.config, state)
        return result.trials, result.power
