"""Service rounds needed at a confidence level (section VI-C, Fig. 12).

What this module is for: a user needs an image scoring at least ``q`` (7.5-8.5 in the paper);
each round the MASP generates ``n`` images (1-5) and the user keeps the best. With ``p`` the
chance that one image scores >= q, a round succeeds with ``1 - (1 - p)^n`` and the number of
rounds needed at confidence ``c`` is the smallest ``r`` with ``1 - (1 - p)^(n r) >= c``:

    r = ceil( log(1 - c) / (n log(1 - p)) )      (inf when p = 0, 1 when p = 1)

The paper fits a normal to each policy's scores ("suppose that the generation quality of each
strategy follows a standard distribution"); we take ``p`` from the *empirical* distribution
by default, and from a fitted normal only when :func:`normal_fits` does not reject it
(Shapiro-Wilk at 5%; scores are bounded in [0, 10], so a normal often does not fit). The
paper's "probability of single-round success 3/55" is the share of the 11 x 5 grid
(q = 7.5, 7.6, ..., 8.5; n = 1..5) that needs exactly one round: :func:`single_round_share`.

May import: numpy, scipy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

PAPER_THRESHOLDS: tuple[float, ...] = tuple(round(7.5 + 0.1 * i, 1) for i in range(11))
PAPER_IMAGES_PER_ROUND: tuple[int, ...] = (1, 2, 3, 4, 5)


def rounds_needed(success_probability: float, images_per_round: int, confidence: float = 0.9) -> float:
    """Smallest number of rounds with P(at least one image >= q) >= ``confidence`` (``inf`` if p = 0)."""
    p = float(success_probability)
    if not 0.0 <= p <= 1.0 or images_per_round < 1 or not 0.0 < confidence < 1.0:
        raise ValueError("need p in [0, 1], images_per_round >= 1, confidence in (0, 1)")
    if p >= 1.0:
        return 1.0
    if p <= 0.0:
        return math.inf
    return float(max(1, math.ceil(math.log(1.0 - confidence) / (images_per_round * math.log1p(-p)) - 1e-12)))


def normal_fits(scores: np.ndarray, alpha: float = 0.05) -> bool:
    """Shapiro-Wilk does not reject normality at ``alpha`` (needs >= 3 distinct scores)."""
    scores = np.asarray(scores, dtype=float).ravel()
    if scores.size < 3 or np.ptp(scores) == 0:
        return False
    return bool(stats.shapiro(scores[:5000]).pvalue >= alpha)


def exceedance(scores: np.ndarray, threshold: float, model: str = "empirical") -> float:
    """P(score >= threshold): ``empirical`` share, or ``normal`` (fitted mean and std)."""
    scores = np.asarray(scores, dtype=float).ravel()
    if model == "empirical":
        return float(np.mean(scores >= threshold))
    if model == "normal":
        sd = float(scores.std(ddof=1))
        return float(scores.mean() >= threshold) if sd == 0 else float(stats.norm.sf(threshold, scores.mean(), sd))
    raise ValueError(f"model: {model!r} is not 'empirical' or 'normal'")


@dataclass
class RoundsGrid:
    """Rounds needed per (threshold, images per round); ``model`` says which distribution was used."""

    thresholds: tuple[float, ...]
    images_per_round: tuple[int, ...]
    rounds: np.ndarray  # (thresholds, images_per_round), inf where never
    model: str

    def single_round_share(self) -> float:
        """Share of the grid served in one round (the paper's 3/55, 9/55, ...)."""
        return float(np.mean(self.rounds == 1))

    def to_dict(self) -> dict:
        return {"thresholds": list(self.thresholds), "images_per_round": list(self.images_per_round),
                "rounds": [[None if math.isinf(r) else int(r) for r in row] for row in self.rounds],
                "model": self.model, "single_round_share": self.single_round_share()}


def rounds_grid(scores: np.ndarray, thresholds=PAPER_THRESHOLDS, images_per_round=PAPER_IMAGES_PER_ROUND,
                confidence: float = 0.9, model: str = "auto") -> RoundsGrid:
    """Rounds needed over the grid. ``model="auto"``: normal where :func:`normal_fits`, else empirical."""
    scores = np.asarray(scores, dtype=float).ravel()
    if scores.size == 0:
        raise ValueError("no scores")
    used = ("normal" if normal_fits(scores) else "empirical") if model == "auto" else model
    table = np.array([[rounds_needed(exceedance(scores, q, used), n, confidence) for n in images_per_round]
                      for q in thresholds])
    return RoundsGrid(tuple(thresholds), tuple(images_per_round), table, used)
