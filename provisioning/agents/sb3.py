"""Stable-Baselines3 baselines (PPO, SAC, DDPG, TD3) on the provisioning environment.

What this module is for: the DRL baselines of the paper's Fig. 14 (PPO, SAC) plus DDPG and
TD3, built from Stable-Baselines3 with the same environment, the same budget of environment
steps and the same seeds as D3PG (the training loop in :mod:`provisioning.training` drives all
of them). SB3 defaults are kept except where :class:`SB3Config` says otherwise: the off-policy
learners get the same 1,000 random warm-up steps as D3PG, DDPG/TD3 the same exploration noise
(sigma 0.1), and PPO a rollout short enough for a budget of a few thousand steps.

May import: ``market`` (errors), numpy, torch, gymnasium, stable-baselines3 and, lazily,
``provisioning.evaluation`` (the metrics of an env step).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from market.errors import MissingArtifactError, UserError

ALGORITHMS = ("ppo", "sac", "ddpg", "td3")


@dataclass
class SB3Config:
    """Settings of one Stable-Baselines3 baseline; saved next to every run."""

    algorithm: str = "sac"
    """One of ppo, sac, ddpg, td3."""
    learning_starts: int = 1000
    """Off-policy only: random warm-up steps before learning (matches D3PG's warm-up)."""
    action_noise_sigma: float = 0.1
    """DDPG/TD3 only: std of the Gaussian exploration noise (matches D3PG's)."""
    ppo_n_steps: int = 256
    """PPO only: steps per rollout (SB3 default 2048 gives one or two updates in a short budget)."""
    ppo_batch_size: int = 64
    """PPO only: minibatch size (SB3 default)."""
    learning_rate: float | None = None
    """None = SB3's default for the algorithm (3e-4 for PPO/SAC, 1e-3 for DDPG/TD3)."""
    batch_size: int | None = None
    """Off-policy only: None = SB3's default (256)."""

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise UserError(f"SB3Config.algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SB3Config":
        """Build from a dict; unknown keys are an error naming the key."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise UserError(f"SB3Config: unknown field(s) {unknown}")
        return cls(**data)

    @property
    def warmup_steps(self) -> int:
        """Random steps before the first update (0 for PPO, which learns from its first rollout)."""
        return 0 if self.algorithm == "ppo" else int(self.learning_starts)


def _algorithm_class(name: str):
    import stable_baselines3 as sb3

    return {"ppo": sb3.PPO, "sac": sb3.SAC, "ddpg": sb3.DDPG, "td3": sb3.TD3}[name]


def make_model(env, config: SB3Config, seed: int, buffer_size: int | None = None):
    """A fresh SB3 model on ``env`` (a gymnasium env) seeded with ``seed``.

    ``buffer_size`` caps the off-policy replay buffer (SB3 allocates its full capacity up
    front; a run never holds more transitions than its step budget).
    """
    from stable_baselines3.common.noise import NormalActionNoise

    cls = _algorithm_class(config.algorithm)
    kwargs: dict[str, Any] = {"seed": int(seed), "verbose": 0, "device": "cpu"}
    if config.learning_rate is not None:
        kwargs["learning_rate"] = config.learning_rate
    if config.algorithm == "ppo":
        kwargs.update(n_steps=config.ppo_n_steps, batch_size=config.ppo_batch_size)
    else:
        kwargs["learning_starts"] = config.learning_starts
        if buffer_size is not None:
            kwargs["buffer_size"] = int(min(buffer_size, 1_000_000))
        if config.batch_size is not None:
            kwargs["batch_size"] = config.batch_size
        if config.algorithm in ("ddpg", "td3"):
            dim = int(np.prod(env.action_space.shape))
            kwargs["action_noise"] = NormalActionNoise(np.zeros(dim), config.action_noise_sigma * np.ones(dim))
    return cls("MlpPolicy", env, **kwargs)


def load_model(path: str | Path, algorithm: str, env=None):
    """Load a saved SB3 model (``.zip``)."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifactError(f"{path}: no saved {algorithm} model; train one with `incentive provision train --agent {algorithm}`")
    return _algorithm_class(algorithm).load(str(path), env=env, device="cpu")


class SB3Policy:
    """Deterministic acting with a trained SB3 model (a :class:`provisioning.policies.Policy`)."""

    def __init__(self, model, name: str | None = None):
        self.model = model
        self.name = name or type(model).__name__.lower()

    def act(self, observations: np.ndarray, states=None) -> np.ndarray:
        """The model's deterministic action for one observation or a batch."""
        action, _ = self.model.predict(np.asarray(observations, dtype=np.float32), deterministic=True)
        return np.asarray(action)


def load_policy(path: str | Path, seed: int = 0, name: str = "sac") -> SB3Policy:
    """The registry's loader: a saved model as a policy (``seed`` is unused: acting is deterministic)."""
    return SB3Policy(load_model(path, name), name=name)


class SB3Trainer:
    """An SB3 baseline's part of a training run (:class:`provisioning.training.Trainer`):
    ``model.learn`` in chunks, SB3's own collection and update, SB3's own save and load.

    Parameters
    ----------
    env : gymnasium.Env
    config : SB3Config
    seed : int
        Run seed (SB3 seeds the networks, the env and the exploration from it).
    total_steps : int
        Budget of environment steps (caps the replay buffer).
    """

    def __init__(self, env, config: SB3Config, *, seed: int, total_steps: int):
        self.env = env
        self.config = config
        self.model = make_model(env, config, seed=seed, buffer_size=total_steps)

    @property
    def steps_done(self) -> int:
        return int(self.model.num_timesteps)

    @property
    def episodes(self) -> int:  # one decision per episode
        return int(self.model.num_timesteps)

    def advance(self, until_step: int, should_stop, on_step) -> list[dict]:
        """``model.learn`` for ``until_step - steps_done`` steps, stopping early on request."""
        from stable_baselines3.common.callbacks import BaseCallback

        from provisioning.evaluation import info_metrics

        rows: list[dict] = []

        class _Tick(BaseCallback):
            def _on_step(self) -> bool:
                row = {}
                for info in self.locals.get("infos", []) or []:
                    row.update(info_metrics(info))
                rewards = self.locals.get("rewards")
                if rewards is not None:
                    row["reward"] = float(np.mean(rewards))
                rows.append(row)
                for _ in range(self.training_env.num_envs):
                    on_step()
                return not should_stop()  # Ctrl-C: stop learn() at this step boundary

        if until_step > self.steps_done:
            self.model.learn(total_timesteps=until_step - self.steps_done, reset_num_timesteps=False,
                             callback=_Tick(), progress_bar=False)
        return rows

    def validation_policy(self) -> SB3Policy:
        return SB3Policy(self.model, name=self.config.algorithm)

    def interrupted(self) -> None:
        """Nothing to do: every SB3 episode here is one step."""

    def save_checkpoint(self, folder: Path) -> None:
        """``model.zip`` and, off-policy, ``replay.pkl``."""
        self.model.save(str(Path(folder) / "model.zip"))
        if self.config.algorithm != "ppo":
            self.model.save_replay_buffer(str(Path(folder) / "replay.pkl"))

    def load_checkpoint(self, folder: Path) -> None:
        folder = Path(folder)
        self.model = load_model(folder / "model.zip", self.config.algorithm, env=self.env)
        if self.config.algorithm != "ppo" and (folder / "replay.pkl").exists():
            self.model.load_replay_buffer(str(folder / "replay.pkl"))

    def save_policy(self, path: Path, metadata: dict) -> SB3Policy:
        self.model.save(str(path))
        return SB3Policy(self.model, name=self.config.algorithm)
