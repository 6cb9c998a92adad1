"""``incentive denoise``: the distributed-denoising allocation problem (G-DDPG vs DDPG vs the optimum).

Sub-commands::

    incentive denoise evaluate [--policy NAME ...] [--personalities FILE] [--seeds K] [--out F]
                               [--generator render|scenes-small|scenes-large] [--train-steps N]
                               [--states N] [--cache DIR] [--threads T]
    incentive denoise train --policy NAME --out FILE [--personalities FILE] [--steps N] [--seed S] ...
    incentive denoise figures [--out DIR]  (Fig. 10: evaluator consistency on rendered images)

``--generator render`` is the rendering TEST DOUBLE (exact, fast, not a result); the default
``scenes-large`` uses the scene backend. Cheap to import: torch loads inside the handlers.

May import: everything (it is part of ``incentive``).
"""
from __future__ import annotations

import json

from incentive import args as types

POLICIES = ("gddpg", "ddpg", "td3", "sac", "random", "optimum")


def _common(p) -> None:
    p.add_argument("--personalities", default=None, help="TOML file of [[user]] tables (default: built-in users)")
    p.add_argument("--generator", default="scenes-large", help="render (test double), scenes-small or scenes-large")
    p.add_argument("--cache", default="runs/denoise-cache", help="generation cache folder (default runs/denoise-cache)")
    p.add_argument("--devices", type=types.count(1, 8), default=3, help="K devices (default 3)")
    p.add_argument("--threads", type=types.count(1, 1024), default=1, help="torch CPU threads (default 1)")


def register(subparsers) -> None:
    """Add the ``denoise`` parser and its sub-commands."""
    parser = subparsers.add_parser("denoise", help="distributed denoising: G-DDPG, baselines and the optimum",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="denoise_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    e = sub.add_parser("evaluate", help="train each policy, score it on held-out users against the optimum; JSON")
    _common(e)
    e.add_argument("--policy", nargs="+", choices=POLICIES, default=list(POLICIES))
    e.add_argument("--seeds", type=types.count(1, 1000), default=5)
    e.add_argument("--train-steps", type=types.count(1, 10**7), default=3000)
    e.add_argument("--states", type=types.count(1, 10**5), default=20, help="held-out states (default 20)")
    e.add_argument("--out", default=None, help="write the JSON here (atomically)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    e.set_defaults(func=_evaluate)

    t = sub.add_parser("train", help="train one learner and save its policy file")
    _common(t)
    t.add_argument("--policy", choices=POLICIES[:4], default="gddpg")
    t.add_argument("--steps", type=types.count(1, 10**7), default=3000)
    t.add_argument("--seed", type=types.seed, default=0)
    t.add_argument("--out", required=True, help="policy file to write (atomically)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    t.set_defaults(func=_train)

    f = sub.add_parser("figures", help="Fig. 10: GA1/GA2 x two rendered images x 200 seeds (JSON + PNG)")
    f.add_argument("--out", default="runs/denoise-figures", help="output folder")
    f.add_argument("--seeds", type=types.count(2, 100000), default=200)
    f.set_defaults(func=_figures)


def _check_out(args) -> None:
    """A bad or existing ``--out`` fails before any work (existing files only with ``--overwrite``)."""
    from pathlib import Path

    from incentive.outdir import check_output_file
    from market.errors import UserError

    check_output_file(args.out)
    if Path(args.out).exists() and not args.overwrite:
        raise UserError(f"--out {args.out}: exists; pass --overwrite to replace it")


def _setup(args):
    import torch

    from provisioning.backend.scenes import load_judge
    from provisioning.denoising.generation import GenerationCache, RenderingGenerator, SceneBackendGenerator
    from provisioning.denoising.problem import DenoiseConfig, QoETable
    from provisioning.denoising.users import builtin_users, load_users

    torch.set_num_threads(args.threads)
    train, held = load_users(args.personalities) if args.personalities else builtin_users()
    if args.generator == "render":
        generator = RenderingGenerator()
    else:
        from provisioning.backend.scenes import load_scene_model

        generator = SceneBackendGenerator(load_scene_model(args.generator))
    config = DenoiseConfig(devices=args.devices)
    return config, train, held or train, QoETable(config, GenerationCache(generator, args.cache), load_judge())


def _evaluate(args) -> int:
    from market.atomic import atomic_write_json, json_ready
    from provisioning.denoising.runs import CompareConfig, compare

    if args.out is not None:
        _check_out(args)
    config, train, held, table = _setup(args)
    cfg = CompareConfig(policies=tuple(args.policy), seeds=args.seeds, train_steps=args.train_steps,
                        held_out_states=args.states)
    result = compare(config, train, held, table, cfg, progress=lambda text: print(text, flush=True))
    result = json_ready({"generator": table.cache.generator.identity,
                         "provisional": True,
                         "note": ("rendering test double: checks the plumbing, not a result" if args.generator == "render"
                                  else "scene generator: check its card before reading these numbers as results"),
                         "held_out_users": [u.name for u in held], **result})
    if args.out is not None:
        atomic_write_json(args.out, result)
    print(json.dumps(result, indent=2))
    return 0


def _train(args) -> int:
    from pathlib import Path

    from provisioning.agents.registry import get
    from provisioning.denoising.problem import DenoiseEnv
    from provisioning.denoising.runs import learner_overrides

    _check_out(args)
    config, train, _, table = _setup(args)
    spec = get(args.policy)
    trainer = spec.trainer_class()(DenoiseEnv(config, train, table, seed=args.seed),
                                   spec.make_config(**learner_overrides(args.policy, args.steps, 500)),
                                   seed=args.seed, total_steps=args.steps)
    trainer.advance(args.steps, lambda: False, lambda: None)
    trainer.save_policy(Path(args.out), {"steps": args.steps, "seed": args.seed})
    print(json.dumps({"policy": args.policy, "out": args.out, "steps": args.steps, "cache": table.stats()}, indent=2))
    return 0


def _figures(args) -> int:
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from market.atomic import atomic_write_json, atomic_write_png
    from provisioning.backend.scenes import load_judge
    from provisioning.denoising.consistency import consistency, rendered_pair

    out = Path(args.out)
    images, own, other = rendered_pair()
    rows = consistency(load_judge(), images, own, other, seeds=args.seeds)
    atomic_write_json(out / "fig10_consistency.json", {"own_prompt": own, "other_prompt": other, "rows": rows})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for row, colour in zip(rows, ("tab:blue", "tab:cyan", "tab:red", "tab:orange")):
        ax.scatter(range(len(row["scores"])), row["scores"], s=6, color=colour,
                   label=f"{row['personality']} image {row['image']}: {row['mean']:.2f} +/- {row['sd']:.2f}")
    ax.set_xlabel("seed")
    ax.set_ylabel("QoE")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="lower right")
    atomic_write_png(out / "fig10_consistency.png", fig)
    for row in rows:
        print(f"{row['personality']} image {row['image']}: mean {row['mean']:.3f} sd {row['sd']:.3f}")
    return 0
