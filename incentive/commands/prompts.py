"""``incentive prompts``: interactive prompt engineering (corpus, dataset D, GAIL, evaluation, rounds).

Sub-commands::

    incentive prompts corpus --raw TEXT [--seed X] [--phrasings K] [--out FILE]
    incentive prompts dataset --out FILE.npz [--requests FILE | --count L_p] [--exclude FILE.npz]
                              [--images S] [--powers W ...] [--generator NAME] [--steps T] [--seed X] [--overwrite]
    incentive prompts train --dataset FILE.npz --out DIR [--seeds K] [--timesteps T] [--embedding NAME]
    incentive prompts evaluate --dataset FILE.npz (--heldout FILE.npz | --requests FILE | --count N)
                               [--policy NAME ...] [--seeds K] [--timesteps T] [--models DIR] [--out FILE]
    incentive prompts rounds --evaluation FILE.json [--confidence C] [--model auto|empirical|normal] [--out FILE]
    incentive prompts experiment --out DIR [--generator NAME] [--scorer S] [--count L_p] [--heldout-count N]
                                 [--images S] [--seeds K] [--timesteps T] [--steps T] [--resume]   (all of it)
    incentive prompts figures --evaluation FILE.json [--rounds FILE.json] --out DIR       (Figs. 11, 12)
    incentive prompts grid --out DIR [--requests FILE | --count 3] [--generator NAME] [--scorer S] [--power W]  (Fig. 10)

Cheap to import: numpy-only modules at the top; torch, SB3 and imitation load in the handlers.

May import: everything (it is part of ``incentive``).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from incentive import args as types


def register(subparsers) -> None:
    """Add the ``prompts`` parser and its sub-commands."""
    parser = subparsers.add_parser("prompts", help="interactive prompt engineering: corpus, dataset, GAIL, rounds",
                                   description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="prompts_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    c = sub.add_parser("corpus", help="the corpus of a raw prompt and every strategy's engineered prompt")
    c.add_argument("--raw", required=True, help="raw prompt, e.g. 'A grassland, with a tree'")
    c.add_argument("--seed", type=types.seed, default=0)
    c.add_argument("--phrasings", type=types.count(2, 20), default=3, help="phrasings per aspect (default 3)")
    c.add_argument("--out", default=None, help="write the JSON here (atomically)")
    c.set_defaults(func=_corpus)

    d = sub.add_parser("dataset", help="build the demonstration dataset D (checkpointed, resumable)")
    d.add_argument("--out", required=True, help="dataset file (.npz); <out>.partial.npz is its checkpoint")
    _request_source(d)
    d.add_argument("--exclude", default=None, help="a dataset whose raw prompts the sampled requests avoid (held-out)")
    d.add_argument("--images", type=types.count(1, 1024), default=4, help="images per (request, strategy) (default 4)")
    d.add_argument("--powers", nargs="+", type=types.number(0.0, 1e3, low_open=True), default=[0.001, 0.01, 0.1],
                   help="transmit powers in watts (default 0.001 0.01 0.1)")
    _generator_options(d)
    d.add_argument("--scorer", default="judge",
                   help="user-side scorer: judge (intent match x degradation) or a personality-conditioned evaluator, "
                        "big-five:GA1, big-five:GA2 or big-five:O,C,E,A,N (default judge)")
    d.add_argument("--seed", type=types.seed, default=0)
    d.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_dataset)

    t = sub.add_parser("train", help="train GAIL and PPO on D over seeds; save the policies")
    t.add_argument("--dataset", required=True)
    t.add_argument("--out", required=True, help="folder for gail-seed<i>.zip, ppo-seed<i>.zip, train.json")
    t.add_argument("--overwrite", action="store_true", help="replace policies already in --out")
    _training_options(t)
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="score gail, ppo, random, empirical, expert on held-out requests")
    e.add_argument("--dataset", required=True, help="the training dataset D")
    e.add_argument("--heldout", default=None, help="a held-out dataset built like D")
    _request_source(e)
    e.add_argument("--policy", nargs="+", default=None, help="policies (default: gail ppo random empirical expert)")
    e.add_argument("--models", default=None, help="a `prompts train` folder (default: train here)")
    e.add_argument("--out", default=None, help="write the JSON here (atomically)")
    _training_options(e)
    _generator_options(e)
    e.set_defaults(func=_evaluate)

    r = sub.add_parser("rounds", help="service rounds needed at a confidence level (Fig. 12)")
    r.add_argument("--evaluation", required=True, help="a `prompts evaluate` JSON")
    r.add_argument("--confidence", type=types.number(0.0, 1.0, low_open=True), default=0.9)
    r.add_argument("--model", choices=("auto", "empirical", "normal"), default="auto")
    r.add_argument("--threshold-shift", type=types.number(-10.0, 10.0), default=0.0,
                   help="add this to the paper's thresholds 7.5..8.5 (e.g. onto our score scale; default 0)")
    r.add_argument("--out", default=None)
    r.set_defaults(func=_rounds)

    x = sub.add_parser("experiment", help="the whole experiment: D, held-out E, 5-seed evaluation, rounds, Figs. 10-12")
    x.add_argument("--out", required=True,
                   help="folder: D.npz, E.npz, evaluation.json, rounds.json, summary.json, figures")
    x.add_argument("--count", type=types.count(1, 10**4), default=24, help="L_p: requests in D (default 24)")
    x.add_argument("--heldout-count", type=types.count(1, 10**4), default=12, help="held-out requests (default 12)")
    x.add_argument("--images", type=types.count(1, 1024), default=4, help="images per (request, strategy)")
    x.add_argument("--scorer", default="big-five:GA1", help="user-side scorer (default big-five:GA1)")
    x.add_argument("--threshold", type=types.number(0.0, 10.0), default=7.5, help="requests' threshold (default 7.5)")
    x.add_argument("--grid-images", type=types.count(0, 64), default=2, help="images per Fig. 10 cell (0: none)")
    x.add_argument("--seed", type=types.seed, default=0)
    x.add_argument("--resume", action="store_true", help="reuse the folder's D.npz / E.npz (or their checkpoints) "
                   "and replace its results")
    x.add_argument("--quiet", action="store_true", help="no progress bars")
    _training_options(x)
    _generator_options(x)
    x.set_defaults(func=_experiment)

    f = sub.add_parser("figures", help="Fig. 11 (training curves, converged scores) and Fig. 12 (service rounds)")
    f.add_argument("--evaluation", required=True, help="a `prompts evaluate` JSON")
    f.add_argument("--rounds", default=None, help="a `prompts rounds` JSON (Fig. 12)")
    f.add_argument("--out", required=True, help="folder for fig11-training.png and fig12-rounds.png")
    f.set_defaults(func=_figures)

    g = sub.add_parser("grid", help="Fig. 10: the strategies on three prompts, received images and scores")
    g.add_argument("--out", required=True, help="folder for fig10-strategies.png and fig10-strategies.json")
    _request_source(g)
    _generator_options(g)
    g.add_argument("--scorer", default="judge", help="user-side scorer (as for `prompts dataset`)")
    g.add_argument("--power", type=types.number(0.0, 1e3, low_open=True), default=0.1,
                   help="transmit power in watts (default 0.1)")
    g.add_argument("--images", type=types.count(1, 64), default=2, help="images per cell (score = their mean)")
    g.add_argument("--seed", type=types.seed, default=0)
    g.set_defaults(func=_grid)


def _request_source(p) -> None:
    p.add_argument("--requests", default=None, help="TOML file of [[request]] tables (raw, intent, threshold)")
    p.add_argument("--count", type=types.count(1, 10**5), default=None, help="sample this many requests instead")
    p.add_argument("--threshold", type=types.number(0.0, 10.0), default=7.5, help="threshold of sampled requests")


def _generator_options(p) -> None:
    p.add_argument("--generator", default="render",
                   help="render (perfect-generator test double), scenes-small, scenes-large or a folder")
    p.add_argument("--steps", type=types.count(1, 1000), default=None, help="denoising steps (default: the model's)")
    p.add_argument("--threads", type=types.count(1, 64), default=1, help="torch CPU threads (default 1)")


def _training_options(p) -> None:
    p.add_argument("--seeds", type=types.count(1, 100), default=5, help="training seeds (default 5)")
    p.add_argument("--timesteps", type=types.count(256, 10**8), default=4096, help="GAIL / PPO steps (default 4096)")
    p.add_argument("--horizon", type=types.count(1, 20), default=3, help="rounds per episode (default 3)")
    p.add_argument("--embedding", choices=("keywords", "minilm"), default="keywords")


def _emit(payload: dict, out: str | None) -> None:
    from market.atomic import atomic_write_json, json_ready

    if out:
        from incentive.outdir import check_output_file

        atomic_write_json(check_output_file(out), json_ready(payload))
    print(json.dumps(json_ready(payload), indent=2))


def _corpus(args) -> int:
    from provisioning.prompting.corpus import WorldPromptOptimizer
    from provisioning.prompting.strategies import apply_strategy, strategies

    corpus = WorldPromptOptimizer(phrasings=args.phrasings).corpus(args.raw, seed=args.seed)
    engineered = [{"strategy": i, "name": s.name, **vars(apply_strategy(corpus, s))} for i, s in enumerate(strategies())]
    _emit({"corpus": corpus.to_dict(), "items": len(corpus), "strategies": engineered}, args.out)
    return 0


def _requests(args, exclude: frozenset[str] = frozenset()):
    from market.errors import UserError
    from provisioning.prompting.experiment import load_requests
    from provisioning.prompting.requests import sample_requests

    if args.requests and args.count:
        raise UserError("give --requests FILE or --count N, not both")
    if args.requests:
        return load_requests(args.requests)
    return sample_requests(args.count or 24, args.seed if hasattr(args, "seed") else 0, threshold=args.threshold,
                           exclude=exclude)


def _dataset(args) -> int:
    import torch

    from market.errors import UserError
    from provisioning.prompting.corpus import WorldPromptOptimizer
    from provisioning.prompting.dataset import DatasetConfig, DemonstrationDataset, build_dataset
    from provisioning.prompting.experiment import make_generator
    from provisioning.prompting.requests import make_scorer
    from provisioning.prompting.strategies import strategies

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UserError(f"--out {out}: exists; pass --overwrite to replace it")
    exclude = frozenset(r.raw for r in DemonstrationDataset.load(args.exclude).requests) if args.exclude else frozenset()
    requests = _requests(args, exclude)
    scorer = make_scorer(args.scorer)
    cfg = DatasetConfig(powers_w=tuple(args.powers), images=args.images, seed=args.seed)
    dataset = build_dataset(requests, strategies(), WorldPromptOptimizer(), make_generator(args.generator, args.steps),
                            scorer, cfg, out=out, progress=not args.quiet)
    _emit({"dataset": str(out), "scorer": scorer.name, "requests": len(requests), "strategies": len(dataset.strategies),
           "powers_w": list(cfg.powers_w), "ber": dataset.ber.tolist(), "images": cfg.images,
           "entries": int(dataset.scores.size), "bytes": out.stat().st_size,
           "build_seconds": round(dataset.build_seconds, 2),
           "mean_score_per_strategy": dataset.scores.mean(axis=(0, 2, 3)).round(3).tolist()}, None)
    return 0


def _tables(args, train_ds, heldout_ds):
    from provisioning.prompting.imitation_env import EMBEDDERS, StrategyTable

    embed = EMBEDDERS[args.embedding]
    span = (float(min(train_ds.powers_w)), float(max(train_ds.powers_w)))
    train = StrategyTable.from_dataset(train_ds, embed, span)
    return train, (StrategyTable.from_dataset(heldout_ds, embed, span) if heldout_ds is not None else None)


def _train_config(args):
    from provisioning.prompting.imitation_env import TrainConfig

    return TrainConfig(total_timesteps=args.timesteps, horizon=args.horizon)


def _train(args) -> int:
    import torch

    from market.atomic import atomic_write_json
    from provisioning.prompting.dataset import DemonstrationDataset
    from provisioning.prompting.imitation_env import evaluate_policy_table, train_gail, train_ppo

    from market.errors import UserError

    torch.set_num_threads(1)
    folder = Path(args.out)
    if folder.exists() and any(folder.iterdir()) and not args.overwrite:
        raise UserError(f"--out {folder}: is not empty; pass --overwrite to replace the policies in it")
    table, _ = _tables(args, DemonstrationDataset.load(args.dataset), None)
    cfg = _train_config(args)
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"dataset": args.dataset, "embedding": args.embedding, "config": vars(cfg), "training_table": {}}
    for name, trainer in (("gail", train_gail), ("ppo", train_ppo)):
        for seed in range(args.seeds):
            policy = trainer(table, cfg, seed)
            path = folder / f"{name}-seed{seed}.zip"
            policy.model.save(str(path) + ".tmp.zip")
            Path(str(path) + ".tmp.zip").replace(path)
            summary["training_table"].setdefault(name, []).append(vars(evaluate_policy_table(policy, table, cfg.horizon)))
    atomic_write_json(folder / "train.json", summary)
    print(json.dumps(summary, indent=2))
    return 0


def _evaluate(args) -> int:
    import torch

    from market.errors import UserError
    from provisioning.prompting import experiment
    from provisioning.prompting.dataset import DemonstrationDataset

    torch.set_num_threads(args.threads)
    if args.out:
        from incentive.outdir import check_output_file

        check_output_file(args.out)
    train_ds = DemonstrationDataset.load(args.dataset)
    heldout_ds = _heldout(args, train_ds)
    train, heldout = _tables(args, train_ds, heldout_ds)
    overlap = sorted({r.raw for r in train_ds.requests} & {r.raw for r in heldout_ds.requests})
    if overlap and not args.requests:
        raise UserError(f"--heldout: its raw prompts overlap D's ({overlap[0]!r}); build it with --exclude {args.dataset}")
    policies = args.policy or list(experiment.POLICIES)
    seeds = list(range(args.seeds))
    cfg = _train_config(args)
    if args.models:
        results = _evaluate_saved(args, heldout, policies, seeds, cfg)
    else:
        results = experiment.evaluate_policies(train, heldout, policies, seeds, cfg,
                                               progress=lambda n, s: print(f"{n} seed {s} done", file=sys.stderr))
    generator = train_ds.config.get("generator")
    payload = {"provisional": generator == "render",
               "note": "scores from the render double (a perfect generator)" if generator == "render" else
                       f"scores of images generated by {generator}",
               "train_dataset": args.dataset, "generator": generator, "scorer": train_ds.config.get("scorer"),
               "heldout_requests": len(heldout_ds.requests), "heldout_prompts_in_D": len(overlap),
               "seeds": len(seeds), "config": vars(cfg), "embedding": args.embedding,
               "policies": {n: {**r.summary(), "score_samples": r.score_samples} for n, r in results.items()}}
    _emit(payload, args.out)
    return 0


def _heldout(args, train_ds):
    from provisioning.prompting.corpus import WorldPromptOptimizer
    from provisioning.prompting.dataset import DatasetConfig, DemonstrationDataset, build_dataset
    from provisioning.prompting.experiment import make_generator
    from provisioning.prompting.requests import make_scorer
    from provisioning.prompting.strategies import get_strategy

    if args.heldout:
        if args.requests or args.count:
            from market.errors import UserError

            raise UserError("give --heldout FILE or --requests FILE / --count N, not both")
        return DemonstrationDataset.load(args.heldout)
    requests = _requests(args, frozenset(r.raw for r in train_ds.requests))
    cfg = DatasetConfig(powers_w=tuple(float(p) for p in train_ds.powers_w), images=int(train_ds.scores.shape[3]),
                        seed=int(train_ds.config.get("seed", 0)) + 1)
    generator = make_generator(train_ds.config.get("generator") or args.generator, args.steps)
    return build_dataset(requests, [get_strategy(s) for s in train_ds.strategies], WorldPromptOptimizer(), generator,
                         make_scorer(train_ds.config.get("scorer") or "judge"), cfg, progress=False)


def _evaluate_saved(args, heldout, policies, seeds, cfg):
    from stable_baselines3 import PPO

    from market.errors import MissingArtifactError
    from provisioning.prompting import experiment
    from provisioning.prompting.imitation_env import SB3StrategyPolicy, _cells, evaluate_actions

    import numpy as np

    summary = Path(args.models) / "train.json"
    if summary.exists() and json.loads(summary.read_text()).get("embedding") != args.embedding:
        from market.errors import UserError

        raise UserError(f"--models {args.models}: trained with --embedding "
                        f"{json.loads(summary.read_text()).get('embedding')}; pass the same --embedding")
    j, m = _cells(heldout)

    zero = np.zeros(heldout.num_strategies, dtype=np.float32)
    obs = np.stack([heldout.observation(a, b, zero, cfg.horizon) for a, b in zip(j, m)])
    results = experiment.evaluate_policies(heldout, heldout, [p for p in policies if p not in ("gail", "ppo")],
                                           seeds, cfg)
    for name in [p for p in policies if p in ("gail", "ppo")]:
        result = experiment.PolicyResult(name, [])
        for seed in seeds:
            path = Path(args.models) / f"{name}-seed{seed}.zip"
            if not path.exists():
                raise MissingArtifactError(f"--models: {path} is missing; run `incentive prompts train --seeds {len(seeds)}`")
            actions = SB3StrategyPolicy(PPO.load(str(path), device="cpu"), name).choose(obs)
            result.per_seed.append(evaluate_actions(heldout, actions))
            result.score_samples.extend(float(x) for x in heldout.scores[j, actions, m].ravel())
        results[name] = result
    return {p: results[p] for p in policies}


def _rounds(args) -> int:
    from market.errors import UserError
    from provisioning.prompting.rounds import PAPER_THRESHOLDS, rounds_grid

    try:
        evaluation = json.loads(Path(args.evaluation).read_text(encoding="utf-8"))
        policies = evaluation["policies"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--evaluation {args.evaluation}: not a `prompts evaluate` JSON ({exc})") from None
    out = {}
    for name, record in policies.items():
        samples = record.get("score_samples") or []
        if not samples:
            raise UserError(f"{args.evaluation}: field 'policies.{name}.score_samples' is empty")
        thresholds = tuple(round(q + args.threshold_shift, 3) for q in PAPER_THRESHOLDS)
        out[name] = rounds_grid(samples, thresholds=thresholds, confidence=args.confidence, model=args.model).to_dict()
    ratios = {}
    for base in ("raw", "empirical", "random"):
        if "gail" in out and base in out and out[base]["single_round_share"] > 0:
            ratios[f"gail_over_{base}"] = out["gail"]["single_round_share"] / out[base]["single_round_share"]
    _emit({"confidence": args.confidence, "threshold_shift": args.threshold_shift, "policies": out,
           "single_round_ratios": ratios}, args.out)
    return 0


def _read_json(path: str, what: str) -> dict:
    from market.errors import UserError

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        data["policies"]
        return data
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a `prompts {what}` JSON ({exc})") from None


def _figures(args) -> int:
    from provisioning.prompting.figures import plot_rounds, plot_training

    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    written = [str(plot_training(_read_json(args.evaluation, "evaluate"), folder / "fig11-training.png"))]
    if args.rounds:
        written.append(str(plot_rounds(_read_json(args.rounds, "rounds"), folder / "fig12-rounds.png")))
    print(json.dumps({"figures": written}, indent=2))
    return 0


def _grid(args) -> int:
    import torch

    from market.atomic import atomic_write_json
    from provisioning.prompting.corpus import WorldPromptOptimizer
    from provisioning.prompting.experiment import make_generator
    from provisioning.prompting.figures import grid_record, plot_strategy_grid, strategy_grid
    from provisioning.prompting.requests import make_scorer
    from provisioning.prompting.strategies import strategies

    torch.set_num_threads(args.threads)
    from provisioning.prompting.experiment import distinct_raw

    if args.requests:
        requests = _requests(args)
    else:  # --count requests with distinct raw prompts (one row each)
        wanted, args.count = args.count or 3, 12 * (args.count or 3)
        pool = _requests(args)
        requests = [pool[i] for i in distinct_raw(pool, wanted)]
    generator, scorer = make_generator(args.generator, args.steps), make_scorer(args.scorer)
    cells, pictures = strategy_grid(requests, strategies(), WorldPromptOptimizer(), generator, scorer, args.power,
                                    images=args.images, seed=args.seed)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    record = grid_record(requests, cells, args.power, generator.name, scorer.name)
    atomic_write_json(folder / "fig10-strategies.json", record)
    plot_strategy_grid(requests, cells, pictures, folder / "fig10-strategies.png",
                       title=f"{generator.name}, {scorer.name}, {args.power:g} W: strategy: mean score of "
                             f"{args.images} received image(s)")
    means = [[round(float(sum(c.scores) / len(c.scores)), 3) for c in cells if c.request == j]
             for j in range(len(requests))]
    print(json.dumps({"figure": str(folder / "fig10-strategies.png"), "mean_score": means}, indent=2))
    return 0


def _experiment(args) -> int:
    import torch

    from market.errors import UserError
    from provisioning.prompting.experiment import ExperimentConfig, run_experiment

    torch.set_num_threads(args.threads)
    folder = Path(args.out)
    if folder.exists() and any(folder.iterdir()) and not args.resume:
        raise UserError(f"--out {folder}: is not empty; pass --resume to reuse its datasets and replace its results")
    cfg = ExperimentConfig(generator=args.generator, steps=args.steps, scorer=args.scorer, demonstrations=args.count,
                           heldout=args.heldout_count, images=args.images, seeds=args.seeds, timesteps=args.timesteps,
                           horizon=args.horizon, embedding=args.embedding, threshold=args.threshold, seed=args.seed,
                           grid_images=args.grid_images)
    summary = run_experiment(cfg, folder, log=lambda m: print(m, file=sys.stderr), progress=not args.quiet)
    print(json.dumps({k: summary[k] for k in ("seconds", "table", "criteria", "claims")}, indent=2))
    return 0
