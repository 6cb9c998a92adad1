"""``incentive stress``: is the scenario's equilibrium unique, what moves it, how robust is it.

    incentive stress SCENARIO [--starts K] [--perturb FIELD=REL ...] [--samples N] [--seed S]
                     [--out DIR] [--overwrite] [--solver NAME] [--workers W] [--no-sensitivity]
                     [--worst-by OUTCOME] [--quiet]

Runs ``incentive.stress.run_stress`` (uniqueness probe, sensitivity, robustness) with a
progress bar per step and writes the report folder whole or not at all. Exit code 0 when the
report is written and the reference equilibrium is certified, 1 when it is not certified
(the report is still written), 2 on bad input (an unknown --perturb field, a bad scenario
file, an --out the output policy of ``incentive.outdir`` refuses: an existing non-empty
folder is replaced only with --overwrite or when it holds the same stress run). Cheap to import.

May import: everything (it is part of ``incentive``).
"""
from __future__ import annotations


def register(subparsers) -> None:
    """Add the ``stress`` parser."""
    p = subparsers.add_parser("stress", help="stress-test an equilibrium: uniqueness, sensitivity, robustness",
                              description="Stress-test a scenario's equilibrium: a multi-start uniqueness probe, "
                                          "sensitivities by the implicit function theorem, and robustness under "
                                          "perturbed parameters (see docs/stress.md).")
    p.add_argument("scenario", help="scenario TOML file (see docs/market.md)")
    p.add_argument("--starts", type=int, default=16, help="starting points of the uniqueness probe (default 16; 0 skips)")
    p.add_argument("--perturb", action="append", default=None, metavar="FIELD=REL",
                   help="perturb FIELD of every ASP/MU by a factor in [1-REL, 1+REL] in the robustness draws "
                        "(repeatable; default compute_capacity=0.2 bandwidth_capacity=0.2; weights=REL "
                        "perturbs and renormalises the QoE weights)")
    p.add_argument("--samples", type=int, default=64, help="robustness draws (default 64; 0 skips)")
    p.add_argument("--seed", type=int, default=0, help="seed of the start design and the draws (default 0)")
    p.add_argument("--out", default=None, help="report folder (default results/stress-<scenario name>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out folder (otherwise it is refused, never deleted)")
    p.add_argument("--solver", default=None, help="solver (default: the scenario's [market] solver)")
    p.add_argument("--workers", type=int, default=2, help="processes for the solves (default 2)")
    p.add_argument("--no-sensitivity", action="store_true", help="skip the sensitivity step")
    p.add_argument("--worst-by", default="welfare",
                   help="outcome whose lowest value is the worst draw (welfare, mu_utility_total, asp_profit_total, "
                        "payment_total, mean_qoe, mean_reward; default welfare)")
    p.add_argument("--quiet", action="store_true", help="no progress bars and no summary on stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    """Run the command; returns the exit code."""
    from market.errors import UserError
    from market.scenario import load_scenario
    from solvers.registry import REGISTRY
    from solvers.stress import OUTCOMES, parse_perturbations

    from incentive.outdir import check_output_dir
    from incentive.stress import DEFAULT_PERTURB, StressConfig, format_report, ranked_sensitivity, run_stress, \
        write_report

    if args.starts < 0 or args.samples < 0:
        raise UserError("--starts and --samples must be >= 0")
    if args.workers < 1:
        raise UserError("--workers must be >= 1")
    if args.seed < 0:
        raise UserError("--seed must be >= 0")
    if args.solver is not None and args.solver not in REGISTRY:
        raise UserError(f"--solver: unknown solver {args.solver!r}; available: {', '.join(sorted(REGISTRY))}")
    if args.worst_by not in OUTCOMES[:-1]:
        raise UserError(f"--worst-by must be one of {', '.join(OUTCOMES[:-1])}, got {args.worst_by!r}")
    perturb = parse_perturbations(args.perturb) if args.perturb else dict(DEFAULT_PERTURB)
    scenario = load_scenario(args.scenario)  # bad file: exit 2 before any work
    out = args.out or f"results/stress-{scenario.market.name}"
    config = StressConfig(scenario=args.scenario, starts=args.starts, samples=args.samples, perturb=perturb,
                          seed=args.seed, solver=args.solver, workers=args.workers,
                          sensitivity=not args.no_sensitivity, worst_by=args.worst_by)
    identity = {k: v for k, v in config.__dict__.items() if k != "workers"}
    # the output policy (incentive.outdir), checked before any work
    plan = check_output_dir(out, command="stress", identity=identity, overwrite=args.overwrite, what="stress report")
    report = run_stress(config, show_progress=not args.quiet)
    paths = write_report(report, plan)
    if not args.quiet:
        rows = ranked_sensitivity(report.sensitivity) if report.sensitivity is not None else []
        print(format_report(report, rows))
        print(f"report written to {out}/ ({len(paths)} files)")
    return 0 if report.result.status == "converged" else 1
