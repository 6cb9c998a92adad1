"""Orchestration of the prompt-engineering experiments: request files, generators, evaluation.

What this module is for: the steps behind ``incentive prompts dataset|train|evaluate``, on
typed records: read a user's ``[[request]]`` TOML file (:func:`load_requests`, every bad
field a :class:`ScenarioError` naming file and field), pick an image generator by name
(:func:`make_generator`), and evaluate the five policies over seeds on held-out requests
(:func:`evaluate_policies`): GAIL and PPO are trained on D's table per seed; random is seeded;
empirical and expert are deterministic (spread 0).

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
                            _cells, evaluate_actions, evaluate_expert, evaluate_policy_table, train_gail,
                            train_ppo)
from .requests import Request
from .strategies import EMPIRICAL_STRATEGY

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
        raise ScenarioError(f"unknown top-level key (only [[request]] tables)", file=path, field=extra[0])
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


__all__ = ["POLICIES", "GENERATORS", "load_requests", "make_generator", "PolicyResult", "evaluate_policies",
           "evaluate_expert"]
