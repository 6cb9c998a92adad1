"""Prompt engineering into provisioning: D's quality per strategy as the per-trial quality of a slot.

What this module is for: the issue's part 7 (the paper's section V builds on section IV: the
quality an AIGC trial reaches depends on the prompt the MASP sends). A demonstration dataset D
(:mod:`.dataset`) measured, for each request, strategy and power level, the user-side score of
single images. This module turns D into the provisioning layer's per-trial quality model
(``provisioning.quality.QualityModel``) for a *strategy policy* -- ``raw`` (strategy 0, no prompt
engineering), ``empirical`` (strategy 6), ``expert`` (the hindsight best of eq. (16)),
``strategy:K``, or a trained GAIL / PPO policy saved by ``incentive prompts train`` -- and
re-decides a run's provisioning slots under the raw and the engineered quality, so that
``incentive run --prompt-engineering D.npz`` reports what prompt engineering changes in QoE and
in the trials a user needs.

The fit (:func:`quality_model_from_dataset`), per difficulty group of D's requests:

* **difficulty** of a request = the share of its hidden intent's attributes that the raw prompt
  does not state (``1 - |raw| / |intent|``), rescaled so that D's easiest group is 0 and its
  hardest 1 (the provisioning state's difficulty range); what the raw prompt leaves unsaid is
  what the strategies can add;
* per power level ``m`` with bit error rate ``BER_m``, the chosen strategy's log scores
  (``ln max(score, 0.1)``) of every request in the group; ``mean_log_score`` and
  ``ber_sensitivity`` are the least-squares line ``mean_m = mu - kappa BER_m`` over the levels
  (``kappa`` >= 0; 0 with one level); ``std_log_score`` is the pooled spread of the log score
  *within* a (request, power) cell -- the spread between images of one request, which is what
  extra trials exploit (the spread between requests is not).

Trials needed (:func:`trials_for_confidence`): the fewest i.i.d. trials whose best meets the
user's threshold with probability ``confidence`` (0.9), each trial meeting it with the
log-normal model's ``p = P(ln q >= ln q_th)`` at the user's decided BER (``.rounds.rounds_needed``
with one image per round).

What is held fixed: the market's rewards and allocations are the run's (priced with the ASPs'
own quality); only the per-trial quality changes, and every slot is re-decided (the run's method
and the exact oracle) under each variant -- a first-order comparison (``docs/prompts.md``).

May import: numpy, scipy, ``market.errors``, ``provisioning.quality``, ``provisioning.coupling``
(decide_slots), ``provisioning.backend.scenes.world``, this package.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from market.errors import UserError
from provisioning.quality import InterpolatedQualityModel

from .dataset import DemonstrationDataset
from .imitation_env import EMBEDDERS, SB3StrategyPolicy, StrategyTable, _cells
from .requests import Request
from .rounds import rounds_needed
from .strategies import EMPIRICAL_STRATEGY

#: Scores below this floor (0-10 scale) are lifted to it before the log.
LOG_SCORE_FLOOR = 0.1
POLICY_CHOICES = "raw, empirical, expert, strategy:K or a policy file (.zip) from `incentive prompts train`"


@dataclass(frozen=True)
class PromptEngineering:
    """What ``incentive run --prompt-engineering`` serves: D and the strategy policy of the engineered variant."""

    dataset: str
    policy: str = "empirical"
    embedding: str = "keywords"
    confidence: float = 0.9


def unsaid_share(request: Request) -> float:
    """Share of the intent's attributes that the raw prompt does not state, in [0, 1)."""
    from provisioning.backend.scenes.world import parse

    intent = request.intent_attributes()
    said = {k: v for k, v in parse(request.raw).description.specified().items() if intent.get(k) == v}
    return 1.0 - len(said) / max(1, len(intent))


def strategy_choices(dataset: DemonstrationDataset, policy: str, embedding: str = "keywords") -> np.ndarray:
    """The strategy the policy picks for each (request, power) cell of D, ``(requests, powers)`` int."""
    shape = (len(dataset.requests), len(dataset.powers_w))
    k = len(dataset.strategies)
    if policy == "raw":
        return np.zeros(shape, dtype=np.int64)
    if policy == "empirical":
        return np.full(shape, min(EMPIRICAL_STRATEGY, k - 1), dtype=np.int64)
    if policy == "expert":
        return dataset.mean_scores().argmax(axis=1)
    if policy.startswith("strategy:"):
        try:
            index = int(policy.split(":", 1)[1])
        except ValueError:
            index = -1
        if not 0 <= index < k:
            raise UserError(f"prompt policy {policy!r}: the strategy must be an integer in 0..{k - 1}")
        return np.full(shape, index, dtype=np.int64)
    path = Path(policy)
    if path.suffix != ".zip":
        raise UserError(f"prompt policy {policy!r}: choose {POLICY_CHOICES}")
    if not path.is_file():
        raise UserError(f"prompt policy {policy}: no such file")
    if embedding not in EMBEDDERS:
        raise UserError(f"prompt embedding {embedding!r}: choose one of {', '.join(EMBEDDERS)}")
    from stable_baselines3 import PPO

    table = StrategyTable.from_dataset(dataset, EMBEDDERS[embedding])
    try:
        model = PPO.load(str(path), device="cpu")
    except Exception as exc:  # a zip that is not an SB3 model: one line naming the file
        raise UserError(f"prompt policy {policy}: not a policy saved by `incentive prompts train` ({exc})") from None
    if model.observation_space.shape[0] != table.num_strategies + table.embeddings.shape[1] + 1:
        raise UserError(f"prompt policy {policy}: expects {model.observation_space.shape[0]} observations; "
                        f"D with --embedding {embedding} gives {table.num_strategies + table.embeddings.shape[1] + 1}")
    j, m = _cells(table)
    zero = np.zeros(table.num_strategies, dtype=np.float32)
    obs = np.stack([table.observation(a, b, zero, 1) for a, b in zip(j, m)])
    return SB3StrategyPolicy(model, path.stem).choose(obs).reshape(shape)


@dataclass
class QualityFit:
    """The fitted quality model of one strategy policy on D, with the figures behind it."""

    policy: str
    model: InterpolatedQualityModel
    groups: list = field(default_factory=list)
    """Per difficulty group: ``unsaid_share``, ``difficulty``, ``requests``, ``mean_score`` and the fit."""
    strategy_share: list = field(default_factory=list)
    """Share of D's cells on which the policy picks each strategy."""

    def to_dict(self) -> dict:
        return {"policy": self.policy, "quality_model": asdict(self.model), "groups": self.groups,
                "strategy_share": self.strategy_share}


def quality_model_from_dataset(dataset: DemonstrationDataset, choices: np.ndarray, policy: str = "") -> QualityFit:
    """The per-trial quality model of the module docstring for the strategy ``choices[j, m]``."""
    scores = np.asarray(dataset.scores, dtype=float)          # (J, K, M, S)
    j_idx, m_idx = np.meshgrid(np.arange(scores.shape[0]), np.arange(scores.shape[2]), indexing="ij")
    chosen = scores[j_idx, choices, m_idx]                     # (J, M, S)
    logs = np.log(np.maximum(chosen, LOG_SCORE_FLOOR))
    shares = np.array([unsaid_share(r) for r in dataset.requests])
    levels = np.unique(shares)
    lo, hi = float(levels.min()), float(levels.max())
    ber = np.asarray(dataset.ber, dtype=float)
    groups, means, spreads, kappas, difficulties = [], [], [], [], []
    for level in levels:
        rows = logs[shares == level]                           # (Jg, M, S)
        per_power = rows.mean(axis=(0, 2))
        if len(ber) > 1 and np.ptp(ber) > 0:
            slope, intercept = np.polyfit(ber, per_power, 1)
            # no measurable loss to bit errors (slope >= 0): flat in BER
            kappa, mu = (-float(slope), float(intercept)) if slope < 0 else (0.0, float(per_power.mean()))
        else:
            kappa, mu = 0.0, float(per_power.mean())
        within = rows - rows.mean(axis=2, keepdims=True)
        dof = rows.shape[0] * rows.shape[1] * max(rows.shape[2] - 1, 1)
        spread = float(np.sqrt((within ** 2).sum() / dof))
        difficulty = 0.0 if hi == lo else (float(level) - lo) / (hi - lo)
        difficulties.append(difficulty), means.append(mu), spreads.append(spread), kappas.append(kappa)
        groups.append({"unsaid_share": float(level), "difficulty": difficulty, "requests": int(rows.shape[0]),
                       "mean_score": float(chosen[shares == level].mean()), "mean_log_score": mu,
                       "std_log_score": spread, "ber_sensitivity": kappa})
    model = InterpolatedQualityModel(tuple(difficulties), tuple(means), tuple(spreads), tuple(kappas))
    counts = np.bincount(np.asarray(choices).ravel(), minlength=len(dataset.strategies))
    return QualityFit(policy, model, groups, (counts / counts.sum()).tolist())


def success_probability(model, difficulty: float, threshold: float, ber: float) -> float:
    """P(one trial's score >= ``threshold``) under the log-normal quality model at ``ber``."""
    mean, spread, kappa = (float(np.asarray(x)) for x in model.log_quality_params(difficulty))
    centre = mean - kappa * float(ber)
    if spread <= 0:
        return float(centre >= math.log(threshold))
    return float(stats.norm.sf(math.log(threshold), centre, spread))


def trials_for_confidence(p: float, confidence: float = 0.9) -> float:
    """Fewest i.i.d. trials whose best meets the threshold with ``confidence`` (``inf`` if p = 0)."""
    return rounds_needed(p, 1, confidence)


@dataclass
class ServedVariant:
    """One user served under one variant's per-trial quality."""

    trials: int
    power_w: float
    ber: float
    expected_qoe: float
    oracle_trials: int
    success_per_trial: float
    trials_for_confidence: float | None
    """``None`` where the threshold is out of reach (p = 0)."""


@dataclass
class ServedUser:
    """A user of the run, served without (raw) and with prompt engineering."""

    name: str
    slot: str
    difficulty: float
    quality_threshold: float
    raw: ServedVariant
    engineered: ServedVariant


@dataclass
class PromptEngineeringComparison:
    """``result.json``'s ``prompt_engineering``: the two fits, every user in both, and the summary."""

    dataset: str
    policy: str
    confidence: float
    method: str
    fits: dict
    users: list
    summary: dict

    def to_dict(self) -> dict:
        return asdict(self)


def _variant(spec, decision, i: int, model, confidence: float) -> ServedVariant:
    p = success_probability(model, spec.state.difficulty[i], spec.state.quality_threshold[i], decision.ber[i])
    needed = trials_for_confidence(p, confidence)
    return ServedVariant(int(decision.trials[i]), float(decision.power[i]), float(decision.ber[i]),
                         float(decision.expected_qoe[i]), int(decision.oracle_trials[i]), p,
                         None if math.isinf(needed) else float(needed))


def _summary(users: Sequence[ServedUser]) -> dict:
    def mean(variant: str, key: str) -> float | None:
        values = [getattr(getattr(u, variant), key) for u in users]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    out = {"users": len(users)}
    for key in ("expected_qoe", "trials", "oracle_trials", "success_per_trial"):
        raw, eng = mean("raw", key), mean("engineered", key)
        out[key] = {"raw": raw, "engineered": eng, "difference": None if raw is None or eng is None else eng - raw}
    reach = {v: [getattr(u, v).trials_for_confidence for u in users] for v in ("raw", "engineered")}
    both = [(a, b) for a, b in zip(reach["raw"], reach["engineered"]) if a is not None and b is not None]
    out["trials_for_confidence"] = {
        "unreachable_raw": sum(a is None for a in reach["raw"]),
        "unreachable_engineered": sum(b is None for b in reach["engineered"]),
        "users_reachable_in_both": len(both),
        "raw": float(np.mean([a for a, _ in both])) if both else None,
        "engineered": float(np.mean([b for _, b in both])) if both else None}
    return out


def compare_service(slots, setup, mu_names, spec: PromptEngineering, seed: int) -> PromptEngineeringComparison:
    """Re-decide every slot under D's raw and engineered per-trial quality (module docstring)."""
    from provisioning.coupling import decide_slots

    dataset = DemonstrationDataset.load(spec.dataset)
    fits = {"raw": quality_model_from_dataset(dataset, strategy_choices(dataset, "raw"), "raw"),
            "engineered": quality_model_from_dataset(dataset, strategy_choices(dataset, spec.policy, spec.embedding),
                                                     spec.policy)}
    decided = {}
    for variant, fit in fits.items():
        specs = [replace(s, quality_model=fit.model) for s in slots]
        decided[variant] = decide_slots(specs, setup.policy, setup.best_of_k, seed)
    users = []
    for n, s in enumerate(slots):
        for i, m in enumerate(s.mus):
            users.append(ServedUser(
                mu_names[m], s.name, float(s.state.difficulty[i]), float(s.state.quality_threshold[i]),
                *(_variant(s, decided[v][n], i, fits[v].model, spec.confidence) for v in ("raw", "engineered"))))
    methods = sorted({d.method for ds in decided.values() for d in ds})
    return PromptEngineeringComparison(spec.dataset, spec.policy, spec.confidence, "+".join(methods),
                                       {k: f.to_dict() for k, f in fits.items()}, [asdict(u) for u in users],
                                       _summary(users))


def check_prompt_engineering(spec: PromptEngineering) -> None:
    """Fail early (before a run's heavy work) on a bad dataset or policy: one-line ``UserError``."""
    dataset = DemonstrationDataset.load(spec.dataset)
    strategy_choices(dataset, spec.policy, spec.embedding)
    if not 0.0 < spec.confidence < 1.0:
        raise UserError(f"prompt engineering confidence {spec.confidence!r} must be in (0, 1)")


__all__ = ["LOG_SCORE_FLOOR", "POLICY_CHOICES", "PromptEngineering", "unsaid_share", "strategy_choices",
           "QualityFit", "quality_model_from_dataset", "success_probability", "trials_for_confidence",
           "ServedVariant", "ServedUser", "PromptEngineeringComparison", "compare_service",
           "check_prompt_engineering"]
