"""``incentive run``: end to end, market -> provisioning -> measured generation -> report.

Usage::

    incentive run SCENARIO [--out DIR] [--provision {d3pg,oracle}] [--calibrate] [--quick]
                  [--samples S] [--calibration-samples S] [--seed X] [--allow-uncertified]
                  [--solver NAME] [--partial-slot {oracle,pad}] [--policy FILE] [--steps T]
                  [--device {cpu,cuda}] [--max-rounds R] [--no-progress]

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
                   help="calibrate the scenario's models first (as `incentive backend calibrate`) and run on the "
                        "calibrated scenario")
    p.add_argument("--quick", action="store_true", help="few samples (seconds; for tests and a first look)")
    p.add_argument("--samples", type=types.count(1, 10**6), default=None,
                   help="requests measured per user (default 120; 6 with --quick)")
    p.add_argument("--calibration-samples", type=types.count(1, 10**6), default=None,
                   help="requests per calibration point (default 150; 10 with --quick)")
    p.add_argument("--max-rounds", type=types.count(1, 1000), default=10,
                   help="most rounds of the market <-> provisioning fixed point (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--seed", type=types.seed, default=0, help="run seed (states, requests; default 0)")
    p.add_argument("--solver", default=None, help="market solver (default: the scenario's)")
    p.add_argument("--allow-uncertified", action="store_true",
                   help="carry on when the equilibrium's certificate does not pass (the report says so)")
    p.add_argument("--partial-slot", choices=("oracle", "pad"), default="oracle",
                   help="a slot with fewer than Q users: exact oracle (default) or the policy with padding users")
    p.add_argument("--policy", default=None, help="D3PG policy file (default: the shipped one)")
    p.add_argument("--steps", type=types.count(1, 1000), default=None, help="denoising steps of every model (default: each model's)")
    p.add_argument("--device", type=types.device, default=None, help="backend device (default: CUDA when present)")
    p.add_argument("--prompt-engineering", default=None, metavar="D.npz",
                   help="a demonstration dataset (`incentive prompts dataset`): also serve every user with D's per-trial "
                        "quality without and with prompt engineering and report the difference (docs/prompts.md)")
    p.add_argument("--prompt-policy", default="empirical",
                   help="the engineered variant's strategy policy: raw, empirical (default), expert, strategy:K or a "
                        "policy .zip from `incentive prompts train`")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out folder (otherwise it is refused, never deleted)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit code."""
    from incentive.pipeline import PipelineConfig, run_pipeline

    config = PipelineConfig(provision=args.provision, calibrate=args.calibrate, seed=args.seed, solver=args.solver,
                            allow_uncertified=args.allow_uncertified, partial_slot=args.partial_slot,
                            policy_path=args.policy, steps=args.steps, device=args.device, quick=args.quick,
                            max_rounds=args.max_rounds, progress=not args.no_progress,
                            prompt_engineering=args.prompt_engineering, prompt_policy=args.prompt_policy)
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
    for line in summary_lines(result.to_dict()):
        print(line)
    print(f"  report: {Path(out) / 'report.md'} ({result.timings_s['total_s']:.1f} s)")
    return 0


def summary_lines(result: dict) -> list[str]:
    """What ``incentive run`` prints: calibration state, market, loop, QoE gap, the D3PG headline."""
    from incentive.report import calibrate_command

    s, lines = result["summary"], []
    if not result["calibrated"]:
        lines.append(f"UNCALIBRATED scenario ({result['uncalibrated_reasons'][0]}); calibrate it: "
                     f"{calibrate_command(result['scenario_file'])}")
    lines.append(f"incentive run: {result['market'].get('scenario')}: market {s['market_status']}, {s['users']} users in "
                 f"{s['slots']} slots; market <-> provisioning {'converged' if s['converged'] else 'NOT converged'} in "
                 f"{s['rounds']} round(s)" + (f" ({len(s['held_users'])} user(s) held after a cycle)" if s["held_users"] else ""))
    fmt = lambda x, spec=".3f": "-" if x is None else format(x, spec)  # noqa: E731
    lines.append(f"  mean QoE modelled {fmt(s['mean_qoe_modelled'])}, measured {fmt(s['mean_qoe_measured'])}; mean |gap| "
                 f"{fmt(s['mean_abs_qoe_gap'])}, max |gap| {fmt(s['max_abs_qoe_gap'])} (sampling noise: mean 95% "
                 f"half-width {fmt(s['mean_qoe_gap_noise'])}; model error beyond it: mean {fmt(s['mean_abs_model_error'])}, "
                 f"max {fmt(s['max_abs_model_error'])})")
    pe = result.get("prompt_engineering")
    if pe is not None:
        ps, fmt2 = pe["summary"], lambda d: f"{fmt(d['raw'])} -> {fmt(d['engineered'])}"  # noqa: E731
        need = ps["trials_for_confidence"]
        lines.append(f"  prompt engineering ({pe['policy']}, {pe['dataset']}): expected QoE {fmt2(ps['expected_qoe'])}, "
                     f"trials {fmt2(ps['trials'])} (oracle {fmt2(ps['oracle_trials'])}), P(one trial meets the "
                     f"threshold) {fmt2(ps['success_per_trial'])}; trials for {pe['confidence']:.0%}: "
                     f"{fmt2(need)} over {need['users_reachable_in_both']} user(s) reachable in both "
                     f"(unreachable: {need['unreachable_raw']} raw, {need['unreachable_engineered']} engineered)")
    head = s.get("policy_vs_oracle")
    if head is not None and head["ratio"] is not None:
        left = "; ".join(f"{v} {k}" for k, v in head["left_out"].items())
        lines.append(f"  D3PG utility / oracle utility {head['ratio']:.3f} over {head['slots_counted']} slot(s)"
                     + (f"; {head['slots_left_out']} slot(s) left out ({left})" if head["slots_left_out"] else ""))
    elif head is not None:
        lines.append(f"  no D3PG/oracle ratio: all {head['slots_left_out']} slot(s) left out "
                     f"({'; '.join(f'{v} {k}' for k, v in head['left_out'].items())})")
    return lines
