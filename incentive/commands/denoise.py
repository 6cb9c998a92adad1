"""``incentive denoise``: the distributed-denoising allocation problem (G-DDPG vs DDPG vs the optimum).

Sub-commands::

    incentive denoise cache    [problem options]     fill the generation cache over the key space
    incentive denoise train    --policy NAME --out RUN_DIR [--steps N] [--seed S] [--resume] ...
    incentive denoise evaluate [--policy NAME ...] [--personalities FILE] [--seeds K] [--out F]
                               [--runs DIR] [--fill-cache] [--train-steps N] [--states N] ...
    incentive denoise figures  [--out DIR] [--evaluation F] [problem options]

Problem options (every sub-command but ``figures`` without ``--evaluation``): ``--generator
render|scenes-small|scenes-large|PATH`` (``render`` is the rendering TEST DOUBLE: exact, fast,
not a result), ``--cache DIR``, ``--personalities FILE``, ``--devices K``, ``--t0-grid``,
``--tk-grid``, ``--ber-levels``, ``--noise-seeds``. ``train`` and ``evaluate`` train through the
provisioning layer's scaffolding (run folders, checkpoints, ``--resume``, Ctrl-C/SIGTERM keep a
checkpoint); JSON results are written atomically. Cheap to import: torch loads inside the handlers.

May import: everything (it is part of ``incentive``).
"""
from __future__ import annotations

import json

from incentive import args as types

POLICIES = ("gddpg", "ddpg", "td3", "sac", "random", "local", "optimum")
LEARNERS = POLICIES[:4]


def _numbers(kind):
    """A comma-separated list of ``kind`` (at least one), as a tuple."""
    def parse(text: str):
        import argparse

        try:
            values = tuple(kind(part) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
        if not values:
            raise argparse.ArgumentTypeError("an empty list")
        return values
    return parse


def _problem_options(p) -> None:
    p.add_argument("--personalities", default=None, help="TOML file of [[user]] tables (default: built-in users)")
    p.add_argument("--generator", default="scenes-large",
                   help="render (test double), scenes-small, scenes-large or a scene model folder")
    p.add_argument("--cache", default="runs/denoise-cache", help="generation cache folder (default runs/denoise-cache)")
    p.add_argument("--devices", type=types.count(1, 8), default=3, help="K devices (default 3)")
    p.add_argument("--t0-grid", type=_numbers(int), default=None, help="server steps, e.g. 0,2,4,6,8 (default)")
    p.add_argument("--tk-grid", type=_numbers(int), default=None, help="device steps, e.g. 2,4,6,8,10 (default)")
    p.add_argument("--ber-levels", type=_numbers(float), default=None, help="BER levels the link rounds up to")
    p.add_argument("--noise-seeds", type=types.count(1, 1000), default=None,
                   help="initial-noise seeds S: images per allocation (--qoe mean) or the seeds a state draws "
                        "from (one-image); default 4")
    p.add_argument("--qoe", choices=("mean", "one-image"), default=None,
                   help="a device's QoE of an allocation: mean over the noise seeds' images (default) or the "
                        "state's one image (the paper)")
    p.add_argument("--device-budget", type=_numbers(float), default=None,
                   help="E_k values drawn per device per episode, e.g. 1,2,4,8 (default 8)")
    p.add_argument("--server-budget", type=types.number(0, None, low_open=True), default=None, help="E_T (default 20)")
    p.add_argument("--action-decoding", choices=("grid", "within-budgets", "server-steps"), default=None,
                   help="grid: each action entry picks its grid value, budgets may break and pay the penalty (the "
                        "paper; default); within-budgets: the allocation is then moved into the state's budgets; "
                        "server-steps: the action picks t0 only, every device runs the most steps its budget allows "
                        "at the highest power the server budget leaves")
    p.add_argument("--threads", type=types.count(1, 1024), default=1, help="torch CPU threads (default 1)")


def _training_options(p) -> None:
    p.add_argument("--eval-every", type=types.count(1, 10**7), default=500,
                   help="learning-curve and checkpoint interval in steps (default 500)")
    p.add_argument("--eval-states", type=types.count(1, 10**5), default=8,
                   help="validation states (held-out users) of the learning curve (default 8)")
    p.add_argument("--warmup", type=types.count(1, 10**7), default=500,
                   help="random warm-up steps, at most a quarter of the budget (default 500)")
    p.add_argument("--select-best", action="store_true",
                   help="keep the policy of the evaluation that did best on selection states of the TRAINING users "
                        "(never a held-out user's) in <run>/best; evaluate scores that one instead of the last")
    p.add_argument("--selection-states", type=types.count(1, 10**5), default=24,
                   help="selection states of the training users for --select-best (default 24)")


def register(subparsers) -> None:
    """Add the ``denoise`` parser and its sub-commands."""
    parser = subparsers.add_parser("denoise", help="distributed denoising: G-DDPG, baselines and the optimum",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="denoise_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    c = sub.add_parser("cache", help="generate every image the problem can ask for (batched); JSON counters")
    _problem_options(c)
    c.set_defaults(func=_cache)

    e = sub.add_parser("evaluate", help="train each policy, score it on held-out users against the optimum; JSON")
    _problem_options(e)
    _training_options(e)
    e.add_argument("--policy", nargs="+", choices=POLICIES, default=list(POLICIES))
    e.add_argument("--seeds", type=types.count(1, 1000), default=5)
    e.add_argument("--train-steps", type=types.count(1, 10**7), default=3000)
    e.add_argument("--states", type=types.count(1, 10**5), default=20, help="held-out states (default 20)")
    e.add_argument("--runs", default=None,
                   help="folder of the learners' run folders, resumed when rerun (default: temporary, not kept)")
    e.add_argument("--fill-cache", action="store_true", help="fill the generation cache over the key space first")
    e.add_argument("--out", default=None, help="write the JSON here (atomically)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file / --runs folder")
    e.set_defaults(func=_evaluate)

    t = sub.add_parser("train", help="train one learner in a run folder (checkpoints, --resume)")
    _problem_options(t)
    _training_options(t)
    t.add_argument("--policy", choices=LEARNERS, default="gddpg")
    t.add_argument("--steps", type=types.count(1, 10**7), default=3000)
    t.add_argument("--seed", type=types.seed, default=0)
    t.add_argument("--out", required=True, help="run folder (policy file, curve, checkpoints, result.json)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    t.add_argument("--overwrite", action="store_true", help="empty an --out folder that holds something else")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    f = sub.add_parser("figures", help="Figs. 8-14 (Fig. 10 always; 11-14 from --evaluation); PNG + JSON")
    _problem_options(f)
    f.add_argument("--out", default="runs/denoise-figures", help="output folder")
    f.add_argument("--evaluation", default=None, help="JSON written by `denoise evaluate --out` (Figs. 11-14)")
    f.add_argument("--seeds", type=types.count(2, 100000), default=200, help="Fig. 10 seeds (default 200)")
    f.add_argument("--no-images", action="store_true", help="skip the figures that need the generator (8, 9, 13, 14)")
    f.set_defaults(func=_figures)


def _check_out(args) -> None:
    """A bad or existing ``--out`` file fails before any work (existing files only with ``--overwrite``)."""
    from pathlib import Path

    from incentive.outdir import check_output_file
    from market.errors import UserError

    check_output_file(args.out)
    if Path(args.out).exists() and not args.overwrite:
        raise UserError(f"--out {args.out}: exists; pass --overwrite to replace it")


def _setup(args):
    """The :class:`DenoiseProblem` of the problem options."""
    import torch

    from provisioning.backend.scenes import load_judge
    from provisioning.denoising.generation import GenerationCache, RenderingGenerator, SceneBackendGenerator
    from provisioning.denoising.learning import DenoiseProblem
    from provisioning.denoising.problem import DenoiseConfig, QoETable
    from provisioning.denoising.users import builtin_users, load_users

    torch.set_num_threads(args.threads)
    train, held = load_users(args.personalities) if args.personalities else builtin_users()
    if args.generator == "render":
        generator = RenderingGenerator()
    else:
        from provisioning.backend.scenes import load_scene_model

        generator = SceneBackendGenerator(load_scene_model(args.generator))
    grid = {name: value for name, value in (("t0_grid", args.t0_grid), ("tk_grid", args.tk_grid),
                                             ("ber_levels", args.ber_levels), ("noise_seeds", args.noise_seeds),
                                             ("qoe_of_allocation", args.qoe),
                                             ("action_decoding", args.action_decoding),
                                             ("device_budget", args.device_budget), ("server_budget", args.server_budget))
            if value is not None}
    config = DenoiseConfig(devices=args.devices, **grid)
    config.validate()
    return DenoiseProblem(config, train, held or train, QoETable(config, GenerationCache(generator, args.cache), load_judge()))


def _fill(problem) -> dict:
    """Fill the cache over the key space of the training and held-out users; counters and size."""
    import sys

    from provisioning.denoising.problem import key_space

    keys = key_space(problem.config, problem.train_users) + key_space(problem.config, problem.test_users)

    def show(done, total):
        print(f"generated {done}/{total}", file=sys.stderr, flush=True)

    counters = problem.table.cache.fill(keys, progress=show)
    counters["bytes_on_disk"] = problem.table.cache.disk_bytes()
    counters["seconds_per_generated_image"] = counters["seconds"] / counters["generated"] if counters["generated"] else None
    return counters


def _cache(args) -> int:
    problem = _setup(args)
    result = {"generator": problem.table.cache.generator.identity, "problem": problem.identity(), **_fill(problem)}
    print(json.dumps(result, indent=2))
    return 0


def _claim_runs(path, identity: dict, overwrite: bool, command: str):
    from incentive.outdir import check_output_dir, open_run_dir

    return open_run_dir(check_output_dir(path, command=command, identity=identity, overwrite=overwrite,
                                         what=f"`incentive {command}` run"))


def _selection_identity(args) -> dict:
    """The run-folder identity fields of ``--select-best`` (none without it, so that folders made
    before the option still resume)."""
    return {"select_best": True, "selection_states": args.selection_states} if args.select_best else {}


def _evaluate(args) -> int:
    from dataclasses import asdict

    from market.atomic import atomic_write_json, json_ready
    from provisioning.denoising.runs import CompareConfig, compare

    if args.out is not None:
        _check_out(args)
    problem = _setup(args)
    cfg = CompareConfig(policies=tuple(args.policy), seeds=args.seeds, train_steps=args.train_steps,
                        held_out_states=args.states, warmup_steps=args.warmup, eval_every=args.eval_every,
                        eval_states=args.eval_states, select_best=args.select_best,
                        selection_states=args.selection_states)
    runs = None
    if args.runs is not None:
        identity = {"problem": problem.identity(), "train_steps": cfg.train_steps, "warmup": cfg.warmup_steps,
                    "eval_every": cfg.eval_every, "eval_states": cfg.eval_states, **_selection_identity(args)}
        runs = _claim_runs(args.runs, identity, args.overwrite, "denoise evaluate")
    fill = _fill(problem) if args.fill_cache else None
    result = compare(problem, cfg, runs, progress=lambda text: print(text, flush=True))
    result = json_ready({"generator": problem.table.cache.generator.identity, "problem": problem.identity(),
                         "constants": asdict(problem.config), "provisional": args.generator == "render",
                         "note": ("rendering test double: checks the plumbing, not a result" if args.generator == "render"
                                  else "scene generator: read its card before reading these numbers"),
                         "held_out_users": [u.name for u in problem.test_users], "cache_fill": fill, **result})
    if args.out is not None:
        atomic_write_json(args.out, result)
    print(json.dumps({k: v for k, v in result.items() if k != "policies"}, indent=2))
    for name, row in result["policies"].items():
        fraction = row["fraction_of_optimum"]
        print(f"{name:8s} sum QoE {row['sum_qoe']['mean']:.3f} +/- {row['sum_qoe']['std'] or 0:.3f}  "
              f"fraction of optimum {fraction['mean'] if fraction else float('nan'):.3f}  "
              f"violations {row['threshold_violations']['mean']:.2f}")
    ceiling = result["noise_ceiling"]
    if ceiling is not None:
        print(f"(split-half noise ceiling: the optimum chosen on {ceiling['seeds_per_half']} noise seeds reaches "
              f"{ceiling['fraction']:.3f} of the optimum on {ceiling['seeds_per_half']} others)")
    fixed = result["best_fixed_allocation"]
    print(f"(best fixed allocation in hindsight: sum QoE {fixed['sum_qoe']:.3f}, fraction of optimum "
          f"{fixed['fraction_of_optimum'] if fixed['fraction_of_optimum'] is not None else float('nan'):.3f})")
    return 0


def _train(args) -> int:
    from pathlib import Path

    from provisioning.denoising.learning import train_learner_run

    problem = _setup(args)
    identity = {"agent": args.policy, "seed": args.seed, "problem": problem.identity(), **_selection_identity(args)}
    run_dir = _claim_runs(args.out, identity, args.overwrite, "denoise train")
    result = train_learner_run(problem, args.policy, args.seed, args.steps, run_dir, resume=args.resume,
                               eval_every=args.eval_every, eval_states=args.eval_states, warmup_steps=args.warmup,
                               progress=not args.no_progress, select_best=args.select_best,
                               selection_states=args.selection_states)
    last = result.curve[-1] if result.curve else {}
    print(json.dumps({"policy": args.policy, "run": str(result.run_dir), "steps": result.steps_done,
                      "finished": result.finished, "policy_file": str(result.policy_path),
                      "validation_fraction_of_optimum": last.get("fraction_of_oracle"),
                      "validation_mean_reward": last.get("mean_utility"), "best": result.best,
                      "best_policy_file": str(result.best_dir / Path(result.policy_path).name)
                      if result.best_dir is not None and result.policy_path is not None else None,
                      "cache": problem.table.stats()}, indent=2))
    return 0


def _figures(args) -> int:
    from pathlib import Path

    from provisioning.backend.scenes import load_judge
    from provisioning.denoising import figures

    out = Path(args.out)
    written = [figures.fig10(load_judge(), out, seeds=args.seeds)]
    evaluation = None
    if args.evaluation is not None:
        evaluation = figures.read_evaluation(args.evaluation)
        written += [figures.fig11(evaluation, out), figures.fig12(evaluation, out)]
    if not args.no_images:
        problem = _setup(args)
        if evaluation is not None:
            figures.check_same_problem(evaluation, problem, args.evaluation)
        written += [figures.fig8(problem, out), figures.fig9(problem, out)]
        if evaluation is not None:
            written += figures.fig13_14(problem, evaluation, out)
    for path in written:
        print(path)
    return 0
