"""Provisioning scenarios: a typed configuration, loaded from TOML and validated field by field.

What this module is for
-----------------------
One :class:`ProvisioningConfig` describes one ASP serving ``Q`` users (section V of the
provisioning paper, with the settlements of ``docs/provisioning.md``): the objective weights of
eq. (22), the latency model, the channel of section III-C, the simulated quality backend and the
ranges the environment samples states from. It is read from ``provisioning/scenarios/*.toml``
(:func:`load_provisioning_scenario`) or built from a plain dict (:func:`provisioning_config_from_dict`,
which ``provisioning.coupling`` uses to derive one slot's problem from a market scenario). Every malformed value raises
:class:`market.errors.ScenarioError` naming the file and the dotted field.

May import: the standard library, numpy, ``market.errors``, ``market.bounds``, ``provisioning.channel``,
``provisioning.quality``.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from market.bounds import Bound
from market.errors import ScenarioError
from market.scenario import finite_number
from provisioning.channel import ChannelParams
from provisioning.quality import SimulatedQualityModel

__all__ = [
    "LatencyParams",
    "ObjectiveParams",
    "StateRanges",
    "ProvisioningConfig",
    "load_provisioning_scenario",
    "default_provisioning_scenario_path",
    "provisioning_scenarios_dir",
    "provisioning_config_from_dict",
    "DEFAULT_SCENARIO_NAME",
]

DEFAULT_SCENARIO_NAME = "paper-3users"
REWARD_MODES = ("expected", "sampled")

#: Physical range of every number of a provisioning scenario (dotted field, per-user lists and
#: ``[low, high]`` pairs share their field's range). Within them the channel, QoE, cost and the
#: oracle's search stay finite; ``docs/provisioning.md`` ("Physical ranges") lists the table.
PROVISIONING_BOUNDS: dict[str, Bound] = {
    "num_users": Bound(1, 1000, "users one ASP serves at once"),
    "max_trials": Bound(1, 64, "trials per user per round; the oracle searches them all"),
    "objective.qoe_weight": Bound(0.0, 1e6, "utility per unit QoE; larger values overflow the oracle's search"),
    "objective.cost_weight": Bound(0.0, 1e6, "utility per unit cost, on the scale of qoe_weight"),
    "objective.compute_cost_per_step": Bound(0.0, 1e6, "cost units per denoising step"),
    "objective.diffusion_steps": Bound(1, 10_000, "denoising steps per trial"),
    "objective.user_weights": Bound(0.0, 1e6, "weight on a user's QoE (the market's reward per unit QoE)"),
    "objective.min_qoe": Bound(-1e6, 1e6, "QoE floor per user"),
    "objective.penalty_per_user": Bound(0.0, 1e6, "on the scale of qoe_weight"),
    "objective.penalty_budget": Bound(0.0, 1e6, "on the scale of qoe_weight"),
    "latency.max_latency_s": Bound(1e-3, 1e6, "s: a millisecond to eleven days"),
    "latency.time_per_trial_s": Bound(1e-6, 1e5, "s per trial: a microsecond to a day"),
    "latency.link_rate_bps": Bound(1.0, 1e15, "bit/s: one bit per second to a petabit link"),
    "latency.image_bits": Bound(0.0, 1e13, "bits per image: up to a terabyte"),
    "channel.nakagami_m": Bound(0.5, 100.0, "Nakagami shape; 0.5 is the smallest the distribution allows, "
                                "100 is already a fixed channel"),
    "channel.nakagami_omega": Bound(1e-6, 1e6, "mean fading power"),
    "channel.path_loss_exponent": Bound(0.0, 8.0, "free space is 2, dense indoor about 6", low_open=True),
    "channel.path_gain_at_1m_db": Bound(-200.0, 30.0, "dB; a passive channel gains at most 0 dB, antennas a little more"),
    "channel.shadowing_sigma_db": Bound(0.0, 30.0, "dB; measured shadowing is 4-12 dB"),
    "channel.noise_power_w": Bound(1e-25, 1e-3, "W over the band; thermal noise over 10 MHz is 4e-14"),
    "channel.gauss_hermite_nodes": Bound(1, 256, "quadrature nodes for the shadowing average"),
    "quality.score_easy": Bound(0.0, 10.0, "the 0-10 quality score", low_open=True),
    "quality.score_hard": Bound(0.0, 10.0, "the 0-10 quality score", low_open=True),
    "quality.log_spread_easy": Bound(0.0, 5.0, "standard deviation of the log score"),
    "quality.log_spread_hard": Bound(0.0, 5.0, "standard deviation of the log score"),
    "quality.ber_sensitivity_easy": Bound(0.0, 1e4, "loss of log score per unit bit error rate"),
    "quality.ber_sensitivity_hard": Bound(0.0, 1e4, "loss of log score per unit bit error rate"),
    "state.distance_m": Bound(1e-2, 1e6, "m: a centimetre to a thousand kilometres"),
    "state.difficulty": Bound(0.0, 1.0, "a fraction"),
    "state.quality_threshold": Bound(0.0, 10.0, "the 0-10 quality score", low_open=True),
    "state.p_total_w": Bound(1e-6, 1e4, "W: a microwatt to a broadcast transmitter"),
}


@dataclass(frozen=True)
class ObjectiveParams:
    """Weights of the ASP's objective (eq. (22a)) and the penalties of section V-C.

    Attributes
    ----------
    qoe_weight : float
        ``eta_q``: utility per unit of weighted QoE.
    cost_weight : float
        ``eta_c``: utility lost per unit of cost ``C_i = N_i (c zeta + P_i)``.
    compute_cost_per_step : float
        ``c``: cost of one denoising step of one trial (cost units, comparable to watts).
    diffusion_steps : int
        ``zeta``: denoising steps per trial (the paper uses 25).
    user_weights : tuple of float
        Per-user weight on QoE (from the market: the ASP's reward ``r_m`` per unit QoE).
    min_qoe : tuple of float
        ``Q^th_i`` of eq. (22b): the QoE each user must reach, per user.
    penalty_per_user : float
        ``rho``: penalty per user violating (22b) or (22c).
    penalty_budget : float
        ``phi``: penalty when the power budget (22d) is exceeded.
    """

    qoe_weight: float
    cost_weight: float
    compute_cost_per_step: float
    diffusion_steps: int
    user_weights: tuple
    min_qoe: tuple
    penalty_per_user: float
    penalty_budget: float


@dataclass(frozen=True)
class LatencyParams:
    """Latency model of eq. (23).

    Attributes
    ----------
    max_latency_s : float
        ``L_max``: the latency bound, in seconds.
    time_per_trial_s : tuple of float
        ``T_zeta``: inference time of one trial per user, seconds (from the market's compute share).
    link_rate_bps : tuple of float or None
        Link rate per user, bit/s (from the market's bandwidth); ``None`` ignores transmission
        time, as the paper does (its footnote 5).
    image_bits : float
        Size of one transmitted image in bits; each trial adds ``image_bits / link_rate`` seconds.
    """

    max_latency_s: float
    time_per_trial_s: tuple
    link_rate_bps: tuple | None = None
    image_bits: float = 0.0

    def seconds_per_trial(self) -> tuple:
        """Total seconds one trial costs each user: inference plus transmission of its image."""
        if self.link_rate_bps is None:
            return tuple(float(t) for t in self.time_per_trial_s)
        return tuple(float(t) + self.image_bits / float(r) for t, r in zip(self.time_per_trial_s, self.link_rate_bps))


@dataclass(frozen=True)
class StateRanges:
    """Ranges the environment draws its states (contexts) from, uniformly and independently.

    Attributes
    ----------
    distance_m : tuple of float
        ``(low, high)`` user-to-ASP distance, metres.
    difficulty : tuple of float
        ``(low, high)`` prompt difficulty within [0, 1].
    quality_threshold : tuple of tuple of float
        Per user ``(low, high)`` quality threshold ``q^th_i`` (0-10 score scale).
    p_total_w : tuple of float
        ``(low, high)`` total transmit power budget ``P_total``, watts.
    """

    distance_m: tuple
    difficulty: tuple
    quality_threshold: tuple
    p_total_w: tuple


@dataclass(frozen=True)
class ProvisioningConfig:
    """Everything that defines one provisioning problem (saved next to every result).

    Attributes
    ----------
    name : str
        Scenario name.
    description : str
        One line on what the scenario is for.
    num_users : int
        ``Q``: users served at once by the ASP.
    max_trials : int
        ``N_max``: most inference trials per user per round.
    objective : ObjectiveParams
    latency : LatencyParams
    channel : ChannelParams
    quality : SimulatedQualityModel
    state : StateRanges
    reward_mode : str
        ``"expected"`` (step reward = :meth:`ProvisioningEnv.expected_utility`, the default) or
        ``"sampled"`` (qualities and channel drawn once per step; unbiased for the same value).
    source : str
        File the scenario came from (``"<memory>"`` when built in code).
    """

    name: str
    description: str
    num_users: int
    max_trials: int
    objective: ObjectiveParams
    latency: LatencyParams
    channel: ChannelParams
    quality: SimulatedQualityModel
    state: StateRanges
    reward_mode: str = "expected"
    source: str = "<memory>"

    def to_dict(self) -> dict:
        """Plain-data form (JSON/TOML friendly), accepted back by :func:`provisioning_config_from_dict`."""
        data = asdict(self)
        data.pop("source")
        return _lists(data)


def _lists(value):
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------
class _Table:
    """Reads one TOML table, checking types and ranges and rejecting unknown keys."""

    def __init__(self, data: Any, file: str, prefix: str):
        if not isinstance(data, Mapping):
            raise ScenarioError("must be a table", file=file, field=prefix or None)
        self.data = dict(data)
        self.file = file
        self.prefix = prefix
        self.used: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(message, file=self.file, field=self._name(key))

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = ...):
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.error(key, "is required but missing")
            return default
        return self.data[key]

    def _check_number(self, key: str, value: Any, *, minimum=None, positive=False, maximum=None, label=None) -> float:
        name = label or key
        value = finite_number(value, lambda message: self.error(name, message))
        if positive and value <= 0:
            raise self.error(name, f"must be > 0, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"must be >= {minimum}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.error(name, f"must be <= {maximum}, got {value!r}")
        self._check_bound(key, name, value)
        return value

    def _check_bound(self, key: str, name: str, value) -> None:
        """The field's physical range (:data:`PROVISIONING_BOUNDS`); ``key`` may carry ``[i]``."""
        bound = PROVISIONING_BOUNDS.get(re.sub(r"\[\d+\]", "", self._name(key)))
        if bound is not None:
            problem = bound.violation(value)
            if problem is not None:
                raise self.error(name, problem)

    def number(self, key: str, default: Any = ..., **limits) -> float:
        return self._check_number(key, self.raw(key, default), **limits)

    def integer(self, key: str, default: Any = ..., minimum: int | None = None) -> int:
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {type(value).__name__} {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value!r}")
        self._check_bound(key, key, value)
        return int(value)

    def string(self, key: str, default: Any = ..., choices: tuple | None = None) -> str:
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {type(value).__name__} {value!r}")
        if choices is not None and value not in choices:
            raise self.error(key, f"must be one of {list(choices)}, got {value!r}")
        return value

    def per_user(self, key: str, count: int, default: Any = ..., **limits) -> tuple:
        """A scalar (same for every user) or a list of exactly ``count`` numbers."""
        value = self.raw(key, default)
        if isinstance(value, (list, tuple)):
            if len(value) != count:
                raise self.error(key, f"must have one value per user ({count}), got {len(value)}")
            return tuple(self._check_number(key, v, label=f"{key}[{i}]", **limits) for i, v in enumerate(value))
        return (self._check_number(key, value, **limits),) * count

    def interval(self, key: str, default: Any = ..., **limits) -> tuple:
        value = self.raw(key, default)
        return self._interval(key, value, **limits)

    def _interval(self, key: str, value: Any, **limits) -> tuple:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            low = high = self._check_number(key, value, **limits)
            return (low, high)
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise self.error(key, f"must be a number or a [low, high] pair, got {value!r}")
        low = self._check_number(key, value[0], label=f"{key}[0]", **limits)
        high = self._check_number(key, value[1], label=f"{key}[1]", **limits)
        if low > high:
            raise self.error(key, f"low {low} must not exceed high {high}")
        return (low, high)

    def per_user_interval(self, key: str, count: int, **limits) -> tuple:
        """One ``[low, high]`` for every user, or a list of ``count`` of them."""
        value = self.raw(key)
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
            if len(value) != count:
                raise self.error(key, f"must have one [low, high] per user ({count}), got {len(value)}")
            return tuple(self._interval(f"{key}[{i}]", v, **limits) for i, v in enumerate(value))
        return (self._interval(key, value, **limits),) * count

    def table(self, key: str, required: bool = True) -> "_Table":
        if key not in self.data and not required:
            self.used.add(key)
            return _Table({}, self.file, self._name(key))
        return _Table(self.raw(key), self.file, self._name(key))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0], f"unknown field (known: {sorted(self.used)})")


def _parse(data: Mapping, file: str) -> ProvisioningConfig:
    root = _Table(data, file, "")
    name = root.string("name")
    description = root.string("description", "")
    num_users = root.integer("num_users", minimum=1)
    max_trials = root.integer("max_trials", minimum=1)
    reward_mode = root.string("reward_mode", "expected", choices=REWARD_MODES)

    obj = root.table("objective")
    objective = ObjectiveParams(
        qoe_weight=obj.number("qoe_weight", minimum=0.0),
        cost_weight=obj.number("cost_weight", minimum=0.0),
        compute_cost_per_step=obj.number("compute_cost_per_step", minimum=0.0),
        diffusion_steps=obj.integer("diffusion_steps", minimum=1),
        user_weights=obj.per_user("user_weights", num_users, 1.0, minimum=0.0),
        min_qoe=obj.per_user("min_qoe", num_users, 0.0),
        penalty_per_user=obj.number("penalty_per_user", minimum=0.0),
        penalty_budget=obj.number("penalty_budget", minimum=0.0),
    )
    obj.finish()

    lat = root.table("latency")
    max_latency = lat.number("max_latency_s", positive=True)
    time_per_trial = lat.per_user("time_per_trial_s", num_users, positive=True)
    link_rate = lat.per_user("link_rate_bps", num_users, positive=True) if lat.has("link_rate_bps") else None
    image_bits = lat.number("image_bits", 0.0, minimum=0.0)
    latency = LatencyParams(max_latency, time_per_trial, link_rate, image_bits)
    for i, seconds in enumerate(latency.seconds_per_trial()):
        if max_trials * seconds >= max_latency:
            raise lat.error(
                "max_latency_s",
                f"must exceed max_trials x seconds per trial of user {i} ({max_trials} x {seconds:g} s): "
                "the latency factor ln(L_max/(N T))/ln(1+N) must stay positive for every allowed N",
            )
    lat.finish()

    ch = root.table("channel")
    channel = ChannelParams(
        nakagami_m=ch.number("nakagami_m", minimum=0.5),
        nakagami_omega=ch.number("nakagami_omega", 1.0, positive=True),
        path_loss_exponent=ch.number("path_loss_exponent", positive=True),
        path_gain_at_1m_db=ch.number("path_gain_at_1m_db", 0.0),
        shadowing_sigma_db=ch.number("shadowing_sigma_db", minimum=0.0),
        noise_power_w=ch.number("noise_power_w", positive=True),
        gauss_hermite_nodes=ch.integer("gauss_hermite_nodes", 32, minimum=1),
    )
    ch.finish()

    qu = root.table("quality")
    quality = SimulatedQualityModel(
        score_easy=qu.number("score_easy", positive=True),
        score_hard=qu.number("score_hard", positive=True),
        log_spread_easy=qu.number("log_spread_easy", minimum=0.0),
        log_spread_hard=qu.number("log_spread_hard", minimum=0.0),
        ber_sensitivity_easy=qu.number("ber_sensitivity_easy", minimum=0.0),
        ber_sensitivity_hard=qu.number("ber_sensitivity_hard", minimum=0.0),
    )
    qu.finish()

    st = root.table("state")
    state = StateRanges(
        distance_m=st.interval("distance_m", positive=True),
        difficulty=st.interval("difficulty", minimum=0.0, maximum=1.0),
        quality_threshold=st.per_user_interval("quality_threshold", num_users, positive=True),
        p_total_w=st.interval("p_total_w", positive=True),
    )
    st.finish()
    root.finish()
    return ProvisioningConfig(
        name=name,
        description=description,
        num_users=num_users,
        max_trials=max_trials,
        objective=objective,
        latency=latency,
        channel=channel,
        quality=quality,
        state=state,
        reward_mode=reward_mode,
        source=file,
    )


def provisioning_config_from_dict(data: Mapping, *, source: str = "<memory>") -> ProvisioningConfig:
    """Build and validate a :class:`ProvisioningConfig` from plain data (same schema as the TOML).

    ``provisioning.coupling`` uses this to derive one slot's problem from a market scenario
    (weights from the rewards, time per trial and link rate from the allocation).

    Raises
    ------
    market.errors.ScenarioError
        Naming ``source`` and the dotted field.
    """
    return _parse(data, source)


def load_provisioning_scenario(path: str | Path) -> ProvisioningConfig:
    """Load and validate a provisioning scenario TOML file.

    Raises
    ------
    market.errors.ScenarioError
        The file is missing, is not valid TOML, or a field is missing, unknown, ill-typed,
        negative where it must not be, or not finite.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError("scenario file not found", file=path) from None
    except UnicodeDecodeError:
        raise ScenarioError("not UTF-8 text (a binary file?)", file=path) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file ({exc.strerror or exc})", file=path) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML: {exc}", file=path) from None
    return _parse(data, str(path))


def provisioning_scenarios_dir() -> Path:
    """The folder holding the shipped provisioning scenarios: ``provisioning/scenarios``, package
    data of this package, so it is found in an installed wheel as in a source checkout (where
    ``scenarios/provisioning`` links to it)."""
    return Path(__file__).resolve().parent / "scenarios"


def default_provisioning_scenario_path() -> Path:
    """Path of the default provisioning scenario (the paper's 3-user setting)."""
    return provisioning_scenarios_dir() / f"{DEFAULT_SCENARIO_NAME}.toml"
