"""``incentive compare SCENARIO [--out DIR]``: the mechanism against the alternatives.

Prints the metrics table (and the proposed mechanism's percentage changes against each
alternative) and, with ``--out``, writes ``table.txt``, ``comparison.csv``,
``comparison.json``, ``metrics.png`` and ``trajectory.png`` into a folder that appears
whole or not at all. Cheap to import: the study loads inside the handler.

May import: everything (it is part of ``incentive``).
"""
from __future__ import annotations


def register(subparsers) -> None:
    """Add the ``compare`` parser."""
    p = subparsers.add_parser("compare", help="compare the mechanism against alternative mechanisms",
                              description="Run every mechanism (proposed equilibrium, uniform reward, equal split, "
                                          "proportional share, single-dimension QoE, ASP pricing, social optimum) "
                                          "on one scenario; print and save the comparison.")
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument("--out", default=None, help="folder for table, CSV, JSON and PNG plots")
    p.add_argument("--solver", default="dual-perturbation", help="equilibrium solver (default: dual-perturbation)")
    p.add_argument("--no-trajectory", action="store_true",
                   help="skip the Pyomo Gauss-Seidel reward trajectory (it needs ipopt and takes seconds)")
    p.add_argument("--json", action="store_true", help="print the comparison JSON instead of the table")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out folder (otherwise it is refused, never deleted)")
    p.set_defaults(func=run)


def run(args) -> int:
    import json

    from incentive import study
    from market.atomic import json_ready
    from incentive.outdir import check_output_dir, staged_output_dir
    from solvers.registry import as_market

    plan = None
    if args.out is not None:  # checked before any work: a bad path must not cost the comparison
        plan = check_output_dir(args.out, command="compare", overwrite=args.overwrite,
                                identity={"scenario": args.scenario, "solver": args.solver,
                                          "trajectory": not args.no_trajectory})
    market = as_market(args.scenario)
    comparison = study.compare(market, solver=args.solver, trajectory=not args.no_trajectory)
    if args.json:
        print(json.dumps(json_ready(comparison.metrics | {"percent_vs": comparison.percent_vs}), indent=2))
    else:
        print(study.format_table(comparison))
    if plan is not None:
        with staged_output_dir(plan) as stage:
            study.write_comparison(comparison, stage, mu_names=market.mu_names)
        print(f"\nwrote {args.out}/ (table.txt, comparison.csv, comparison.json, metrics.png, trajectory.png)")
    return 0
