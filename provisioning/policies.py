"""Reference policies of the provisioning layer: the static "Stable Diffusion" one and random.

What this module is for
-----------------------
The two non-learning baselines of section VI-D of the provisioning paper:

* :class:`StaticPolicy` — what a plain Stable Diffusion service does: a fixed number of trials
  (4) for every user and an equal share ``P_total / Q`` of the power budget;
* :class:`RandomPolicy` — a uniformly random action in ``[-1, 1]^(2Q)``, decoded by the env.

Both offer ``allocate(state) -> (trials, power)`` and ``act(observation) -> action``.
``act`` of the static policy needs no state (its action does not depend on it: trial bin
centre of 4 and power share ``1/Q`` of whatever ``P_total`` is).

May import: numpy, ``provisioning.env``, ``provisioning.scenario``, ``provisioning.state``.
"""
from __future__ import annotations

import numpy as np

from provisioning.env import decode_action
from provisioning.scenario import ProvisioningConfig
from provisioning.state import State

__all__ = ["StaticPolicy", "RandomPolicy"]


class StaticPolicy:
    """The paper's "Stable Diffusion" baseline: ``trials`` per user, equal power split.

    Parameters
    ----------
    config : ProvisioningConfig
    trials : int
        Trials per user (the paper uses 4); clipped to ``[1, N_max]``.
    """

    name = "static"

    def __init__(self, config: ProvisioningConfig, trials: int = 4):
        self.config = config
        self.trials = int(np.clip(trials, 1, config.max_trials))

    def allocate(self, state: State) -> tuple[np.ndarray, np.ndarray]:
        """``N_i = trials``, ``P_i = P_total / Q``."""
        q = self.config.num_users
        return np.full(q, self.trials, dtype=np.int64), np.full(q, state.p_total_w / q)

    def act(self, observation=None) -> np.ndarray:
        """The constant action that decodes to :meth:`allocate` in every state."""
        q = self.config.num_users
        a_trials = 2.0 * (self.trials - 0.5) / self.config.max_trials - 1.0
        a_power = 2.0 / q - 1.0
        return np.concatenate([np.full(q, a_trials), np.full(q, a_power)]).astype(np.float32)


class RandomPolicy:
    """Uniformly random actions in ``[-1, 1]^(2Q)``, seeded.

    Parameters
    ----------
    config : ProvisioningConfig
    seed : int, optional
    """

    name = "random"

    def __init__(self, config: ProvisioningConfig, seed: int | None = None):
        self.config = config
        self.rng = np.random.default_rng(seed)

    def act(self, observation=None) -> np.ndarray:
        """One uniform action."""
        return self.rng.uniform(-1.0, 1.0, size=2 * self.config.num_users).astype(np.float32)

    def allocate(self, state: State) -> tuple[np.ndarray, np.ndarray]:
        """Decode one uniform action in ``state``."""
        return decode_action(self.config, state, self.act())
