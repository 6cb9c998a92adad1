"""The distributed-denoising allocation problem (eqs. (21)-(24), reward (27)), its environment and optimum.

What this module is for: Du et al., "User-Centric Interactive AI for Distributed Diffusion
Model-based AI-Generated Content", sections 3.3 and 4.3. One server and ``K`` devices; the server
runs ``t0`` steps under the server prompt (user 1's), sends the latent to device ``k`` at power
``P_k`` (dBW), and device ``k`` runs ``t_k`` steps under its own prompt. Constraints:
``delta_k t_k <= E_k`` (22), ``Q_k >= Q_th`` (23), ``delta_0 t0 + beta sum_k P_k <= E_T`` (24).
The reward is eq. (27) with its threshold term read as ``max(0, Q_th - Q_k)`` (the printed
``max(0, Q_k - Q_th)`` would penalise meeting the threshold; a typo).

Choices the paper leaves open (``docs/denoising.md``):

- ``P_k`` is in dBW on a discrete grid and enters (24) as ``beta P_k[dBW]``, which is what the
  paper's numbers imply (``beta = 0.1``, ``E_T = 20``, powers 18 and 21 dBW in Fig. 12);
- the link's BER is the average BPSK BER under Fisher-Snedecor F fading (m = 2, m_s = 1.5,
  Fig. 11) at mean SNR ``g_k 10^(P_k/10)``, where ``g_k`` (mean SNR per watt, part of the state)
  is drawn per episode; it is rounded UP to the next level of ``ber_levels`` (never optimistic)
  so that generations can be cached;
- a device's QoE of an allocation is, by default, the mean evaluator QoE over the images of
  the ``noise_seeds`` initial noises (:attr:`DenoiseConfig.qoe_of_allocation`), so the reward
  is a function of the observable state; ``"one-image"`` is the paper's one generation per
  decision. The evaluator's stochastic part is seeded by the generation key and the user, so a
  (state, action) pair has one reward, and the optimum is exact for that reward;
- each device's budget ``E_k`` is drawn per episode from ``device_budget`` (part of the state).

Environment: one decision per episode (a contextual bandit), action ``[-1, 1]^(1 + 2K)`` decoded
to grid indices of ``t0``, each ``t_k`` and each power level (every action is on the grid; with
``action_decoding = "within-budgets"`` also within the state's budgets, :func:`within_budgets`).
With ``action_decoding = "server-steps"`` the action is ``[-1, 1]^1``: it picks ``t0`` only, and
the devices' part follows a rule (:func:`server_steps_allocation`).
Observation (eq. (26)): per user the five traits, per-attribute agreement of its prompt with the
server prompt, ``delta_k``, ``E_k``, ``g_k`` in dB (scaled); then ``delta_0``, ``E_T``, ``Q_th``.
The exact optimum (:func:`optimum`) enumerates the whole grid: the reward separates over devices
once ``t0`` and the power vector are fixed, so it takes the best ``t_k`` per device for each
(t0, power vector) instead of the product over devices (same maximum, proven by the tests
against brute force).

May import: numpy, gymnasium, ``provisioning.channel``, this package, ``market`` (errors).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from provisioning.channel import fisher_snedecor_ber

from .evaluators import Personality, make_evaluator, measure_properties
from .generation import GenerationCache, GenerationKey


@dataclass(frozen=True)
class User:
    """A device's user: name, prompt and Big Five personality."""

    name: str
    prompt: str
    personality: Personality


#: The ways a device's QoE of an allocation is measured (:attr:`DenoiseConfig.qoe_of_allocation`).
QOE_OF_ALLOCATION = ("mean", "one-image")
#: The ways an action is decoded to an allocation (:attr:`DenoiseConfig.action_decoding`).
ACTION_DECODINGS = ("grid", "within-budgets", "server-steps")


@dataclass
class DenoiseConfig:
    """The problem's constants (defaults: the paper's Fig. 11 caption where it gives them)."""

    devices: int = 3
    t0_grid: tuple = (0, 2, 4, 6, 8)
    """Server steps to choose from."""
    tk_grid: tuple = (2, 4, 6, 8, 10)
    """Device steps to choose from."""
    power_levels_dbw: tuple = (12.0, 15.0, 18.0, 21.0, 24.0)
    ber_levels: tuple = (0.0, 0.005, 0.01, 0.03, 0.06, 0.1, 0.15, 0.5)
    server_energy_per_step: float = 0.5
    """delta_0."""
    device_energy_per_step: float = 1.0
    """delta_k (all devices)."""
    device_budget: tuple = (8.0,)
    """E_k: each device's energy budget is drawn uniformly from these per episode (part of the
    state; the paper's Fig. 11: 8 for every device)."""
    server_budget: float = 20.0
    """E_T."""
    power_energy: float = 0.1
    """beta (energy per dBW)."""
    qoe_threshold: float = 0.6
    penalty_device: float = 1.0
    """lambda_1."""
    penalty_threshold: float = 1.0
    """lambda_2."""
    penalty_server: float = 1.0
    """lambda_3."""
    fading_m: float = 2.0
    shadowing_m: float = 1.5
    gain_db_range: tuple = (-16.0, -4.0)
    """Mean SNR per watt g_k drawn uniformly in this dB range per episode."""
    evaluator: str = "big-five"
    noise_seeds: int = 4
    """Initial-noise seeds S: a state draws one of them (``"one-image"``), or a device's QoE is
    the mean over all of them (``"mean"``); generations repeat across episodes (cache hits)."""
    qoe_of_allocation: str = "mean"
    """How a device's QoE of an allocation is measured. ``"mean"``: the mean evaluator QoE of the
    S images generated with the S initial noises (an estimate of the allocation's expected QoE;
    the reward is then a function of the observable state, and the optimum knows nothing a
    policy cannot see). ``"one-image"``: the QoE of the one image generated with the state's
    noise seed, as in the paper (one generation per decision); the seed is not part of the
    observation, so the optimum then exploits noise no policy can observe."""
    action_decoding: str = "grid"
    """How an action becomes an allocation (:func:`decode_action`). ``"grid"``: each entry picks its
    grid value independently, so an action may break a budget and pay eq. (27)'s penalty (the
    paper). ``"within-budgets"``: the same, then projected into the budgets of the state (each
    ``t_k`` lowered to the most steps ``E_k`` allows; powers, then ``t0``, lowered until (24)
    holds), so every action is a feasible allocation, as in the provisioning environment
    (``provisioning.env``); a feasible action decodes as under ``"grid"``. ``"server-steps"``: the
    action is one number, which picks ``t0``; each device then runs the most steps its budget
    allows, at the highest power (24) leaves when ``t0 > 0`` and the lowest when ``t0 = 0``
    (nothing is sent) (:func:`server_steps_allocation`). Only those allocations are reachable,
    so a policy under it can reach less than the exact optimum (which is over the whole grid)."""

    def validate(self) -> None:
        """Raise a one-line UserError naming the first bad grid (as its command-line option)."""
        from market.errors import UserError

        checks = (("--t0-grid", self.t0_grid, lambda v: isinstance(v, int) and v >= 0),
                  ("--tk-grid", self.tk_grid, lambda v: isinstance(v, int) and v >= 1),
                  ("--ber-levels", self.ber_levels, lambda v: 0.0 <= v <= 0.5))
        for option, values, ok in checks:
            if not values or not all(ok(v) for v in values) or list(values) != sorted(set(values)):
                raise UserError(f"{option} {','.join(map(str, values))}: need distinct values in increasing order"
                                + (" in [0, 0.5]" if option == "--ber-levels" else " (integers, steps >= 1)"))
        if not self.device_budget or not all(0 < v < float("inf") for v in self.device_budget):
            raise UserError(f"--device-budget {','.join(map(str, self.device_budget))}: need positive numbers")
        if self.qoe_of_allocation not in QOE_OF_ALLOCATION:
            raise UserError(f"--qoe {self.qoe_of_allocation}: choose one of {', '.join(QOE_OF_ALLOCATION)}")
        if self.action_decoding not in ACTION_DECODINGS:
            raise UserError(f"--action-decoding {self.action_decoding}: choose one of {', '.join(ACTION_DECODINGS)}")


@dataclass
class DenoiseState:
    """One episode's context: the K users (user 0 is the server prompt's), gains and seed."""

    users: list
    gain_db: np.ndarray
    seed: int
    """The generation (initial noise) seed, one of ``config.noise_seeds``."""
    device_budget: np.ndarray
    """E_k per device (drawn from ``config.device_budget``)."""

    @property
    def server_prompt(self) -> str:
        return self.users[0].prompt


@dataclass
class Allocation:
    """Grid indices of one decision: ``t0``, ``t_k`` and power level per device."""

    t0_index: int
    tk_index: tuple
    power_index: tuple


def link_ber(config: DenoiseConfig, gain_db: float, power_dbw: float) -> float:
    """The BER level of a link: F-fading average BER rounded up to ``config.ber_levels``."""
    ber = float(fisher_snedecor_ber(10 ** ((gain_db + power_dbw) / 10), config.fading_m, config.shadowing_m))
    levels = np.asarray(config.ber_levels)
    return float(levels[np.searchsorted(levels, ber - 1e-12)]) if ber <= levels[-1] else float(levels[-1])


class QoETable:
    """Evaluator QoE of device images, through the generation cache; one per problem.

    A QoE value is a function of the generation key and the user (name and traits) who scores
    the image, memoised here; its stochastic part is seeded by the key and the user's name, so
    a user's score of an image does not depend on which device slot the user sits in.
    """

    def __init__(self, config: DenoiseConfig, cache: GenerationCache, judge):
        self.config = config
        self.cache = cache
        self.judge = judge
        self._qoe: dict = {}
        self.lookups = 0
        self.generated_by_lookups = 0
        """Images generated because a lookup missed the cache (a fill is counted by the fill)."""
        self.keys_seen: set = set()

    def stats(self) -> dict:
        """The image cache's counters and the share of QoE lookups that generated nothing.

        ``share_of_lookups_without_generation`` counts only images generated through lookups
        (a prior :meth:`GenerationCache.fill` is reported by the fill itself);
        ``lazy_share_without_generation`` is what an initially empty cache filled on demand would
        have served: ``1 - distinct keys looked up / lookups``.
        """
        images = self.cache.stats()
        generated = self.generated_by_lookups
        share = 1 - generated / self.lookups if self.lookups else None
        lazy = 1 - len(self.keys_seen) / self.lookups if self.lookups else None
        return {**images, "qoe_lookups": self.lookups, "distinct_qoe_values": len(self._qoe),
                "distinct_images_looked_up": len(self.keys_seen), "generated_by_lookups": generated,
                "share_of_lookups_without_generation": share, "lazy_share_without_generation": lazy}

    def qoe(self, state: DenoiseState, requests: list) -> np.ndarray:
        """QoE of ``requests`` = [(device k, t0, t_k, ber)] in ``state`` (its noise seed), batched
        through the judge."""
        return self._qoe_of(state, [(*req, state.seed) for req in requests])

    def qoe_over_seeds(self, state: DenoiseState, requests: list, seeds) -> np.ndarray:
        """``(len(seeds), len(requests))``: the QoE of ``requests`` with each initial-noise seed, in one batch."""
        seeds = list(seeds)
        flat = self._qoe_of(state, [(*req, seed) for seed in seeds for req in requests])
        return flat.reshape(len(seeds), len(requests))

    def _qoe_of(self, state: DenoiseState, requests: list) -> np.ndarray:
        """QoE of ``requests`` = [(device k, t0, t_k, ber, noise seed)] in ``state``."""
        self.lookups += len(requests)
        keys = [GenerationKey.of(state.server_prompt, state.users[k].prompt, t0, tk, ber, seed)
                for k, t0, tk, ber, seed in requests]
        self.keys_seen.update(keys)
        users = [state.users[req[0]] for req in requests]
        memo = [(key, user.name, tuple(user.personality.vector())) for key, user in zip(keys, users)]
        todo, pending = [], set()
        for i, m in enumerate(memo):
            if m not in self._qoe and m not in pending:
                todo.append(i)
                pending.add(m)
        if todo:
            misses = self.cache.misses
            images = np.stack([self.cache.image(keys[i]) for i in todo])
            self.generated_by_lookups += self.cache.misses - misses
            own = [keys[i].device_prompt for i in todo]
            other = [state.server_prompt if keys[i].t0 > 0 else None for i in todo]
            props = measure_properties(self.judge, images, own, other)
            for j, i in enumerate(todo):
                one = type(props)(**{name: v[j:j + 1] for name, v in props.__dict__.items()})
                ev = make_evaluator(self.config.evaluator, users[i].personality)
                seed = int(keys[i].digest(users[i].name)[:8], 16)
                self._qoe[memo[i]] = float(ev.qoe(one, images[j:j + 1], own[j:j + 1], other[j:j + 1], [seed])[0])
        return np.array([self._qoe[m] for m in memo])


def reachable_ber_levels(config: DenoiseConfig) -> list[float]:
    """The BER levels a link can land on: every level between those of the best and the worst
    link (the F-fading BER is monotone in the mean SNR, which ranges over the gain range and
    the power levels)."""
    lo, hi = config.gain_db_range
    best = link_ber(config, hi, max(config.power_levels_dbw))
    worst = link_ber(config, lo, min(config.power_levels_dbw))
    return [float(level) for level in config.ber_levels if best <= level <= worst]


def key_space(config: DenoiseConfig, users: list) -> list[GenerationKey]:
    """Every generation key a state over ``users`` can ask for (what a cache fill generates).

    Size: ``|users| |t_k| S`` without server steps plus ``|pairs| |t0 > 0| |t_k| |BER levels| S``
    with them, where ``S = noise_seeds`` and the pairs are (server user, device user), the
    device user being any user (itself included) when there are two devices or more.
    """
    keys = []
    prompts = list(dict.fromkeys(u.prompt for u in users))
    bers = reachable_ber_levels(config)
    for seed in range(config.noise_seeds):
        for device in prompts:
            keys += [GenerationKey.of("", device, 0, tk, 0.0, seed) for tk in config.tk_grid]
            servers = prompts if config.devices > 1 else [device]
            keys += [GenerationKey.of(server, device, t0, tk, ber, seed) for server in servers
                     for t0 in config.t0_grid if t0 > 0 for tk in config.tk_grid for ber in bers]
    return list(dict.fromkeys(keys))


def device_qoe(config: DenoiseConfig, table: QoETable, state: DenoiseState, requests: list,
               seeds=None) -> np.ndarray:
    """Each device's QoE of ``requests`` = [(device k, t0, t_k, ber)] in ``state``, as
    :attr:`DenoiseConfig.qoe_of_allocation` says: the image of the state's noise seed, or the
    mean over the images of all ``noise_seeds`` initial noises (``seeds``: of these seeds
    instead; :func:`split_half_ceiling` uses it)."""
    if config.qoe_of_allocation == "one-image":
        return table.qoe(state, requests)
    seeds = range(config.noise_seeds) if seeds is None else seeds
    return table.qoe_over_seeds(state, requests, seeds).mean(axis=0)


@dataclass
class Outcome:
    """The reward of one decision and its parts."""

    reward: float
    qoe: np.ndarray
    t0: int
    tk: np.ndarray
    power_dbw: np.ndarray
    ber: np.ndarray
    device_excess: np.ndarray
    threshold_shortfall: np.ndarray
    server_excess: float
    device_budget: np.ndarray
    """The state's ``E_k``."""

    @property
    def sum_qoe(self) -> float:
        return float(self.qoe.sum())

    @property
    def threshold_violations(self) -> int:
        return int((self.threshold_shortfall > 0).sum())


def server_excess(config: DenoiseConfig, t0: int, power_dbw) -> float:
    """Eq. (24)'s excess ``max(0, delta_0 t0 + beta sum_k P_k - E_T)`` (energy units; ``power_dbw`` in dBW)."""
    energy = config.server_energy_per_step * t0 + config.power_energy * float(sum(power_dbw))
    return max(0.0, energy - config.server_budget)


def outcome(config: DenoiseConfig, table: QoETable, state: DenoiseState, alloc: Allocation, seeds=None) -> Outcome:
    """Eq. (27) for one allocation (``seeds``: see :func:`device_qoe`)."""
    t0 = int(config.t0_grid[alloc.t0_index])
    tk = np.array([config.tk_grid[i] for i in alloc.tk_index])
    power = np.array([config.power_levels_dbw[i] for i in alloc.power_index], dtype=float)
    ber = np.array([link_ber(config, g, p) if t0 > 0 else 0.0 for g, p in zip(state.gain_db, power)])
    qoe = device_qoe(config, table, state, [(k, t0, tk[k], ber[k]) for k in range(config.devices)], seeds)
    device_excess = np.maximum(0.0, config.device_energy_per_step * tk - state.device_budget)
    shortfall = np.maximum(0.0, config.qoe_threshold - qoe)
    over_server = server_excess(config, t0, power)
    reward = (qoe.sum() - config.penalty_device * device_excess.sum() - config.penalty_threshold * shortfall.sum()
              - config.penalty_server * over_server)
    return Outcome(float(reward), qoe, t0, tk, power, ber, device_excess, shortfall, over_server,
                   np.asarray(state.device_budget, dtype=float))


def _device_values(config: DenoiseConfig, table: QoETable, state: DenoiseState, t0: int, seeds=None) -> np.ndarray:
    """``(K, L, |t_k|)``: each device's separable reward part (QoE minus its device and threshold
    penalties) for every power level and device step count, given the server steps ``t0``."""
    tk = np.asarray(config.tk_grid, dtype=float)
    values = np.zeros((config.devices, len(config.power_levels_dbw), len(tk)))
    for k in range(config.devices):
        device_penalty = config.penalty_device * np.maximum(0.0, config.device_energy_per_step * tk - state.device_budget[k])
        for p, power in enumerate(config.power_levels_dbw):
            ber = link_ber(config, state.gain_db[k], power) if t0 > 0 else 0.0
            q = device_qoe(config, table, state, [(k, t0, steps, ber) for steps in config.tk_grid], seeds)
            values[k, p] = q - device_penalty - config.penalty_threshold * np.maximum(0.0, config.qoe_threshold - q)
    return values


def _best_over_powers(config: DenoiseConfig, values: np.ndarray, t0: int, weight: float = 1.0):
    """``(total, t_k indices, power indices)`` maximising the summed parts minus ``weight`` times the
    server penalty, over every power vector (the best ``t_k`` per device and power level)."""
    part, arg = values.max(axis=2), values.argmax(axis=2)
    best = None
    for powers in itertools.product(range(len(config.power_levels_dbw)), repeat=config.devices):
        total = sum(part[k, p] for k, p in enumerate(powers)) - weight * config.penalty_server * server_excess(
            config, t0, [config.power_levels_dbw[p] for p in powers])
        if best is None or total > best[0] + 1e-12:
            best = (total, tuple(int(arg[k, p]) for k, p in enumerate(powers)), tuple(powers))
    return best


def optimum(config: DenoiseConfig, table: QoETable, state: DenoiseState, seeds=None) -> tuple[Allocation, Outcome]:
    """The exact best allocation of ``state`` over the whole grid (see the module docstring;
    ``seeds``: see :func:`device_qoe`)."""
    best = None
    for i0, t0 in enumerate(config.t0_grid):
        total, tk_index, power_index = _best_over_powers(config, _device_values(config, table, state, t0, seeds), t0)
        if best is None or total > best[0] + 1e-12:
            best = (total, Allocation(i0, tk_index, power_index))
    alloc = best[1]
    return alloc, outcome(config, table, state, alloc, seeds)


def split_half_ceiling(config: DenoiseConfig, table: QoETable, states: list) -> dict | None:
    """How much of the exact optimum survives fresh noise: an estimate of what any policy that
    cannot see the generations' noise can reach (None in ``"one-image"`` mode or with one seed).

    The noise seeds are split in two halves A and B. For each state the optimum is chosen on the
    mean QoE of A's images and scored on B's, against B's own optimum (and the other way round):
    ``fraction = mean reward of the A-chosen allocations on B / mean reward of B's optima``. An
    optimum over ``S`` seeds is less noisy than one over ``S / 2``, so this understates what is
    attainable against the full optimum; read it as a rough ceiling, not a bound.
    """
    half = config.noise_seeds // 2
    if config.qoe_of_allocation != "mean" or half < 1:
        return None
    halves = (tuple(range(half)), tuple(range(half, 2 * half)))
    fractions = []
    for fit, score in (halves, halves[::-1]):
        chosen = [optimum(config, table, s, fit)[0] for s in states]
        reached = np.mean([outcome(config, table, s, a, score).reward for s, a in zip(states, chosen)])
        best = np.mean([optimum(config, table, s, score)[1].reward for s in states])
        fractions.append(float(reached / best) if best > 0 else float("nan"))
    return {"fraction": float(np.mean(fractions)), "per_half": fractions, "seeds_per_half": half,
            "what": "the optimum chosen on half the noise seeds' images, scored on the other half, as a fraction of "
                    "that half's own optimum (mean of both directions)"}


def best_reachable(config: DenoiseConfig, table: QoETable, state: DenoiseState,
                   best: tuple[Allocation, Outcome] | None = None) -> tuple[Allocation, Outcome]:
    """The best allocation an action can decode to in ``state``: the exact optimum (``best``, when
    the caller has it already), except under ``"server-steps"``, where only
    :func:`server_steps_allocation` of each ``t0`` is reachable (the ceiling of any policy under
    that decoding)."""
    if config.action_decoding != "server-steps":
        return best if best is not None else optimum(config, table, state)
    allocs = [server_steps_allocation(config, state, i) for i in range(len(config.t0_grid))]
    results = [outcome(config, table, state, a) for a in allocs]
    best = int(np.argmax([r.reward for r in results]))
    return allocs[best], results[best]


def best_fixed_allocation(config: DenoiseConfig, table: QoETable, states: list) -> Allocation:
    """The one allocation (per device slot) with the highest total reward over ``states``, chosen
    in hindsight: what a policy that ignores the state could reach at best. Exact by the same
    separation as :func:`optimum`, with the device parts summed over the states."""
    best = None
    for i0, t0 in enumerate(config.t0_grid):
        values = sum(_device_values(config, table, s, t0) for s in states)
        total, tk_index, power_index = _best_over_powers(config, values, t0, weight=len(states))
        if best is None or total > best[0] + 1e-12:
            best = (total, Allocation(i0, tk_index, power_index))
    return best[1]


def action_dim(config: DenoiseConfig) -> int:
    """Length of an action: ``1 + 2K`` (``t0``, each ``t_k``, each power), or 1 under ``"server-steps"``."""
    return 1 if config.action_decoding == "server-steps" else 1 + 2 * config.devices


def decode_action(config: DenoiseConfig, action, state: DenoiseState | None = None) -> Allocation:
    """``[-1, 1]^(1 + 2K)`` -> grid indices (bins of equal width; every action is legal).

    With ``config.action_decoding == "within-budgets"`` the allocation is then moved into the
    budgets of ``state`` (required) by :func:`within_budgets`; with ``"server-steps"`` the action
    is ``[-1, 1]^1``, its bin is ``t0`` and :func:`server_steps_allocation` does the rest.
    """
    a = np.clip(np.asarray(action, dtype=float).ravel(), -1.0, 1.0)
    K = config.devices

    def index(x: float, n: int) -> int:
        return int(min(n - 1, np.floor((x + 1.0) / 2.0 * n)))

    if config.action_decoding != "grid" and state is None:
        raise ValueError(f"decoding {config.action_decoding} needs the state (its E_k and gains)")
    if config.action_decoding == "server-steps":
        return server_steps_allocation(config, state, index(a[0], len(config.t0_grid)))

    alloc = Allocation(index(a[0], len(config.t0_grid)),
                       tuple(index(a[1 + k], len(config.tk_grid)) for k in range(K)),
                       tuple(index(a[1 + K + k], len(config.power_levels_dbw)) for k in range(K)))
    if config.action_decoding == "grid":
        return alloc
    return within_budgets(config, state, alloc)


def within_budgets(config: DenoiseConfig, state: DenoiseState, alloc: Allocation) -> Allocation:
    """``alloc`` moved into the budgets of ``state``; a feasible allocation is returned unchanged.

    Each ``t_k`` is lowered to the largest grid value with ``delta_k t_k <= E_k`` (the smallest
    if none fits). While (24) fails, the highest power level is lowered by one (of equal
    levels, that of the link with the largest gain ``g_k``, whose BER suffers least); when all
    powers are at the lowest level, ``t0`` is lowered. What is left over budget, if even the
    least of everything breaks (24), pays the penalty as under ``"grid"``.
    """
    steps = np.asarray(config.tk_grid, dtype=float)
    tk_index = []
    for k, i in enumerate(alloc.tk_index):
        fits = np.flatnonzero(config.device_energy_per_step * steps[:i + 1] <= state.device_budget[k] + 1e-9)
        tk_index.append(int(fits[-1]) if fits.size else 0)
    t0_index, power_index = alloc.t0_index, list(alloc.power_index)

    def over() -> bool:
        return server_excess(config, config.t0_grid[t0_index], [config.power_levels_dbw[p] for p in power_index]) > 1e-9

    while over():
        if max(power_index) > 0:
            k = max(range(config.devices), key=lambda j: (power_index[j], state.gain_db[j]))
            power_index[k] -= 1
        elif t0_index > 0:
            t0_index -= 1
        else:
            break
    return Allocation(t0_index, tuple(tk_index), tuple(power_index))


def server_steps_allocation(config: DenoiseConfig, state: DenoiseState, t0_index: int) -> Allocation:
    """The allocation ``"server-steps"`` decodes ``t0`` (grid index) to, in ``state``.

    Every device runs the most steps its budget ``E_k`` allows. Without server steps nothing is
    sent: lowest power (the ``local`` rule). With them, every link starts at the highest power
    and :func:`within_budgets` lowers powers (then ``t0``) until (24) holds: a latent that
    arrives at a lower BER is worth more to every device, and power costs nothing but budget.
    """
    K, top = config.devices, len(config.tk_grid) - 1
    power = 0 if t0_index == 0 else len(config.power_levels_dbw) - 1
    return within_budgets(config, state, Allocation(int(t0_index), (top,) * K, (power,) * K))


def encode_allocation(config: DenoiseConfig, alloc: Allocation) -> np.ndarray:
    """The bin centres of an allocation (inverse of :func:`decode_action`; under ``"server-steps"``
    only ``t0``'s, which decodes to :func:`server_steps_allocation`, not to ``alloc`` itself)."""
    def centre(i: int, n: int) -> float:
        return 2.0 * (i + 0.5) / n - 1.0

    if config.action_decoding == "server-steps":
        return np.array([centre(alloc.t0_index, len(config.t0_grid))], dtype=np.float32)

    return np.array([centre(alloc.t0_index, len(config.t0_grid))]
                    + [centre(i, len(config.tk_grid)) for i in alloc.tk_index]
                    + [centre(i, len(config.power_levels_dbw)) for i in alloc.power_index], dtype=np.float32)


def draw_state(config: DenoiseConfig, users: list, seed: int) -> DenoiseState:
    """K users drawn without replacement from ``users``, K gains and a noise seed, from ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2126]))
    chosen = rng.choice(len(users), size=config.devices, replace=len(users) < config.devices)
    gain = rng.uniform(*config.gain_db_range, size=config.devices)
    seed = int(rng.integers(config.noise_seeds))
    budget = rng.choice(np.asarray(config.device_budget, dtype=float), size=config.devices)
    return DenoiseState([users[i] for i in chosen], gain, seed, budget)


def observation(config: DenoiseConfig, state: DenoiseState) -> np.ndarray:
    """The state vector of eq. (26) (see the module docstring), float32."""
    from provisioning.backend.scenes import ATTRIBUTES, parse

    server = parse(state.server_prompt).description.specified()
    parts = []
    lo, hi = config.gain_db_range
    for user, g, budget in zip(state.users, state.gain_db, state.device_budget):
        own = parse(user.prompt).description.specified()
        agree = [1.0 if a in own and own.get(a) == server.get(a) else 0.0 for a in ATTRIBUTES]
        parts += list(user.personality.vector()) + agree + [
            config.device_energy_per_step, budget / 10.0, 2 * (g - lo) / (hi - lo) - 1]
    parts += [config.server_energy_per_step, config.server_budget / 10.0, config.qoe_threshold]
    return np.asarray(parts, dtype=np.float32)


class DenoiseEnv(gym.Env):
    """Gymnasium environment of the problem (one decision per episode); see the module docstring.

    ``reset(seed)`` draws the state from ``seed`` (or, without one, the next of the env's own
    seed stream); ``step(action)`` returns eq. (27)'s reward and an info dict with the QoE,
    the allocation and the penalties.
    """

    metadata: dict = {}

    def __init__(self, config: DenoiseConfig, users: list, table: QoETable, seed: int = 0):
        super().__init__()
        self.config, self.users, self.table = config, list(users), table
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(action_dim(config),), dtype=np.float32)
        from provisioning.backend.scenes import ATTRIBUTES

        dim = config.devices * (5 + len(ATTRIBUTES) + 3) + 3
        high = max(1.0, config.device_energy_per_step, max(config.device_budget) / 10.0, config.server_energy_per_step,
                   config.server_budget / 10.0, config.qoe_threshold)
        self.observation_space = gym.spaces.Box(-1.0, high, shape=(dim,), dtype=np.float32)
        self._stream = np.random.default_rng(seed)
        self.state: DenoiseState | None = None

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        state_seed = int(seed) if seed is not None else int(self._stream.integers(2 ** 31))
        self.state = draw_state(self.config, self.users, state_seed)
        return observation(self.config, self.state), {}

    def step(self, action):
        result = outcome(self.config, self.table, self.state, decode_action(self.config, action, self.state))
        info = {"sum_qoe": result.sum_qoe, "threshold_violations": result.threshold_violations,
                "t0": result.t0, "mean_tk": float(result.tk.mean()), "mean_power_dbw": float(result.power_dbw.mean()),
                "mean_ber": float(result.ber.mean()), "server_excess": result.server_excess,
                "device_excess": float(result.device_excess.sum())}
        return observation(self.config, self.state), result.reward, True, False, info
