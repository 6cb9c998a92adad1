"""Orchestration of the prompt-engineering experiments: request files, generators, evaluation.

What this module is for: the steps behind ``incentive prompts dataset|train|evaluate``, on
typed records: read a user's ``[[request]]`` TOML file (:func:`load_requests`, every bad
field a :class:`ScenarioError` naming file and field), pick an image generator by name
(:func:`make_generator`), and evaluate the five policies over seeds on held-out requests
(:func:`evaluate_policies`): GAIL and PPO are trained on D's table per seed; random is seeded;
empirical and expert are deterministic (spread 0).

:func:`run_experiment` is the whole experiment of the issue (``incentive prompts experiment``),
read as its steps on an :class:`ExperimentConfig`: (1) build D (resumable), (2) build the
held-out set E from raw prompts not in D, (3) train and evaluate the policies over seeds,
(4) service rounds, (5) Figs. 10-12, (6) ``summary.json`` with the sizes, the times, the
issue's criteria (:func:`criteria`) and the paper's single-round claims (:func:`claims`).

May import: numpy, ``market.errors``, this package (torch / SB3 / imitation through it).
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from market.errors import ScenarioError, UserError

from .dataset import ImageGenerator, RenderImageGenerator, SceneImageGenerator
from .imitation_env import (ConstantPolicy, PolicyScore, RandomStrategyPolicy, StrategyTable, TrainConfig,
                            _cells, evaluate_actions, evaluate_expert, evaluate_policy_table, split_half_expert,
                            train_gail, train_ppo)
from .requests import Request
from .strategies import EMPIRICAL_STRATEGY

#: The paper's converged IRL utility (section VI-B: "approximately 8.06"), the anchor of the shifted thresholds.
PAPER_IRL_UTILITY = 8.06
POLICIES: tuple[str, ...] = ("gail", "ppo", "random", "empirical", "expert", "raw")
"""``raw`` = always strategy 0 (no prompt engineering, the paper's "default")."""
GENERATORS: tuple[str, ...] = ("render", "scenes-small", "scenes-large")


def load_requests(path: str | Path) -> list[Request]:
    """``[[request]]`` tables with ``raw`` (str), ``intent`` (str) and ``threshold`` (0-10)."""
    from provisioning.backend.scenes.world import parse

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("requests file not found", file=path) from None
    except UnicodeDecodeError:
        raise ScenarioError("not UTF-8 text (a binary file?)", file=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML ({exc})", file=path) from None
    tables = data.get("request")
    if not isinstance(tables, list) or not tables:
        raise ScenarioError("needs at least one [[request]] table", file=path, field="request")
    extra = sorted(set(data) - {"request"})
    if extra:
        raise ScenarioError("unknown top-level key (only [[request]] tables)", file=path, field=extra[0])
    out = []
    for i, table in enumerate(tables):
        where = f"request[{i}]"
        if not isinstance(table, dict):
            raise ScenarioError("must be a table", file=path, field=where)
        unknown = sorted(set(table) - {"raw", "intent", "threshold"})
        if unknown:
            raise ScenarioError("unknown key (allowed: raw, intent, threshold)", file=path, field=f"{where}.{unknown[0]}")
        for key in ("raw", "intent"):
            if not isinstance(table.get(key), str) or not table[key].strip():
                raise ScenarioError("must be a non-empty string", file=path, field=f"{where}.{key}")
        raw = parse(table["raw"]).description
        if raw.scene is None or raw.object is None:
            raise ScenarioError("names no scene and object of the world (e.g. 'A grassland, with a tree')",
                                file=path, field=f"{where}.raw")
        threshold = table.get("threshold", 7.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
                or not 0 <= threshold <= 10:
            raise ScenarioError("must be a number in [0, 10]", file=path, field=f"{where}.threshold")
        out.append(Request(table["raw"].strip(), table["intent"].strip(), float(threshold)))
    return out


def make_generator(name: str, steps: int | None = None, device: str | None = None) -> ImageGenerator:
    """``render`` (the test double: a perfect generator) or a scene model name / folder."""
    if name == "render":
        return RenderImageGenerator()
    try:
        return SceneImageGenerator(name, steps=steps, device=device)
    except (FileNotFoundError, OSError) as exc:
        raise UserError(f"--generator {name}: cannot load the scene model ({exc}); train it with "
                        "`incentive backend scenes train` or use --generator render") from None


@dataclass
class PolicyResult:
    """One policy over seeds: per-seed scores and the spread."""

    name: str
    per_seed: list[PolicyScore]
    score_samples: list[float] = field(default_factory=list)
    curves: list[list[list[float]]] = field(default_factory=list)
    """GAIL / PPO, per seed: ``[timesteps, held-out mean score, training-table mean score]`` after
    every rollout (Fig. 11's training curves)."""

    def summary(self) -> dict:
        def stat(key: str) -> dict:
            values = np.array([getattr(s, key) for s in self.per_seed], dtype=float)
            return {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    "min": float(values.min()), "max": float(values.max())}
        return {"mean_score": stat("mean_score"), "single_round_success": stat("single_round_success"),
                "fraction_of_expert": stat("fraction_of_expert"), "seeds": len(self.per_seed),
                "per_seed": [asdict(s) for s in self.per_seed], "curves": self.curves}


def evaluate_policies(train: StrategyTable, heldout: StrategyTable, policies: Sequence[str], seeds: Sequence[int],
                      cfg: TrainConfig, progress=None) -> dict[str, PolicyResult]:
    """Train (GAIL, PPO) on ``train`` per seed and score every policy's first-round choice on ``heldout``."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise UserError(f"--policy: {unknown[0]!r} is not one of {', '.join(POLICIES)}")
    j, m = _cells(heldout)
    zero = np.zeros(heldout.num_strategies, dtype=np.float32)
    obs = np.stack([heldout.observation(a, b, zero, cfg.horizon) for a, b in zip(j, m)])
    results: dict[str, PolicyResult] = {}
    for name in policies:
        result = PolicyResult(name, [])
        for seed in (seeds if name in ("gail", "ppo", "random") else seeds[:1]):
            if name == "expert":
                actions = heldout.expert_actions()[j, m]
            elif name == "raw":
                actions = ConstantPolicy(0, "raw").choose(obs)
            elif name == "empirical":
                actions = ConstantPolicy(EMPIRICAL_STRATEGY).choose(obs)
            elif name == "random":
                actions = RandomStrategyPolicy(heldout.num_strategies, seed).choose(obs)
            else:
                curve: list[list[float]] = []
                monitor = (lambda t, p: curve.append([t, evaluate_policy_table(p, heldout, cfg.horizon).mean_score,
                                                      evaluate_policy_table(p, train, cfg.horizon).mean_score]))
                policy = (train_gail if name == "gail" else train_ppo)(train, cfg, seed, monitor)
                actions = policy.choose(obs)
                result.curves.append(curve)
            result.per_seed.append(evaluate_actions(heldout, actions))
            result.score_samples.extend(float(x) for x in heldout.scores[j, np.asarray(actions), m].ravel())
            if progress is not None:
                progress(name, seed)
        results[name] = result
    return results


@dataclass
class ExperimentConfig:
    """Sizes of one ``incentive prompts experiment`` run (see :func:`run_experiment`)."""

    generator: str = "render"
    steps: int | None = None
    scorer: str = "big-five:GA1"
    demonstrations: int = 24
    """L_p: requests in D."""
    heldout: int = 12
    """Requests in E (raw prompts not in D)."""
    images: int = 4
    powers_w: tuple[float, ...] = (0.001, 0.01, 0.1)
    seeds: int = 5
    timesteps: int = 4096
    horizon: int = 3
    embedding: str = "keywords"
    threshold: float = 7.5
    seed: int = 0
    grid_images: int = 2
    """Images per cell of Fig. 10 (0: no Fig. 10)."""
    confidence: float = 0.9


def _spread_gap(a: dict, b: dict) -> dict:
    """``a - b`` of two mean-score records and whether it exceeds the sum of their seed stds."""
    gap = a["mean"] - b["mean"]
    spread = a["std"] + b["std"]
    return {"difference": gap, "seed_spread": spread, "above_by_more_than_spread": bool(gap > spread)}


def criteria(policies: dict) -> dict:
    """The issue's "done when": GAIL >= 90% of the expert; above empirical and random by more than the spread."""
    gail = policies["gail"]
    out = {"gail_fraction_of_expert": gail["fraction_of_expert"]["mean"],
           "gail_fraction_of_expert_std": gail["fraction_of_expert"]["std"],
           "gail_reaches_90_percent_of_expert": bool(gail["fraction_of_expert"]["mean"] >= 0.9)}
    for base in ("empirical", "random", "ppo", "raw"):
        if base in policies:
            out[f"gail_vs_{base}"] = _spread_gap(gail["mean_score"], policies[base]["mean_score"])
    return out


def claims(policies: dict, rounds: dict) -> dict:
    """The paper's single-round claims (GAIL 6.3x raw, 2.1x empirical): grid shares and per-image success."""
    def ratio(a: float, b: float) -> float | None:
        return a / b if b > 0 else None

    out = {}
    for base, paper in (("raw", 6.3), ("empirical", 2.1)):
        g, b = rounds["gail"]["single_round_share"], rounds[base]["single_round_share"]
        s_g, s_b = policies["gail"]["single_round_success"]["mean"], policies[base]["single_round_success"]["mean"]
        out[f"gail_over_{base}"] = {
            "paper": paper, "single_round_share": [round(g * 55), round(b * 55)], "share_ratio": ratio(g, b),
            "per_image_success": [s_g, s_b], "per_image_success_ratio": ratio(s_g, s_b)}
    return out


def run_experiment(cfg: ExperimentConfig, folder: str | Path, log=print, progress: bool = True) -> dict:
    """The experiment's steps (module docstring); every file written atomically into ``folder``."""
    import time

    import torch

    from market.atomic import atomic_write_json, json_ready

    from .corpus import WorldPromptOptimizer
    from .dataset import DatasetConfig, DemonstrationDataset, build_dataset
    from .figures import grid_record, plot_rounds, plot_strategy_grid, plot_training, strategy_grid
    from .imitation_env import EMBEDDERS
    from .requests import make_scorer, sample_requests
    from .rounds import PAPER_THRESHOLDS, rounds_grid
    from .strategies import strategies

    torch.set_num_threads(1)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    generator, scorer = make_generator(cfg.generator, cfg.steps), make_scorer(cfg.scorer)
    optimizer = WorldPromptOptimizer()

    def dataset(name: str, requests, seed: int) -> DemonstrationDataset:
        path, begin = folder / name, time.perf_counter()
        dcfg = DatasetConfig(powers_w=tuple(cfg.powers_w), images=cfg.images, seed=seed)
        built = (DemonstrationDataset.load(path) if path.exists() else
                 build_dataset(requests, strategies(), optimizer, generator, scorer, dcfg, out=path, progress=progress))
        if built.requests != list(requests) or (built.config.get("scorer"), built.config.get("generator")) != (
                scorer.name, generator.name):
            raise UserError(f"{path}: holds another experiment's dataset; use another --out folder")
        times[name] = time.perf_counter() - begin
        log(f"{name}: {len(requests)} requests x {len(built.strategies)} strategies x {len(built.powers_w)} powers x "
            f"{cfg.images} images, built in {built.build_seconds:.1f} s")
        return built

    train_requests = sample_requests(cfg.demonstrations, cfg.seed, threshold=cfg.threshold)            # 1. D
    train_ds = dataset("D.npz", train_requests, cfg.seed)
    heldout_requests = sample_requests(cfg.heldout, cfg.seed + 1, threshold=cfg.threshold,               # 2. E
                                       exclude=frozenset(r.raw for r in train_requests))
    heldout_ds = dataset("E.npz", heldout_requests, cfg.seed + 1)
    begin = time.perf_counter()                                                                          # 3. policies
    embed = EMBEDDERS[cfg.embedding]
    span = (float(min(train_ds.powers_w)), float(max(train_ds.powers_w)))
    train, heldout = (StrategyTable.from_dataset(d, embed, span) for d in (train_ds, heldout_ds))
    results = evaluate_policies(train, heldout, list(POLICIES), list(range(cfg.seeds)),
                                TrainConfig(total_timesteps=cfg.timesteps, horizon=cfg.horizon),
                                progress=lambda n, s: log(f"  {n} seed {s} done"))
    policies = {n: {**r.summary(), "score_samples": r.score_samples} for n, r in results.items()}
    evaluation = {"provisional": cfg.generator == "render", "train_dataset": "D.npz", "heldout_dataset": "E.npz",
                  "generator": generator.name, "scorer": scorer.name, "heldout_requests": len(heldout_requests),
                  "heldout_prompts_in_D": 0, "seeds": cfg.seeds, "embedding": cfg.embedding, "policies": policies}
    atomic_write_json(folder / "evaluation.json", json_ready(evaluation))
    times["policies"] = time.perf_counter() - begin
    # 4. rounds: at the paper's thresholds and shifted onto our scale (GAIL's mean where the paper's IRL had 8.06)
    shift = policies["gail"]["mean_score"]["mean"] - PAPER_IRL_UTILITY if "gail" in policies else 0.0
    rounds_docs = {}
    for label, offset in (("paper", 0.0), ("shifted", shift)):
        thresholds = tuple(round(q + offset, 3) for q in PAPER_THRESHOLDS)
        grids = {n: rounds_grid(r["score_samples"], thresholds=thresholds, confidence=cfg.confidence).to_dict()
                 for n, r in policies.items()}
        rounds_docs[label] = {"confidence": cfg.confidence, "threshold_shift": offset, "policies": grids}
    rounds = rounds_docs["paper"]["policies"]
    rounds_doc = rounds_docs["paper"]
    atomic_write_json(folder / "rounds.json", json_ready(rounds_doc))
    atomic_write_json(folder / "rounds-shifted.json", json_ready(rounds_docs["shifted"]))
    begin = time.perf_counter()                                                                          # 5. figures
    plot_training(evaluation, folder / "fig11-training.png")
    plot_rounds(rounds_doc, folder / "fig12-rounds.png")
    plot_rounds(rounds_docs["shifted"], folder / "fig12-rounds-shifted.png")
    if cfg.grid_images:
        shown = [heldout_requests[i] for i in distinct_raw(heldout_requests, 3)]
        cells, pictures = strategy_grid(shown, strategies(), optimizer, generator, scorer, max(cfg.powers_w),
                                        images=cfg.grid_images, seed=cfg.seed)
        atomic_write_json(folder / "fig10-strategies.json",
                          grid_record(shown, cells, max(cfg.powers_w), generator.name, scorer.name))
        plot_strategy_grid(shown, cells, pictures, folder / "fig10-strategies.png",
                           title=f"{generator.name}, {scorer.name}, {max(cfg.powers_w):g} W: strategy: mean score")
    times["figures"] = time.perf_counter() - begin
    summary = {"config": asdict(cfg), "generator_training": _training_record(cfg.generator), "seconds": times,  # 6.
               "dataset": {"entries": int(train_ds.scores.size), "bytes": (folder / "D.npz").stat().st_size,
                           "build_seconds": train_ds.build_seconds,
                           "mean_score_per_strategy": train_ds.scores.mean(axis=(0, 2, 3)).tolist()},
               "heldout": {"entries": int(heldout_ds.scores.size), "build_seconds": heldout_ds.build_seconds},
               "table": {n: {k: r[k] for k in ("mean_score", "single_round_success", "fraction_of_expert")}
                         for n, r in policies.items()},
               "criteria": {**criteria(policies),
                            "expert_split_half": split_half_expert(heldout) if cfg.images >= 2 else None},
               "claims": claims(policies, rounds),
               "claims_shifted_thresholds": {"threshold_shift": shift,
                                             **claims(policies, rounds_docs["shifted"]["policies"])}}
    atomic_write_json(folder / "summary.json", json_ready(summary))
    return summary


def _training_record(generator: str) -> dict | None:
    """The scene model's ``training.json`` headline (steps, images seen, loss), where there is one."""
    import json

    from provisioning.backend.scenes.generator import SCENE_MODEL_NAMES, SCENE_MODELS_DIR

    path = (SCENE_MODELS_DIR / generator if generator in SCENE_MODEL_NAMES else Path(generator)) / "training.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: data.get(k) for k in ("name", "train_steps", "images_seen", "final_mse_last100", "parameters")}


def distinct_raw(requests: Sequence[Request], count: int) -> list[int]:
    """Indices of up to ``count`` requests with distinct raw prompts (Fig. 10's rows)."""
    seen, out = set(), []
    for i, r in enumerate(requests):
        if r.raw not in seen:
            seen.add(r.raw), out.append(i)
        if len(out) == count:
            break
    return out


__all__ = ["POLICIES", "GENERATORS", "load_requests", "make_generator", "PolicyResult", "evaluate_policies",
           "evaluate_expert", "ExperimentConfig", "criteria", "claims", "run_experiment", "distinct_raw"]
