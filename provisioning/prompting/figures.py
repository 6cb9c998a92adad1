"""The prompt-engineering figures: strategies on three prompts (Fig. 10), training (Fig. 11), service rounds (Fig. 12).

What this module is for: drawing what ``incentive prompts grid|evaluate|rounds`` measured, after
the paper's section VI-B / VI-C figures, as PNG files written atomically.

* :func:`strategy_grid` measures the grid (one request per row, Table II's strategies as
  columns: each strategy's engineered prompt, its images from the generator, received at one
  transmit power and scored) and :func:`plot_strategy_grid` draws it (Fig. 10);
* :func:`plot_training` draws the held-out mean score of GAIL and PPO during training (mean
  and spread over seeds, ``curves`` of an ``evaluate`` JSON) against the fixed policies, and
  the converged scores per policy with their seed spread (Fig. 11);
* :func:`plot_rounds` draws the rounds needed per (threshold, images per round) for each
  policy, and each policy's single-round share (Fig. 12).

May import: numpy, matplotlib (inside the functions), ``market.atomic``, this package.
"""
from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from market.atomic import atomic_write_bytes

from .corpus import PromptOptimizer
from .dataset import ImageGenerator
from .requests import LinkConfig, Request, Scorer, ber_at_power, receive
from .strategies import Strategy, apply_strategy

#: Colours per policy (the same in every figure).
POLICY_COLOURS = {"gail": "tab:red", "ppo": "tab:blue", "random": "tab:grey", "empirical": "tab:green",
                  "expert": "black", "raw": "tab:orange"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


@dataclass
class GridCell:
    """One (request, strategy) cell of Fig. 10."""

    request: int
    strategy: str
    prompt: str
    negative_prompt: str
    scores: list


def strategy_grid(requests: Sequence[Request], strategy_list: Sequence[Strategy], optimizer: PromptOptimizer,
                  generator: ImageGenerator, scorer: Scorer, power_w: float, images: int = 1, seed: int = 0,
                  link: LinkConfig = LinkConfig()) -> tuple[list[GridCell], np.ndarray]:
    """The cells and the received images ``(requests, strategies, images, 3, 32, 32)`` of Fig. 10."""
    from market.seeding import derive_seed

    ber = float(ber_at_power(power_w, link))
    cells, pictures = [], np.zeros((len(requests), len(strategy_list), images, 3, 32, 32), dtype=np.float32)
    for j, request in enumerate(requests):
        corpus = optimizer.corpus(request.raw, seed=seed)
        for k, strategy in enumerate(strategy_list):
            engineered = apply_strategy(corpus, strategy)
            generated = generator.generate(engineered.prompt, engineered.negative_prompt, images,
                                           derive_seed(seed, j, k, bits=32))
            received = receive(generated, ber, np.random.default_rng(np.random.SeedSequence([seed, j, k, 2000])))
            seeds = [derive_seed(seed, j, k, 2000, s, bits=31) for s in range(images)]
            pictures[j, k] = received
            cells.append(GridCell(j, strategy.name, engineered.prompt, engineered.negative_prompt,
                                  [float(x) for x in scorer.score(received, [request] * images, seeds)]))
    return cells, pictures


def plot_strategy_grid(requests: Sequence[Request], cells: Sequence[GridCell], pictures: np.ndarray,
                       path: str | Path, title: str = "") -> Path:
    """Fig. 10: one row per request, one column per strategy, the first image and the mean score."""
    plt = _pyplot()
    rows, cols = pictures.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows + 0.4), squeeze=False)
    by_key = {(c.request, c.strategy): c for c in cells}
    names = [c.strategy for c in cells[:cols]]
    for j in range(rows):
        for k in range(cols):
            ax = axes[j][k]
            rgb = (np.clip(np.transpose(pictures[j, k, 0], (1, 2, 0)), -1, 1) + 1) / 2
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            cell = by_key[(j, names[k])]
            ax.set_title(f"{k}: {np.mean(cell.scores):.2f}", fontsize=8)
            if k == 0:
                import textwrap

                ax.set_ylabel(textwrap.fill(f"{requests[j].raw} (intent: {requests[j].intent})", 28), fontsize=6)
    fig.suptitle(title or "Strategies 0-6 on three prompts (title: strategy: mean score of the received images)",
                 fontsize=9)
    return _save(fig, path)


def _curve_stats(curves: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Timesteps and the mean / std over seeds of the held-out score (curves cut to the shortest)."""
    length = min(len(c) for c in curves)
    arr = np.array([c[:length] for c in curves], dtype=float)   # (seeds, points, 3)
    spread = arr[:, :, 1].std(axis=0, ddof=1) if len(arr) > 1 else np.zeros(arr.shape[1])
    return arr[0, :, 0], arr[:, :, 1].mean(axis=0), spread


def plot_training(evaluation: dict, path: str | Path) -> Path:
    """Fig. 11: training curves (held-out mean score vs timesteps) and converged scores per policy."""
    plt = _pyplot()
    policies = evaluation["policies"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, record in policies.items():
        colour = POLICY_COLOURS.get(name, None)
        if record.get("curves"):
            t, mean, std = _curve_stats(record["curves"])
            left.plot(t, mean, color=colour, label=f"{name} ({len(record['curves'])} seeds)")
            left.fill_between(t, mean - std, mean + std, color=colour, alpha=0.2)
        else:
            left.axhline(record["mean_score"]["mean"], color=colour, linestyle="--", label=name)
    left.set_xlabel("training timesteps")
    left.set_ylabel("held-out mean score (0-10)")
    left.set_title("Training (mean ± std over seeds)")
    left.legend(fontsize=8)
    names = list(policies)
    means = [policies[n]["mean_score"]["mean"] for n in names]
    stds = [policies[n]["mean_score"]["std"] for n in names]
    right.bar(names, means, yerr=stds, capsize=4, color=[POLICY_COLOURS.get(n, "tab:purple") for n in names])
    for i, n in enumerate(names):
        right.text(i, means[i] + stds[i] + 0.05, f"{policies[n]['fraction_of_expert']['mean']:.2f}", ha="center",
                   fontsize=8)
    right.set_ylabel("held-out mean score (0-10)")
    right.set_title("Converged (label: fraction of expert)")
    low = min(m - s for m, s in zip(means, stds))
    right.set_ylim(max(0.0, low - 0.5), max(m + s for m, s in zip(means, stds)) + 0.4)
    return _save(fig, path)


def plot_rounds(rounds: dict, path: str | Path) -> Path:
    """Fig. 12: rounds needed per (threshold, images per round) for each policy; single-round shares."""
    plt = _pyplot()
    policies = rounds["policies"]
    names = list(policies)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.6 * (len(names) + 1), 3.6), squeeze=False)
    cap = 20
    for ax, name in zip(axes[0], names):
        grid = policies[name]
        table = np.array([[cap if r is None else min(r, cap) for r in row] for row in grid["rounds"]], dtype=float)
        ax.imshow(table, cmap="viridis_r", vmin=1, vmax=cap, aspect="auto", origin="lower")
        for a in range(table.shape[0]):
            for b in range(table.shape[1]):
                value = grid["rounds"][a][b]
                ax.text(b, a, "∞" if value is None else (f"{value}" if value < 100 else "99+"), ha="center",
                        va="center", fontsize=5, color="white" if table[a, b] > cap / 2 else "black")
        ax.set_xticks(range(len(grid["images_per_round"])), grid["images_per_round"], fontsize=7)
        ax.set_yticks(range(0, len(grid["thresholds"]), 2), grid["thresholds"][::2], fontsize=7)
        ax.set_xlabel("images per round", fontsize=8)
        ax.set_title(f"{name} ({grid['model']})", fontsize=9)
    axes[0][0].set_ylabel("required quality", fontsize=8)
    last = axes[0][-1]
    shares = [policies[n]["single_round_share"] for n in names]
    last.bar(names, shares, color=[POLICY_COLOURS.get(n, "tab:purple") for n in names])
    last.set_ylim(0.0, max(0.1, 1.25 * max(shares)))
    for i, share in enumerate(shares):
        last.text(i, share, f"{round(share * 55)}/55", ha="center", va="bottom", fontsize=7)
    last.set_title("single-round share of the grid", fontsize=9)
    last.tick_params(axis="x", labelrotation=60, labelsize=7)
    shift = rounds.get("threshold_shift") or 0.0
    fig.suptitle(f"Service rounds at {rounds['confidence']:.0%} confidence (colour capped at {cap})"
                 + (f"; thresholds shifted by {shift:+.2f} onto our score scale" if shift else ""), fontsize=9)
    return _save(fig, path)


def grid_record(requests: Sequence[Request], cells: Sequence[GridCell], power_w: float, generator: str,
                scorer: str) -> dict:
    """The JSON next to Fig. 10."""
    return {"power_w": power_w, "generator": generator, "scorer": scorer,
            "requests": [asdict(r) for r in requests], "cells": [asdict(c) for c in cells]}


__all__ = ["POLICY_COLOURS", "GridCell", "strategy_grid", "plot_strategy_grid", "plot_training", "plot_rounds",
           "grid_record"]
