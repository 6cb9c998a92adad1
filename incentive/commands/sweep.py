"""``incentive sweep``: seeded sweeps of the mechanism comparison.

    incentive sweep [--axis mus|capacity|weight_spread] [--values V ...] [--seeds S ...]
                    [--asps N] [--mus M] [--out DIR] [--executor process|ray|serial] [--workers W]

Each grid point generates a scenario (``market.generator``) from its seed, runs every
mechanism, and appends a row to ``OUT/rows.jsonl``; re-running the same command resumes
where an interrupted one stopped. Then ``summary.json``, ``summary.csv`` and
``sweep_<axis>.png`` are written. Cheap to import.

May import: everything (it is part of ``incentive``).
"""
from __future__ import annotations

from incentive import args as types


def register(subparsers) -> None:
    """Add the ``sweep`` parser."""
    p = subparsers.add_parser("sweep", help="seeded parameter sweeps of the mechanism comparison")
    p.add_argument("--axis", default="mus", choices=("mus", "capacity", "weight_spread"),
                   help="parameter to vary (default: mus)")
    p.add_argument("--values", type=types.finite, nargs="+", default=None,
                   help="values of the axis (default grid per axis)")
    p.add_argument("--seeds", type=types.seed, nargs="+", default=[0, 1, 2], help="scenario seeds (default 0 1 2)")
    p.add_argument("--asps", type=types.count(1, 10_000), default=3, help="ASPs per scenario (default 3)")
    p.add_argument("--mus", type=types.count(1, 1_000_000), default=12,
                   help="MUs per scenario when the axis is not mus (default 12)")
    p.add_argument("--solver", default="dual-perturbation", help="equilibrium solver")
    p.add_argument("--out", default="results/sweep", help="output folder (default results/sweep)")
    p.add_argument("--executor", default="process", choices=("process", "ray", "serial"),
                   help="process pool (default), a local Ray cluster, or serial")
    p.add_argument("--workers", type=types.count(1, 1024), default=2, help="parallel workers (default 2)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out folder that holds something else (a different sweep is otherwise refused)")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from incentive import study
    from market.errors import UserError

    values = tuple(args.values) if args.values else ()
    if args.axis == "mus" and values:
        if any(v < 1 or v != int(v) or v > 1_000_000 for v in values):
            raise UserError("--values for --axis mus must be whole numbers in [1, 1,000,000]")
        values = tuple(int(v) for v in values)
    if args.asps < 1 or args.mus < 1:
        raise UserError("--asps and --mus must be >= 1")
    if any(seed < 0 for seed in args.seeds):
        raise UserError("--seeds must be >= 0")
    if args.axis == "capacity" and any(not 1e-6 <= v <= 1e6 for v in values):
        raise UserError("--values for --axis capacity must be > 0 (a scale of the capacities, within [1e-6, 1e6])")
    if args.axis == "weight_spread" and any(not 0 <= v <= 1 for v in values):
        raise UserError("--values for --axis weight_spread must lie in [0, 1]")
    if args.workers < 1:
        raise UserError("--workers must be >= 1")
    from solvers.registry import REGISTRY

    if args.solver not in REGISTRY:
        raise UserError(f"--solver {args.solver!r}: unknown; available: {', '.join(sorted(REGISTRY))}")
    config = study.SweepConfig(axis=args.axis, values=values, seeds=tuple(args.seeds), n_asps=args.asps,
                               n_mus=args.mus, solver=args.solver)
    from incentive.outdir import check_output_dir

    # checked before any work; run_sweep checks again as it opens the folder
    identity = study.sweep_identity(config)
    check_output_dir(args.out, command="sweep", identity=identity, overwrite=args.overwrite, what="sweep",
                     adopt=lambda folder: study.legacy_sweep(folder, identity))

    def progress(done, total):
        print(f"\r{done}/{total} grid points", end="", file=sys.stderr, flush=True)

    rows = study.run_sweep(config, args.out, executor=args.executor, workers=args.workers, progress=progress,
                           overwrite=args.overwrite)
    print(file=sys.stderr)
    paths = study.write_sweep(rows, config, args.out)
    summary = study.sweep_summary(rows)
    print(f"sweep over {study.SWEEP_AXES[args.axis]}: {len(rows)} points")
    for key in ("overhead_share", "payment_per_mu", "asp_resource_use"):
        print(f"  {key}: proposed vs equal-split, mean over seeds")
        for x, (mean, _) in summary.get("proposed", {}).get(key, {}).items():
            other = summary.get("equal-split", {}).get(key, {}).get(x, (float('nan'), 0))[0]
            print(f"    {args.axis}={x:g}: {mean:.4g} vs {other:.4g}")
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
