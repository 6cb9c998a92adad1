"""Scenario files: the typed, validated description of one market (TOML on disk).

What this module is for: the :class:`Scenario` dataclass (a ``[market]`` table, ``[[asp]]``
and ``[[mu]]`` arrays, and the optional pass-through tables ``[provisioning]`` and
``[backend]``), :func:`load_scenario` / :meth:`Scenario.from_dict` which validate every
field and raise :class:`market.errors.ScenarioError` naming the file and the field, and
:func:`write_scenario` (``tomli_w`` plus an atomic write). The file format is documented
in ``docs/market.md`` (format version :data:`SCENARIO_VERSION`).

Validation is hand-written (no schema library is a dependency of the project) because the
messages must name the file and the dotted field, e.g. ``mu[3].weights.accuracy``. Each
field's rule is defined once (:data:`MARKET_RULES`, :data:`ASP_RULES`, :data:`MU_RULES`,
:func:`mu_cross_field_errors`) and applied here one value at a time (TOML) and column-wise
by ``market.columnar`` (Parquet), with the same messages. The cost is O(N + M).

May import: the standard library, numpy, ``tomli_w`` and ``market.errors`` / ``market.atomic`` /
``market.bounds``.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from market.atomic import atomic_write_text
from market.bounds import check_scenario as check_scenario_bounds
from market.errors import ScenarioError

#: Version of the scenario file format written by this code (``[market] version``).
SCENARIO_VERSION = 1
#: Top-level tables the market layer keeps as plain dicts without validating them.
PASS_THROUGH_TABLES = ("provisioning", "backend")
BANDWIDTH_MODELS = ("linear", "shannon")
ASP_COSTS = ("linear", "quadratic")
WEIGHT_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class MarketConfig:
    """The ``[market]`` table: format version, model variants and solver settings."""

    version: int = SCENARIO_VERSION
    """Scenario format version; this code reads version 1."""
    name: str = "market"
    """Free-form name of the scenario (shown in reports)."""
    description: str = ""
    """Free-form description."""
    bandwidth_model: str = "linear"
    """``"linear"``: rate = spectral_efficiency * bandwidth (bit/s); ``"shannon"``: rate =
    b log2(1 + snr_hz / b), where snr_hz = P g / N0 (Hz) is fixed by the link."""
    asp_cost: str = "linear"
    """``"linear"``: cost k^f f + k^b b; ``"quadratic"``: energy-like compute cost k^f f^2
    (money per compute unit squared) plus the linear bandwidth cost k^b b."""
    seed: int = 0
    """Seed for everything random in a solve (simultaneous-perturbation signs)."""
    solver: str = "dual-perturbation"
    """Default solver name (see ``solvers.registry``)."""
    tolerance: float = 1e-6
    """Certificate tolerance: largest relative regret / KKT residual accepted."""
    max_iterations: int = 5000
    """Iteration limit of the iterative solvers."""
    reference_bandwidth_hz: float = 1.0e6
    """Bandwidth (Hz) at which ``spectral_efficiency`` is quoted: snr_hz = (2^e - 1) * this."""
    noise_psd_w_per_hz: float = 3.98e-21
    """Noise power spectral density N0 (W/Hz, -174 dBm/Hz), used with ``distance_m``."""
    path_loss_exponent: float = 3.5
    """Path-loss exponent alpha: gain = path_loss_reference_gain * distance^-alpha."""
    path_loss_reference_gain: float = 1.0e-3
    """Channel power gain at 1 m (dimensionless), used with ``distance_m``."""


@dataclass(frozen=True)
class ASPSpec:
    """One ``[[asp]]`` entry: an AIGC service provider running one model on an edge server."""

    name: str
    """Unique name."""
    accuracy: float
    """Accuracy A_n of the ASP's model, in [0, 1]."""
    seconds_per_token: float
    """Work per generated token c_n (s per token at unit compute), > 0."""
    max_tokens: float
    """Longest output l^max_n (tokens), > 0."""
    compute_capacity: float
    """Total compute F_n (compute units), > 0."""
    bandwidth_capacity: float
    """Total downlink bandwidth B_n (Hz), > 0."""
    compute_cost: float
    """Unit compute cost k^f_n (money per compute unit; per unit squared if quadratic), >= 0."""
    bandwidth_cost: float
    """Unit bandwidth cost k^b_n (money per Hz), >= 0."""
    model: str | None = None
    """Optional name of the backend diffusion model the ASP runs (e.g. ``"digits-small"``)."""
    transmit_power_w: float = 1.0
    """Downlink transmit power P (W), used to compute SNR from ``distance_m``."""


@dataclass(frozen=True)
class QoEWeights:
    """Personal weights on the three QoE dimensions; each >= 0, summing to 1."""

    accuracy: float
    """w^A: weight on the ASP's accuracy."""
    tokens: float
    """w^L: weight on delivered / requested tokens."""
    timeliness: float
    """w^T: weight on 1 - latency / deadline."""


@dataclass(frozen=True)
class MUSpec:
    """One ``[[mu]]`` entry: a mobile user (a leader who sets its reward)."""

    name: str
    """Unique name."""
    asp: str
    """Serving ASP's name, or ``"auto"`` (highest base QoE, ties to the lowest index)."""
    weights: QoEWeights
    """QoE weights."""
    tokens_requested: float
    """Requested output length L_m (tokens), > 0."""
    deadline_s: float
    """Deadline T_m (s) at which timeliness reaches zero, > 0."""
    payload_bits: float
    """Bits D_m sent over the air to deliver the result, > 0."""
    value_per_qoe: float
    """theta_m: money per unit of QoE, > 0."""
    reward_min: float
    """Lower end of the reward box (money per QoE), 0 < reward_min <= reward_max."""
    reward_max: float
    """Upper end of the reward box, reward_max <= value_per_qoe."""
    spectral_efficiency: float | None = None
    """Link quality e_m (bit/s/Hz) at ``reference_bandwidth_hz``; exclusive with ``distance_m``."""
    distance_m: float | None = None
    """Distance to the ASP's server (m); SNR from the path-loss model. Exclusive with the above."""
    qoe_required: float | None = None
    """Optional hard floor on delivered QoE."""


@dataclass(frozen=True)
class Scenario:
    """A validated market scenario.

    ``extra_tables`` holds the pass-through top-level tables (``provisioning``, ``backend``)
    as plain dicts, unvalidated: the pipeline validates them. ``file`` is where it came from.
    """

    market: MarketConfig
    """The ``[market]`` table."""
    asps: tuple[ASPSpec, ...]
    """The ASPs, in file order."""
    mus: tuple[MUSpec, ...]
    """The MUs, in file order."""
    extra_tables: dict[str, dict] = field(default_factory=dict)
    """Pass-through tables by name (``"provisioning"``, ``"backend"``)."""
    file: str = "<memory>"
    """Source file name, used in error messages."""

    @classmethod
    def from_dict(cls, data: dict, *, file: str | Path = "<memory>") -> "Scenario":
        """Validate a parsed TOML document and build a :class:`Scenario`.

        Raises
        ------
        ScenarioError
            Naming ``file`` and the dotted field for any unknown, missing, ill-typed or
            out-of-range value.
        """
        return _parse(data, str(file))

    def to_dict(self) -> dict:
        """The TOML document (``None`` fields omitted) that :meth:`from_dict` reads back."""
        out: dict[str, Any] = {"market": market_table(self.market)}
        out["asp"] = [_drop_none(asdict(a)) for a in self.asps]
        out["mu"] = [_drop_none(asdict(m)) for m in self.mus]
        for name, table in self.extra_tables.items():
            out[name] = table
        return out

    def asp_index(self) -> dict[str, int]:
        """Map ASP name -> index."""
        return {a.name: i for i, a in enumerate(self.asps)}


def market_table(config: MarketConfig) -> dict:
    """The ``[market]`` table as a plain dict (what :meth:`Scenario.to_dict` writes), without
    converting the ASPs and MUs."""
    return _drop_none(asdict(config))


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file.

    Raises
    ------
    ScenarioError
        If the file is missing, is not valid TOML, or any field is invalid.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ScenarioError("file not found", file=path) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read file ({exc.strerror})", file=path) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ScenarioError("not UTF-8 text", file=path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"not valid TOML ({exc})", file=path) from None
    return _parse(data, str(path))


def write_scenario(scenario: Scenario, path: str | Path) -> Path:
    """Write ``scenario`` as TOML atomically (validating it first). Returns the path."""
    import tomli_w

    data = scenario.to_dict()
    _parse(data, str(path))  # never write a file we would refuse to read
    return atomic_write_text(path, tomli_w.dumps(data))


# ----------------------------------------------------------------------------- parsing
def _drop_none(d: dict) -> dict:
    return {k: (_drop_none(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not None}


def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}.get(
        type(value), type(value).__name__
    )


def finite_number(value: Any, fail) -> float:
    """A TOML value as a finite float, the one check every scenario reader uses.

    ``fail(message)`` returns the exception to raise (it names the file and the field);
    booleans, strings, integers beyond double precision, inf and nan are refused.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(f"must be a number, got {_type_name(value)} {value!r}")
    try:
        value = float(value)
    except OverflowError:  # a TOML integer beyond double precision
        raise fail(f"is too large to be a number ({len(str(value))} digits)") from None
    if not math.isfinite(value):
        raise fail(f"must be finite, got {value!r}")
    return value


# ----------------------------------------------------------------------------- the rules
REQUIRED = ...
"""Sentinel default of a required field."""


@dataclass(frozen=True)
class FieldRule:
    """One field's validation rule: the single definition both the TOML path (one value at a
    time, :meth:`range_message`) and the columnar path (a whole column at once,
    :meth:`bad_rows`) apply, so both give the same message for the same bad value."""

    field: str
    """Name within its table; dotted for nested tables (``"weights.accuracy"``)."""
    kind: str
    """``"float"``, ``"int"`` or ``"str"``."""
    default: Any = REQUIRED
    """Value when absent; :data:`REQUIRED` for a required field, ``None`` for an optional one."""
    low: float | None = None
    """Lower bound (inclusive unless ``low_open``)."""
    low_open: bool = False
    """The lower bound itself is excluded."""
    high: float | None = None
    """Upper bound (inclusive)."""
    choices: tuple | None = None
    """Allowed values of a string field."""
    allow_empty: bool = False
    """A string field may be empty."""

    def range_message(self, value: Any) -> str | None:
        """Why a well-typed ``value`` is out of range, or None when it is fine."""
        if self.kind == "float" and not math.isfinite(value):
            return f"must be finite, got {value!r}"
        if self.kind == "str" and not self.allow_empty and not value.strip():
            return "must not be empty"
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}"
        if self.high is not None and value > self.high:
            return f"must be <= {self.high:g}, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(repr, self.choices))}, got {value!r}"
        return None

    def bad_rows(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of the entries of a numeric column that :meth:`range_message` rejects
        (absent optional entries must already be masked out by the caller)."""
        values = np.asarray(values)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) if self.kind == "float" else np.zeros(values.shape, bool)
            if self.low is not None:
                bad |= (values <= self.low) if self.low_open else (values < self.low)
            if self.high is not None:
                bad |= values > self.high
        return bad


MARKET_RULES = (
    FieldRule("version", "int"),
    FieldRule("name", "str", default="market"),
    FieldRule("description", "str", default="", allow_empty=True),
    FieldRule("bandwidth_model", "str", default="linear", choices=BANDWIDTH_MODELS),
    FieldRule("asp_cost", "str", default="linear", choices=ASP_COSTS),
    FieldRule("seed", "int", default=0, low=0),
    FieldRule("solver", "str", default="dual-perturbation"),
    FieldRule("tolerance", "float", default=1e-6, low=0.0, low_open=True, high=1.0),
    FieldRule("max_iterations", "int", default=5000, low=1),
    FieldRule("reference_bandwidth_hz", "float", default=1.0e6, low=0.0, low_open=True),
    FieldRule("noise_psd_w_per_hz", "float", default=3.98e-21, low=0.0, low_open=True),
    FieldRule("path_loss_exponent", "float", default=3.5, low=0.0),
    FieldRule("path_loss_reference_gain", "float", default=1.0e-3, low=0.0, low_open=True),
)
"""The ``[market]`` table, in the order fields are checked."""

ASP_RULES = (
    FieldRule("model", "str", default=None),
    FieldRule("name", "str"),
    FieldRule("accuracy", "float", low=0.0, high=1.0),
    FieldRule("seconds_per_token", "float", low=0.0, low_open=True),
    FieldRule("max_tokens", "float", low=0.0, low_open=True),
    FieldRule("compute_capacity", "float", low=0.0, low_open=True),
    FieldRule("bandwidth_capacity", "float", low=0.0, low_open=True),
    FieldRule("compute_cost", "float", low=0.0),
    FieldRule("bandwidth_cost", "float", low=0.0),
    FieldRule("transmit_power_w", "float", default=1.0, low=0.0, low_open=True),
)
"""One ``[[asp]]`` entry (one row of the columnar ASP table), in the order fields are checked."""

MU_RULES = (
    FieldRule("name", "str"),
    FieldRule("asp", "str"),
    FieldRule("weights.accuracy", "float", low=0.0),
    FieldRule("weights.tokens", "float", low=0.0),
    FieldRule("weights.timeliness", "float", low=0.0),
    FieldRule("value_per_qoe", "float", low=0.0, low_open=True),
    FieldRule("reward_min", "float", low=0.0, low_open=True),
    FieldRule("reward_max", "float", low=0.0, low_open=True),
    FieldRule("spectral_efficiency", "float", default=None, low=0.0, low_open=True),
    FieldRule("distance_m", "float", default=None, low=0.0, low_open=True),
    FieldRule("qoe_required", "float", default=None),
    FieldRule("tokens_requested", "float", low=0.0, low_open=True),
    FieldRule("deadline_s", "float", low=0.0, low_open=True),
    FieldRule("payload_bits", "float", low=0.0, low_open=True),
)
"""One ``[[mu]]`` entry (one row of the columnar MU table; the nested ``weights`` table is
three columns ``weights.accuracy`` ...), in the order fields are checked."""

MU_FLOAT_FIELDS = tuple(r.field for r in MU_RULES if r.kind == "float")
ASP_FLOAT_FIELDS = tuple(r.field for r in ASP_RULES if r.kind == "float")


def mu_cross_field_errors(columns: dict[str, np.ndarray], asp_known: np.ndarray) -> list[tuple[np.ndarray, str, Any]]:
    """The MU rules that involve several fields, over whole columns (both formats use this).

    ``columns`` maps float field names to (M,) arrays (NaN where an optional field is
    absent; ``spectral_efficiency`` / ``distance_m`` presence is read from NaN);
    ``asp_known`` is an (M,) boolean: the MU's ``asp`` names an existing ASP or ``"auto"``.
    Returns ``[(bad-row mask, field, message(row) function)]`` in check order.
    """
    wsum = columns["weights.accuracy"] + columns["weights.tokens"] + columns["weights.timeliness"]
    r_lo, r_hi, theta = columns["reward_min"], columns["reward_max"], columns["value_per_qoe"]
    has_eff, has_dist = ~np.isnan(columns["spectral_efficiency"]), ~np.isnan(columns["distance_m"])
    return [
        (~asp_known, "asp", None),
        (np.abs(wsum - 1.0) > WEIGHT_SUM_TOLERANCE, "weights",
         lambda i: f"weights must sum to 1 (within {WEIGHT_SUM_TOLERANCE:g}), they sum to {float(wsum[i])!r}"),
        (r_lo > r_hi, "reward_min",
         lambda i: f"reward_min ({float(r_lo[i])!r}) exceeds reward_max ({float(r_hi[i])!r})"),
        (r_hi > theta, "reward_max",
         lambda i: f"reward box must lie in (0, value_per_qoe]: reward_max {float(r_hi[i])!r} > value_per_qoe "
                   f"{float(theta[i])!r}"),
        (has_eff == has_dist, "spectral_efficiency", lambda i: "give exactly one of spectral_efficiency or distance_m"),
    ]


def unknown_asp_message(asp: str, asp_names) -> str:
    """The message for an MU that names an ASP that does not exist (lists at most 10 names)."""
    names = sorted(asp_names)
    shown = ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")
    return f"names ASP {asp!r}, which does not exist (ASPs: {shown}; or \"auto\")"


def raise_first_cross_error(checks, file: str, table: str, asp_of_row) -> None:
    """Raise the :class:`ScenarioError` of the first row (then first check) that fails, if any."""
    first = None
    for order, (bad, field_name, message) in enumerate(checks):
        rows = np.flatnonzero(bad)
        if rows.size and (first is None or rows[0] < first[0]):
            first = (int(rows[0]), order, field_name, message)
    if first is not None:
        row, _, field_name, message = first
        text = message(row) if message is not None else asp_of_row(row)
        raise ScenarioError(text, file=file, field=f"{table}[{row}].{field_name}")


# ----------------------------------------------------------------------------- parsing
class _Fields:
    """Reads typed fields out of one table, tracking which were used."""

    def __init__(self, table: Any, where: str, file: str):
        if not isinstance(table, dict):
            raise ScenarioError(f"must be a table, got {_type_name(table)}", file=file, field=where)
        self.table, self.where, self.file, self.used = table, where, file, set()

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(message, file=self.file, field=self._path(key))

    def get_rule(self, rule: FieldRule, key: str | None = None) -> Any:
        """The value of ``rule``'s field (``key`` overrides the name, for nested tables)."""
        return self.get(key or rule.field, rule.kind, default=rule.default, rule=rule)

    def get(self, key: str, kind: str, *, default: Any = REQUIRED, rule: FieldRule | None = None) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is REQUIRED:
                raise self.error(key, "missing required field")
            return default
        value = self.table[key]
        if kind == "float":
            value = finite_number(value, lambda message: self.error(key, message))
        elif kind == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.error(key, f"must be an integer, got {_type_name(value)} {value!r}")
        elif kind == "table":
            if not isinstance(value, dict):
                raise self.error(key, f"must be a table, got {_type_name(value)} {value!r}")
        elif kind == "str":
            if not isinstance(value, str):
                raise self.error(key, f"must be a string, got {_type_name(value)} {value!r}")
        if rule is not None:
            message = rule.range_message(value)
            if message is not None:
                raise self.error(key, message)
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            raise self.error(unknown[0], "unknown field")


def _parse(data: Any, file: str) -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError("the document must be a table", file=file)
    known = {"market", "asp", "mu", *PASS_THROUGH_TABLES}
    for key in data:
        if key not in known:
            raise ScenarioError("unknown top-level table", file=file, field=key)
    if "market" not in data:
        raise ScenarioError("missing required table [market]", file=file, field="market")
    market = parse_market_table(data["market"], file)
    asps = _parse_array(data, "asp", file, _parse_asp)
    asp_names = [a.name for a in asps]
    _unique(asp_names, "asp", file)
    mus = _parse_array(data, "mu", file, _parse_mu)
    _check_mus(mus, set(asp_names), file)
    _unique([m.name for m in mus], "mu", file)
    extra = {}
    for name in PASS_THROUGH_TABLES:
        if name in data:
            if not isinstance(data[name], dict):
                raise ScenarioError(f"must be a table, got {_type_name(data[name])}", file=file, field=name)
            extra[name] = data[name]
    scenario = Scenario(market=market, asps=tuple(asps), mus=tuple(mus), extra_tables=extra, file=file)
    check_scenario_bounds(scenario)  # physical ranges (market.bounds): every derived quantity stays finite
    return scenario


def _unique(names, array: str, file: str) -> None:
    """Raise on the first duplicate name (O(M) with a dict)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ScenarioError(f"duplicate name {name!r} (also {array}[{seen[name]}])", file=file,
                                field=f"{array}[{i}].name")
        seen[name] = i


def _parse_array(data: dict, key: str, file: str, parse_one) -> list:
    if key not in data:
        raise ScenarioError(f"missing required array [[{key}]]", file=file, field=key)
    items = data[key]
    if not isinstance(items, list):
        raise ScenarioError(f"must be an array of tables [[{key}]], got {_type_name(items)}", file=file, field=key)
    if not items:
        raise ScenarioError(f"needs at least one [[{key}]] entry", file=file, field=key)
    out = []
    for i, item in enumerate(items):
        fields_ = _Fields(item, f"{key}[{i}]", file)
        out.append(parse_one(fields_))
        fields_.finish()
    return out


def parse_market_table(table: Any, file: str) -> MarketConfig:
    """Validate a ``[market]`` table (a dict; the columnar format stores it as JSON metadata)."""
    f = _Fields(table, "market", file)
    values = {rule.field: f.get_rule(rule) for rule in MARKET_RULES}
    if values["version"] != SCENARIO_VERSION:
        raise f.error("version", f"unsupported scenario format version {values['version']} "
                                 f"(this code reads {SCENARIO_VERSION})")
    f.finish()
    return MarketConfig(**values)


def _parse_asp(f: _Fields) -> ASPSpec:
    return ASPSpec(**{rule.field: f.get_rule(rule) for rule in ASP_RULES})


_WEIGHT_RULES = tuple(r for r in MU_RULES if r.field.startswith("weights."))


def _parse_mu(f: _Fields) -> MUSpec:
    values: dict[str, Any] = {}
    for rule in MU_RULES:
        if rule.field.startswith("weights."):
            if rule is _WEIGHT_RULES[0]:
                wf = _Fields(f.get("weights", "table"), f._path("weights"), f.file)
                values["weights"] = QoEWeights(**{r.field[8:]: wf.get_rule(r, r.field[8:]) for r in _WEIGHT_RULES})
                wf.finish()
            continue
        values[rule.field] = f.get_rule(rule)
    return MUSpec(**values)


def _check_mus(mus: list[MUSpec], asp_names: set[str], file: str) -> None:
    """The cross-field MU rules (:func:`mu_cross_field_errors`), over all MUs at once."""
    nan = float("nan")
    columns = {
        "weights.accuracy": np.array([m.weights.accuracy for m in mus]),
        "weights.tokens": np.array([m.weights.tokens for m in mus]),
        "weights.timeliness": np.array([m.weights.timeliness for m in mus]),
        "reward_min": np.array([m.reward_min for m in mus]),
        "reward_max": np.array([m.reward_max for m in mus]),
        "value_per_qoe": np.array([m.value_per_qoe for m in mus]),
        "spectral_efficiency": np.array([nan if m.spectral_efficiency is None else 1.0 for m in mus]),
        "distance_m": np.array([nan if m.distance_m is None else 1.0 for m in mus]),
    }
    known = np.array([m.asp == "auto" or m.asp in asp_names for m in mus])
    raise_first_cross_error(mu_cross_field_errors(columns, known), file, "mu",
                            lambda row: unknown_asp_message(mus[row].asp, asp_names))


def scenario_field_names() -> dict[str, list[str]]:
    """Field names per table (for documentation and generators)."""
    return {
        "market": [f.name for f in fields(MarketConfig)],
        "asp": [f.name for f in fields(ASPSpec)],
        "mu": [f.name for f in fields(MUSpec)],
        "mu.weights": [f.name for f in fields(QoEWeights)],
    }
