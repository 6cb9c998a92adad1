"""Train and evaluate allocation policies on the denoising problem (``incentive denoise``).

What this module is for: the steps of a comparison, on typed records. For each policy name
(``gddpg``, ``ddpg``, ``td3``, ``sac`` from :mod:`provisioning.agents.registry`; ``random``;
``optimum`` by enumeration) and each seed: train on the training users' states (learners),
then decide on held-out states drawn from the held-out users, and score every decision with
eq. (27) through the same QoE table (same generation cache). Reported per policy: ``sum_qoe``
(mean over held-out states of the sum of the users' QoE), ``reward``, ``fraction_of_optimum``
(mean reward over the optimum's mean reward on the same states), ``threshold_violations``
(mean number of users below ``Q_th`` per state), each with its spread over seeds.

May import: numpy, torch, ``provisioning.agents.registry``, ``provisioning.evaluation`` (spread),
this package.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .problem import DenoiseConfig, DenoiseEnv, QoETable, decode_action, draw_state, observation, optimum, outcome

LEARNERS = ("gddpg", "ddpg", "td3", "sac")
POLICIES = LEARNERS + ("random", "optimum")
#: Seeds of held-out states (disjoint from training: the env's own stream never hands these out by design).
HELD_OUT_SEED_BASE = 10 ** 9


@dataclass
class CompareConfig:
    """One comparison (saved next to its result)."""

    policies: tuple = POLICIES
    seeds: int = 5
    train_steps: int = 3000
    held_out_states: int = 20
    warmup_steps: int = 500


@dataclass
class PolicyScores:
    """One policy's per-seed means over the held-out states."""

    name: str
    sum_qoe: list = field(default_factory=list)
    reward: list = field(default_factory=list)
    threshold_violations: list = field(default_factory=list)


class UniformRandomPolicy:
    """Uniform actions in ``[-1, 1]^d`` (the random baseline), seeded."""

    name = "random"

    def __init__(self, action_dim: int, seed: int):
        self.action_dim, self.rng = action_dim, np.random.default_rng(seed)

    def act(self, observations, states=None) -> np.ndarray:
        return self.rng.uniform(-1, 1, size=self.action_dim).astype(np.float32)


def learner_overrides(name: str, train_steps: int, warmup_steps: int) -> dict:
    """The budget-dependent settings of a learner (warm-up no longer than a quarter of the run)."""
    warm = max(1, min(warmup_steps, train_steps // 4))
    if name == "gddpg":
        return {"warmup_steps": warm, "batch_size": 64, "actor_batch_size": 32}
    return {"learning_starts": warm, "batch_size": 64}


def train_learner(name: str, env: DenoiseEnv, train_steps: int, seed: int, warmup_steps: int):
    """Train registry agent ``name`` on ``env`` for ``train_steps`` decisions; its acting policy."""
    from provisioning.agents.registry import get

    spec = get(name)
    config = spec.make_config(**learner_overrides(name, train_steps, warmup_steps))
    trainer = spec.trainer_class()(env, config, seed=seed, total_steps=train_steps)
    trainer.advance(train_steps, lambda: False, lambda: None)
    return trainer.validation_policy()


def compare(problem: DenoiseConfig, train_users: list, test_users: list, table: QoETable, cfg: CompareConfig,
            progress=lambda text: None) -> dict:
    """Run the comparison; a JSON-ready dict (see the module docstring)."""
    from provisioning.evaluation import spread

    states = [draw_state(problem, test_users, HELD_OUT_SEED_BASE + i) for i in range(cfg.held_out_states)]
    best = [optimum(problem, table, s)[1] for s in states]
    best_reward = float(np.mean([b.reward for b in best]))
    scores = {}
    for name in cfg.policies:
        record = PolicyScores(name)
        for seed in range(cfg.seeds if name != "optimum" else 1):
            if name == "optimum":
                results = best
            else:
                if name == "random":
                    policy = UniformRandomPolicy(1 + 2 * problem.devices, seed)
                else:
                    progress(f"training {name} seed {seed} ({cfg.train_steps} steps)")
                    policy = train_learner(name, DenoiseEnv(problem, train_users, table, seed=seed),
                                           cfg.train_steps, seed, cfg.warmup_steps)
                results = [outcome(problem, table, s, decode_action(problem, policy.act(observation(problem, s))))
                           for s in states]
            record.sum_qoe.append(float(np.mean([r.sum_qoe for r in results])))
            record.reward.append(float(np.mean([r.reward for r in results])))
            record.threshold_violations.append(float(np.mean([r.threshold_violations for r in results])))
        fractions = [r / best_reward if best_reward > 0 else None for r in record.reward]
        scores[name] = {"sum_qoe": spread(record.sum_qoe), "reward": spread(record.reward),
                        "fraction_of_optimum": spread(fractions) if None not in fractions else None,
                        "threshold_violations": spread(record.threshold_violations),
                        "per_seed": {"sum_qoe": record.sum_qoe, "reward": record.reward,
                                     "threshold_violations": record.threshold_violations}}
    return {"policies": scores, "optimum_mean_reward": best_reward, "held_out_states": cfg.held_out_states,
            "seeds": cfg.seeds, "train_steps": cfg.train_steps, "cache": table.stats()}
