"""G-DDPG (the paper's section 4.3, Algorithm 3): the D3PG diffusion actor with one DDPG critic.

What this module is for: Du et al., "User-Centric Interactive AI for Distributed Diffusion
Model-based AI-Generated Content", trains a diffusion-model actor (eq. (7)) against a single
critic with a fixed target network (eqs. (28)-(29)). ``provisioning.agents.d3pg`` already has
that actor, its schedule, replay buffer, training loop and checkpoints, with *twin* critics
(the minimum of two Q estimates). G-DDPG here is that trainer with the twin critic replaced by
:class:`SingleCritic` (one Q network, returned twice so that the inherited update's
``mse(q1, y) + mse(q2, y) = 2 mse(q, y)`` and ``min(q1, q2) = q``; AdamW is invariant to the
constant factor, so the update is DDPG's). Nothing of D3PG is copied. The final policy file is
written without the critic (no best-of-K ranking: the paper's inference is one actor sample),
so :meth:`D3PGPolicy.load` reads it as is.

Registered as agent ``gddpg`` in :mod:`provisioning.agents.registry`.

May import: torch, numpy, ``provisioning.agents.d3pg``.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from provisioning.agents.d3pg import D3PGConfig, D3PGPolicy, D3PGTrainer, _mlp, tuned_config

__all__ = ["SingleCritic", "GDDPGTrainer", "D3PGConfig", "default_config", "load_policy"]


class SingleCritic(nn.Module):
    """One Q network ``(s, a) -> R`` with the twin critic's interface (see the module docstring)."""

    def __init__(self, obs_dim: int, action_dim: int, config):
        super().__init__()
        self.q = _mlp([obs_dim + action_dim] + [config.critic_hidden] * config.critic_layers + [1],
                      final_activation=False)

    def forward(self, obs: torch.Tensor, action: torch.Tensor):
        value = self.q(torch.cat([obs, action], dim=-1)).squeeze(-1)
        return value, value

    def min_q(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self(obs, action)[0]


def default_config(**overrides):
    """D3PG's tuned configuration with one actor step per critic step (DDPG has no delayed actor),
    then ``overrides``."""
    return tuned_config(**{"actor_update_every": 1, "gradient_steps_per_env_step": 1, **overrides})


class GDDPGTrainer(D3PGTrainer):
    """:class:`D3PGTrainer` with :class:`SingleCritic` (and its target and optimiser)."""

    def __init__(self, env, config, *, seed: int, total_steps: int):
        super().__init__(env, config, seed=seed, total_steps=total_steps)
        learner = self.learner
        torch.manual_seed(seed + 7)
        learner.critic = SingleCritic(self.obs_dim, self.action_dim, config)
        learner.critic_target = copy.deepcopy(learner.critic)
        for p in learner.critic_target.parameters():
            p.requires_grad_(False)
        learner.critic_optimizer = torch.optim.AdamW(learner.critic.parameters(), lr=config.critic_lr,
                                                     weight_decay=config.weight_decay)
        learner.policy.critic = None  # the actor alone acts (one sample, no best-of-K)

    def validation_policy(self):
        """D3PG's seeded acting wrapper, labelled ``gddpg``."""
        acting = super().validation_policy()
        acting.name = "gddpg"
        return acting

    def save_policy(self, path, metadata: dict) -> D3PGPolicy:
        from provisioning.evaluation import sampling_seed

        final = self.learner.export_policy(seed=sampling_seed(self.seed))
        final.critic = None
        final.save(path, extra_metadata={**metadata, "agent": "gddpg"})
        return final


def load_policy(path, seed: int = 0, name: str = "gddpg") -> D3PGPolicy:
    """The registry's loader: a G-DDPG policy file is a D3PG policy file without a critic."""
    policy = D3PGPolicy.load(path, seed=seed)
    policy.name = name
    return policy
