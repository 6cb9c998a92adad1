"""Learners by name, solver-registry style: adding a learner is one :func:`register` call.

What this module is for: :data:`REGISTRY` maps a learner name (``--agent`` on the command line)
to an :class:`AgentSpec` -- the module that implements it (imported only when used), its
trainer class, its typed configuration and the file names of its run folder. The training
scaffolding (:func:`provisioning.training.train`) and the evaluation protocol
(:mod:`provisioning.evaluation`) read everything agent-specific from here, so neither names an
agent. A learner module provides:

- a configuration dataclass with ``to_dict()`` / ``from_dict(data)`` and a default factory;
- a trainer class ``Trainer(env, config, *, seed, total_steps)`` with the methods the scaffolding
  calls (see :class:`provisioning.training.Trainer`): its own update, nothing else;
- a loader ``load(path, seed) -> Policy`` for the final policy file.

May import: ``market`` (errors) and, lazily, the learner modules of this package.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market.errors import UserError


@dataclass(frozen=True)
class AgentSpec:
    """One registry entry."""

    name: str
    """Registry name (``--agent``)."""
    module: str
    """Dotted module path, imported lazily."""
    trainer: str
    """Trainer class in that module."""
    config_class: str
    """Configuration dataclass in that module (``to_dict`` / ``from_dict``)."""
    default_config: str
    """Function of that module returning the default configuration (called with ``**defaults``)."""
    loader: str
    """Function of that module: ``load(path, seed=0, name=...) -> Policy``."""
    config_file: str
    """Name of the configuration file in a run folder."""
    policy_file: str
    """Name of the final policy file in a run folder."""
    description: str = ""
    """One line for ``--help`` and docs."""
    defaults: dict = field(default_factory=dict)
    """Configuration fields this entry always sets (e.g. the SB3 algorithm)."""
    best_of_k: bool = False
    """Whether the policy samples actions and ranks K of them with a critic (evaluated both ways)."""

    def _attribute(self, name: str):
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            raise UserError(f"agent {self.name!r} needs the package {exc.name!r}, which is not installed") from None
        return getattr(module, name)

    def trainer_class(self):
        """The trainer class (imports the module)."""
        return self._attribute(self.trainer)

    def make_config(self, **overrides: Any):
        """The default configuration with ``overrides``."""
        return self._attribute(self.default_config)(**{**self.defaults, **overrides})

    def config_from_dict(self, data: dict):
        """The configuration saved in a run folder."""
        return self._attribute(self.config_class).from_dict(data)

    def check_config(self, config) -> None:
        """Raise UserError unless ``config`` is this agent's configuration type and defaults."""
        cls = self._attribute(self.config_class)
        if not isinstance(config, cls):
            raise UserError(f"agent {self.name!r} needs a {cls.__name__}, got {type(config).__name__}")
        for key, value in self.defaults.items():
            if getattr(config, key) != value:
                raise UserError(f"{cls.__name__}.{key} {getattr(config, key)!r} does not match agent {self.name!r}")

    def load_file(self, path: str | Path, seed: int = 0):
        """A policy file of this agent as a :class:`provisioning.policies.Policy` (``seed``: sampling)."""
        return self._attribute(self.loader)(Path(path), seed=seed, name=self.name)

    def load_policy(self, run_dir: str | Path, seed: int = 0):
        """The final policy of a finished run in ``run_dir``."""
        return self.load_file(Path(run_dir) / self.policy_file, seed=seed)


REGISTRY: dict[str, AgentSpec] = {}

#: Names of the non-learning policies (:data:`provisioning.policies.BASELINES`), for choices lists.
BASELINE_POLICIES = ("static", "random", "oracle")


def register(spec: AgentSpec) -> AgentSpec:
    """Add (or replace) a registry entry."""
    REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> AgentSpec:
    """The entry of ``name``; a UserError naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown agent {name!r}; choose one of {', '.join(REGISTRY)}") from None


def available_agents() -> tuple[str, ...]:
    """Registered learner names, in registration order."""
    return tuple(REGISTRY)


register(AgentSpec(
    "d3pg", "provisioning.agents.d3pg", "D3PGTrainer", "D3PGConfig", "tuned_config", "load_policy",
    config_file="d3pg_config.json", policy_file="policy.safetensors", best_of_k=True,
    description="diffusion actor (DDPM over the action), twin critics, deterministic policy gradient",
))
register(AgentSpec(
    "gddpg", "provisioning.denoising.gddpg", "GDDPGTrainer", "D3PGConfig", "default_config", "load_policy",
    config_file="gddpg_config.json", policy_file="policy.safetensors",
    description="G-DDPG (distributed-denoising paper): the D3PG diffusion actor with one DDPG critic",
))
for _algorithm, _what in (
    ("ppo", "Stable-Baselines3 PPO (on-policy, clipped policy gradient)"),
    ("sac", "Stable-Baselines3 SAC (off-policy, maximum entropy)"),
    ("ddpg", "Stable-Baselines3 DDPG (off-policy, deterministic actor)"),
    ("td3", "Stable-Baselines3 TD3 (off-policy, twin critics, delayed actor)"),
):
    register(AgentSpec(
        _algorithm, "provisioning.agents.sb3", "SB3Trainer", "SB3Config", "SB3Config", "load_policy",
        config_file="sb3_config.json", policy_file="policy.zip", description=_what,
        defaults={"algorithm": _algorithm},
    ))
