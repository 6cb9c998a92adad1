"""``incentive backend``: measure the diffusion backend (accuracy, tokens, latency).

Sub-commands::

    incentive backend measure [--model NAME] [--steps T] [--trials N] [--ber B] [--samples S]
                              [--seed X] [--guidance G] [--link-rate BPS] [--out FILE]
    incentive backend calibrate [--out DIR] [--models ...] [--steps ...] [--trials ...] [--ber ...]
                                [--samples S] [--seed X] [--base-scenario FILE]
    incentive backend shared-denoise [--model NAME] [--t0 ...] [--tk ...] [--ber ...]
                                     [--samples S] [--seed X] [--out DIR]

Cheap to import: torch and diffusers load inside the handlers.

May import: everything (it is part of ``incentive``).
"""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    """Add the ``backend`` parser and its sub-commands."""
    parser = subparsers.add_parser("backend", help="measure the diffusion backend (accuracy, tokens, latency)",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="backend_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    m = sub.add_parser("measure", help="generate, send over a noisy link, pick best-of-N, judge; JSON report")
    m.add_argument("--model", default="digits-large", help="shipped name or local folder (default: digits-large)")
    m.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    m.add_argument("--trials", type=int, default=1, help="images per request, best kept (default 1)")
    m.add_argument("--ber", type=float, default=0.0, help="bit error rate of the link (default 0)")
    m.add_argument("--samples", type=int, default=100, help="requests (default 100)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the model's)")
    m.add_argument("--link-rate", type=float, default=None, help="link rate in bit/s for transmission time")
    m.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    m.add_argument("--per-request", action="store_true", help="include per-request lists in the JSON")
    m.add_argument("--out", default=None, help="write the JSON report here (atomically)")
    m.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    m.set_defaults(func=_measure)

    c = sub.add_parser("calibrate", help="sweep steps/trials/BER/model; write ASP profiles, quality tables, plots")
    c.add_argument("--out", default="runs/backend-calibration", help="output folder (resumes if it exists)")
    c.add_argument("--models", nargs="+", default=None, help="models (default: the three shipped)")
    c.add_argument("--steps", nargs="+", type=int, default=None, help="steps grid (default 2 5 10 20)")
    c.add_argument("--trials", nargs="+", type=int, default=None, help="trials grid (default 1 2 4)")
    c.add_argument("--ber", nargs="+", type=float, default=None, help="BER grid (default 0 0.001 0.01 0.03 0.1)")
    c.add_argument("--samples", type=int, default=50)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--link-rate", type=float, default=None)
    c.add_argument("--base-scenario", default=None, help="scenario whose ASPs (by `model`) get measured profiles")
    c.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    c.set_defaults(func=_calibrate)

    s = sub.add_parser("shared-denoise", help="t0 server steps under one prompt, noisy latent, tk device steps")
    s.add_argument("--model", default="digits-large")
    s.add_argument("--t0", nargs="+", type=int, default=None, help="server steps grid (default 0 2 4 6 8)")
    s.add_argument("--tk", nargs="+", type=int, default=None, help="device steps grid (default 2 4 6 8 10)")
    s.add_argument("--ber", nargs="+", type=float, default=None, help="BER grid (default 0 .01 .03 .06 .1 .15)")
    s.add_argument("--samples", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--guidance", type=float, default=None)
    s.add_argument("--out", default="runs/backend-shared", help="output folder (JSON + plots)")
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    s.set_defaults(func=_shared)


def _set_threads(threads: int) -> None:
    """Fix torch's CPU threads (default 1): on a shared machine extra threads spin-wait and
    inflate both wall-clock and CPU time."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def _measure(args) -> int:
    from market.atomic import atomic_write_json
    from provisioning.backend.measurement import MeasureConfig, measure
    from provisioning.backend.models import load_model

    _set_threads(args.threads)
    model = load_model(args.model, device=args.device)
    cfg = MeasureConfig(model=args.model, steps=args.steps, trials=args.trials, ber=args.ber,
                        samples=args.samples, seed=args.seed, guidance_scale=args.guidance,
                        link_rate_bps=args.link_rate)
    report = measure(model, cfg).to_dict(per_request=args.per_request)
    text = json.dumps(report, indent=2)
    if args.out:
        atomic_write_json(args.out, report)
    print(text)
    return 0


def _calibrate(args) -> int:
    from provisioning.backend.calibration import CalibrateConfig, calibrate

    _set_threads(args.threads)
    cfg = CalibrateConfig()
    if args.models:
        cfg.models = list(args.models)
    if args.steps:
        cfg.steps_grid = list(args.steps)
    if args.trials:
        cfg.trials_grid = list(args.trials)
    if args.ber:
        cfg.ber_grid = list(args.ber)
    cfg.samples, cfg.seed, cfg.link_rate_bps, cfg.base_scenario = args.samples, args.seed, args.link_rate, args.base_scenario
    result = calibrate(cfg, args.out, log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps({"profiles": result["profiles"], "files": result["files"]}, indent=2))
    return 0


def _shared(args) -> int:
    from pathlib import Path

    from market.atomic import atomic_write_json
    from provisioning.backend.models import load_model
    from provisioning.backend.shared import SharedDenoiseConfig, plot_shared, rows_to_dicts, shared_denoise

    _set_threads(args.threads)
    cfg = SharedDenoiseConfig(model=args.model, samples=args.samples, seed=args.seed, guidance_scale=args.guidance)
    if args.t0:
        cfg.t0_grid = list(args.t0)
    if args.tk:
        cfg.tk_grid = list(args.tk)
    if args.ber:
        cfg.ber_grid = list(args.ber)
    model = load_model(args.model)
    rows = shared_denoise(model, cfg)
    out = Path(args.out)
    from dataclasses import asdict

    atomic_write_json(out / "shared_denoise.json", {"config": asdict(cfg), "device": str(model.device),
                                                    "rows": rows_to_dicts(rows)})
    files = plot_shared(rows, out)
    for r in rows:
        print(f"t0={r.t0:2d} tk={r.tk:2d} ber={r.ber:<6g} acc_dev1={r.accuracy_device1:.2f} "
              f"acc_dev2={r.accuracy_device2:.2f} leak={r.leak_to_server_prompt:.2f} "
              f"separate=({r.separate_accuracy_device1:.2f},{r.separate_accuracy_device2:.2f}) "
              f"steps_saved={r.steps_saved_share:.0%}")
    print(json.dumps({"files": [str(out / 'shared_denoise.json'), *map(str, files)]}))
    return 0
