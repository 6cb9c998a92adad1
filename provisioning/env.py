"""The provisioning environment: a gymnasium contextual bandit over trials and powers.

What this module is for
-----------------------
Section V-C of the provisioning paper as a :class:`gymnasium.Env` that the D3PG learner and the
Stable-Baselines3 baselines train on.

* State / observation (``4 Q + 1`` floats, each scaled to about [0, 1] with the scenario's
  ranges): prompt difficulty, distance, quality threshold and channel state (mean SNR per watt,
  in dB) of every user, then ``P_total``.
* Action: ``Box([-1, 1]^(2Q), float32)``. The first ``Q`` entries pick the trials: ``[-1, 1]`` is
  cut into ``N_max`` equal bins, bin ``k`` meaning ``N = k + 1``. The last ``Q`` entries give
  power shares ``u_i = (a_i + 1) / 2``; ``P_i = P_total u_i / max(1, sum_j u_j)``. Every action
  therefore decodes to ``1 <= N_i <= N_max`` and ``sum P_i <= P_total``; any such allocation
  is reachable (:meth:`ProvisioningEnv.encode_allocation` is its inverse).
* One decision per episode: ``step`` returns ``terminated=True``.
* Reward: by default the exact expected penalised utility
  (:meth:`ProvisioningEnv.expected_utility`, what ``provisioning.oracle`` maximises); with
  ``reward_mode="sampled"`` one draw of scores and channel (unbiased for the same value).

May import: numpy, gymnasium, ``market.errors`` and ``provisioning.*`` below this module.
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from provisioning.channel import mean_snr_per_watt
from provisioning.qoe import Outcome, evaluate_allocation
from provisioning.quality import QualityModel
from provisioning.scenario import ProvisioningConfig
from provisioning.state import State, sample_state, sample_states

__all__ = ["ProvisioningEnv", "decode_action", "encode_allocation", "observation_of"]

_OBS_BOUND = 5.0


def _unit(value, low, high):
    value = np.asarray(value, dtype=float)
    if high <= low:
        return np.zeros_like(value)
    return (value - low) / (high - low)


def observation_of(config: ProvisioningConfig, state: State) -> np.ndarray:
    """Observation vector of a state (float32, shape ``(4 Q + 1,)``), each part scaled to [0, 1].

    Order: difficulty (Q), distance (Q), quality threshold (Q), channel gain in dB at 1 W (Q),
    ``P_total`` (1). Values outside the scenario's ranges (states set by hand) are clipped to
    +/-5.
    """
    ranges = config.state
    thresholds = np.asarray(ranges.quality_threshold, dtype=float)
    d_lo, d_hi = ranges.distance_m
    gain_db = 10.0 * np.log10(state.mean_snr_per_watt(config))
    gain_hi, gain_lo = 10.0 * np.log10(mean_snr_per_watt([d_lo, d_hi], config.channel))
    parts = [
        state.difficulty,
        _unit(state.distance_m, d_lo, d_hi),
        _unit(state.quality_threshold, thresholds[:, 0].min(), thresholds[:, 1].max()),
        _unit(gain_db, gain_lo, gain_hi),
        _unit([state.p_total_w], *ranges.p_total_w),
    ]
    return np.clip(np.concatenate(parts), -_OBS_BOUND, _OBS_BOUND).astype(np.float32)


def decode_action(config: ProvisioningConfig, state: State, action) -> tuple[np.ndarray, np.ndarray]:
    """Decode an action in ``[-1, 1]^(2Q)`` to integer trials and powers (always legal).

    Entries outside [-1, 1] are clipped and NaN counts as -1, so nothing can decode to an
    illegal allocation.

    Returns
    -------
    trials : ndarray of int64, shape (Q,)
        In ``[1, N_max]``.
    power : ndarray of float64, shape (Q,)
        Watts, ``>= 0`` with ``sum <= P_total``.
    """
    q = config.num_users
    a = np.nan_to_num(np.asarray(action, dtype=np.float64).reshape(-1), nan=-1.0, posinf=1.0, neginf=-1.0)
    if a.shape[0] != 2 * q:
        raise ValueError(f"action must have {2 * q} entries, got {a.shape[0]}")
    a = np.clip(a, -1.0, 1.0)
    n_max = config.max_trials
    trials = np.clip(1 + np.floor((a[:q] + 1.0) * 0.5 * n_max), 1, n_max).astype(np.int64)
    shares = (a[q:] + 1.0) * 0.5
    total = shares.sum()
    power = state.p_total_w * shares / max(1.0, total)
    if power.sum() > state.p_total_w:  # rounding of the division; keep the budget exact
        power = power * (state.p_total_w / power.sum())
    return trials, power


def encode_allocation(config: ProvisioningConfig, state: State, trials, power, dtype=np.float32) -> np.ndarray:
    """Inverse of :func:`decode_action`: the action (bin centres for trials) of an allocation.

    ``decode_action(encode_allocation(N, P)) == (N, P)`` whenever ``1 <= N <= N_max`` and
    ``P >= 0``, ``sum P <= P_total`` (up to float rounding of ``P``: relative 1e-7 in the default
    float32, the action space's type; 1e-16 with ``dtype=np.float64``, as the oracle uses).
    """
    trials = np.clip(np.asarray(trials, dtype=float), 1, config.max_trials)
    power = np.clip(np.asarray(power, dtype=float), 0.0, None)
    a_trials = 2.0 * (trials - 0.5) / config.max_trials - 1.0
    a_power = 2.0 * power / state.p_total_w - 1.0
    return np.clip(np.concatenate([a_trials, a_power]), -1.0, 1.0).astype(dtype)


class ProvisioningEnv(gym.Env):
    """Contextual-bandit environment of the provisioning problem (one decision per episode).

    Parameters
    ----------
    config : ProvisioningConfig
    seed : int, optional
        Seed used by the first :meth:`reset` that is not given one.
    quality_model : QualityModel, optional
        Source of per-trial scores; defaults to the scenario's simulated backend (the hook for
        measured qualities).
    reward_mode : {"expected", "sampled"}, optional
        Overrides ``config.reward_mode``.

    Notes
    -----
    ``reset(options={"state": s})`` evaluates a given state; :meth:`set_state` does the same
    without resetting the generator.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        config: ProvisioningConfig,
        seed: int | None = None,
        *,
        quality_model: QualityModel | None = None,
        reward_mode: str | None = None,
    ):
        super().__init__()
        self.config = config
        self.quality_model = config.quality if quality_model is None else quality_model
        self.reward_mode = reward_mode or config.reward_mode
        if self.reward_mode not in ("expected", "sampled"):
            raise ValueError(f"reward_mode must be 'expected' or 'sampled', got {self.reward_mode!r}")
        q = config.num_users
        self.num_users = q
        self.observation_space = gym.spaces.Box(-_OBS_BOUND, _OBS_BOUND, shape=(4 * q + 1,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2 * q,), dtype=np.float32)
        self._initial_seed = seed
        self._seeded = False
        self.state: State | None = None

    # -- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and not self._seeded:
            seed = self._initial_seed
        super().reset(seed=seed)
        self._seeded = True
        if options and options.get("state") is not None:
            self.state = self._check_state(options["state"])
        else:
            self.state = sample_state(self.config, self.np_random)
        return observation_of(self.config, self.state), {"state": self.state.to_dict()}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        trials, power = self.decode_action(action)
        rng = self.np_random if self.reward_mode == "sampled" else None
        outcome = evaluate_allocation(self.config, self.state, trials, power, quality_model=self.quality_model, rng=rng)
        obs = observation_of(self.config, self.state)
        info = self._info(trials, power, outcome, action)
        return obs, float(outcome.reward), True, False, info

    # -- agreed helpers -------------------------------------------------------------------
    def decode_action(self, action) -> tuple[np.ndarray, np.ndarray]:
        """Decode an action for the current state (see :func:`decode_action`)."""
        return decode_action(self.config, self._require_state(), action)

    def encode_allocation(self, trials, power, state: State | None = None) -> np.ndarray:
        """Action that decodes to ``(trials, power)`` in ``state`` (default: the current one)."""
        return encode_allocation(self.config, state or self._require_state(), trials, power)

    def sample_states(self, n: int, seed: int) -> list[State]:
        """``n`` states from a generator seeded with ``seed`` (independent of the env's own)."""
        return sample_states(self.config, n, seed)

    def set_state(self, state: State) -> np.ndarray:
        """Make ``state`` the current one; returns its observation."""
        self.state = self._check_state(state)
        return observation_of(self.config, self.state)

    def observation(self, state: State | None = None) -> np.ndarray:
        """Observation of ``state`` (default: the current one)."""
        return observation_of(self.config, state or self._require_state())

    def evaluate(self, state: State, trials, power) -> Outcome:
        """Full expected :class:`provisioning.qoe.Outcome` of an allocation in ``state``."""
        return evaluate_allocation(self.config, state, trials, power, quality_model=self.quality_model)

    def expected_utility(self, state: State, trials, power) -> float:
        """The deterministic objective: expected utility minus penalties (eq. (22), section V-C).

        It is the default step reward and what :func:`provisioning.oracle.oracle_allocation`
        maximises exactly; fraction-of-oracle figures are ratios of its means.
        """
        return self.evaluate(state, trials, power).reward

    # -- internals ---------------------------------------------------------------------
    def _require_state(self) -> State:
        if self.state is None:
            raise RuntimeError("no current state: call reset() or set_state() first")
        return self.state

    def _check_state(self, state) -> State:
        if isinstance(state, dict):
            state = State.from_dict(state)
        if not isinstance(state, State):
            raise TypeError(f"state must be a provisioning.state.State, got {type(state).__name__}")
        if state.num_users != self.num_users:
            raise ValueError(f"state has {state.num_users} users, the scenario {self.num_users}")
        return state

    def _info(self, trials, power, outcome: Outcome, action) -> dict:
        a = np.asarray(action, dtype=float).reshape(-1)
        return {
            "trials": trials,
            "power": power,
            "qoe": outcome.qoe,
            "expected_qoe": outcome.expected_qoe,
            "cost": outcome.cost,
            "expected_ber": outcome.expected_ber,
            "utility": outcome.utility,
            "penalty": outcome.penalty,
            "reward": outcome.reward,
            "qoe_violations": outcome.qoe_violations,
            "trial_violations": outcome.trial_violations,
            "budget_violated": outcome.budget_violated,
            "saturated_share": float(np.mean(np.abs(a) >= 1.0 - 1e-6)),
            "power_used_share": float(power.sum() / self.state.p_total_w),
        }
