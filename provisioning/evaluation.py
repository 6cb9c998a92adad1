"""Evaluate provisioning policies on held-out states against the exact optimum.

What this module is for: the yardstick of ``design/provisioning-model.md`` -- every policy's
utility (the objective of the paper's eq. (22a), evaluated deterministically by
``env.expected_utility``) as a fraction of the oracle's on the same held-out states, plus
mean QoE and cost, and the spread over training seeds.

``fraction_of_oracle`` is the ratio of means, ``sum_s U_policy(s) / sum_s U_oracle(s)``: it
stays defined when a single state's optimum is near zero or negative, and equals the mean
per-state ratio when the oracle's utility is constant.

A "policy" is any object with ``allocate(state) -> (trials, power)`` (the static and random
baselines) or ``act(obs) -> action in [-1, 1]^{2Q}`` (learned agents; decoded by the
environment, so every action is a legal allocation).

May import: ``market`` (errors, atomic IO), numpy, and the rest of ``provisioning``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

#: Seed of the held-out test states (training draws its states from other seeds).
TEST_STATES_SEED = 20_260_001
#: Seed of the validation states used for learning curves during training.
VALIDATION_STATES_SEED = 20_260_002


@dataclass
class PolicyEvaluation:
    """One policy on one set of held-out states.

    Attributes
    ----------
    policy : str
        Name of the policy.
    n_states : int
        Number of held-out states.
    mean_utility : float
        Mean objective (eq. (22a), reward units) of the policy's allocations.
    mean_oracle_utility : float
        Mean objective of the oracle on the same states.
    fraction_of_oracle : float
        ``mean_utility / mean_oracle_utility`` (ratio of means).
    median_state_fraction : float
        Median over states of the per-state ratio (informative only when the oracle is positive).
    mean_qoe : float or None
        Mean QoE per user reported by the environment (``info['qoe']``), None if not reported.
    mean_cost : float or None
        Mean cost reported by the environment (``info['cost']``), None if not reported.
    mean_trials : float
        Mean number of inference trials per user.
    utilities : list of float
        Per-state utilities (kept for spreads and plots).
    """

    policy: str
    n_states: int
    mean_utility: float
    mean_oracle_utility: float
    fraction_of_oracle: float
    median_state_fraction: float
    mean_qoe: float | None
    mean_cost: float | None
    mean_trials: float
    utilities: list[float] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready fields without the per-state list."""
        out = asdict(self)
        out.pop("utilities")
        return out


def held_out_states(env, n: int, seed: int = TEST_STATES_SEED) -> list:
    """``n`` states from the environment's sampler under ``seed`` (disjoint from training seeds)."""
    return list(env.sample_states(int(n), seed=int(seed)))


def oracle_utilities(oracle_utility: Callable[[Any], float], states: Sequence) -> np.ndarray:
    """The oracle's utility for each state."""
    return np.array([float(oracle_utility(s)) for s in states], dtype=np.float64)


def _decision(env, policy, state):
    """(trials, power, obs) of ``policy`` in ``state``."""
    obs, _ = env.reset(options={"state": state})
    if hasattr(policy, "allocate"):
        trials, power = policy.allocate(state)
        return np.asarray(trials), np.asarray(power, dtype=np.float64), obs
    action = policy.act(obs)
    trials, power = env.decode_action(action)
    return np.asarray(trials), np.asarray(power, dtype=np.float64), obs


def _info_for(env, state, trials, power) -> dict:
    """QoE/cost breakdown from the environment, if it offers one."""
    for name in ("evaluate", "utility_breakdown", "evaluate_allocation"):
        fn = getattr(env, name, None)
        if callable(fn):
            try:
                out = fn(state, trials, power)
            except TypeError:
                continue
            if isinstance(out, dict):
                return out
            if hasattr(out, "__dict__"):
                return vars(out)
    return {}


def _mean_or_none(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def evaluate_policy(
    env,
    policy,
    states: Sequence,
    oracle_values: np.ndarray,
    *,
    name: str = "policy",
) -> PolicyEvaluation:
    """Evaluate ``policy`` on ``states`` with the deterministic objective.

    Parameters
    ----------
    env : ProvisioningEnv-like
        Provides ``reset(options={'state': s})``, ``decode_action``, ``expected_utility``.
    policy : object
        ``allocate(state)`` or ``act(obs)`` (see the module docstring).
    states : sequence
        Held-out states.
    oracle_values : numpy.ndarray
        The oracle's utility per state (same order).
    name : str
        Label stored in the result.
    """
    utilities, qoes, costs, trials_means = [], [], [], []
    for state in states:
        trials, power, _obs = _decision(env, policy, state)
        utilities.append(float(env.expected_utility(state, trials, power)))
        trials_means.append(float(np.mean(trials)))
        info = _info_for(env, state, trials, power)
        qoe = info.get("expected_qoe", info.get("qoe"))
        cost = info.get("cost", info.get("total_cost"))
        qoes.append(float(np.mean(qoe)) if qoe is not None else None)
        costs.append(float(np.sum(cost)) if cost is not None else None)
    u = np.array(utilities)
    o = np.asarray(oracle_values, dtype=np.float64)
    denominator = float(o.mean())
    fraction = float(u.mean() / denominator) if abs(denominator) > 1e-12 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        per_state = np.where(np.abs(o) > 1e-12, u / o, np.nan)
    median = float(np.nanmedian(per_state)) if np.isfinite(per_state).any() else float("nan")
    return PolicyEvaluation(
        policy=name,
        n_states=len(states),
        mean_utility=float(u.mean()),
        mean_oracle_utility=denominator,
        fraction_of_oracle=fraction,
        median_state_fraction=median,
        mean_qoe=_mean_or_none(qoes),
        mean_cost=_mean_or_none(costs),
        mean_trials=float(np.mean(trials_means)),
        utilities=[float(x) for x in u],
    )


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, std (ddof=1 when n > 1), min, max and n of a list of per-seed numbers."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
        "min": float(arr.min()),
        "max": float(arr.max()),
        "n": int(arr.size),
    }


class ActionPolicy:
    """Adapter: a callable ``obs -> action`` as a policy with ``act``."""

    def __init__(self, act_fn: Callable[[np.ndarray], np.ndarray]):
        self._act = act_fn

    def act(self, obs):
        return self._act(obs)
