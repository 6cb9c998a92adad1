"""``incentive provision``: train, evaluate and compare provisioning policies.

- ``train --agent {d3pg,ppo,sac,ddpg,td3} [--scenario S] [--steps N] [--seeds K] [--out DIR] [--resume]``
- ``evaluate --policy NAME [--episodes E] [--seed S] [--out FILE] [--scenario S] [--run DIR]``
  (no scenario and no run: the default scenario and the D3PG policy shipped in
  ``provisioning/trained``)
- ``compare [--scenario S] [--steps N] [--seeds K] [--out DIR]``: trains (or loads/resumes) every
  learner over the seeds, evaluates all policies on held-out states and writes the learning
  curves and converged utilities (CSV + PNG, like the paper's Figs. 14-15).

Cheap to import: torch, SB3 and matplotlib are imported inside the functions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from incentive import args as types

AGENT_CHOICES = ("d3pg", "ppo", "sac", "ddpg", "td3")
POLICY_CHOICES = AGENT_CHOICES + ("static", "random", "oracle")
DEFAULT_STEPS = 3000
DEFAULT_EVAL_STATES = 256


def register(subparsers) -> None:
    parser = subparsers.add_parser("provision", help="train, evaluate and compare provisioning policies")
    sub = parser.add_subparsers(dest="provision_command", metavar="ACTION")

    train = sub.add_parser("train", help="train a learner (seeds in sequence), with checkpoints and --resume")
    train.add_argument("--agent", required=True, choices=AGENT_CHOICES)
    train.add_argument("--scenario", help="provisioning scenario file or name (default: the default scenario)")
    train.add_argument("--steps", type=types.count(1, 10**9), default=DEFAULT_STEPS, help=f"environment steps per seed (default {DEFAULT_STEPS})")
    train.add_argument("--seeds", type=types.count(1, 10_000), default=1, help="number of seeds 0..K-1 (default 1)")
    train.add_argument("--first-seed", type=types.count(0, 2**62), default=0, help="first seed (default 0)")
    train.add_argument("--out", help="output folder (default runs/provision/<scenario>/<agent>)")
    train.add_argument("--resume", action="store_true", help="continue interrupted runs in --out")
    train.add_argument("--eval-every", type=types.count(1, 10**9), default=500, help="evaluation/checkpoint interval in steps")
    train.add_argument("--eval-states", type=types.count(1, 10**6), default=64, help="validation states for the learning curve")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--overwrite", action="store_true",
                       help="empty an --out folder that holds something else first (otherwise it is refused)")
    train.set_defaults(func=run_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a policy on held-out states against the oracle")
    evaluate.add_argument("--policy", required=True, choices=POLICY_CHOICES)
    evaluate.add_argument("--scenario", help="provisioning scenario file or name (default: the default scenario)")
    evaluate.add_argument("--run", help="a training output folder (with seed_* runs); default for d3pg: the shipped policy")
    evaluate.add_argument("--episodes", type=types.count(1, 10**6), default=DEFAULT_EVAL_STATES, help="held-out states (default 256)")
    evaluate.add_argument("--seed", type=types.seed, default=None, help="seed of the held-out states (default: the fixed test seed)")
    evaluate.add_argument("--best-of-k", type=types.count(1, 1024), default=None, help="D3PG: K of the best-of-K evaluation ranked by the critic (default 16)")
    evaluate.add_argument("--out", help="write the JSON here (atomically); it is always printed")
    evaluate.set_defaults(func=run_evaluate)

    compare = sub.add_parser("compare", help="train or load every policy over seeds; curves, converged utilities (CSV+PNG)")
    compare.add_argument("--scenario", help="provisioning scenario file or name (default: the default scenario)")
    compare.add_argument("--steps", type=types.count(1, 10**9), default=DEFAULT_STEPS, help=f"environment steps per run (default {DEFAULT_STEPS})")
    compare.add_argument("--seeds", type=types.count(1, 10_000), default=5, help="seeds per learner (default 5)")
    compare.add_argument("--agents", default=",".join(AGENT_CHOICES), help="comma-separated learners (default all)")
    compare.add_argument("--out", help="output folder (default runs/provision-compare/<scenario>)")
    compare.add_argument("--episodes", type=types.count(1, 10**6), default=DEFAULT_EVAL_STATES, help="held-out states (default 256)")
    compare.add_argument("--eval-every", type=types.count(1, 10**9), default=500)
    compare.add_argument("--eval-states", type=types.count(1, 10**6), default=64)
    compare.add_argument("--no-progress", action="store_true")
    compare.add_argument("--overwrite", action="store_true",
                         help="empty an --out folder that holds something else first (otherwise it is refused)")
    compare.set_defaults(func=run_compare)

    ship = sub.add_parser("ship", help="copy a finished D3PG run into provisioning/trained with a measured card")
    ship.add_argument("--run", required=True, help="a finished d3pg run folder (with policy.safetensors)")
    ship.add_argument("--command", required=True, help="the command that trained the run (recorded on the card)")
    ship.add_argument("--note", default="", help="how the run was chosen, recorded on the card")
    ship.add_argument("--episodes", type=types.count(1, 10**6), default=DEFAULT_EVAL_STATES, help="held-out states for the card (default 256)")
    ship.set_defaults(func=run_ship)

    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


# --------------------------------------------------------------------------- helpers


def _resolve_scenario(name_or_path: str | None) -> Path:
    from market.errors import UserError
    from provisioning.scenario import default_provisioning_scenario_path, provisioning_scenarios_dir

    if name_or_path is None:
        return Path(default_provisioning_scenario_path())
    path = Path(name_or_path)
    if path.is_file():
        return path
    named = provisioning_scenarios_dir() / f"{name_or_path}.toml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in provisioning_scenarios_dir().glob("*.toml"))
    raise UserError(f"{name_or_path}: no such provisioning scenario file or name (known names: {', '.join(known)})")


def _positive(value: int, flag: str) -> int:
    from market.errors import UserError

    if value is None or value < 1:
        raise UserError(f"{flag} must be a positive integer, got {value}")
    return value


def _claim_run_folder(out: Path, command: str, identity: dict, overwrite: bool, adopt) -> Path:
    """Check a resumable output folder by the policy of :mod:`incentive.outdir` and open it."""
    from incentive.outdir import check_output_dir, open_run_dir

    return open_run_dir(check_output_dir(out, command=command, identity=identity, overwrite=overwrite,
                                         what=f"`incentive {command}` run", adopt=adopt))


def _holds_training_runs(folder: Path, agent: str) -> bool:
    """A folder written by ``provision train`` before markers existed: only ``seed_*`` runs of ``agent``."""
    import json

    entries = [p for p in folder.iterdir() if p.name != ".incentive.json"]
    return bool(entries) and all(
        p.is_dir() and p.name.startswith("seed_")
        and json.loads((p / "train_config.json").read_text()).get("agent") == agent for p in entries)


def _holds_comparison(folder: Path) -> bool:
    """A folder written by ``provision compare`` before markers existed (only its own file names)."""
    known = {*AGENT_CHOICES, "summary.json", "curves.csv", "converged.csv", "decisions.csv", "learning_curves.png",
             "converged_utility.png", ".incentive.json"}
    return all(p.name in known for p in folder.iterdir())


def _setup_threads() -> None:
    import torch

    torch.set_num_threads(1)


# --------------------------------------------------------------------------- train


def run_train(args) -> int:
    _setup_threads()
    from provisioning.training import TrainConfig, Validation, problem_from_scenario, train

    _positive(args.steps, "--steps")
    _positive(args.seeds, "--seeds")
    scenario = _resolve_scenario(args.scenario)
    problem = problem_from_scenario(scenario)
    out = Path(args.out) if args.out is not None else Path("runs") / "provision" / problem.name / args.agent
    out = _claim_run_folder(out, "provision train", {"agent": args.agent, "scenario": str(scenario)}, args.overwrite,
                            adopt=lambda folder: _holds_training_runs(folder, args.agent))
    validation = Validation(problem, _positive(args.eval_states, "--eval-states"))
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        config = TrainConfig(
            agent=args.agent,
            total_steps=args.steps,
            seed=seed,
            eval_every=_positive(args.eval_every, "--eval-every"),
            eval_states=args.eval_states,
            scenario=str(scenario),
        )
        result = train(
            problem, config, out / f"seed_{seed}", resume=args.resume, progress=not args.no_progress, validation=validation
        )
        last = result.curve[-1]["fraction_of_oracle"] if result.curve else float("nan")
        print(f"{args.agent} seed {seed}: {result.steps_done} steps, validation fraction of oracle {last:.4f} -> {result.run_dir}")
    return 0


# --------------------------------------------------------------------------- evaluate


def _seed_dirs(run: Path) -> list[Path]:
    if (run / "progress.json").is_file():
        return [run]
    return sorted(p for p in run.glob("seed_*") if (p / "progress.json").is_file())


def evaluate_report(
    policy_name: str,
    scenario: Path,
    *,
    run: Path | None = None,
    episodes: int = DEFAULT_EVAL_STATES,
    seed: int | None = None,
    best_of_k: int | None = None,
) -> dict:
    """The evaluation JSON of ``incentive provision evaluate`` (see ``docs/learners.md``)."""
    import numpy as np

    from market.errors import MissingArtifactError, UserError
    from provisioning.evaluation import TEST_STATES_SEED, ActionPolicy, evaluate_policy, held_out_states, oracle_utilities, spread
    from provisioning.trained import file_sha256, read_card, shipped_policy_path
    from provisioning.training import jsonable, load_trained_policy, problem_from_scenario

    problem = problem_from_scenario(scenario)
    env = problem.make_env(None)
    state_seed = TEST_STATES_SEED if seed is None else int(seed)
    states = held_out_states(env, episodes, state_seed)
    oracle_values = oracle_utilities(problem.oracle_utility, states)
    static = evaluate_policy(env, problem.make_static(), states, oracle_values, name="static")
    random_runs = [evaluate_policy(env, problem.make_random(s), states, oracle_values, name="random") for s in range(5)]
    report: dict = {
        "policy": policy_name,
        "scenario": str(scenario),
        "scenario_sha256": file_sha256(scenario),
        "held_out_states": episodes,
        "held_out_seed": state_seed,
        "oracle_mean_utility": float(np.mean(oracle_values)),
        "static_fraction_of_oracle": static.fraction_of_oracle,
        "random_fraction_of_oracle": spread([r.fraction_of_oracle for r in random_runs])["mean"],
        "static": static.summary(),
    }
    evaluations = []
    notes = []
    if policy_name == "static":
        evaluations = [static]
    elif policy_name == "random":
        evaluations = random_runs
    elif policy_name == "oracle":
        evaluations = [
            evaluate_policy(
                env, _OraclePolicy(problem), states, oracle_values, name="oracle"
            )
        ]
    elif run is None:
        if policy_name != "d3pg":
            raise UserError(f"--policy {policy_name} needs --run DIR (a folder written by `incentive provision train`)")
        from provisioning.agents.d3pg import D3PGPolicy

        path = shipped_policy_path(problem.name)
        if not path.is_file():
            raise MissingArtifactError(
                f"{path}: no shipped D3PG policy for scenario '{problem.name}'; train one with "
                f"`incentive provision train --agent d3pg --scenario {scenario}` and pass --run"
            )
        card = read_card(problem.name)
        if card.get("scenario_sha256") and card["scenario_sha256"] != report["scenario_sha256"]:
            notes.append("the scenario file changed since the shipped policy was trained (SHA-256 differs from its card)")
        report["shipped_card"] = card
        report["policy_file"] = str(path)
        for s in range(5):  # sampling seeds: spread of the one-sample evaluation
            pol = D3PGPolicy.load(path, seed=1000 + s)
            evaluations.append(evaluate_policy(env, pol, states, oracle_values, name="d3pg"))
        k = best_of_k or 16
        pol = D3PGPolicy.load(path, seed=1000)
        bok = evaluate_policy(env, ActionPolicy(lambda o: pol.act_best_of_k(o, k)), states, oracle_values, name="d3pg-best-of-k")
        report["best_of_k"] = k
        report["best_of_k_fraction_of_oracle"] = bok.fraction_of_oracle
        report["best_of_k_evaluation"] = bok.summary()
    else:
        dirs = _seed_dirs(run)
        best_runs = []
        if not dirs:
            raise MissingArtifactError(f"{run}: no training runs here (expected progress.json or seed_*/progress.json)")
        for d in dirs:
            try:
                pol = load_trained_policy(d, policy_name, env=None, seed=1000)
            except MissingArtifactError:
                notes.append(f"{d}: unfinished (no final policy); resume it with --resume")
                continue
            evaluations.append(evaluate_policy(env, pol, states, oracle_values, name=policy_name))
            if policy_name == "d3pg":
                k = best_of_k or 16
                pol.reseed(1000)
                best_runs.append(
                    evaluate_policy(env, ActionPolicy(lambda o, p=pol: p.act_best_of_k(o, k)), states, oracle_values, name="d3pg-best-of-k")
                )
        if best_runs:
            report["best_of_k"] = best_of_k or 16
            report["best_of_k_fraction_of_oracle"] = spread([b.fraction_of_oracle for b in best_runs])["mean"]
            report["best_of_k_fraction_of_oracle_spread"] = spread([b.fraction_of_oracle for b in best_runs])
        if not evaluations:
            raise MissingArtifactError(f"{run}: no finished {policy_name} run (train with `incentive provision train --resume`)")
    fractions = [e.fraction_of_oracle for e in evaluations]
    report.update(
        {
            "fraction_of_oracle": spread(fractions)["mean"],
            "fraction_of_oracle_spread": spread(fractions),
            "mean_utility": spread([e.mean_utility for e in evaluations])["mean"],
            "mean_qoe": spread([e.mean_qoe for e in evaluations])["mean"],
            "mean_cost": spread([e.mean_cost for e in evaluations])["mean"],
            "mean_trials": spread([e.mean_trials for e in evaluations])["mean"],
            "evaluations": [e.summary() for e in evaluations],
            "notes": notes,
        }
    )
    return jsonable(report)


class _OraclePolicy:
    """The oracle as a policy (``allocate``)."""

    def __init__(self, problem):
        from provisioning.oracle import oracle_allocation
        from provisioning.scenario import load_provisioning_scenario

        self.config = load_provisioning_scenario(problem.scenario_path)
        self._solve = oracle_allocation

    def allocate(self, state):
        result = self._solve(self.config, state)
        return result.trials, result.power


def run_evaluate(args) -> int:
    _setup_threads()
    import json

    from market.atomic import atomic_write_json

    if args.out is not None:
        from incentive.outdir import check_output_file

        check_output_file(args.out)  # before evaluating: a bad path must not cost the result
    scenario = _resolve_scenario(args.scenario)
    report = evaluate_report(
        args.policy,
        scenario,
        run=Path(args.run) if args.run else None,
        episodes=_positive(args.episodes, "--episodes"),
        seed=args.seed,
        best_of_k=args.best_of_k,
    )
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        atomic_write_json(args.out, report)
    return 0


# --------------------------------------------------------------------------- ship


def run_ship(args) -> int:
    """Copy ``--run``'s policy to ``provisioning/trained/d3pg-<scenario>.safetensors`` and write
    its card with the fraction of the oracle measured on held-out states."""
    _setup_threads()
    import json
    from datetime import datetime, timezone

    from market.atomic import atomic_write_bytes, atomic_write_json
    from market.errors import MissingArtifactError
    from provisioning.trained import file_sha256, shipped_card_path, shipped_policy_path
    from provisioning.training import problem_from_scenario

    run = Path(args.run)
    policy_file = run / "policy.safetensors"
    if not policy_file.is_file():
        raise MissingArtifactError(f"{policy_file}: not a finished d3pg run")
    train_config = json.loads((run / "train_config.json").read_text())
    progress = json.loads((run / "progress.json").read_text())
    scenario = Path(train_config["scenario"])
    problem = problem_from_scenario(scenario)
    target = shipped_policy_path(problem.name)
    atomic_write_bytes(target, policy_file.read_bytes())
    card = {
        "agent": "d3pg",
        "scenario": problem.name,
        "scenario_sha256": file_sha256(scenario),
        "command": args.command,
        "note": args.note,
        "steps": int(progress["steps_done"]),
        "seed": int(train_config["seed"]),
        "d3pg_config": json.loads((run / "d3pg_config.json").read_text()),
        "training_wall_seconds": progress.get("wall_seconds"),
        "validation_curve": [(c["step"], c["fraction_of_oracle"]) for c in progress.get("curve", [])],
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    atomic_write_json(shipped_card_path(problem.name), card)  # evaluate_report reads the card
    report = evaluate_report("d3pg", scenario, episodes=_positive(args.episodes, "--episodes"), best_of_k=16)
    card.update(
        {
            "held_out_states": report["held_out_states"],
            "held_out_seed": report["held_out_seed"],
            "fraction_of_oracle": report["fraction_of_oracle"],
            "fraction_of_oracle_spread_over_sampling_seeds": report["fraction_of_oracle_spread"],
            "best_of_16_fraction_of_oracle": report.get("best_of_k_fraction_of_oracle"),
            "static_fraction_of_oracle": report["static_fraction_of_oracle"],
            "random_fraction_of_oracle": report["random_fraction_of_oracle"],
            "evaluate_command": "incentive provision evaluate --policy d3pg --best-of-k 16",
        }
    )
    atomic_write_json(shipped_card_path(problem.name), card)
    print(json.dumps(card, indent=2))
    return 0


# --------------------------------------------------------------------------- compare


def run_compare(args) -> int:
    _setup_threads()
    from market.errors import UserError
    from provisioning.comparison import run_comparison

    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    bad = [a for a in agents if a not in AGENT_CHOICES]
    if bad:
        raise UserError(f"--agents: unknown learner(s) {bad}; choose from {', '.join(AGENT_CHOICES)}")
    scenario = _resolve_scenario(args.scenario)
    out = Path(args.out) if args.out is not None else Path("runs") / "provision-compare" / scenario.stem
    out = _claim_run_folder(out, "provision compare", {"scenario": str(scenario)}, args.overwrite,
                            adopt=lambda folder: _holds_comparison(folder))
    summary = run_comparison(
        scenario,
        out,
        agents=agents,
        seeds=_positive(args.seeds, "--seeds"),
        steps=_positive(args.steps, "--steps"),
        episodes=_positive(args.episodes, "--episodes"),
        eval_every=_positive(args.eval_every, "--eval-every"),
        eval_states=_positive(args.eval_states, "--eval-states"),
        progress=not args.no_progress,
    )
    write_plots(out, summary)
    for name, row in summary["policies"].items():
        s = row["fraction_of_oracle"]
        print(f"{name:8s} fraction of oracle {s['mean']:.4f} +/- {s['std']:.4f} (n={s['n']}, min {s['min']:.4f})")
    print(f"wrote {out}/summary.json, curves.csv, converged.csv, decisions.csv, learning_curves.png, converged_utility.png")
    return 0


def write_plots(out: Path, summary: dict) -> None:
    """``learning_curves.png`` (validation fraction of the oracle vs steps, mean and range over
    seeds, with static and random levels) and ``converged_utility.png`` (held-out fraction of the
    oracle per policy, one dot per seed)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from market.atomic import atomic_write_bytes

    policies = summary["policies"]
    colors = {"d3pg": "tab:red", "ppo": "tab:blue", "sac": "tab:green", "ddpg": "tab:purple", "td3": "tab:orange"}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rows = summary.get("curves", [])
    for agent in summary["agents"]:
        per_seed: dict[int, list[tuple[int, float]]] = {}
        for a, seed, step, fraction, _utility in rows:
            if a == agent and fraction is not None:
                per_seed.setdefault(int(seed), []).append((int(step), float(fraction)))
        if not per_seed:
            continue
        # runs resumed after an interruption evaluate at odd steps: put every seed on one grid
        first = min(min(s for s, _ in pts) for pts in per_seed.values())
        last = min(max(s for s, _ in pts) for pts in per_seed.values())
        steps = np.linspace(first, last, 60)
        curves = []
        for pts in per_seed.values():
            pts.sort()
            curves.append(np.interp(steps, [s for s, _ in pts], [f for _, f in pts]))
        curves = np.array(curves)
        mean, low, high = curves.mean(0), curves.min(0), curves.max(0)
        ax.plot(steps, mean, label=agent.upper(), color=colors.get(agent))
        ax.fill_between(steps, low, high, alpha=0.15, color=colors.get(agent))
    for name, style in (("static", "--"), ("random", ":")):
        if name in policies:
            ax.axhline(policies[name]["fraction_of_oracle"]["mean"], ls=style, color="gray", label=name)
    ax.axhline(1.0, color="black", lw=0.8, label="oracle")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("utility / oracle utility (validation states)")
    ax.set_ylim(max(-0.5, ax.get_ylim()[0]), 1.05)
    ax.set_title(f"Learning curves ({summary['seeds']} seeds: mean and range, linear between evaluations)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(out / "learning_curves.png", buffer.getvalue())

    order = [n for n in ("oracle", "d3pg-best-of-k", "d3pg", "ppo", "sac", "ddpg", "td3", "static", "random") if n in policies]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, name in enumerate(order):
        s = policies[name]["fraction_of_oracle"]
        ax.bar(i, s["mean"], color=colors.get(name.split("-")[0], "lightgray"), alpha=0.6)
        ax.errorbar(i, s["mean"], yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]], color="black", capsize=4)
        ax.text(i, min(max(s["mean"], 0), 1.0) + 0.02, f"{s['mean']:.3f}", ha="center", fontsize=8)
    ax.set_xticks(range(len(order)), [n.upper() if n in colors else n for n in order], rotation=20, fontsize=8)
    ax.set_ylabel("utility / oracle utility (held-out states)")
    ax.axhline(0.95, ls="--", color="gray", lw=0.8)
    lowest = min(policies[n]["fraction_of_oracle"]["min"] for n in order)
    ax.set_ylim(max(min(-0.1, lowest - 0.05), -1.0), 1.1)  # bars below -1 are cut; their values are printed
    ax.set_title(f"Converged utility: mean, range over {summary['seeds']} seeds")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(out / "converged_utility.png", buffer.getvalue())
