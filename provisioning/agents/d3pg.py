"""D3PG: a conditional diffusion actor, twin critics and a DDPG learner.

What this module is for: the learner of section V-D ("Diffusion-Enhanced DDPG", eqs. (25)-(32)
and Algorithm 1) of Liu et al., "Intelligent Mobile AI-Generated Content Services via Interactive
Prompt Engineering and Dynamic Service Provisioning", with the recipe recorded in
``docs/learners.md``:

- the actor is a conditional denoising diffusion model (DDPM) over the action vector: a few
  denoising steps under a variance-preserving ("vp") beta schedule with ``alpha_bar_T < 0.01``,
  epsilon prediction, the predicted ``x0`` clamped to ``[-1, 1]`` at every step;
- the denoiser is a state encoder (2 x 256, Mish), a sinusoidal time embedding (16) and a trunk
  (3 x 256, Mish) that predicts the noise;
- twin critics; the smaller estimate is used in the TD target and in the actor loss
  ``-min(Q1, Q2)(s, actor(s))``, whose gradient flows through the whole denoising chain;
- TD targets ``r + gamma * (1 - terminated) * min Q'(s', actor'(s'))``: only ``terminated``
  stops the bootstrap (time-limit truncation never reaches the buffer), and the target action
  is a plain sample of the target actor, never exploration noise.

Acting is separate from learning: :class:`D3PGPolicy` (actor, observation normaliser and,
optionally, the critic for best-of-K) is all a deployment needs and is what is shipped;
:class:`D3PGLearner` owns the critics, target networks, optimisers and the replay buffer.

Why hand-written: no library provides a diffusion *policy* trained by deterministic policy
gradients. Stable-Baselines3 has Gaussian and deterministic MLP actors only, and diffusers'
schedulers are built to sample from a fixed, separately trained denoiser, one Python call per
step. We need the whole 6-step chain differentiable inside the actor loss and one decision at
batch 1 well under a millisecond on a CPU, so the DDPM posterior arithmetic (Ho et al. 2020,
eqs. (6)-(7), as in the paper's eqs. (28)-(30)) is written out here with precomputed
coefficients; ``tests/provisioning/test_d3pg.py`` checks it step for step against
``diffusers.DDPMScheduler`` with the same betas.

May import: ``market`` (errors, atomic IO), numpy, torch, safetensors. Never ``incentive``
or ``solvers``.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from market.errors import MissingArtifactError, UserError


@dataclass
class D3PGConfig:
    """Hyper-parameters of D3PG, saved as JSON next to every run and every shipped policy.

    Defaults are the project's D3PG recipe (``docs/learners.md``) except where a field's docstring
    says it was tuned (and why); ``docs/learners.md`` keeps the record.
    """

    denoising_steps: int = 6
    """Number of DDPM steps T of the actor (the paper's diffusion steps of the policy)."""
    beta_min: float = 0.1
    """Lower end of the continuous VP noise rate; with ``beta_max`` it fixes the schedule."""
    beta_max: float = 10.0
    """Upper end of the continuous VP noise rate; 0.1..10 gives alpha_bar_T = exp(-5.05) ~ 0.0064 at T = 6."""
    state_hidden: int = 256
    """Width of the state encoder layers."""
    state_layers: int = 2
    """Number of Mish layers in the state encoder."""
    time_embedding_dim: int = 16
    """Size of the sinusoidal embedding of the denoising step."""
    trunk_hidden: int = 256
    """Width of the denoiser trunk layers."""
    trunk_layers: int = 3
    """Number of Mish layers in the denoiser trunk."""
    critic_hidden: int = 256
    """Width of each twin critic's layers."""
    critic_layers: int = 3
    """Number of Mish layers in each twin critic."""
    actor_lr: float = 1e-4
    """AdamW learning rate of the actor (recipe 1e-4)."""
    critic_lr: float = 1e-4
    """AdamW learning rate of the critics (recipe 1e-4)."""
    weight_decay: float = 1e-4
    """AdamW weight decay for actor and critics."""
    grad_clip: float = 1.0
    """Maximum global gradient norm per update (actor and critics separately)."""
    tau: float = 0.005
    """Soft-update rate of the target networks."""
    gamma: float = 0.99
    """Discount factor. Irrelevant for the one-decision environment (every step terminates)."""
    batch_size: int = 512
    """Transitions per gradient step."""
    actor_batch_size: int | None = None
    """Transitions used for the actor loss (the first rows of the critic's batch); None = batch_size."""
    replay_size: int = 1_000_000
    """Replay buffer capacity (transitions); the buffer is allocated for min(this, run length)."""
    warmup_steps: int = 1000
    """Environment steps with uniformly random actions before the first gradient step."""
    exploration_sigma: float = 0.1
    """Std of the Gaussian noise added to actor actions while collecting (never in targets,
    the actor loss or evaluation)."""
    gradient_steps_per_env_step: int = 1
    """Critic gradient steps per environment step after the warm-up."""
    actor_update_every: int = 1
    """Actor (and target) update every this many critic steps (1 = the recipe; >1 = TD3-style delay)."""
    clamp_gradient: str = "straight_through"
    """How the actor-loss gradient passes the x0 clamp: "hard" (the plain clamp: zero gradient
    outside [-1, 1]) or "straight_through" (same forward value, identity gradient). Tuned: with
    "hard", an untrained denoiser predicts |x0| >> 1 almost everywhere at alpha_bar_T ~ 0.006,
    every entry is clamped and the actor loss has no gradient (the policy never moved in tests)."""
    x0_excess_weight: float = 1.0
    """Weight of ``mean (|x0_hat| - 1)_+^2`` (unclamped x0 predictions outside [-1, 1]) in the
    actor loss, in units of the scaled Q. Tuned: with the straight-through clamp alone the
    predictions ran away past the bounds and the actions stuck at +/-1 (94% saturated)."""
    best_of_k: int = 16
    """K in the best-of-K evaluation: K actor samples ranked by min(Q1, Q2)."""
    normalize_observations: bool = True
    """Standardise observations with mean/std frozen at the end of the warm-up."""
    reward_scale: float | None = None
    """Multiply rewards by this before the critic sees them; None = 1/std of the warm-up rewards."""

    def __post_init__(self) -> None:
        for name, low in (
            ("denoising_steps", 1),
            ("state_hidden", 1),
            ("state_layers", 1),
            ("time_embedding_dim", 2),
            ("trunk_hidden", 1),
            ("trunk_layers", 1),
            ("critic_hidden", 1),
            ("critic_layers", 1),
            ("batch_size", 1),
            ("replay_size", 1),
            ("gradient_steps_per_env_step", 0),
            ("actor_update_every", 1),
            ("best_of_k", 1),
            ("warmup_steps", 0),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise UserError(f"D3PGConfig.{name} must be an integer >= {low}, got {value!r}")
        for name in ("actor_lr", "critic_lr", "grad_clip", "tau", "beta_min", "beta_max"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise UserError(f"D3PGConfig.{name} must be a positive finite number, got {value!r}")
        if not (0 <= self.weight_decay < 1 and 0 <= self.gamma <= 1 and 0 <= self.exploration_sigma):
            raise UserError("D3PGConfig: weight_decay in [0,1), gamma in [0,1], exploration_sigma >= 0")
        if self.tau > 1:
            raise UserError(f"D3PGConfig.tau must be in (0, 1], got {self.tau!r}")
        if self.clamp_gradient not in ("hard", "straight_through"):
            raise UserError(f"D3PGConfig.clamp_gradient must be 'hard' or 'straight_through', got {self.clamp_gradient!r}")
        if self.beta_max <= self.beta_min:
            raise UserError("D3PGConfig.beta_max must exceed beta_min")
        if self.actor_batch_size is not None and (
            not isinstance(self.actor_batch_size, int) or isinstance(self.actor_batch_size, bool) or self.actor_batch_size < 1
        ):
            raise UserError(f"D3PGConfig.actor_batch_size must be a positive integer or None, got {self.actor_batch_size!r}")
        if self.reward_scale is not None and not (math.isfinite(self.reward_scale) and self.reward_scale > 0):
            raise UserError(f"D3PGConfig.reward_scale must be positive or None, got {self.reward_scale!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "D3PGConfig":
        """Build from a dict; unknown keys are an error naming the key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"D3PGConfig: unknown field(s) {unknown}")
        return cls(**data)


# --------------------------------------------------------------------------- schedule


def vp_beta_schedule(steps: int, beta_min: float = 0.1, beta_max: float = 10.0) -> np.ndarray:
    """Discrete variance-preserving beta schedule (Song et al. 2021; as in Diffusion-QL).

    ``beta_t = 1 - exp(-beta_min / T - (beta_max - beta_min) (2t - 1) / (2 T^2))`` for
    t = 1..T, so that ``alpha_bar_T = exp(-(beta_min + beta_max) / 2)`` whatever T is.

    Returns
    -------
    numpy.ndarray, shape (T,)
        The betas (dimensionless), increasing.
    """
    t = np.arange(1, steps + 1, dtype=np.float64)
    alpha = np.exp(-beta_min / steps - 0.5 * (beta_max - beta_min) * (2 * t - 1) / steps**2)
    return 1.0 - alpha


class DiffusionSchedule(nn.Module):
    """Precomputed DDPM coefficients for a beta schedule (Ho et al. 2020, eqs. (4), (6), (7)).

    Index ``t`` runs 0..T-1 (the paper's t = 1..T). Buffers move with the module.
    """

    def __init__(self, betas: np.ndarray):
        super().__init__()
        betas = np.asarray(betas, dtype=np.float64)
        alphas = 1.0 - betas
        alpha_bar = np.cumprod(alphas)
        alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
        posterior_variance = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)

        def buf(name: str, value: np.ndarray) -> None:
            self.register_buffer(name, torch.as_tensor(value, dtype=torch.float32))

        buf("betas", betas)
        buf("alpha_bar", alpha_bar)
        buf("sqrt_alpha_bar", np.sqrt(alpha_bar))
        buf("sqrt_one_minus_alpha_bar", np.sqrt(1.0 - alpha_bar))
        buf("sqrt_recip_alpha_bar", np.sqrt(1.0 / alpha_bar))
        buf("sqrt_recipm1_alpha_bar", np.sqrt(1.0 / alpha_bar - 1.0))
        buf("posterior_mean_coef_x0", betas * np.sqrt(alpha_bar_prev) / (1.0 - alpha_bar))
        buf("posterior_mean_coef_xt", (1.0 - alpha_bar_prev) * np.sqrt(alphas) / (1.0 - alpha_bar))
        buf("posterior_std", np.sqrt(np.maximum(posterior_variance, 1e-20)))
        self.steps = len(betas)

    def predict_x0(self, x_t: torch.Tensor, t: int, eps: torch.Tensor, straight_through: bool = False) -> torch.Tensor:
        """``x0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)``, clamped to [-1, 1].

        With ``straight_through`` the forward value is the same clamp but the backward pass
        treats the clamp as the identity (Bengio et al. 2013), so the actor loss keeps a
        gradient for entries whose prediction lies outside [-1, 1].
        """
        x0 = self.sqrt_recip_alpha_bar[t] * x_t - self.sqrt_recipm1_alpha_bar[t] * eps
        clamped = x0.clamp(-1.0, 1.0)
        if straight_through:
            return x0 + (clamped - x0).detach()
        return clamped

    def step(
        self, x_t: torch.Tensor, t: int, eps: torch.Tensor, noise: torch.Tensor | None, straight_through: bool = False
    ) -> torch.Tensor:
        """One reverse step ``x_t -> x_{t-1}``: the posterior mean of q(x_{t-1} | x_t, x0_hat)
        plus ``posterior_std_t * noise`` (no noise at t = 0)."""
        x0 = self.predict_x0(x_t, t, eps, straight_through)
        mean = self.posterior_mean_coef_x0[t] * x0 + self.posterior_mean_coef_xt[t] * x_t
        if t == 0 or noise is None:
            return mean
        return mean + self.posterior_std[t] * noise


# --------------------------------------------------------------------------- networks


class SinusoidalTimeEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of the (integer) denoising step."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("freqs", freqs)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None, :]
        emb = torch.cat([angles.sin(), angles.cos()], dim=-1)
        if emb.shape[-1] < self.dim:
            emb = F.pad(emb, (0, self.dim - emb.shape[-1]))
        return emb


def _mlp(sizes: list[int], *, final_activation: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.Mish())
    return nn.Sequential(*layers)


class Denoiser(nn.Module):
    """epsilon_theta(x_t, t, s): state encoder, time embedding and trunk (all Mish)."""

    def __init__(self, obs_dim: int, action_dim: int, config: D3PGConfig):
        super().__init__()
        c = config
        self.state_encoder = _mlp([obs_dim] + [c.state_hidden] * c.state_layers, final_activation=True)
        self.time_embedding = nn.Sequential(
            SinusoidalTimeEmbedding(c.time_embedding_dim),
            nn.Linear(c.time_embedding_dim, 2 * c.time_embedding_dim),
            nn.Mish(),
            nn.Linear(2 * c.time_embedding_dim, c.time_embedding_dim),
        )
        trunk_in = action_dim + c.time_embedding_dim + c.state_hidden
        self.trunk = _mlp([trunk_in] + [c.trunk_hidden] * c.trunk_layers + [action_dim], final_activation=False)

    def forward(self, x_t: torch.Tensor, t_emb: torch.Tensor, state_code: torch.Tensor) -> torch.Tensor:
        return self.trunk(torch.cat([x_t, t_emb.expand(x_t.shape[0], -1), state_code], dim=-1))


class DiffusionActor(nn.Module):
    """The policy: a conditional DDPM over the action vector in [-1, 1]^A (paper eqs. (25)-(30))."""

    def __init__(self, obs_dim: int, action_dim: int, config: D3PGConfig):
        super().__init__()
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.denoiser = Denoiser(obs_dim, action_dim, config)
        self.schedule = DiffusionSchedule(vp_beta_schedule(config.denoising_steps, config.beta_min, config.beta_max))
        self.straight_through = config.clamp_gradient == "straight_through"

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample one action per row of ``obs`` by T reverse steps from N(0, I).

        Differentiable in the parameters (reparameterised noise). ``generator`` makes the
        sample reproducible.
        """
        return self.sample(obs, generator)[0]

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(action, x0_excess)``: the action and ``mean_t mean((|x0_hat_t| - 1)_+^2)``, the
        squared distance of the unclamped x0 predictions from [-1, 1] (the actor-loss regulariser
        used with the straight-through clamp)."""
        batch = obs.shape[0]
        steps = self.schedule.steps
        sched = self.schedule
        state_code = self.denoiser.state_encoder(obs)
        t_embs = self.denoiser.time_embedding(torch.arange(steps, device=obs.device))
        x = torch.randn(batch, self.action_dim, generator=generator, device=obs.device)
        excess = x.new_zeros(())
        for t in range(steps - 1, -1, -1):
            eps = self.denoiser(x, t_embs[t : t + 1], state_code)
            if torch.is_grad_enabled():
                x0_raw = sched.sqrt_recip_alpha_bar[t] * x - sched.sqrt_recipm1_alpha_bar[t] * eps
                excess = excess + F.relu(x0_raw.abs() - 1.0).pow(2).mean() / steps
            noise = torch.randn(batch, self.action_dim, generator=generator, device=obs.device) if t > 0 else None
            x = sched.step(x, t, eps, noise, self.straight_through)
        if self.straight_through:
            x = x + (x.clamp(-1.0, 1.0) - x).detach()
        else:
            x = x.clamp(-1.0, 1.0)
        return x, excess


class TwinCritic(nn.Module):
    """Two independent Q networks Q1, Q2 : (s, a) -> R (paper eq. (31))."""

    def __init__(self, obs_dim: int, action_dim: int, config: D3PGConfig):
        super().__init__()
        sizes = [obs_dim + action_dim] + [config.critic_hidden] * config.critic_layers + [1]
        self.q1 = _mlp(sizes, final_activation=False)
        self.q2 = _mlp(sizes, final_activation=False)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def min_q(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        q1, q2 = self(obs, action)
        return torch.minimum(q1, q2)


class ObservationNormalizer(nn.Module):
    """Fixed affine standardisation ``(obs - mean) / std`` (std floored at 1e-6)."""

    def __init__(self, obs_dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("std", torch.ones(obs_dim))

    def fit(self, observations: np.ndarray) -> None:
        """Set mean and std from a sample of observations (rows)."""
        obs = torch.as_tensor(np.asarray(observations, dtype=np.float32))
        self.mean.copy_(obs.mean(0))
        self.std.copy_(obs.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.mean) / self.std


# --------------------------------------------------------------------------- acting


class D3PGPolicy:
    """The deployable policy: actor (+ normaliser; + critic for best-of-K). No learning here.

    Parameters
    ----------
    actor : DiffusionActor
    normalizer : ObservationNormalizer
    config : D3PGConfig
    critic : TwinCritic, optional
        Needed only for :meth:`act_best_of_k`.
    seed : int
        Seed of the generator used by :meth:`act` when no generator is given; evaluation is
        "one seeded sample".
    frozen : bool
        The weights will not change any more (exported or loaded policies). Enables the fast
        inference path: the state encoding, the time embeddings and their share of the trunk's
        first layer are computed once per decision / once per policy instead of at every
        denoising step (same arithmetic, same random draws).
    """

    name = "d3pg"

    def __init__(
        self,
        actor: DiffusionActor,
        normalizer: ObservationNormalizer,
        config: D3PGConfig,
        critic: TwinCritic | None = None,
        seed: int = 0,
        frozen: bool = False,
    ):
        self.actor = actor
        self.normalizer = normalizer
        self.config = config
        self.critic = critic
        self.generator = torch.Generator().manual_seed(int(seed))
        self.frozen = frozen
        self._fast_cache: tuple | None = None

    def _sample(self, obs_t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Actor sample (inference mode); the numpy fast path when frozen."""
        if not self.frozen:
            return self.actor(obs_t, generator=gen)
        return torch.from_numpy(self._fast_sample(obs_t.numpy(), gen))

    def _build_fast_cache(self) -> tuple:
        actor = self.actor
        denoiser, schedule = actor.denoiser, actor.schedule
        a_dim, t_dim = actor.action_dim, self.config.time_embedding_dim

        def linears(seq) -> list[tuple[np.ndarray, np.ndarray]]:
            return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in seq if isinstance(m, nn.Linear)]

        first = denoiser.trunk[0]
        weight = first.weight.detach()
        with torch.no_grad():
            t_embs = denoiser.time_embedding(torch.arange(schedule.steps))
            time_part = F.linear(t_embs, weight[:, a_dim : a_dim + t_dim]).numpy()  # (T, H)
        coefficients = [
            tuple(float(getattr(schedule, name)[t]) for name in (
                "sqrt_recip_alpha_bar", "sqrt_recipm1_alpha_bar", "posterior_mean_coef_x0", "posterior_mean_coef_xt", "posterior_std"
            ))
            for t in range(schedule.steps)
        ]
        return (
            linears(denoiser.state_encoder),
            weight[:, :a_dim].numpy().T.copy(),
            weight[:, a_dim + t_dim :].numpy().T.copy(),
            first.bias.detach().numpy().copy(),
            time_part,
            linears(denoiser.trunk[1:]),
            coefficients,
        )

    def _fast_sample(self, obs: np.ndarray, gen: torch.Generator) -> np.ndarray:
        """The denoising chain in numpy with cached weights (same arithmetic and random draws as
        :meth:`DiffusionActor.forward`; float32). At batch 1 torch's per-operation overhead is
        most of the cost, so this is several times faster."""
        if self._fast_cache is None:
            self._fast_cache = self._build_fast_cache()
        encoder, w_action, w_state, bias, time_part, rest, coefficients = self._fast_cache
        batch, a_dim = obs.shape[0], self.actor.action_dim
        h = obs
        for w, b in encoder:
            h = _mish(h @ w + b)
        base = h @ w_state + bias
        x = torch.randn(batch, a_dim, generator=gen).numpy()
        steps = len(coefficients)
        for t in range(steps - 1, -1, -1):
            z = x @ w_action + base + time_part[t]
            for i, (w, b) in enumerate(rest):
                z = _mish(z) @ w + b
            eps = z
            c_x0, c_eps, k_x0, k_xt, std = coefficients[t]
            x0 = np.clip(c_x0 * x - c_eps * eps, -1.0, 1.0)
            x = k_x0 * x0 + k_xt * x
            if t > 0:
                x = x + std * torch.randn(batch, a_dim, generator=gen).numpy()
        return np.clip(x, -1.0, 1.0).astype(np.float32)

    def reseed(self, seed: int) -> None:
        """Restart the sampling generator from ``seed``."""
        self.generator.manual_seed(int(seed))

    def _obs_tensor(self, obs: np.ndarray) -> tuple[torch.Tensor, bool]:
        arr = np.asarray(obs, dtype=np.float32)
        single = arr.ndim == 1
        tensor = torch.as_tensor(arr.reshape(1, -1) if single else arr)
        return self.normalizer(tensor), single

    @torch.inference_mode()
    def act(self, obs: np.ndarray, states=None, *, exploration_sigma: float = 0.0,
            generator: torch.Generator | None = None) -> np.ndarray:
        """One action (or a batch) in [-1, 1]^A from one seeded denoising chain.

        The :class:`provisioning.policies.Policy` method (``states`` is not needed).
        ``exploration_sigma`` > 0 adds Gaussian noise (collection only) and clips to [-1, 1].
        """
        obs_t, single = self._obs_tensor(obs)
        gen = generator if generator is not None else self.generator
        action = self._sample(obs_t, gen)
        if exploration_sigma > 0:
            action = (action + exploration_sigma * torch.randn(action.shape, generator=gen)).clamp(-1.0, 1.0)
        out = action.numpy()
        return out[0] if single else out

    @torch.inference_mode()
    def act_best_of_k(self, obs: np.ndarray, k: int | None = None, generator: torch.Generator | None = None) -> np.ndarray:
        """Best of ``k`` actor samples per observation, ranked by ``min(Q1, Q2)``."""
        if self.critic is None:
            raise UserError("best-of-K needs the critic; this policy was saved without it")
        k = int(k or self.config.best_of_k)
        obs_t, single = self._obs_tensor(obs)
        gen = generator if generator is not None else self.generator
        batch = obs_t.shape[0]
        repeated = obs_t.repeat_interleave(k, dim=0)
        actions = self._sample(repeated, gen)
        scores = self.critic.min_q(repeated, actions).view(batch, k)
        best = scores.argmax(dim=1)
        chosen = actions.view(batch, k, -1)[torch.arange(batch), best].numpy()
        return chosen[0] if single else chosen

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path, *, extra_metadata: dict[str, Any] | None = None) -> Path:
        """Write the policy as one safetensors file (weights + JSON metadata), atomically."""
        from safetensors.torch import save as st_save

        from market.atomic import atomic_write_bytes

        tensors = {f"actor.{k}": v.contiguous() for k, v in self.actor.state_dict().items()}
        tensors.update({f"normalizer.{k}": v.contiguous() for k, v in self.normalizer.state_dict().items()})
        if self.critic is not None:
            tensors.update({f"critic.{k}": v.contiguous() for k, v in self.critic.state_dict().items()})
        metadata = {
            "format": "d3pg-policy-v1",
            "config": json.dumps(self.config.to_dict()),
            "obs_dim": str(self.actor.obs_dim),
            "action_dim": str(self.actor.action_dim),
            "extra": json.dumps(extra_metadata or {}),
        }
        return atomic_write_bytes(path, st_save(tensors, metadata=metadata))

    @classmethod
    def load(cls, path: str | Path, seed: int = 0) -> "D3PGPolicy":
        """Read a policy written by :meth:`save`. Missing or foreign files raise clear errors."""
        from safetensors import SafetensorError
        from safetensors.torch import load as st_load

        path = Path(path)
        if not path.is_file():
            raise MissingArtifactError(
                f"{path}: no D3PG policy file; train one with `incentive provision train --agent d3pg`"
            )
        data = path.read_bytes()
        try:
            tensors = st_load(data)
            metadata = _safetensors_metadata(data)
        except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
            raise UserError(f"{path}: not a readable D3PG policy file ({exc})") from exc
        if metadata.get("format") != "d3pg-policy-v1":
            raise UserError(f"{path}: not a D3PG policy file (format {metadata.get('format')!r})")
        config = D3PGConfig.from_dict(json.loads(metadata["config"]))
        obs_dim, action_dim = int(metadata["obs_dim"]), int(metadata["action_dim"])
        actor = DiffusionActor(obs_dim, action_dim, config)
        normalizer = ObservationNormalizer(obs_dim)
        actor.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("actor.")})
        normalizer.load_state_dict({k[11:]: v for k, v in tensors.items() if k.startswith("normalizer.")})
        critic_state = {k[7:]: v for k, v in tensors.items() if k.startswith("critic.")}
        critic = None
        if critic_state:
            critic = TwinCritic(obs_dim, action_dim, config)
            critic.load_state_dict(critic_state)
            critic.eval()
        actor.eval()
        policy = cls(actor, normalizer, config, critic, seed=seed, frozen=True)
        policy.metadata = json.loads(metadata.get("extra", "{}"))
        return policy


def _mish(x: np.ndarray) -> np.ndarray:
    """Mish ``x tanh(softplus(x))`` in numpy (overflow-safe softplus)."""
    return x * np.tanh(np.logaddexp(0.0, x))


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    return header.get("__metadata__", {}) or {}


# --------------------------------------------------------------------------- learning


class ReplayBuffer:
    """Uniform replay of (obs, action, reward, next_obs, terminated), a numpy ring buffer.

    Only ``terminated`` is stored: a time-limit truncation must not stop bootstrapping, so it
    has no place in the TD target.
    """

    def __init__(self, obs_dim: int, action_dim: int, capacity: int):
        self.capacity = int(capacity)
        self.obs = np.zeros((self.capacity, obs_dim), dtype=np.float32)
        self.action = np.zeros((self.capacity, action_dim), dtype=np.float32)
        self.reward = np.zeros(self.capacity, dtype=np.float32)
        self.next_obs = np.zeros((self.capacity, obs_dim), dtype=np.float32)
        self.terminated = np.zeros(self.capacity, dtype=np.float32)
        self.size = 0
        self.position = 0

    def add(self, obs, action, reward: float, next_obs, terminated: bool) -> None:
        i = self.position
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = float(terminated)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, size=batch_size)
        return {
            "obs": torch.from_numpy(self.obs[idx]),
            "action": torch.from_numpy(self.action[idx]),
            "reward": torch.from_numpy(self.reward[idx]),
            "next_obs": torch.from_numpy(self.next_obs[idx]),
            "terminated": torch.from_numpy(self.terminated[idx]),
        }

    def state(self) -> dict[str, np.ndarray]:
        """The filled part, for checkpoints."""
        n = self.size
        return {
            "obs": self.obs[:n].copy(),
            "action": self.action[:n].copy(),
            "reward": self.reward[:n].copy(),
            "next_obs": self.next_obs[:n].copy(),
            "terminated": self.terminated[:n].copy(),
            "position": np.array(self.position),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        n = len(state["reward"])
        if n > self.capacity:
            raise UserError(f"replay checkpoint holds {n} transitions, more than the capacity {self.capacity}")
        for key in ("obs", "action", "reward", "next_obs", "terminated"):
            getattr(self, key)[:n] = state[key]
        self.size = n
        self.position = int(state["position"])


def _soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t_param, s_param in zip(target.parameters(), source.parameters()):
            t_param.mul_(1.0 - tau).add_(s_param, alpha=tau)


class D3PGLearner:
    """Critics, targets, optimisers and the update rule of D3PG (Algorithm 1, lines 8-10).

    Parameters
    ----------
    obs_dim, action_dim : int
        Sizes of the (flat) observation and of the action in [-1, 1]^action_dim.
    config : D3PGConfig
    seed : int
        Seeds the network initialisation, the replay sampling and the actor's training noise.
    """

    def __init__(self, obs_dim: int, action_dim: int, config: D3PGConfig, seed: int = 0):
        self.config = config
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        torch.manual_seed(seed)
        self.actor = DiffusionActor(obs_dim, action_dim, config)
        self.critic = TwinCritic(obs_dim, action_dim, config)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        for p in list(self.actor_target.parameters()) + list(self.critic_target.parameters()):
            p.requires_grad_(False)
        self.normalizer = ObservationNormalizer(obs_dim)
        self.reward_scale = 1.0 if config.reward_scale is None else float(config.reward_scale)
        self.actor_optimizer = torch.optim.AdamW(self.actor.parameters(), lr=config.actor_lr, weight_decay=config.weight_decay)
        self.critic_optimizer = torch.optim.AdamW(
            self.critic.parameters(), lr=config.critic_lr, weight_decay=config.weight_decay
        )
        self.train_generator = torch.Generator().manual_seed(seed + 1)
        self.target_generator = torch.Generator().manual_seed(seed + 2)
        self.updates = 0
        self.policy = D3PGPolicy(self.actor, self.normalizer, config, self.critic, seed=seed + 3)

    # -------------------------------------------------------------- warm-up statistics

    def fit_statistics(self, observations: np.ndarray, rewards: np.ndarray) -> None:
        """Freeze the observation normaliser and (if configured as None) the reward scale."""
        if self.config.normalize_observations:
            self.normalizer.fit(observations)
        if self.config.reward_scale is None:
            std = float(np.std(rewards)) if len(rewards) > 1 else 1.0
            self.reward_scale = 1.0 / std if std > 1e-8 else 1.0

    # -------------------------------------------------------------- the update

    @torch.no_grad()
    def td_target(self, reward: torch.Tensor, next_obs: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
        """``r * scale + gamma * (1 - terminated) * min Q'(s', actor'(s'))``.

        ``next_obs`` is raw (normalised here). The next action is one sample of the *target*
        actor from a dedicated generator: no exploration noise. Rows with ``terminated = 1``
        bootstrap nothing (they skip the target actor entirely).
        """
        target = reward * self.reward_scale
        live = terminated < 0.5
        if bool(live.any()) and self.config.gamma > 0:
            obs_live = self.normalizer(next_obs[live])
            next_action = self.actor_target(obs_live, generator=self.target_generator)
            next_q = self.critic_target.min_q(obs_live, next_action)
            target = target.clone()
            target[live] = target[live] + self.config.gamma * next_q
        return target

    def update(self, batch: dict[str, torch.Tensor], *, update_actor: bool = True) -> dict[str, float]:
        """One critic step and (optionally) one actor step plus soft target updates."""
        c = self.config
        obs = self.normalizer(batch["obs"])
        target = self.td_target(batch["reward"], batch["next_obs"], batch["terminated"])
        q1, q2 = self.critic(obs, batch["action"])
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        nn.utils.clip_grad_norm_(self.critic.parameters(), c.grad_clip)
        self.critic_optimizer.step()
        metrics = {
            "critic_loss": float(critic_loss.detach()),
            "q1_mean": float(q1.detach().mean()) / self.reward_scale,
            "q2_mean": float(q2.detach().mean()) / self.reward_scale,
            "target_mean": float(target.mean()) / self.reward_scale,
        }
        self.updates += 1
        if update_actor:
            actor_obs = obs if c.actor_batch_size is None else obs[: c.actor_batch_size]
            action, x0_excess = self.actor.sample(actor_obs, generator=self.train_generator)
            q = self.critic.min_q(actor_obs, action)
            actor_loss = -q.mean() + c.x0_excess_weight * x0_excess
            self.actor_optimizer.zero_grad(set_to_none=True)
            actor_loss.backward()
            nn.utils.clip_grad_norm_(self.actor.parameters(), c.grad_clip)
            self.actor_optimizer.step()
            self.critic_optimizer.zero_grad(set_to_none=True)  # the actor loss left grads on the critic
            _soft_update(self.actor_target, self.actor, c.tau)
            _soft_update(self.critic_target, self.critic, c.tau)
            metrics["actor_loss"] = float(actor_loss.detach()) / self.reward_scale
            metrics["x0_excess"] = float(x0_excess.detach())
            metrics["saturated_share"] = float((action.detach().abs() > 0.999).float().mean())
        return metrics

    # -------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue learning (not the replay buffer)."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_target": self.actor_target.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "normalizer": self.normalizer.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "train_generator": self.train_generator.get_state(),
            "target_generator": self.target_generator.get_state(),
            "policy_generator": self.policy.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "reward_scale": self.reward_scale,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.normalizer.load_state_dict(state["normalizer"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.train_generator.set_state(state["train_generator"])
        self.target_generator.set_state(state["target_generator"])
        self.policy.generator.set_state(state["policy_generator"])
        torch.set_rng_state(state["torch_rng"])
        self.reward_scale = float(state["reward_scale"])
        self.updates = int(state["updates"])

    def export_policy(self, seed: int = 0) -> D3PGPolicy:
        """A detached copy of the acting part (actor, normaliser, critic) for evaluation/shipping."""
        return D3PGPolicy(
            copy.deepcopy(self.actor).eval(),
            copy.deepcopy(self.normalizer),
            self.config,
            copy.deepcopy(self.critic).eval(),
            seed=seed,
            frozen=True,
        )


# --------------------------------------------------------------------------- training


#: Changes to the recipe used by default (``docs/learners.md`` gives the reasons).
TUNED_OVERRIDES: dict[str, Any] = {
    "batch_size": 128,  # recipe 512: 4x cheaper critic steps; the critic fit was no worse
    "actor_batch_size": 64,  # actor loss on 64 states: the 6-step chain is most of the cost
    "actor_lr": 3e-4,  # recipe 1e-4: too slow for a budget of a few thousand steps
    "critic_lr": 1e-3,  # recipe 1e-4: the critic lagged (loss ~5 in reward-std units at 2,500 steps)
    "gradient_steps_per_env_step": 2,  # two critic steps per decision: the critic is the bottleneck
    "actor_update_every": 2,  # one actor step per decision (every second critic step)
}


def tuned_config(**overrides) -> D3PGConfig:
    """The configuration of the shipped policy and the comparisons: the recipe
    (``D3PGConfig()``) with :data:`TUNED_OVERRIDES`, then ``overrides``."""
    return D3PGConfig(**{**TUNED_OVERRIDES, **overrides})


def load_policy(path: str | Path, seed: int = 0, name: str = "d3pg") -> D3PGPolicy:
    """The registry's loader: :meth:`D3PGPolicy.load`."""
    return D3PGPolicy.load(path, seed=seed)


class _SeededActing:
    """The learner's current policy acting with its own generator (validation curve)."""

    name = "d3pg"

    def __init__(self, policy: D3PGPolicy, seed: int):
        self.policy = policy
        self.generator = torch.Generator().manual_seed(int(seed))

    def act(self, observations, states=None) -> np.ndarray:
        return self.policy.act(observations, generator=self.generator)


class D3PGTrainer:
    """D3PG's part of a training run (:class:`provisioning.training.Trainer`): collection with
    uniform warm-up then exploration noise, the replay buffer, and :meth:`D3PGLearner.update`.

    Every random generator is part of the checkpoint, and the state of episode ``k`` comes from
    a seed derived from the run seed and ``k``, so a resumed run is bit-identical.

    Parameters
    ----------
    env : ProvisioningEnv-like
    config : D3PGConfig
    seed : int
        Run seed.
    total_steps : int
        Budget of environment steps (sizes the replay buffer).
    """

    def __init__(self, env, config: D3PGConfig, *, seed: int, total_steps: int):
        self.env = env
        self.config = config
        self.seed = int(seed)
        self.obs_dim = int(np.prod(env.observation_space.shape))
        self.action_dim = int(np.prod(env.action_space.shape))
        self.learner = D3PGLearner(self.obs_dim, self.action_dim, config, seed=self.seed)
        self.buffer = ReplayBuffer(self.obs_dim, self.action_dim, min(config.replay_size, total_steps))
        self.sample_rng = np.random.default_rng(self.seed)
        self.action_rng = np.random.default_rng([self.seed, 11])
        self.steps_done = 0
        self.episodes = 0
        self.statistics_fitted = False
        self._obs = None

    def _collect(self) -> dict:
        """One environment step; returns its metrics."""
        from provisioning.evaluation import info_metrics, training_state_seed

        c = self.config
        if self._obs is None:
            self._obs, _ = self.env.reset(seed=training_state_seed(self.seed, self.episodes))
        if self.steps_done < c.warmup_steps:
            action = self.action_rng.uniform(-1.0, 1.0, size=self.action_dim).astype(np.float32)
        else:
            action = self.learner.policy.act(self._obs, exploration_sigma=c.exploration_sigma)
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.buffer.add(np.ravel(self._obs), np.ravel(action), float(reward), np.ravel(next_obs), bool(terminated))
        row = {"reward": float(reward), **info_metrics(info)}
        if terminated or truncated:
            self.episodes += 1
            self._obs = None
        else:
            self._obs = next_obs
        self.steps_done += 1
        return row

    def advance(self, until_step: int, should_stop, on_step) -> list[dict]:
        """Steps (collect, then the update once past the warm-up) up to ``until_step``."""
        c = self.config
        rows = []
        while self.steps_done < until_step:
            row = self._collect()
            if not self.statistics_fitted and self.steps_done >= c.warmup_steps and self.buffer.size > 1:
                self.learner.fit_statistics(self.buffer.obs[: self.buffer.size], self.buffer.reward[: self.buffer.size])
                self.statistics_fitted = True
            if self.steps_done > c.warmup_steps:
                for _ in range(c.gradient_steps_per_env_step):
                    update_actor = self.learner.updates % c.actor_update_every == 0
                    row.update(self.learner.update(self.buffer.sample(c.batch_size, self.sample_rng), update_actor=update_actor))
            rows.append(row)
            on_step()
            if should_stop():
                break
        return rows

    def validation_policy(self) -> _SeededActing:
        """The current actor, one sample per state from a generator restarted at every evaluation."""
        from provisioning.evaluation import sampling_seed

        return _SeededActing(self.learner.policy, sampling_seed(self.seed))

    def interrupted(self) -> None:
        """A multi-step episode cut by Ctrl-C restarts (with the next episode's state) on resume."""
        if self._obs is not None:
            self.episodes += 1
            self._obs = None

    def save_checkpoint(self, folder: Path) -> None:
        """``learner.pt``: networks, optimisers, replay buffer, every generator and the counters."""
        import io

        from market.atomic import atomic_write_bytes

        state = {
            "learner": self.learner.state_dict(),
            "replay": self.buffer.state(),
            "sample_rng": self.sample_rng.bit_generator.state,
            "action_rng": self.action_rng.bit_generator.state,
            "statistics_fitted": self.statistics_fitted,
            "steps_done": self.steps_done,
            "episodes": self.episodes,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(Path(folder) / "learner.pt", buffer.getvalue())

    def load_checkpoint(self, folder: Path) -> None:
        state = torch.load(Path(folder) / "learner.pt", weights_only=False)
        self.learner.load_state_dict(state["learner"])
        self.buffer.load_state(state["replay"])
        self.sample_rng.bit_generator.state = state["sample_rng"]
        self.action_rng.bit_generator.state = state["action_rng"]
        self.statistics_fitted = bool(state["statistics_fitted"])
        self.steps_done, self.episodes = int(state["steps_done"]), int(state["episodes"])
        self._obs = None

    def save_policy(self, path: Path, metadata: dict) -> D3PGPolicy:
        """Export the acting part and write it as ``policy.safetensors``."""
        from provisioning.evaluation import sampling_seed

        final = self.learner.export_policy(seed=sampling_seed(self.seed))
        final.save(path, extra_metadata=metadata)
        return final

