"""A tiny contextual bandit with the provisioning environment's API, for the learner tests.

State: a context vector c in [-1, 1]^3. Action: a Box in [-1, 1]^{2Q} (Q = 1). The utility of
an action is ``1 - mean((a - a*(c))^2)`` with ``a*(c) = 0.8 tanh(W c)``, so the oracle's
utility is exactly 1 for every state and the best action is known in closed form. The API
mirrors ``provisioning.env.ProvisioningEnv`` (decode_action, sample_states, expected_utility,
reset(options={"state": s}), one decision per episode, terminated=True) so the learners can be
tested without the physical model.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np

WEIGHTS = np.array([[1.5, -1.0, 0.5], [-0.5, 1.2, 1.0]])


@dataclass
class ToyConfig:
    """Configuration of the toy bandit (only the number of users is needed)."""

    users: int = 1
    """Q: the action has 2Q entries."""


def best_action(state: np.ndarray) -> np.ndarray:
    """The utility-maximising action for a context."""
    return 0.8 * np.tanh(WEIGHTS @ np.asarray(state, dtype=np.float64))


class ToyBanditEnv(gym.Env):
    """One decision per episode; reward = deterministic utility of the action."""

    metadata = {"render_modes": []}

    def __init__(self, config: ToyConfig | None = None, seed: int | None = None):
        self.config = config or ToyConfig()
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2 * self.config.users,), dtype=np.float32)
        self._state = np.zeros(3)
        if seed is not None:
            self.reset(seed=seed)

    def sample_states(self, n: int, seed: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [rng.uniform(-1, 1, size=3) for _ in range(n)]

    def set_state(self, state) -> None:
        self._state = np.asarray(state, dtype=np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if options and "state" in options:
            self.set_state(options["state"])
        else:
            self._state = self.np_random.uniform(-1, 1, size=3)
        return self._state.astype(np.float32), {}

    def decode_action(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1, 1)
        return np.ones(self.config.users, dtype=int), action

    def expected_utility(self, state, trials, power) -> float:
        return float(1.0 - np.mean((np.asarray(power) - best_action(state)) ** 2))

    def step(self, action):
        trials, power = self.decode_action(action)
        utility = self.expected_utility(self._state, trials, power)
        info = {"qoe": utility + 0.5, "cost": 0.5, "mean_trials": 1.0}
        return self._state.astype(np.float32), utility, True, False, info


def toy_oracle_utility(state) -> float:
    """Oracle utility: exactly 1 for every state."""
    env = ToyBanditEnv()
    return env.expected_utility(state, np.ones(1, dtype=int), best_action(state))


class ToyRandomPolicy:
    """Uniform random actions (a :class:`provisioning.policies.Policy`)."""

    name = "random"

    def __init__(self, config=None, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def act(self, obs, states=None):
        obs = np.asarray(obs)
        return self.rng.uniform(-1, 1, size=obs.shape[:-1] + (2,))


class ToyStaticPolicy:
    """Always the zero action (a :class:`provisioning.policies.Policy`)."""

    name = "static"

    def __init__(self, config=None):
        pass

    def act(self, obs, states=None):
        return np.zeros(np.asarray(obs).shape[:-1] + (2,))


class ToyOraclePolicy:
    """The best action of each state (a :class:`provisioning.policies.Policy` that needs the states)."""

    name = "oracle"

    def act(self, obs, states=None):
        return np.stack([best_action(s) for s in states])


def toy_problem():
    """The toy bandit as a :class:`provisioning.evaluation.ProvisioningProblem`."""
    from provisioning.evaluation import ProvisioningProblem

    return ProvisioningProblem(
        name="toy-bandit",
        make_env=lambda seed=None: ToyBanditEnv(seed=seed),
        oracle_utility=toy_oracle_utility,
        make_static=lambda: ToyStaticPolicy(),
        make_random=lambda seed: ToyRandomPolicy(seed=seed),
        scenario_path=None,
        make_oracle=lambda: ToyOraclePolicy(),
    )
