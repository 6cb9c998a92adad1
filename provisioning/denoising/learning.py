"""Training runs of the denoising learners on the provisioning layer's shared training scaffolding.

What this module is for: ``incentive denoise train`` and ``evaluate`` train learners of
:mod:`provisioning.agents.registry` (``gddpg``, ``ddpg``, ``td3``, ``sac``) with
:func:`provisioning.training.train` -- its run folder, periodic checkpoints, ``resume``, the
Ctrl-C/SIGTERM guard and atomic result files -- rather than a second loop. This module only
adapts the denoising problem to that scaffolding:

- :class:`DenoiseProblem`: the problem's constants, its training and held-out users and the QoE
  table (one generation cache); :meth:`DenoiseProblem.identity` names it in the run folder
  (``train_config.json``'s ``scenario`` field), so a run is never resumed on another
  generator, grid or user set;
- :class:`DenoiseValidation`: the learning curve's yardstick, duck-typed like
  :class:`provisioning.evaluation.Validation`: fixed validation states drawn from the HELD-OUT
  users (the paper's Fig. 11 plots test reward), their exact optima, and per evaluation the
  mean eq. (27) reward as ``mean_utility``, its ratio to the optimum's as
  ``fraction_of_oracle`` and the mean device steps ``t_k`` in the scaffolding's
  ``mean_trials`` column (that column's name comes from the provisioning problem);
- :func:`train_learner_run`: one learner, one seed, one run folder.

Model selection (``select_best``): the scaffolding's ``keep_best`` keeps the policy of the
evaluation with the best ``selection_fraction``, measured on selection states of the TRAINING
users (seeds from :data:`SELECTION_SEED_BASE`, above ``2^32`` so never a training episode's), so
that choosing a checkpoint never looks at a held-out user; the learning curve still reports the
held-out validation states.

Seeds: training states come from the env's per-episode seeds (:func:`provisioning.evaluation.
training_state_seed`, below ``2^32``) over the training users; validation states use seeds from
:data:`VALIDATION_SEED_BASE` and test states from :data:`HELD_OUT_SEED_BASE`, both over the
held-out users; selection states use :data:`SELECTION_SEED_BASE` over the training users.

May import: numpy, ``market`` (errors), ``provisioning.training``, ``provisioning.evaluation``,
``provisioning.agents.registry``, this package.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .problem import (Allocation, DenoiseConfig, DenoiseEnv, DenoiseState, QoETable, action_dim, decode_action,
                      draw_state, encode_allocation, observation, optimum, outcome, server_steps_allocation)

#: Seeds of the held-out test states (``HELD_OUT_SEED_BASE + i``).
HELD_OUT_SEED_BASE = 10 ** 9
#: Seeds of the validation states of the learning curves (``VALIDATION_SEED_BASE + i``).
VALIDATION_SEED_BASE = 2 * 10 ** 9
#: Seeds of the model-selection states of the TRAINING users (``SELECTION_SEED_BASE + i``).
SELECTION_SEED_BASE = 5 * 10 ** 9


@dataclass
class DenoiseProblem:
    """One instance of the allocation problem: constants, users and the QoE table."""

    config: DenoiseConfig
    train_users: list
    test_users: list
    table: QoETable

    def identity(self) -> str:
        """``denoise:<generator identity>:<digest of the constants and users>``."""
        users = [[u.name, u.prompt, list(u.personality.vector())] for u in self.train_users + [None] + self.test_users
                 if u is not None] + [len(self.train_users)]
        config = asdict(self.config)
        if config["action_decoding"] == "grid":  # the default leaves the digest of older run folders as it was
            del config["action_decoding"]
        text = json.dumps({"config": config, "users": users}, sort_keys=True, default=list)
        return f"denoise:{self.table.cache.generator.identity}:{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def make_env(self, seed: int | None = None) -> DenoiseEnv:
        """A training environment over the training users."""
        return DenoiseEnv(self.config, self.train_users, self.table, seed=0 if seed is None else int(seed))

    def states(self, n: int, seed_base: int = HELD_OUT_SEED_BASE, users: list | None = None) -> list[DenoiseState]:
        """``n`` states of the held-out users, or of ``users`` (seeds ``seed_base + i``)."""
        users = self.test_users if users is None else users
        return [draw_state(self.config, users, seed_base + i) for i in range(int(n))]


class UniformRandomPolicy:
    """Uniform actions in ``[-1, 1]^d`` (the random baseline), seeded; the Policy protocol."""

    name = "random"

    def __init__(self, action_dim: int, seed: int):
        self.action_dim, self.rng = action_dim, np.random.default_rng(seed)

    def act(self, observations, states=None) -> np.ndarray:
        single = observations is None or np.asarray(observations).ndim == 1
        n = 1 if single else len(observations)
        actions = self.rng.uniform(-1, 1, size=(n, self.action_dim)).astype(np.float32)
        return actions[0] if single else actions


class LocalOnlyPolicy:
    """Every device denoises its own prompt alone: no server steps (the fewest on the grid), each
    device the most steps its budget ``E_k`` allows, the lowest power (nothing is sent). A rule,
    not a learner: the baseline of not sharing denoising at all. Reads the states (the budgets),
    as the optimum does; the Policy protocol."""

    name = "local"

    def __init__(self, config: DenoiseConfig):
        self.config = config

    def allocation(self, state: DenoiseState) -> Allocation:
        return server_steps_allocation(self.config, state, 0)

    def act(self, observations, states) -> np.ndarray:
        return np.stack([encode_allocation(self.config, self.allocation(s)) for s in states])


def decide(problem: DenoiseProblem, policy, state: DenoiseState):
    """``(allocation, outcome)`` of ``policy`` in ``state`` (asked with a batch of one)."""
    action = np.asarray(policy.act(observation(problem.config, state)[None], [state]))[0]
    alloc = decode_action(problem.config, action, state)
    return alloc, outcome(problem.config, problem.table, state, alloc)


@dataclass
class ValidationScore:
    """One evaluation of the learning curve (the fields :func:`provisioning.training.train` reads)."""

    fraction_of_oracle: float
    """Mean reward / the optima's mean reward on the validation states."""
    mean_utility: float
    """Mean eq. (27) reward."""
    mean_trials: float
    """Mean device steps ``t_k`` (the scaffolding's column name)."""
    mean_sum_qoe: float
    selection_fraction: float | None = None
    """Mean reward / the optima's on the selection states of the training users (None without
    them): what ``keep_best`` selects on."""


def _fraction(rewards: np.ndarray, optimum_rewards: np.ndarray) -> float:
    best = float(optimum_rewards.mean())
    return float(rewards.mean() / best) if abs(best) > 1e-12 else float("nan")


class DenoiseValidation:
    """Validation states of the held-out users and their optima (see the module docstring);
    with ``selection_states`` > 0 also that many selection states of the training users."""

    def __init__(self, problem: DenoiseProblem, n: int, seed_base: int = VALIDATION_SEED_BASE,
                 selection_states: int = 0):
        self.problem = problem
        self.states = problem.states(n, seed_base)
        self.optimum_rewards = self._optima(self.states)
        self.selection_states = problem.states(selection_states, SELECTION_SEED_BASE, users=problem.train_users)
        self.selection_optimum_rewards = self._optima(self.selection_states)

    def _optima(self, states) -> np.ndarray:
        return np.array([optimum(self.problem.config, self.problem.table, s)[1].reward for s in states])

    def evaluate(self, policy, name: str | None = None) -> ValidationScore:
        results = [decide(self.problem, policy, s)[1] for s in self.states]
        rewards = np.array([r.reward for r in results])
        selection = None
        if self.selection_states:
            chosen = np.array([decide(self.problem, policy, s)[1].reward for s in self.selection_states])
            selection = _fraction(chosen, self.selection_optimum_rewards)
        return ValidationScore(_fraction(rewards, self.optimum_rewards),
                               float(rewards.mean()), float(np.mean([r.tk.mean() for r in results])),
                               float(np.mean([r.sum_qoe for r in results])), selection)


def provisioning_problem(problem: DenoiseProblem):
    """The problem as the scaffolding's :class:`provisioning.evaluation.ProvisioningProblem`."""
    from market.errors import UserError
    from provisioning.evaluation import ProvisioningProblem

    def no_static():
        raise UserError("the denoising problem has no static baseline")

    return ProvisioningProblem(
        name=problem.identity(), make_env=problem.make_env,
        oracle_utility=lambda state: optimum(problem.config, problem.table, state)[1].reward,
        make_static=no_static, make_random=lambda seed: UniformRandomPolicy(action_dim(problem.config), seed),
        scenario_path=None)


def learner_overrides(name: str, train_steps: int, warmup_steps: int) -> dict:
    """The budget-dependent settings of a learner (warm-up no longer than a quarter of the run)."""
    warm = max(1, min(warmup_steps, train_steps // 4))
    if name == "gddpg":
        # batch 128 / actor batch 64 (gddpg.default_config): chosen over 64 / 32 on validation states
        # of the training users (docs/denoising.md, "Tuning")
        return {"warmup_steps": warm}
    return {"learning_starts": warm, "batch_size": 64}


def train_learner_run(problem: DenoiseProblem, agent: str, seed: int, steps: int, run_dir: str | Path, *,
                      resume: bool = False, eval_every: int = 500, eval_states: int = 8, warmup_steps: int = 500,
                      validation: DenoiseValidation | None = None, progress: bool = False, learner_config=None,
                      select_best: bool = False, selection_states: int = 24):
    """Train ``agent`` with :func:`provisioning.training.train` in ``run_dir``; its ``TrainResult``.

    ``resume=True`` continues an interrupted run (and returns a finished one as it is); a
    run folder of another problem (generator, grid, users) or agent is refused.
    ``select_best``: also keep the policy of the evaluation that did best on ``selection_states``
    states of the training users (``<run_dir>/best``; see the module docstring).
    """
    from market.errors import UserError
    from provisioning.agents.registry import get
    from provisioning.training import TrainConfig, train

    spec = get(agent)
    if select_best and validation is not None and not validation.selection_states:
        raise UserError("select_best needs a validation with selection states of the training users")
    config = TrainConfig(agent=agent, total_steps=int(steps), seed=int(seed), eval_every=int(eval_every),
                         eval_states=int(eval_states), scenario=problem.identity(), keep_best=bool(select_best))
    if validation is None:
        validation = DenoiseValidation(problem, eval_states, selection_states=selection_states if select_best else 0)
    if learner_config is None:
        learner_config = spec.make_config(**learner_overrides(agent, steps, warmup_steps))
    return train(provisioning_problem(problem), config, run_dir, learner_config=learner_config, resume=resume,
                 progress=progress, validation=validation)
