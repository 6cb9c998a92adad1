"""``incentive run``: end to end, market -> provisioning -> measured generation -> report.

Usage::

    incentive run SCENARIO [--out DIR] [--provision {d3pg,oracle}] [--calibrate] [--quick]
                  [--samples S] [--seed X] [--allow-uncertified] [--solver NAME]
                  [--partial-slot {oracle,pad}] [--policy FILE] [--device {cpu,cuda}]

Writes ``DIR`` (default ``results/<scenario name>``) whole or not at all: ``report.md``,
``result.json``, CSVs, PNG plots and ``config.json``. Exit code 0 on success, 2 on bad input
(malformed scenario, unknown model, missing policy, infeasible or uncertified market).
See ``docs/pipeline.md``.

Cheap to import: the pipeline (numpy, torch, diffusers) is imported inside :func:`run`.

May import: everything (it is part of ``incentive``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from incentive import args as types


def register(subparsers) -> None:
    """Add the ``run`` parser."""
    p = subparsers.add_parser(
        "run", help="end-to-end: market -> provisioning -> measured generation",
        description="Solve the market (certified), provision every ASP's users with the trained D3PG policy "
                    "(or the exact oracle), generate with each ASP's backend model through the noisy link, and "
                    "report modelled against measured QoE.")
    p.add_argument("scenario", help="market scenario TOML (see docs/market.md; optional [provisioning] table)")
    p.add_argument("--out", default=None, help="output folder (default: results/<scenario file name>)")
    p.add_argument("--provision", choices=("d3pg", "oracle"), default="d3pg",
                   help="who picks trials and powers: the shipped D3PG policy (default) or the exact oracle")
    p.add_argument("--calibrate", action="store_true",
                   help="measure the ASP profiles with the backend first and re-solve the market on them")
    p.add_argument("--quick", action="store_true", help="few samples (seconds; for tests and a first look)")
    p.add_argument("--samples", type=types.count(1, 10**6), default=None, help="requests measured per user (default 60; 6 with --quick)")
    p.add_argument("--calibration-samples", type=types.count(1, 10**6), default=None,
                   help="requests per model in the calibration (default 60; 10 with --quick)")
    p.add_argument("--seed", type=types.seed, default=0, help="run seed (states, requests; default 0)")
    p.add_argument("--solver", default=None, help="market solver (default: the scenario's)")
    p.add_argument("--allow-uncertified", action="store_true",
                   help="carry on when the equilibrium's certificate does not pass (the report says so)")
    p.add_argument("--partial-slot", choices=("oracle", "pad"), default="oracle",
                   help="a slot with fewer than Q users: exact oracle (default) or the policy with padding users")
    p.add_argument("--policy", default=None, help="D3PG policy file (default: the shipped one)")
    p.add_argument("--steps", type=types.count(1, 1000), default=None, help="denoising steps of every model (default: each model's)")
    p.add_argument("--device", type=types.device, default=None, help="backend device (default: CUDA when present)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out folder (otherwise it is refused, never deleted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    from incentive.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(provision=args.provision, calibrate=args.calibrate, seed=args.seed, solver=args.solver,
                            allow_uncertified=args.allow_uncertified, partial_slot=args.partial_slot,
                            policy_path=args.policy, steps=args.steps, device=args.device, quick=args.quick)
    if args.samples is not None:
        config.samples = args.samples
        if args.quick:
            config.quick = False  # an explicit --samples wins over --quick's sample count
            config.calibration_samples = min(config.calibration_samples, 10)
    if args.calibration_samples is not None:
        config.calibration_samples = args.calibration_samples
    out = args.out if args.out is not None else str(Path("results") / Path(args.scenario).stem)
    from incentive.outdir import check_output_dir

    # checked before any work (the pipeline's staged folder uses this decision)
    check_output_dir(out, command="run", overwrite=args.overwrite,
                     identity={k: v for k, v in sorted(vars(args).items()) if k not in ("func", "out", "overwrite")})
    result = run_pipeline(args.scenario, out, config)
    s = result.summary
    print(f"incentive run: {result.market.get('scenario')}: market {s['market_status']}, "
          f"{s['users']} users in {s['slots']} slots")
    print(f"  mean QoE modelled {s['mean_qoe_modelled']:.3f}, measured {s['mean_qoe_measured']:.3f}; "
          f"mean |gap| {s['mean_abs_qoe_gap']:.3f}, max |gap| {s['max_abs_qoe_gap']:.3f}")
    if s["d3pg_fraction_of_oracle_overall"] is not None:
        print(f"  D3PG utility / oracle utility over {s['d3pg_slots_with_positive_optimum']} slot(s) with a positive "
              f"optimum: {s['d3pg_fraction_of_oracle_overall']:.3f}")
    if result.calibration:
        print(f"  calibration moved rewards by up to {result.calibration['max_abs_reward_change']:.4g} and "
              f"modelled QoE by up to {result.calibration['max_abs_qoe_change']:.3f}")
    print(f"  report: {Path(out) / 'report.md'} ({result.timings_s['total_s']:.1f} s)")
    return 0
