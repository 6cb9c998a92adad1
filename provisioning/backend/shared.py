"""Shared denoising (paper 2, Figs. 8-9): server steps under one prompt, device steps under another.

What this module is for: the edge server runs the first ``t_0`` steps of a ``t_0 + t_k``
DDIM schedule under the server's prompt (digit ``a``); the intermediate latent crosses a
noisy link (8-bit quantisation on ``[-4, 4]``, bit flips at ``ber``: :mod:`.channel`); each
device ``k`` runs the remaining ``t_k`` steps under its own prompt. Device 1 asks for the
server's digit ``a``; device 2 asks for a different digit ``b``. Accuracy is judged per
device against *its own* prompt; ``leak_to_server_prompt`` is the share of device-2 images
the judge reads as the server's digit (the paper's "tiger features on the dog").
Baseline: separate generation, each device running all ``t_0 + t_k`` steps under its own
prompt over a perfect link. With ``t_0 = 0`` nothing is shared or sent (the devices start
from their own noise), so that row equals separate generation with ``t_k`` steps. Steps saved: with ``K`` devices, shared generation runs
``t_0 + K t_k`` UNet steps instead of ``K (t_0 + t_k)``.

May import: numpy, torch, diffusers, ``market`` (errors, atomic IO).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from market.atomic import atomic_write_png
from market.errors import UserError

from .channel import transmit_latent
from .models import BackendModel
from .sampling import denoise, initial_noise, request_seed
from .stats import wilson_interval


@dataclass
class SharedDenoiseConfig:
    """A grid of shared-denoising settings (saved next to the result)."""

    model: str = "digits-large"
    """Model name or folder (informational)."""
    t0_grid: list[int] = field(default_factory=lambda: [0, 2, 4, 6, 8])
    """Server steps ``t_0`` to try."""
    tk_grid: list[int] = field(default_factory=lambda: [2, 4, 6, 8, 10])
    """Device steps ``t_k`` to try (the same for both devices)."""
    ber_grid: list[float] = field(default_factory=lambda: [0.0, 0.01, 0.03, 0.06, 0.1, 0.15])
    """Bit error rates of the server-to-device link."""
    samples: int = 50
    """Prompt pairs (server/device-1 digit ``a = i mod 10``, device-2 digit ``b != a``)."""
    seed: int = 0
    """Run seed (pair ``i`` starts from ``SeedSequence([seed, i])`` noise)."""
    guidance_scale: float | None = None
    """Classifier-free guidance (``None``: the model's default)."""


@dataclass
class SharedDenoiseRow:
    """One grid point.

    Attributes
    ----------
    t0, tk : int
        Server and device steps.
    ber : float
        Bit error rate of the latent's link.
    accuracy_device1, accuracy_device2 : float
        Judge accuracy against each device's own prompt.
    ci_device1, ci_device2 : (float, float)
        Wilson 95% intervals.
    leak_to_server_prompt : float
        Share of device-2 images judged as the server's digit.
    separate_accuracy_device1, separate_accuracy_device2 : float
        Accuracy when each device runs all ``t0 + tk`` steps itself under its own prompt.
    steps_shared, steps_separate : int
        UNet steps per prompt pair (two devices): ``t0 + 2 tk`` vs ``2 (t0 + tk)``.
    steps_saved_share : float
        ``1 - steps_shared / steps_separate`` (energy saved at equal energy per step).
    device_steps_saved_share : float
        ``t0 / (t0 + tk)``: share of a device's own steps (energy) it no longer runs.
    """

    t0: int
    tk: int
    ber: float
    accuracy_device1: float
    accuracy_device2: float
    ci_device1: tuple[float, float]
    ci_device2: tuple[float, float]
    leak_to_server_prompt: float
    separate_accuracy_device1: float
    separate_accuracy_device2: float
    steps_shared: int
    steps_separate: int
    steps_saved_share: float
    device_steps_saved_share: float


def prompt_pairs(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Server/device-1 digits ``a_i = i mod 10`` and device-2 digits ``b_i != a_i`` (seeded)."""
    a = np.arange(samples) % 10
    offsets = np.random.default_rng([seed, 11]).integers(1, 10, size=samples)
    return a.astype(np.int64), ((a + offsets) % 10).astype(np.int64)


def _noise(model: BackendModel, samples: int, seed: int):
    import torch

    return torch.cat([initial_noise(model, 1, request_seed(seed, i)) for i in range(samples)])


def shared_denoise(model: BackendModel, config: SharedDenoiseConfig, evaluator=None) -> list[SharedDenoiseRow]:
    """Run the grid of shared-denoising settings and judge each device's images.

    Returns
    -------
    list of SharedDenoiseRow
        One row per ``(t0, tk, ber)``.
    """
    import torch

    if model.unet is None or model.num_classes is None:
        raise UserError(f"{model.name}: shared denoising needs a shipped class-conditional model")
    for name in ("t0_grid", "tk_grid"):
        values = getattr(config, name)
        if not values or any((not isinstance(v, (int, np.integer))) or v < 0 for v in values):
            raise UserError(f"shared-denoise: {name} must be non-negative integers, got {values!r}")
    if any(v < 1 for v in config.tk_grid):
        raise UserError(f"shared-denoise: tk_grid values must be >= 1, got {config.tk_grid!r}")
    if any(not (0 <= b <= 1) for b in config.ber_grid):
        raise UserError(f"shared-denoise: ber_grid values must be in [0, 1], got {config.ber_grid!r}")
    if evaluator is None:
        from .evaluator import load_evaluator

        evaluator = load_evaluator()
    a, b = prompt_pairs(config.samples, config.seed)
    noise = _noise(model, config.samples, config.seed)
    g = config.guidance_scale
    rows: list[SharedDenoiseRow] = []
    separate_cache: dict[int, tuple[float, float]] = {}
    for t0 in config.t0_grid:
        for tk in config.tk_grid:
            total = t0 + tk
            if total not in separate_cache:
                img1 = denoise(model, noise.clone(), a, total, guidance_scale=g).clamp(-1, 1).cpu().numpy()
                img2 = denoise(model, noise.clone(), b, total, guidance_scale=g).clamp(-1, 1).cpu().numpy()
                separate_cache[total] = (float((evaluator.judge_labels(img1) == a).mean()),
                                         float((evaluator.judge_labels(img2) == b).mean()))
            server = denoise(model, noise.clone(), a, total, start=0, stop=t0, guidance_scale=g).cpu().numpy()
            uniforms = np.random.default_rng([config.seed, t0, tk, 13]).random(server.size * 8)
            for ber in config.ber_grid:
                if t0 == 0:  # nothing is shared: each device starts from its own noise, no link
                    latent = noise.clone()
                else:
                    rx = transmit_latent(server, ber, uniforms=uniforms)
                    latent = torch.as_tensor(rx.values, device=model.device)
                out1 = denoise(model, latent.clone(), a, total, start=t0, guidance_scale=g).clamp(-1, 1).cpu().numpy()
                out2 = denoise(model, latent.clone(), b, total, start=t0, guidance_scale=g).clamp(-1, 1).cpu().numpy()
                j1, j2 = evaluator.judge_labels(out1), evaluator.judge_labels(out2)
                c1, c2 = int((j1 == a).sum()), int((j2 == b).sum())
                n = config.samples
                rows.append(SharedDenoiseRow(
                    t0=int(t0), tk=int(tk), ber=float(ber),
                    accuracy_device1=c1 / n, accuracy_device2=c2 / n,
                    ci_device1=wilson_interval(c1, n), ci_device2=wilson_interval(c2, n),
                    leak_to_server_prompt=float((j2 == a).mean()),
                    separate_accuracy_device1=separate_cache[total][0],
                    separate_accuracy_device2=separate_cache[total][1],
                    steps_shared=int(t0 + 2 * tk), steps_separate=int(2 * total),
                    steps_saved_share=float(1 - (t0 + 2 * tk) / (2 * total)),
                    device_steps_saved_share=float(t0 / total),
                ))
    return rows


def rows_to_dicts(rows: list[SharedDenoiseRow]) -> list[dict]:
    """JSON-ready rows."""
    return [asdict(r) for r in rows]


def plot_shared(rows: list[SharedDenoiseRow], out_dir, ber_for_grid: float | None = None) -> list:
    """Fig. 8 analogue (accuracy vs BER per ``t0``) and Fig. 9 analogue (device-2 accuracy over ``t0 x tk``)."""
    from market.atomic import headless_pyplot

    plt = headless_pyplot()
    from pathlib import Path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    bers = sorted({r.ber for r in rows})
    t0s = sorted({r.t0 for r in rows})
    tks = sorted({r.tk for r in rows})
    tk_fix = max(tks)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for t0 in t0s:
        sel = sorted((r for r in rows if r.t0 == t0 and r.tk == tk_fix), key=lambda r: r.ber)
        axes[0].plot([r.ber for r in sel], [r.accuracy_device1 for r in sel], marker="o", label=f"t0={t0}")
        axes[1].plot([r.ber for r in sel], [r.accuracy_device2 for r in sel], marker="o", label=f"t0={t0}")
    axes[0].set_title(f"device 1 (same prompt as server), tk={tk_fix}")
    axes[1].set_title(f"device 2 (other prompt), tk={tk_fix}")
    for ax in axes:
        ax.set_xlabel("bit error rate of the latent link")
        ax.set_ylabel("accuracy vs own prompt")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "shared_accuracy_vs_ber.png"
    atomic_write_png(path, fig)
    files.append(path)
    ber = ber_for_grid if ber_for_grid is not None else min(bers, key=lambda x: abs(x - 0.03))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, title in ((axes[0], "accuracy_device2", "device 2 accuracy vs own prompt"),
                           (axes[1], "leak_to_server_prompt", "device 2 judged as server's prompt")):
        grid = np.full((len(t0s), len(tks)), np.nan)
        for r in rows:
            if r.ber == ber:
                grid[t0s.index(r.t0), tks.index(r.tk)] = getattr(r, key)
        im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower")
        ax.set_xticks(range(len(tks)), [str(t) for t in tks])
        ax.set_yticks(range(len(t0s)), [str(t) for t in t0s])
        ax.set_xlabel("device steps t_k")
        ax.set_ylabel("server steps t_0")
        ax.set_title(f"{title}, BER={ber:g}", fontsize=9)
        for i in range(len(t0s)):
            for j in range(len(tks)):
                if np.isfinite(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="w", fontsize=7)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    path = out_dir / "shared_device2_grid.png"
    atomic_write_png(path, fig)
    files.append(path)
    return files
