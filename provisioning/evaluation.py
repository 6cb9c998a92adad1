"""The evaluation protocol of the provisioning layer: held-out states, seeds, the oracle yardstick.

What this module is for: every policy's utility (the objective of eq. (22a) of the
provisioning paper, evaluated deterministically by ``env.expected_utility``) as a fraction of
the exact optimum's on the same held-out states, plus mean QoE and cost, and the spread over
seeds -- for training curves (:class:`Validation`), for ``incentive provision evaluate``
(:func:`evaluation_report`) and for comparisons (:mod:`provisioning.comparison`).

``fraction_of_oracle`` is the ratio of means, ``sum_s U_policy(s) / sum_s U_oracle(s)``: it
stays defined when a single state's optimum is near zero or negative, and equals the mean
per-state ratio when the oracle's utility is constant.

A policy is a :class:`provisioning.policies.Policy`: ``act(observations, states)`` gives actions
in ``[-1, 1]^{2Q}``, decoded by the environment, so every action is a legal allocation.

The seeding convention (the one place seeds of the provisioning layer are defined):

- held-out test states: :data:`TEST_STATES_SEED`; validation states (learning curves):
  :data:`VALIDATION_STATES_SEED`; the state of training episode ``k`` of a run with seed ``r``:
  :func:`training_state_seed` ``(r, k)`` -- three disjoint streams;
- a stochastic policy (D3PG) trained with seed ``r`` samples with :func:`sampling_seed` ``(r)``
  when it is evaluated; a shipped policy (no run seed) is evaluated with sampling seeds
  ``sampling_seed(0..S-1)``; the random baseline ``i`` uses seed ``i``.

May import: ``market`` (errors, atomic IO, seeds), numpy, and the rest of ``provisioning``
(the agents through their registry, lazily).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from market.errors import MissingArtifactError, UserError
from market.seeding import derive_seed

#: Seed of the held-out test states (training draws its states from other seeds).
TEST_STATES_SEED = 20_260_001
#: Seed of the validation states used for learning curves during training.
VALIDATION_STATES_SEED = 20_260_002
#: Offset of the sampling seeds of stochastic policies in evaluation.
SAMPLING_SEED_OFFSET = 10_000
#: Sampling seeds (and random-baseline seeds) of ``provision evaluate`` for a single policy file.
DEFAULT_SAMPLING_SEEDS = 5


def training_state_seed(run_seed: int, episode: int) -> int:
    """Seed of the state of ``episode`` in the training run ``run_seed`` (32 bits)."""
    return derive_seed(run_seed, episode, 7, bits=32)


def sampling_seed(index: int) -> int:
    """Seed of a stochastic policy's sampling generator in evaluation (``index``: its run seed)."""
    return SAMPLING_SEED_OFFSET + int(index)


def info_metrics(info: dict) -> dict[str, float]:
    """Scalar means of the numeric entries of an env ``info`` dict, as ``env_<key>`` (training logs)."""
    out = {}
    for k, v in (info or {}).items():
        try:
            arr = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if arr.size and np.all(np.isfinite(arr)):
            out[f"env_{k}"] = float(arr.mean())
    return out


# --------------------------------------------------------------------------- the problem


@dataclass
class ProvisioningProblem:
    """What training and evaluation need to know about the problem, independent of the learner.

    Attributes
    ----------
    name : str
        Label (the scenario's name).
    make_env : callable(seed or None) -> gymnasium.Env
        A fresh environment with the provisioning API (``decode_action``, ``sample_states``,
        ``expected_utility``, ``reset(options={'state': s})``).
    oracle_utility : callable(state) -> float
        The exact optimum's utility in a state.
    make_static : callable() -> Policy
        The static baseline (4 trials, equal power). A scenario's problem takes its three
        baselines from :data:`provisioning.policies.BASELINES` (the one table of them); toy
        problems in the tests supply their own.
    make_random : callable(seed) -> Policy
        The random baseline.
    scenario_path : str or None
        Where the scenario came from (None for in-memory problems).
    make_oracle : callable() -> Policy, optional
        The oracle as a policy (None when the problem has none, e.g. toy problems).
    """

    name: str
    make_env: Callable[..., Any]
    oracle_utility: Callable[[Any], float]
    make_static: Callable[[], Any]
    make_random: Callable[[int], Any]
    scenario_path: str | None = None
    make_oracle: Callable[[], Any] | None = None

    def baseline(self, name: str, seed: int = 0):
        """The non-learning policy ``name`` (static, random, oracle)."""
        if name == "static":
            return self.make_static()
        if name == "random":
            return self.make_random(seed)
        if name == "oracle" and self.make_oracle is not None:
            return self.make_oracle()
        raise UserError(f"problem {self.name!r} has no baseline policy {name!r}")


def problem_from_scenario(path: str | Path | None = None) -> ProvisioningProblem:
    """The provisioning problem of a scenario file (default: the default scenario)."""
    from provisioning.env import ProvisioningEnv
    from provisioning.oracle import oracle_allocation
    from provisioning.policies import make_baseline
    from provisioning.scenario import default_provisioning_scenario_path, load_provisioning_scenario

    scenario_path = Path(path) if path is not None else Path(default_provisioning_scenario_path())
    config = load_provisioning_scenario(scenario_path)
    name = getattr(config, "name", None) or scenario_path.stem
    return ProvisioningProblem(
        name=str(name),
        make_env=lambda seed=None: ProvisioningEnv(config, seed=seed),
        oracle_utility=lambda state: float(oracle_allocation(config, state).utility),
        make_static=lambda: make_baseline("static", config),
        make_random=lambda seed: make_baseline("random", config, seed),
        scenario_path=str(scenario_path),
        make_oracle=lambda: make_baseline("oracle", config),
    )


# --------------------------------------------------------------------------- one policy


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
        Mean expected QoE per user (``env.evaluate``), None if the environment has no breakdown.
    mean_cost : float or None
        Mean total cost per state (``env.evaluate``), None if the environment has no breakdown.
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


def decide(env, policy, state) -> tuple[np.ndarray, np.ndarray]:
    """(trials, power) of ``policy`` in ``state``: its action for the state's observation, decoded."""
    obs, _ = env.reset(options={"state": state})
    action = policy.act(np.asarray(obs)[None], [state])[0]
    trials, power = env.decode_action(action)
    return np.asarray(trials), np.asarray(power, dtype=np.float64)


def _mean_or_none(values: list) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def evaluate_policy(env, policy, states: Sequence, oracle_values: np.ndarray, *, name: str | None = None) -> PolicyEvaluation:
    """Evaluate ``policy`` on ``states`` with the deterministic objective.

    Parameters
    ----------
    env : ProvisioningEnv-like
        Provides ``reset(options={'state': s})``, ``decode_action``, ``expected_utility`` and,
        optionally, ``evaluate`` (the QoE and cost breakdown).
    policy : Policy
        Asked one state at a time (a batch of one), so a stochastic policy's draws do not
        depend on how many states are evaluated together.
    states : sequence
        Held-out states.
    oracle_values : numpy.ndarray
        The oracle's utility per state (same order).
    name : str, optional
        Label stored in the result (default: the policy's name).
    """
    breakdown = getattr(env, "evaluate", None)
    utilities, qoes, costs, trials_means = [], [], [], []
    for state in states:
        trials, power = decide(env, policy, state)
        utilities.append(float(env.expected_utility(state, trials, power)))
        trials_means.append(float(np.mean(trials)))
        if breakdown is not None:
            outcome = breakdown(state, trials, power)
            qoes.append(float(np.mean(outcome.expected_qoe)))
            costs.append(float(np.sum(outcome.cost)))
    u = np.array(utilities)
    o = np.asarray(oracle_values, dtype=np.float64)
    denominator = float(o.mean())
    fraction = float(u.mean() / denominator) if abs(denominator) > 1e-12 else float("nan")
    with np.errstate(divide="ignore", invalid="ignore"):
        per_state = np.where(np.abs(o) > 1e-12, u / o, np.nan)
    median = float(np.nanmedian(per_state)) if np.isfinite(per_state).any() else float("nan")
    return PolicyEvaluation(
        policy=name or getattr(policy, "name", "policy"),
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
    """Mean, std (ddof=1), min, max and n of per-seed numbers; std is NaN when n < 2 (no spread)."""
    arr = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else float("nan"),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "n": int(arr.size),
    }


def format_spread(s: dict, digits: int = 4) -> str:
    """``mean +/- std (n=K, min m)``, or ``mean (n=1, no spread)`` for a single seed."""
    if s.get("n", 0) < 2 or s.get("std") is None or not math.isfinite(s["std"]):
        return f"{s['mean']:.{digits}f} (n={s.get('n', 0)}, no spread)"
    return f"{s['mean']:.{digits}f} +/- {s['std']:.{digits}f} (n={s['n']}, min {s['min']:.{digits}f})"


class Validation:
    """Fixed validation states and their oracle utilities, shared by the runs of a comparison."""

    def __init__(self, problem: ProvisioningProblem, n: int, seed: int = VALIDATION_STATES_SEED):
        self.env = problem.make_env(None)
        self.states = held_out_states(self.env, n, seed)
        self.oracle_values = oracle_utilities(problem.oracle_utility, self.states)

    def evaluate(self, policy, name: str | None = None) -> PolicyEvaluation:
        return evaluate_policy(self.env, policy, self.states, self.oracle_values, name=name)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class EvaluationProtocol:
    """How ``incentive provision evaluate`` evaluates: which states, which seeds, which K."""

    episodes: int = 256
    """Number of held-out states."""
    state_seed: int = TEST_STATES_SEED
    """Seed of the held-out states."""
    sampling_seeds: int = DEFAULT_SAMPLING_SEEDS
    """Sampling seeds of a single stochastic policy file, and the number of random baselines."""
    best_of_k: int | None = None
    """K of the best-of-K evaluation; None = the policy's own configuration (``best_of_k``)."""

    def __post_init__(self) -> None:
        for name, low in (("episodes", 1), ("sampling_seeds", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UserError(f"{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.state_seed, int) or isinstance(self.state_seed, bool) or not 0 <= self.state_seed < 2**63:
            raise UserError(f"the held-out state seed must be an integer in [0, 2^63), got {self.state_seed!r}")
        if self.best_of_k is not None and (not isinstance(self.best_of_k, int) or self.best_of_k < 1):
            raise UserError(f"best-of-K needs K >= 1, got {self.best_of_k!r}")


def _run_dirs(run: Path) -> list[Path]:
    if (run / "progress.json").is_file():
        return [run]
    return sorted(p for p in run.glob("seed_*") if (p / "progress.json").is_file())


def _learned_evaluations(policy_name: str, problem, run: Path | None, protocol: EvaluationProtocol, judge,
                         report: dict, notes: list) -> tuple[list, list]:
    """(one-sample evaluations, best-of-K evaluations) of a learner: the shipped file or a run folder."""
    import json

    from provisioning.agents.registry import get as get_agent
    from provisioning.policies import BestOfK
    from provisioning.trained import read_card, shipped_policy_path

    spec = get_agent(policy_name)
    pairs = []  # (policy loader by sampling seed, sampling seeds)
    if run is None:
        path = shipped_policy_path(problem.name, policy_name)
        if not path.is_file():
            raise MissingArtifactError(
                f"{path}: no shipped {policy_name} policy for scenario '{problem.name}'; train one with "
                f"`incentive provision train --agent {policy_name} --scenario {problem.scenario_path}` and pass --run"
            )
        card = read_card(problem.name)
        if card.get("scenario_sha256") and card["scenario_sha256"] != report["scenario_sha256"]:
            notes.append("the scenario file changed since the shipped policy was trained (SHA-256 differs from its card)")
        report["shipped_card"], report["policy_file"] = card, str(path)
        pairs = [(lambda s, p=path: spec.load_file(p, seed=s), list(range(protocol.sampling_seeds)))]
    else:
        dirs = _run_dirs(run)
        if not dirs:
            raise MissingArtifactError(f"{run}: no training runs here (expected progress.json or seed_*/progress.json)")
        for d in dirs:
            if not (d / spec.policy_file).is_file():
                notes.append(f"{d}: unfinished (no final policy); resume it with --resume")
                continue
            run_seed = int(json.loads((d / "train_config.json").read_text()).get("seed", 0))
            pairs.append((lambda s, d=d: spec.load_policy(d, seed=s), [run_seed]))
        if not pairs:
            raise MissingArtifactError(f"{run}: no finished {policy_name} run (train with `incentive provision train --resume`)")
    evaluations, best = [], []
    for load, seeds in pairs:
        for s in seeds:
            evaluations.append(judge(load(sampling_seed(s)), policy_name))
        if spec.best_of_k:
            policy = load(sampling_seed(seeds[0]))
            best.append(judge(BestOfK(policy, protocol.best_of_k), f"{policy_name}-best-of-k"))
            report["best_of_k"] = int(protocol.best_of_k or policy.config.best_of_k)
    return evaluations, best


def evaluation_report(policy_name: str, scenario: str | Path, *, run: str | Path | None = None,
                      protocol: EvaluationProtocol | None = None) -> dict:
    """The JSON report of ``incentive provision evaluate`` (fields in ``docs/learners.md``).

    Parameters
    ----------
    policy_name : str
        A learner of the registry, or static, random, oracle.
    scenario : path
        Provisioning scenario file.
    run : path, optional
        A training output folder (``seed_*`` runs or one run); None for a learner means the
        policy shipped in ``provisioning/trained``.
    protocol : EvaluationProtocol, optional
    """
    from market.atomic import json_ready
    from provisioning.agents.registry import REGISTRY
    from provisioning.trained import file_sha256

    protocol = protocol or EvaluationProtocol()
    problem = problem_from_scenario(scenario)
    env = problem.make_env(None)
    states = held_out_states(env, protocol.episodes, protocol.state_seed)
    oracle_values = oracle_utilities(problem.oracle_utility, states)

    def judge(policy, name):
        return evaluate_policy(env, policy, states, oracle_values, name=name)

    static = judge(problem.baseline("static"), "static")
    randoms = [judge(problem.baseline("random", i), "random") for i in range(protocol.sampling_seeds)]
    report: dict = {
        "policy": policy_name, "scenario": str(scenario), "scenario_sha256": file_sha256(scenario),
        "held_out_states": protocol.episodes, "held_out_seed": protocol.state_seed,
        "oracle_mean_utility": float(np.mean(oracle_values)),
        "static_fraction_of_oracle": static.fraction_of_oracle,
        "random_fraction_of_oracle": spread([r.fraction_of_oracle for r in randoms])["mean"],
        "static": static.summary(),
    }
    notes: list[str] = []
    best: list = []
    if policy_name == "static":
        evaluations = [static]
    elif policy_name == "random":
        evaluations = randoms
    elif policy_name == "oracle":
        evaluations = [judge(problem.baseline("oracle"), "oracle")]
    elif policy_name in REGISTRY:
        if run is None and policy_name != "d3pg":
            raise UserError(f"--policy {policy_name} needs --run DIR (a folder written by `incentive provision train`)")
        evaluations, best = _learned_evaluations(policy_name, problem, None if run is None else Path(run), protocol,
                                                 judge, report, notes)
    else:
        raise UserError(f"unknown policy {policy_name!r}; choose a learner ({', '.join(REGISTRY)}), static, random or oracle")
    if best:
        report["best_of_k_fraction_of_oracle"] = spread([b.fraction_of_oracle for b in best])["mean"]
        report["best_of_k_fraction_of_oracle_spread"] = spread([b.fraction_of_oracle for b in best])
        report["best_of_k_evaluation"] = best[0].summary()
    fractions = spread([e.fraction_of_oracle for e in evaluations])
    if fractions["n"] == 1 and policy_name not in ("static", "oracle"):
        notes.append("one evaluation only (n=1): no spread over seeds; train more seeds for one")
    report.update({
        "fraction_of_oracle": fractions["mean"],
        "fraction_of_oracle_spread": fractions,
        "mean_utility": spread([e.mean_utility for e in evaluations])["mean"],
        "mean_qoe": spread([e.mean_qoe for e in evaluations])["mean"],
        "mean_cost": spread([e.mean_cost for e in evaluations])["mean"],
        "mean_trials": spread([e.mean_trials for e in evaluations])["mean"],
        "evaluations": [e.summary() for e in evaluations],
        "notes": notes,
    })
    return json_ready(report)
