"""The state (context) of one provisioning decision and how states are drawn.

What this module is for
-----------------------
Section V-C of the provisioning paper: the state holds the users' prompts (here their difficulty
features), distances, quality thresholds, the ASP's power budget ``P_total`` and the channel
state (the mean SNR per watt implied by each distance). :func:`sample_states` draws states
uniformly from a scenario's :class:`provisioning.scenario.StateRanges`, seeded.

May import: numpy, ``provisioning.channel``, ``provisioning.scenario``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from provisioning.channel import mean_snr_per_watt
from provisioning.scenario import ProvisioningConfig

__all__ = ["State", "sample_state", "sample_states", "paper_example_state", "PAPER_EXAMPLE_PROMPTS"]


@dataclass(frozen=True, eq=False)
class State:
    """One context of the provisioning bandit.

    Attributes
    ----------
    difficulty : ndarray, shape (Q,)
        Prompt difficulty feature of each user, in [0, 1].
    distance_m : ndarray, shape (Q,)
        User-to-ASP distance, metres.
    quality_threshold : ndarray, shape (Q,)
        ``q^th_i``: each user's quality threshold (0-10 score scale).
    p_total_w : float
        ``P_total``: the ASP's transmit power budget, watts.
    """

    difficulty: np.ndarray
    distance_m: np.ndarray
    quality_threshold: np.ndarray
    p_total_w: float

    def __post_init__(self):
        for name in ("difficulty", "distance_m", "quality_threshold"):
            array = np.array(getattr(self, name), dtype=float)
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        object.__setattr__(self, "p_total_w", float(self.p_total_w))
        q = self.difficulty.shape
        if len(q) != 1 or self.distance_m.shape != q or self.quality_threshold.shape != q:
            raise ValueError("State: difficulty, distance_m and quality_threshold must be 1-D of equal length")

    @property
    def num_users(self) -> int:
        """``Q``."""
        return int(self.difficulty.shape[0])

    def mean_snr_per_watt(self, config: ProvisioningConfig) -> np.ndarray:
        """Channel state: mean SNR per watt (1/W) of each user's link, without shadowing."""
        return mean_snr_per_watt(self.distance_m, config.channel)

    def to_dict(self) -> dict:
        """Plain-data form (JSON friendly)."""
        return {
            "difficulty": self.difficulty.tolist(),
            "distance_m": self.distance_m.tolist(),
            "quality_threshold": self.quality_threshold.tolist(),
            "p_total_w": self.p_total_w,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "State":
        """Inverse of :meth:`to_dict`."""
        return cls(data["difficulty"], data["distance_m"], data["quality_threshold"], data["p_total_w"])

    def __eq__(self, other) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return (
            np.array_equal(self.difficulty, other.difficulty)
            and np.array_equal(self.distance_m, other.distance_m)
            and np.array_equal(self.quality_threshold, other.quality_threshold)
            and self.p_total_w == other.p_total_w
        )


def sample_state(config: ProvisioningConfig, rng: np.random.Generator) -> State:
    """Draw one state uniformly from the scenario's ranges."""
    q = config.num_users
    ranges = config.state
    difficulty = rng.uniform(*ranges.difficulty, size=q)
    distance = rng.uniform(*ranges.distance_m, size=q)
    thresholds = np.array([rng.uniform(lo, hi) for lo, hi in ranges.quality_threshold])
    p_total = rng.uniform(*ranges.p_total_w)
    return State(difficulty, distance, thresholds, p_total)


def sample_states(config: ProvisioningConfig, n: int, seed: int) -> list[State]:
    """Draw ``n`` states with a dedicated seeded generator (for held-out evaluation sets)."""
    rng = np.random.default_rng(seed)
    return [sample_state(config, rng) for _ in range(int(n))]


#: The three prompts of the paper's Fig. 15 with the difficulty we assign them (ours: the paper
#: gives none; a city scene with a blue car needs more objects and composition than a dog).
PAPER_EXAMPLE_PROMPTS = (
    ("A dog with a colorful collar", 0.2),
    ("A garden with a fountain", 0.5),
    ("A city with blue car", 0.8),
)


def paper_example_state(distance_m: float = 120.0, p_total_w: float = 1.0) -> State:
    """The paper's Fig. 15 example: three prompts, quality thresholds 7.6, 8.2 and 8.5.

    The paper gives neither distances nor the power budget; all users sit at ``distance_m``.
    """
    difficulty = [d for _, d in PAPER_EXAMPLE_PROMPTS]
    return State(difficulty, [distance_m] * 3, [7.6, 8.2, 8.5], p_total_w)
