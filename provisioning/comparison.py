"""Compare every provisioning policy over seeds: the data and figures of the paper's Figs. 14-15.

What this module is for: train (or load finished / resume unfinished) the learners of
:mod:`provisioning.agents.registry` for the same budget of environment steps and the same seeds,
evaluate every policy (plus static, random and the oracle) on the same held-out states with the
protocol of :mod:`provisioning.evaluation`, and write

- ``curves.csv``: agent, seed, step, validation fraction of the oracle and mean utility
  (learning curves, Fig. 14 left);
- ``converged.csv``: one row per policy and seed on the held-out test states (Fig. 14 right);
- ``decisions.csv``: trials and power share per user of each policy in the paper's Fig. 15
  example state (``provisioning.state.paper_example_state``; the first held-out state for
  scenarios with another number of users);
- ``summary.json``: per-policy spread over seeds, D3PG's relative improvement over SAC and PPO
  in utility and in QoE (the paper's +67.8% / +7.0% claims), and warnings (a budget shorter
  than an agent's warm-up, a single seed);
- ``learning_curves.png`` and ``converged_utility.png`` (:func:`write_plots`), which never hide a
  policy: when a value falls below the linear range the y axis becomes symmetric-logarithmic
  and the figure says so.

Runs are trained seed by seed (all agents for seed 0, then seed 1, ...) so that a comparison
stopped early still holds complete seeds; every run checkpoints and resumes.

May import: ``market`` (atomic IO, errors), numpy, matplotlib (lazily) and the rest of
``provisioning``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from market.atomic import atomic_write_csv, atomic_write_json, atomic_write_png, json_ready
from provisioning.agents.registry import get as get_agent
from provisioning.evaluation import (
    TEST_STATES_SEED,
    decide,
    evaluate_policy,
    held_out_states,
    oracle_utilities,
    problem_from_scenario,
    sampling_seed,
    spread,
)
from provisioning.policies import BestOfK
from provisioning.training import TrainConfig, Validation, train, warmup_warning

#: Order of the policies in tables and bar charts.
POLICY_ORDER = ("oracle", "d3pg-best-of-k", "d3pg", "ppo", "sac", "ddpg", "td3", "static", "random")
COLORS = {"d3pg": "tab:red", "ppo": "tab:blue", "sac": "tab:green", "ddpg": "tab:purple", "td3": "tab:orange"}


def _relative(a: float, b: float) -> float:
    """``(a - b) / |b|``: relative improvement of ``a`` over ``b``."""
    return float((a - b) / abs(b)) if abs(b) > 1e-12 else float("nan")


def _train_all(problem, scenario, out: Path, agents, seeds, steps, eval_every, eval_states, progress, d3pg_config):
    """Train (or load / resume) every (agent, seed) run; returns their folders and warnings."""
    validation = Validation(problem, eval_states)
    runs: dict[tuple[str, int], Path] = {}
    warnings: list[str] = []
    for seed in range(seeds):
        for agent in agents:
            config = TrainConfig(agent=agent, total_steps=steps, seed=seed, eval_every=eval_every,
                                 eval_states=eval_states, scenario=str(scenario))
            run_dir = out / agent / f"seed_{seed}"
            learner_config = d3pg_config if agent == "d3pg" else None
            result = train(problem, config, run_dir, learner_config=learner_config, resume=True, progress=progress,
                           validation=validation)
            warnings += [w for w in result.warnings if w not in warnings]
            runs[(agent, seed)] = run_dir
    if seeds == 1:
        warnings.append("one seed per learner (n=1): the table has no spread over seeds; use --seeds 5")
    return runs, warnings


def _decision_rows(problem, env, policies: dict, state) -> list[list]:
    """Fig. 15: each policy's trials and power share per user in one state."""
    rows = []
    for name, policy in policies.items():
        trials, power = decide(env, policy, state)
        outcome = env.evaluate(state, trials, power)
        for user in range(len(trials)):
            rows.append([name, user, float(state.quality_threshold[user]), float(state.difficulty[user]),
                         float(state.distance_m[user]), int(trials[user]), float(power[user] / state.p_total_w),
                         float(outcome.expected_qoe[user]), float(outcome.reward)])
    return rows


def _claims(policies: dict) -> dict:
    """D3PG against SAC and PPO (the paper's claims) and against every baseline's mean."""
    claims = {}
    if "d3pg" not in policies:
        return claims
    for base in ("sac", "ppo"):
        if base in policies:
            claims[f"d3pg_over_{base}_utility"] = _relative(policies["d3pg"]["mean_utility"]["mean"],
                                                            policies[base]["mean_utility"]["mean"])
            claims[f"d3pg_over_{base}_qoe"] = _relative(policies["d3pg"]["mean_qoe"]["mean"], policies[base]["mean_qoe"]["mean"])
    baselines = [n for n in policies if n not in ("d3pg", "d3pg-best-of-k", "oracle")]
    claims["d3pg_above_every_baseline_mean"] = all(
        policies["d3pg"]["fraction_of_oracle"]["mean"] > policies[n]["fraction_of_oracle"]["mean"] for n in baselines)
    return claims


def run_comparison(scenario: str | Path, out: str | Path, *, agents: list[str], seeds: int = 5, steps: int = 3000,
                   episodes: int = 256, eval_every: int = 500, eval_states: int = 64, progress: bool = True,
                   d3pg_config=None) -> dict:
    """Train/load all ``agents`` x ``seeds`` and evaluate; returns the summary (also written).

    Parameters
    ----------
    scenario : path
        Provisioning scenario file.
    out : path
        Output folder (runs in ``<out>/<agent>/seed_<k>``).
    agents : list of str
        Learners of the registry.
    seeds, steps : int
        Seeds 0..seeds-1 and the environment-step budget of every run.
    episodes : int
        Held-out test states for the converged utilities.
    eval_every, eval_states : int
        Learning-curve interval and validation states.
    d3pg_config : D3PGConfig, optional
        D3PG's configuration (default: the registry's).
    """
    out = Path(out)
    problem = problem_from_scenario(scenario)
    runs, warnings = _train_all(problem, scenario, out, agents, seeds, steps, eval_every, eval_states, progress, d3pg_config)

    env = problem.make_env(None)
    states = held_out_states(env, episodes, TEST_STATES_SEED)
    oracle_values = oracle_utilities(problem.oracle_utility, states)
    oracle = problem.baseline("oracle")
    evaluations: dict[str, list] = {
        "oracle": [evaluate_policy(env, oracle, states, oracle_values)],
        "static": [evaluate_policy(env, problem.baseline("static"), states, oracle_values)],
        "random": [evaluate_policy(env, problem.baseline("random", seed), states, oracle_values) for seed in range(seeds)],
    }
    decision_policies = {"oracle": oracle, "static": problem.baseline("static"), "random": problem.baseline("random", 0)}
    curve_rows = []
    for (agent, seed), run_dir in runs.items():
        spec = get_agent(agent)
        policy = spec.load_policy(run_dir, seed=sampling_seed(seed))
        evaluations.setdefault(agent, []).append(evaluate_policy(env, policy, states, oracle_values, name=agent))
        if seed == 0:
            decision_policies[agent] = spec.load_policy(run_dir, seed=sampling_seed(0))
        if spec.best_of_k:
            policy.reseed(sampling_seed(seed))
            best = evaluate_policy(env, BestOfK(policy), states, oracle_values, name=f"{agent}-best-of-k")
            evaluations.setdefault(f"{agent}-best-of-k", []).append(best)
        for point in json.loads((run_dir / "progress.json").read_text()).get("curve", []):
            curve_rows.append([agent, seed, point["step"], point.get("fraction_of_oracle"), point.get("mean_utility")])

    converged_rows = [[name, i, ev.fraction_of_oracle, ev.mean_utility, ev.mean_qoe, ev.mean_cost, ev.mean_trials]
                      for name, evs in evaluations.items() for i, ev in enumerate(evs)]
    from provisioning.state import paper_example_state

    example = paper_example_state()
    state = example if example.num_users == env.num_users else states[0]
    decision_rows = _decision_rows(problem, env, decision_policies, state)

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / "curves.csv", ["agent", "seed", "step", "fraction_of_oracle", "mean_utility"], curve_rows)
    atomic_write_csv(out / "converged.csv",
              ["policy", "seed", "fraction_of_oracle", "mean_utility", "mean_qoe", "mean_cost", "mean_trials"], converged_rows)
    atomic_write_csv(out / "decisions.csv", ["policy", "user", "quality_threshold", "difficulty", "distance_m", "trials",
                                      "power_share", "expected_qoe", "state_reward"], decision_rows)
    policies = {
        name: {key: spread([getattr(e, key) for e in evs]) for key in ("fraction_of_oracle", "mean_utility", "mean_qoe", "mean_cost")}
        for name, evs in evaluations.items()
    }
    summary = {
        "scenario": str(scenario), "agents": agents, "seeds": seeds, "steps": steps,
        "held_out_states": episodes, "held_out_seed": TEST_STATES_SEED,
        "oracle_mean_utility": float(np.mean(oracle_values)),
        "policies": policies,
        "paper_claims": {"paper_d3pg_over_sac_qoe": 0.678, "paper_d3pg_over_ppo_qoe": 0.070, **_claims(policies)},
        "decision_state": state.to_dict(),
        "wall_seconds": {
            agent: spread([float(json.loads((runs[(agent, s)] / "progress.json").read_text()).get("wall_seconds", 0.0))
                           for s in range(seeds)])
            for agent in agents
        },
        "warnings": warnings,
    }
    summary = json_ready(summary)
    atomic_write_json(out / "summary.json", summary)
    summary["curves"] = curve_rows
    return summary


# --------------------------------------------------------------------------- figures


#: The y range shown linearly; values outside it switch the axis to symlog (nothing is cut).
LINEAR_FLOOR = -0.5


def _y_axis(ax, values, top: float) -> str | None:
    """Linear y axis down to :data:`LINEAR_FLOOR`; symlog below it. Returns the note to print."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    lowest = min(finite) if finite else 0.0
    if lowest >= LINEAR_FLOOR:
        ax.set_ylim(min(LINEAR_FLOOR, lowest - 0.05), top)
        return None
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(lowest * 2.0, top)  # room for the value printed under the lowest bar
    return f"y axis symmetric-log below -1 (lowest value {lowest:.3g}): nothing is cut"


def _learning_curves(summary: dict):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    shown = []
    for agent in summary["agents"]:
        per_seed: dict[int, list[tuple[int, float]]] = {}
        for a, seed, step, fraction, _utility in summary.get("curves", []):
            if a == agent and fraction is not None:
                per_seed.setdefault(int(seed), []).append((int(step), float(fraction)))
        if not per_seed:
            continue
        first = min(min(s for s, _ in pts) for pts in per_seed.values())
        last = min(max(s for s, _ in pts) for pts in per_seed.values())
        steps = np.linspace(first, last, 60)
        curves = np.array([np.interp(steps, *zip(*sorted(pts))) for pts in per_seed.values()])
        ax.plot(steps, curves.mean(0), label=agent.upper(), color=COLORS.get(agent))
        ax.fill_between(steps, curves.min(0), curves.max(0), alpha=0.15, color=COLORS.get(agent))
        shown += list(curves.min(0))
    policies = summary["policies"]
    for name, style in (("static", "--"), ("random", ":")):
        if name in policies:
            ax.axhline(policies[name]["fraction_of_oracle"]["mean"], ls=style, color="gray", label=name)
            shown.append(policies[name]["fraction_of_oracle"]["mean"])
    ax.axhline(1.0, color="black", lw=0.8, label="oracle")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("utility / oracle utility (validation states)")
    note = _y_axis(ax, shown, 1.05)
    seeds = summary["seeds"]
    ax.set_title(f"Learning curves ({seeds} seed{'s' if seeds > 1 else ''}: mean and range, linear between evaluations)")
    ax.legend(fontsize=8, loc="lower right")
    return fig, note


def _converged_bars(summary: dict):
    import matplotlib.pyplot as plt

    policies = summary["policies"]
    order = [n for n in POLICY_ORDER if n in policies]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, name in enumerate(order):
        s = policies[name]["fraction_of_oracle"]
        ax.bar(i, s["mean"], color=COLORS.get(name.split("-")[0], "lightgray"), alpha=0.6)
        if s["n"] > 1:
            ax.errorbar(i, s["mean"], yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]], color="black", capsize=4)
        ax.annotate(f"{s['mean']:.3f}", (i, s["mean"]), xytext=(0, 3 if s["mean"] >= 0 else -10),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(range(len(order)), [n.upper() if n in COLORS else n for n in order], rotation=20, fontsize=8)
    ax.set_ylabel("utility / oracle utility (held-out states)")
    ax.axhline(0.95, ls="--", color="gray", lw=0.8)
    note = _y_axis(ax, [policies[n]["fraction_of_oracle"]["min"] for n in order], 1.1)
    seeds = summary["seeds"]
    ax.set_title(f"Converged utility: mean, range over {seeds} seeds" if seeds > 1
                 else "Converged utility: one seed (n=1, no spread)")
    return fig, note


def write_plots(out: str | Path, summary: dict) -> list[str]:
    """``learning_curves.png`` and ``converged_utility.png``; returns the notes the figures carry
    (a symlog axis, ...), which the caller prints."""
    import matplotlib

    matplotlib.use("Agg")
    notes = []
    for name, build in (("learning_curves.png", _learning_curves), ("converged_utility.png", _converged_bars)):
        fig, note = build(summary)
        if note:
            fig.text(0.01, -0.01, note, fontsize=7, color="dimgray", va="top")  # below the x label
            notes.append(f"{name}: {note}")
        atomic_write_png(Path(out) / name, fig)
    return notes
