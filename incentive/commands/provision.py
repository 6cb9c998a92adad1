"""``incentive provision``: train, evaluate and compare provisioning policies.

- ``train --agent {d3pg,ppo,sac,ddpg,td3} [--scenario S] [--steps N] [--seeds K] [--out DIR] [--resume]``
- ``evaluate --policy NAME [--episodes E] [--seed S] [--out FILE] [--scenario S] [--run DIR]``
  (no scenario and no run: the default scenario and the D3PG policy shipped in
  ``provisioning/trained``)
- ``compare [--scenario S] [--steps N] [--seeds K] [--out DIR]``: trains (or loads/resumes) every
  learner over the seeds, evaluates all policies on held-out states and writes the learning
  curves and converged utilities (CSV + PNG, like the paper's Figs. 14-15).

Cheap to import: the agent registry only; torch, SB3 and matplotlib are imported inside the functions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from incentive import args as types
from incentive.args import no_action as _no_action
from provisioning.agents.registry import BASELINE_POLICIES, available_agents

AGENT_CHOICES = available_agents()
POLICY_CHOICES = AGENT_CHOICES + BASELINE_POLICIES
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
    evaluate.add_argument("--best-of-k", type=types.count(1, 1024), default=None,
                          help="D3PG: K of the best-of-K evaluation ranked by the critic (default: the policy's config)")
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

    parser.set_defaults(func=lambda args: _no_action("provision", ("train", "evaluate", "compare", "ship")))


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


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _warn_short_budget(agents, steps: int) -> None:
    """Say before training when a budget does not go past an agent's random warm-up."""
    from provisioning.agents.registry import get
    from provisioning.training import warmup_warning

    for agent in agents:
        message = warmup_warning(agent, get(agent).make_config(), steps)
        if message:
            _warn(message)


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
    _warn_short_budget([args.agent], args.steps)
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


def evaluate_report(
    policy_name: str,
    scenario: Path,
    *,
    run: Path | None = None,
    episodes: int = DEFAULT_EVAL_STATES,
    seed: int | None = None,
    best_of_k: int | None = None,
) -> dict:
    """The evaluation JSON of ``incentive provision evaluate``: the protocol of
    :func:`provisioning.evaluation.evaluation_report` with the command's arguments."""
    from provisioning.evaluation import TEST_STATES_SEED, EvaluationProtocol, evaluation_report

    protocol = EvaluationProtocol(episodes=episodes, state_seed=TEST_STATES_SEED if seed is None else seed,
                                  best_of_k=best_of_k)
    return evaluation_report(policy_name, scenario, run=run, protocol=protocol)


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
        best_of_k=None if args.best_of_k is None else _positive(args.best_of_k, "--best-of-k"),
    )
    text = json.dumps(report, indent=2)
    print(text)
    for note in report.get("notes", []):
        _warn(note)
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
    report = evaluate_report("d3pg", scenario, episodes=_positive(args.episodes, "--episodes"))
    card.update(
        {
            "held_out_states": report["held_out_states"],
            "held_out_seed": report["held_out_seed"],
            "fraction_of_oracle": report["fraction_of_oracle"],
            "fraction_of_oracle_spread_over_sampling_seeds": report["fraction_of_oracle_spread"],
            "best_of_k": report.get("best_of_k"),
            "best_of_k_fraction_of_oracle": report.get("best_of_k_fraction_of_oracle"),
            "static_fraction_of_oracle": report["static_fraction_of_oracle"],
            "random_fraction_of_oracle": report["random_fraction_of_oracle"],
            "evaluate_command": "incentive provision evaluate --policy d3pg",
        }
    )
    atomic_write_json(shipped_card_path(problem.name), card)
    print(json.dumps(card, indent=2))
    return 0


# --------------------------------------------------------------------------- compare


def run_compare(args) -> int:
    _setup_threads()
    from market.errors import UserError
    from provisioning.comparison import run_comparison, write_plots
    from provisioning.evaluation import format_spread

    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    bad = [a for a in agents if a not in AGENT_CHOICES]
    if bad:
        raise UserError(f"--agents: unknown learner(s) {bad}; choose from {', '.join(AGENT_CHOICES)}")
    scenario = _resolve_scenario(args.scenario)
    out = Path(args.out) if args.out is not None else Path("runs") / "provision-compare" / scenario.stem
    out = _claim_run_folder(out, "provision compare", {"scenario": str(scenario)}, args.overwrite,
                            adopt=lambda folder: _holds_comparison(folder))
    seeds, steps = _positive(args.seeds, "--seeds"), _positive(args.steps, "--steps")
    _warn_short_budget(agents, steps)
    summary = run_comparison(
        scenario,
        out,
        agents=agents,
        seeds=seeds,
        steps=steps,
        episodes=_positive(args.episodes, "--episodes"),
        eval_every=_positive(args.eval_every, "--eval-every"),
        eval_states=_positive(args.eval_states, "--eval-states"),
        progress=not args.no_progress,
    )
    notes = write_plots(out, summary)
    for name, row in summary["policies"].items():
        print(f"{name:14s} fraction of oracle {format_spread(row['fraction_of_oracle'])}")
    print(f"wrote {out}/summary.json, curves.csv, converged.csv, decisions.csv, learning_curves.png, converged_utility.png")
    for message in summary.get("warnings", []) + notes:
        _warn(message)
    return 0
