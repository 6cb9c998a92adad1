"""Train and evaluate allocation policies on the denoising problem (``incentive denoise evaluate``).

What this module is for: the steps of a comparison, on typed records. For each policy name
(``gddpg``, ``ddpg``, ``td3``, ``sac`` from :mod:`provisioning.agents.registry`; ``random``;
``local``, the rule of no server steps and full device budgets; ``optimum`` by enumeration) and each seed:

1. learners: train on the training users' states through the shared scaffolding
   (:func:`.learning.train_learner_run`: one resumable run folder ``<runs>/<policy>/seed_<s>``,
   whose learning curve is the test reward on validation states of the held-out users); with
   ``select_best``, the policy kept is the one of the evaluation that did best on selection
   states of the TRAINING users (never a held-out user's), else the last;
2. decide on held-out states drawn from the held-out users (disjoint seeds) and score every
   decision with eq. (27) through the same QoE table (the same generation cache).

Reported per policy: ``sum_qoe`` (mean over held-out states of the sum of the users' QoE),
``reward``, ``fraction_of_optimum`` (mean reward / the optimum's mean reward on the same
states), ``threshold_violations`` (mean number of users below ``Q_th`` per state), each with its
spread over seeds; plus every decision (for Fig. 12-14) and the learning curves (Fig. 11).
Two references put the fraction in context: the best single allocation in hindsight (what
ignoring the state can reach) and the split-half noise ceiling
(:func:`.problem.split_half_ceiling`: how much of the optimum survives fresh generation noise).

May import: numpy, ``provisioning.agents.registry``, ``provisioning.evaluation`` (spread),
``provisioning.training`` (through :mod:`.learning`), this package.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .learning import (
    HELD_OUT_SEED_BASE, DenoiseProblem, DenoiseValidation, LocalOnlyPolicy, UniformRandomPolicy, decide, learner_overrides,
    train_learner_run,
)
from .problem import action_dim, best_fixed_allocation, best_reachable, optimum, outcome, split_half_ceiling

__all__ = ["LEARNERS", "POLICIES", "CompareConfig", "compare", "learner_overrides", "HELD_OUT_SEED_BASE"]

LEARNERS = ("gddpg", "ddpg", "td3", "sac")
POLICIES = LEARNERS + ("random", "local", "optimum")
#: Policies that do not depend on a seed (scored once).
DETERMINISTIC = ("local", "optimum")


@dataclass
class CompareConfig:
    """One comparison (saved next to its result)."""

    policies: tuple = POLICIES
    seeds: int = 5
    train_steps: int = 3000
    held_out_states: int = 20
    warmup_steps: int = 500
    eval_every: int = 500
    """Learning-curve (validation) interval and checkpoint interval, in environment steps."""
    eval_states: int = 8
    """Validation states of the learning curves (held-out users, seeds apart from the test states)."""
    select_best: bool = False
    """Score each learner's best evaluation on the training users' selection states instead of its last."""
    selection_states: int = 24
    """Selection states of the training users (with ``select_best``)."""


@dataclass
class PolicyScores:
    """One policy's per-seed means over the held-out states, its decisions and curves."""

    name: str
    sum_qoe: list = field(default_factory=list)
    reward: list = field(default_factory=list)
    threshold_violations: list = field(default_factory=list)
    decisions: list = field(default_factory=list)
    """Per seed, per state: the allocation and its outcome."""
    curves: list = field(default_factory=list)
    """Per seed (learners): ``[{step, reward, fraction_of_optimum, sum_qoe}]``."""
    selected: list = field(default_factory=list)
    """Per seed (learners, ``select_best``): ``{step, selection_fraction}`` of the policy scored."""
    last_policy_reward: list = field(default_factory=list)
    """Per seed (learners, ``select_best``): the LAST policy's mean reward on the same states,
    so that what the selection changed is reported next to it."""


def decision_record(alloc, result) -> dict:
    """A JSON-ready decision: grid values chosen and their outcome."""
    return {"t0": result.t0, "tk": result.tk.tolist(), "power_dbw": result.power_dbw.tolist(),
            "ber": result.ber.tolist(), "qoe": result.qoe.tolist(), "reward": result.reward,
            "device_budget": result.device_budget.tolist(),
            "t0_index": alloc.t0_index, "tk_index": list(alloc.tk_index), "power_index": list(alloc.power_index)}


def _curve(train_result) -> list[dict]:
    return [{"step": c["step"], "reward": c["mean_utility"], "fraction_of_optimum": c["fraction_of_oracle"],
             **({"selection_fraction": c["selection_fraction"]} if "selection_fraction" in c else {})}
            for c in train_result.curve]


def _policy_for(problem: DenoiseProblem, name: str, seed: int, cfg: CompareConfig, runs_dir: Path | None,
                validation, record: PolicyScores, progress):
    """The acting policy of ``name`` for ``seed`` (training or resuming a learner's run), and with
    ``select_best`` the run's last policy too (else None)."""
    from provisioning.agents.registry import get
    from provisioning.evaluation import sampling_seed

    if name == "random":
        return UniformRandomPolicy(action_dim(problem.config), seed), None
    if name == "local":
        return LocalOnlyPolicy(problem.config), None
    progress(f"training {name} seed {seed} ({cfg.train_steps} steps)")

    def train_and_load(run_dir, resume):
        from market.errors import UserError

        result = train_learner_run(problem, name, seed, cfg.train_steps, run_dir, resume=resume,
                                   eval_every=cfg.eval_every, eval_states=cfg.eval_states,
                                   warmup_steps=cfg.warmup_steps, validation=validation, select_best=cfg.select_best)
        if cfg.select_best and result.best_dir is None:
            raise UserError(f"{result.run_dir}: this run kept no best policy (trained without model selection); "
                            "use another --runs folder")
        last = get(name).load_policy(result.run_dir, seed=sampling_seed(seed))
        if not cfg.select_best:
            return result, last, None
        record.selected.append(result.best)
        return result, get(name).load_policy(result.best_dir, seed=sampling_seed(seed)), last

    if runs_dir is None:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            result, policy, last = train_and_load(tmp, False)
    else:
        result, policy, last = train_and_load(runs_dir / name / f"seed_{seed}", True)
    record.curves.append(_curve(result))
    return policy, last


def claims(scores: dict) -> dict:
    """The paper's two claims, read off the per-seed numbers (nothing is asserted here).

    ``gddpg_reaches_95_percent``: G-DDPG's mean fraction of the optimum and its minimum over
    seeds against 0.95. ``gddpg_over_ddpg``: the relative sum-QoE gain of G-DDPG over DDPG
    (ratio of the means over seeds, minus 1; the paper claims about +0.15), the per-seed
    differences' spread and Welch's t-test on the per-seed sums (seeds are independent runs).
    """
    from scipy import stats

    out: dict = {}
    g = scores.get("gddpg")
    if g is not None and g["fraction_of_optimum"] is not None:
        fractions = g["per_seed"]["fraction_of_optimum"]
        out["gddpg_reaches_95_percent"] = {"mean_fraction": float(np.mean(fractions)), "min_fraction": float(np.min(fractions)),
                                           "by_mean": bool(np.mean(fractions) >= 0.95),
                                           "every_seed": bool(np.min(fractions) >= 0.95)}
    if g is not None and "ddpg" in scores:
        a, b = np.array(g["per_seed"]["sum_qoe"]), np.array(scores["ddpg"]["per_seed"]["sum_qoe"])
        welch = stats.ttest_ind(a, b, equal_var=False) if min(len(a), len(b)) > 1 else None
        out["gddpg_over_ddpg"] = {
            "relative_sum_qoe_gain": float(a.mean() / b.mean() - 1) if b.mean() > 0 else None,
            "claimed_gain": 0.15, "sum_qoe_gddpg": float(a.mean()), "sum_qoe_ddpg": float(b.mean()),
            "welch_t": float(welch.statistic) if welch is not None else None,
            "welch_p": float(welch.pvalue) if welch is not None else None}
    return out


def compare(problem: DenoiseProblem, cfg: CompareConfig, runs_dir: str | Path | None = None,
            progress=lambda text: None) -> dict:
    """Run the comparison; a JSON-ready dict (see the module docstring).

    ``runs_dir``: where the learners' run folders go (resumed when present); None = temporary.
    """
    from provisioning.evaluation import spread

    runs_dir = None if runs_dir is None else Path(runs_dir)
    states = problem.states(cfg.held_out_states, HELD_OUT_SEED_BASE)
    best = [optimum(problem.config, problem.table, s) for s in states]
    best_reward = float(np.mean([b[1].reward for b in best]))

    def fractions_of(rewards: list) -> list | None:
        return [r / best_reward for r in rewards] if best_reward > 0 else None

    validation = (DenoiseValidation(problem, cfg.eval_states, selection_states=cfg.selection_states if cfg.select_best else 0)
                  if set(cfg.policies) & set(LEARNERS) else None)
    scores = {}
    for name in cfg.policies:
        record = PolicyScores(name)
        for seed in range(cfg.seeds if name not in DETERMINISTIC else 1):
            if name == "optimum":
                decisions = best
            else:
                policy, last = _policy_for(problem, name, seed, cfg, runs_dir, validation, record, progress)
                if last is not None:
                    record.last_policy_reward.append(float(np.mean([decide(problem, last, s)[1].reward for s in states])))
                decisions = [decide(problem, policy, s) for s in states]
            results = [r for _, r in decisions]
            record.sum_qoe.append(float(np.mean([r.sum_qoe for r in results])))
            record.reward.append(float(np.mean([r.reward for r in results])))
            record.threshold_violations.append(float(np.mean([r.threshold_violations for r in results])))
            record.decisions.append([decision_record(a, r) for a, r in decisions])
        fractions = fractions_of(record.reward)
        scores[name] = {"sum_qoe": spread(record.sum_qoe), "reward": spread(record.reward),
                        "fraction_of_optimum": spread(fractions) if fractions is not None else None,
                        "threshold_violations": spread(record.threshold_violations),
                        "per_seed": {"sum_qoe": record.sum_qoe, "reward": record.reward,
                                     "threshold_violations": record.threshold_violations,
                                     "fraction_of_optimum": fractions},
                        "decisions": record.decisions, "curves": record.curves,
                        **({"selected": record.selected,
                            "last_policy": {"what": "the run's last policy on the same states (not the one scored)",
                                            "reward": spread(record.last_policy_reward),
                                            "fraction_of_optimum": spread(fractions_of(record.last_policy_reward))
                                            if best_reward > 0 else None,
                                            "per_seed_reward": record.last_policy_reward}} if record.selected else {})}
    fixed = best_fixed_allocation(problem.config, problem.table, states)
    fixed_results = [outcome(problem.config, problem.table, s, fixed) for s in states]
    fixed_reward = float(np.mean([r.reward for r in fixed_results]))
    reference = {"what": "the one allocation with the best total reward over the held-out states, chosen in "
                         "hindsight: the most a policy that ignores the state can reach"
                         + ("" if problem.config.action_decoding == "grid" else
                            f" (one allocation; under {problem.config.action_decoding} decoding one fixed ACTION "
                            "adapts to the budgets, like the local policy)"),
                 "sum_qoe": float(np.mean([r.sum_qoe for r in fixed_results])), "reward": fixed_reward,
                 "fraction_of_optimum": fixed_reward / best_reward if best_reward > 0 else None,
                 "threshold_violations": float(np.mean([r.threshold_violations for r in fixed_results])),
                 "allocation": decision_record(fixed, fixed_results[0])}
    reachable = [best_reachable(problem.config, problem.table, s, b)[1].reward for s, b in zip(states, best)]
    ceiling = {"what": "the best allocation an action can decode to, per state: the most any policy can reach under "
                       f"{problem.config.action_decoding} decoding (the exact optimum unless only some allocations "
                       "are reachable)", "reward": float(np.mean(reachable)),
               "fraction_of_optimum": float(np.mean(reachable)) / best_reward if best_reward > 0 else None}
    return {"policies": scores, "claims": claims(scores), "best_fixed_allocation": reference,
            "best_reachable": ceiling,
            "noise_ceiling": split_half_ceiling(problem.config, problem.table, states),
            "optimum_mean_reward": best_reward, "held_out_states": cfg.held_out_states,
            "held_out_state_seeds": [HELD_OUT_SEED_BASE + i for i in range(cfg.held_out_states)],
            "seeds": cfg.seeds, "train_steps": cfg.train_steps, "warmup_steps": cfg.warmup_steps,
            "eval_every": cfg.eval_every, "eval_states": cfg.eval_states,
            "model_selection": ({"what": "each learner's policy is the one of its evaluation with the best fraction of "
                                         "the optimum on selection states of the TRAINING users",
                                 "selection_states": cfg.selection_states} if cfg.select_best else
                                {"what": "each learner's last policy"}),
            "cache": problem.table.stats()}
