"""``incentive backend``: measure the diffusion backend (accuracy, tokens, latency).

Sub-commands::

    incentive backend measure [--model NAME] [--steps T] [--trials N] [--ber B] [--samples S]
                              [--seed X] [--guidance G] [--link-rate BPS] [--out FILE]
                              [--prompt TEXT] [--intent TEXT] [--negative-prompt TEXT] [--list-models]
    incentive backend calibrate [--out DIR] [--models NAME[@STEPS] ...] [--steps ...] [--trials ...] [--ber ...]
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

from incentive import args as types
from incentive.args import no_action as _no_action


def register(subparsers) -> None:
    """Add the ``backend`` parser and its sub-commands."""
    parser = subparsers.add_parser("backend", help="measure the diffusion backend (accuracy, tokens, latency)",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="backend_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: _no_action("backend", ("measure", "calibrate", "shared-denoise")))

    m = sub.add_parser("measure", help="generate, send over a noisy link, pick best-of-N, judge; JSON report")
    m.add_argument("--model", default="digits-large", help="shipped name or local folder (default: digits-large)")
    m.add_argument("--steps", type=types.count(1, 1000), default=None, help="denoising steps (default: the model's)")
    m.add_argument("--trials", type=types.count(1, 1024), default=1, help="images per request, best kept (default 1)")
    m.add_argument("--ber", type=types.probability, default=0.0, help="bit error rate of the link (default 0)")
    m.add_argument("--samples", type=types.count(1, 10**6), default=100, help="requests (default 100)")
    m.add_argument("--seed", type=types.seed, default=0)
    m.add_argument("--guidance", type=types.number(0.0, 100.0), default=None, help="classifier-free guidance (default: the model's)")
    m.add_argument("--link-rate", type=types.number(0.0, 1e15, low_open=True), default=None, help="link rate in bit/s for transmission time")
    m.add_argument("--device", type=types.device, default=None, help="cpu or cuda (default: cuda when present)")
    m.add_argument("--per-request", action="store_true", help="include per-request lists in the JSON")
    m.add_argument("--out", default=None, help="write the JSON report here (atomically)")
    m.add_argument("--threads", type=types.count(1, 1024), default=1, help="torch CPU threads (default 1)")
    from provisioning.backend.scenes.cli import add_scene_arguments

    add_scene_arguments(m)  # --prompt, --intent, --negative-prompt, --list-models (scenes-small, scenes-large)
    m.set_defaults(func=_measure)

    c = sub.add_parser("calibrate", help="sweep steps/trials/BER/model; write ASP profiles, quality tables, plots")
    c.add_argument("--out", default="runs/backend-calibration", help="output folder (resumes if it exists)")
    c.add_argument("--models", nargs="+", default=None,
                   help="models: shipped digits or scene names, each optionally NAME@STEPS (another default number "
                        "of denoising steps, e.g. scenes-large@10), or model folders (default: the three digits models)")
    c.add_argument("--steps", nargs="+", type=types.count(1, 1000), default=None, help="steps grid (default 2 5 10 20)")
    c.add_argument("--trials", nargs="+", type=types.count(1, 1024), default=None, help="trials grid at the default steps (default 1..8)")
    c.add_argument("--ber", nargs="+", type=types.probability, default=None, help="BER grid (default 0 0.001 0.003 0.01 0.03 0.1)")
    c.add_argument("--samples", type=types.count(1, 10**6), default=150,
                   help="requests per point (default 150, as `incentive run --calibrate`)")
    c.add_argument("--seed", type=types.seed, default=0)
    c.add_argument("--link-rate", type=types.number(0.0, 1e15, low_open=True), default=None)
    c.add_argument("--base-scenario", default=None, help="scenario whose ASPs (by `model`) get measured profiles")
    c.add_argument("--threads", type=types.count(1, 1024), default=1, help="torch CPU threads (default 1)")
    c.add_argument("--overwrite", action="store_true",
                   help="empty an --out folder that holds something else first (otherwise it is refused)")
    c.set_defaults(func=_calibrate)

    s = sub.add_parser("shared-denoise", help="t0 server steps under one prompt, noisy latent, tk device steps")
    s.add_argument("--model", default="digits-large")
    s.add_argument("--t0", nargs="+", type=types.count(0, 1000), default=None, help="server steps grid (default 0 2 4 6 8)")
    s.add_argument("--tk", nargs="+", type=types.count(1, 1000), default=None, help="device steps grid (default 2 4 6 8 10)")
    s.add_argument("--ber", nargs="+", type=types.probability, default=None, help="BER grid (default 0 .01 .03 .06 .1 .15)")
    s.add_argument("--samples", type=types.count(1, 10**6), default=50)
    s.add_argument("--seed", type=types.seed, default=0)
    s.add_argument("--guidance", type=types.number(0.0, 100.0), default=None)
    s.add_argument("--out", default="runs/backend-shared", help="output folder (JSON + plots)")
    s.add_argument("--threads", type=types.count(1, 1024), default=1, help="torch CPU threads (default 1)")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing non-empty --out folder (otherwise it is refused, never deleted)")
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

    from provisioning.backend.scenes import cli as scenes

    if args.list_models:
        print(json.dumps(scenes.list_models(), indent=2))
        return 0
    scenes.check_model_name(args.model)
    if args.out is not None:
        from incentive.outdir import check_output_file

        check_output_file(args.out)  # before measuring: a bad path must not cost the result
    _set_threads(args.threads)
    if scenes.is_scene_model(args.model):
        return scenes.measure_scene_command(args)
    scenes.check_digits_arguments(args)
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
    from incentive.outdir import check_output_dir, open_run_dir
    from market.errors import UserError
    from provisioning.backend.calibration import CalibrateConfig, calibrate
    from provisioning.backend.measurement import is_measured_model, measured_model_names

    for name in args.models or ():  # before the output folder is touched
        if not is_measured_model(name):
            raise UserError(f"--models: unknown model {name!r}; shipped: {', '.join(measured_model_names())}, each "
                            "optionally NAME@STEPS (e.g. scenes-large@10), or a folder with a shipped-layout model")
    # measurements resume only under the same samples, seed and link rate (others would be dropped)
    identity = {"samples": args.samples, "seed": args.seed, "link_rate_bps": args.link_rate}
    open_run_dir(check_output_dir(args.out, command="backend calibrate", identity=identity, overwrite=args.overwrite,
                                  what="calibration", adopt=lambda folder: _same_calibration(folder, identity)))
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


def _same_calibration(folder, identity: dict) -> bool:
    """A calibration folder written before markers existed, with the same samples, seed and link rate."""
    config = json.loads((folder / "config.json").read_text())
    return all(config.get(k) == v for k, v in identity.items())


def _shared(args) -> int:
    from pathlib import Path

    from market.atomic import atomic_write_json
    from provisioning.backend.models import load_model
    from provisioning.backend.shared import SharedDenoiseConfig, plot_shared, rows_to_dicts, shared_denoise

    from incentive.outdir import check_output_dir, staged_output_dir

    plan = check_output_dir(args.out, command="backend shared-denoise", overwrite=args.overwrite,
                            identity={k: v for k, v in sorted(vars(args).items())
                                      if k not in ("func", "out", "overwrite", "threads")})
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

    with staged_output_dir(plan) as stage:
        atomic_write_json(stage / "shared_denoise.json", {"config": asdict(cfg), "device": str(model.device),
                                                          "rows": rows_to_dicts(rows)})
        files = [out / Path(f).name for f in plot_shared(rows, stage)]
    for r in rows:
        print(f"t0={r.t0:2d} tk={r.tk:2d} ber={r.ber:<6g} acc_dev1={r.accuracy_device1:.2f} "
              f"acc_dev2={r.accuracy_device2:.2f} leak={r.leak_to_server_prompt:.2f} "
              f"separate=({r.separate_accuracy_device1:.2f},{r.separate_accuracy_device2:.2f}) "
              f"steps_saved={r.steps_saved_share:.0%}")
    print(json.dumps({"files": [str(out / 'shared_denoise.json'), *map(str, files)]}))
    return 0
