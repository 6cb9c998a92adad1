"""The provisioning policy family: one protocol, the reference policies and best-of-K.

What this module is for
-----------------------
Every provisioning decision maker -- the learned agents (D3PG, the Stable-Baselines3 baselines),
the two baselines of section VI-D of the provisioning paper ("Stable Diffusion" static and
random) and the exact optimum (the oracle) -- offers the same method, so evaluation, comparison
and the pipeline call them alike, in batches, without asking what they are:

``policy.act(observations, states=None) -> actions``
    ``observations``: shape ``(B, obs_dim)`` (or one ``(obs_dim,)`` row); ``states``: the ``B``
    states those observations encode (the oracle needs them, the others may ignore them).
    Returns actions in ``[-1, 1]^(2Q)`` of shape ``(B, 2Q)`` (or ``(2Q,)`` for one row); the
    environment decodes every action to a legal allocation (``provisioning.env.decode_action``).

Implementations: :class:`StaticPolicy`, :class:`RandomPolicy`, :class:`OraclePolicy` (here),
:class:`provisioning.agents.d3pg.D3PGPolicy`, :class:`provisioning.agents.sb3.SB3Policy`, and the
wrapper :class:`BestOfK` (best of K actor samples ranked by the critic). Learners are listed in
:mod:`provisioning.agents.registry`; the non-learning policies in :data:`BASELINES`.

May import: numpy, ``provisioning.env``, ``provisioning.scenario``, ``provisioning.state`` and,
lazily, ``provisioning.oracle``.
"""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from provisioning.env import decode_action, encode_allocation
from provisioning.scenario import ProvisioningConfig
from provisioning.state import State

__all__ = ["Policy", "StaticPolicy", "RandomPolicy", "OraclePolicy", "BestOfK", "BASELINES", "make_baseline"]


@runtime_checkable
class Policy(Protocol):
    """What every provisioning policy offers (see the module docstring)."""

    name: str
    """Label in reports (``"d3pg"``, ``"sac"``, ``"static"``, ...)."""

    def act(self, observations: np.ndarray, states: Sequence | None = None) -> np.ndarray:
        """Actions in ``[-1, 1]^(2Q)`` for a batch of observations (and their states)."""
        ...


def _batch(observations, states) -> tuple[int, bool]:
    """(batch size, whether the input was a single row)."""
    if observations is None:
        if states is None:
            return 1, True
        return len(states), False
    arr = np.asarray(observations)
    return (1, True) if arr.ndim == 1 else (arr.shape[0], False)


def _shape(actions: np.ndarray, single: bool) -> np.ndarray:
    return actions[0] if single else actions


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
        """``N_i = trials``, ``P_i = P_total / Q`` (what :meth:`act` decodes to)."""
        q = self.config.num_users
        return np.full(q, self.trials, dtype=np.int64), np.full(q, state.p_total_w / q)

    def act(self, observations=None, states: Sequence | None = None) -> np.ndarray:
        """The constant action (trial bin centre of ``trials``, power share ``1/Q``) per row."""
        q = self.config.num_users
        a_trials = 2.0 * (self.trials - 0.5) / self.config.max_trials - 1.0
        a_power = 2.0 / q - 1.0
        one = np.concatenate([np.full(q, a_trials), np.full(q, a_power)]).astype(np.float32)
        n, single = _batch(observations, states)
        return _shape(np.tile(one, (n, 1)), single)


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

    def act(self, observations=None, states: Sequence | None = None) -> np.ndarray:
        """One uniform action per row."""
        n, single = _batch(observations, states)
        actions = self.rng.uniform(-1.0, 1.0, size=(n, 2 * self.config.num_users)).astype(np.float32)
        return _shape(actions, single)

    def allocate(self, state: State) -> tuple[np.ndarray, np.ndarray]:
        """Decode one uniform action in ``state``."""
        return decode_action(self.config, state, self.act())


class OraclePolicy:
    """The exact optimum (:func:`provisioning.oracle.oracle_allocations`) as a policy.

    Its actions are the float64 encodings of the optimal allocations, which decode back to them
    to float rounding (relative 1e-16). It needs the states, not only their observations.

    Parameters
    ----------
    config : ProvisioningConfig
    quality_model : QualityModel, optional
        Defaults to the scenario's simulated backend.
    """

    name = "oracle"

    def __init__(self, config: ProvisioningConfig, quality_model=None):
        self.config = config
        self.quality_model = quality_model

    def allocations(self, states: Sequence[State]) -> list:
        """The :class:`provisioning.oracle.OracleResult` of each state (batched)."""
        from provisioning.oracle import oracle_allocations

        return oracle_allocations(self.config, list(states), quality_model=self.quality_model)

    def act(self, observations=None, states: Sequence | None = None) -> np.ndarray:
        """The encoded optimum of each state (``states`` is required)."""
        if states is None:
            raise ValueError("the oracle decides from states: pass states=[...]")
        single = isinstance(states, State)
        states = [states] if single else list(states)
        results = self.allocations(states)
        actions = np.stack([
            encode_allocation(self.config, s, r.trials, r.power, dtype=np.float64) for s, r in zip(states, results)
        ])
        return _shape(actions, single)


class BestOfK:
    """Best of ``k`` samples of a stochastic actor per observation, ranked by its critic.

    Wraps any policy with ``act_best_of_k(observations, k)`` (D3PG); ``k`` defaults to the
    policy's own configuration (``config.best_of_k``).
    """

    def __init__(self, policy, k: int | None = None):
        self.policy = policy
        self.k = int(k if k is not None else policy.config.best_of_k)
        if self.k < 1:
            raise ValueError(f"best-of-K needs K >= 1, got {self.k}")
        self.name = f"{policy.name}-best-of-k"

    def act(self, observations, states: Sequence | None = None) -> np.ndarray:
        """The critic's favourite of ``k`` actor samples, per row."""
        return self.policy.act_best_of_k(observations, self.k)


#: The non-learning policies, by name: factory(config, seed) -> Policy.
BASELINES = {
    "static": lambda config, seed=0: StaticPolicy(config),
    "random": lambda config, seed=0: RandomPolicy(config, seed=seed),
    "oracle": lambda config, seed=0: OraclePolicy(config),
}


def make_baseline(name: str, config: ProvisioningConfig, seed: int = 0) -> Policy:
    """A non-learning policy by name (see :data:`BASELINES`)."""
    try:
        factory = BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}") from None
    return factory(config, seed)
