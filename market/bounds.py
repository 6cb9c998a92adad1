"""Physical ranges of every number in a market scenario, so every quantity stays finite.

What this module is for: the sign checks of :mod:`market.scenario` let through values that
are positive but absurd (``value_per_qoe = 1e308``, ``deadline_s = 1e-300``,
``compute_capacity = 5e-324``) and then overflow inside the model (``r^-2.5``, ``(sum sqrt(x r)
/ C)^2``) or end "converged" with 300-digit numbers. :data:`MARKET_BOUNDS` gives each field a
range that holds every physical setting we know of, with the reason, and that keeps every
derived quantity of ``docs/market.md`` (timeliness needs, shadow prices, rates, utilities)
well inside double precision: the widest products stay below about 1e60 and the smallest
values above 1e-60. :func:`check_scenario` is called once by the scenario validator (and
:func:`check_columns` by the columnar loader, on whole columns at once); both raise
:class:`market.errors.ScenarioError` naming the file and the field; ``docs/market.md``
("Physical ranges") lists the table.

Integers (``seed``, ``max_iterations``) are checked against 64 bits. The same :class:`Bound`
type serves the provisioning scenarios (``provisioning.scenario``).

May import: the standard library, numpy and ``market.errors``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from market.errors import ScenarioError

#: Largest value of a 64-bit signed integer (seeds, iteration counts).
INT64_MAX = 2**63 - 1


def _number(x: float) -> str:
    """Integers as written (a 64-bit bound stays exact), other numbers short."""
    return str(x) if isinstance(x, int) else f"{x:g}"


@dataclass(frozen=True)
class Bound:
    """The accepted range ``[low, high]`` of one field (``(low, high]`` with ``low_open``)."""

    low: float
    """Smallest accepted value."""
    high: float
    """Largest accepted value."""
    reason: str
    """Why: the physical setting the range covers and what breaks outside it."""
    low_open: bool = False
    """Exclude ``low`` itself."""

    def violation(self, value: Any) -> str | None:
        """``None`` when ``value`` lies in the range, else what is wrong (a phrase)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {type(value).__name__} {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be finite, got {value!r}"
        too_low = value < self.low or (self.low_open and value == self.low)
        if too_low or value > self.high:
            low = "(" if self.low_open else "["
            return f"must lie in {low}{_number(self.low)}, {_number(self.high)}] ({self.reason}), got {value!r}"
        return None

    def check(self, value: Any, *, file: str, field: str) -> None:
        """Raise :class:`ScenarioError` naming ``file`` and ``field`` when ``value`` is out of range."""
        problem = self.violation(value)
        if problem is not None:
            raise ScenarioError(problem, file=file, field=field)


#: ``table.field`` -> bound. ``mu.weights.*`` are the QoE weights.
MARKET_BOUNDS: dict[str, Bound] = {
    "market.seed": Bound(0, INT64_MAX, "a 64-bit seed, as numpy's generator takes"),
    "market.tolerance": Bound(1e-15, 1.0, "relative; below 1e-15 double precision cannot certify anything"),
    "market.max_iterations": Bound(1, 10**7, "10^7 rounds already take hours"),
    "market.reference_bandwidth_hz": Bound(1.0, 1e12, "Hz: 1 Hz to 1 THz covers every radio channel"),
    "market.noise_psd_w_per_hz": Bound(1e-25, 1e-10, "W/Hz: thermal noise is 4e-21 (-174 dBm/Hz); "
                                       "this allows any noise figure and interference"),
    "market.path_loss_exponent": Bound(0.0, 8.0, "free space is 2, dense indoor about 6"),
    "market.path_loss_reference_gain": Bound(1e-12, 1.0, "a passive channel gains at most 1 at 1 m"),
    "asp.accuracy": Bound(0.0, 1.0, "a fraction"),
    "asp.seconds_per_token": Bound(1e-9, 1e3, "s per token at unit compute: a nanosecond to a quarter-hour"),
    "asp.max_tokens": Bound(1.0, 1e7, "tokens: at least one, at most ten million per answer"),
    "asp.compute_capacity": Bound(1e-6, 1e9, "compute units; beyond this the shadow price (sum sqrt(x r) / C)^2 "
                                  "spans more than double precision resolves"),
    "asp.bandwidth_capacity": Bound(1.0, 1e12, "Hz: 1 Hz to 1 THz"),
    "asp.compute_cost": Bound(0.0, 1e6, "money per compute unit (squared when quadratic), "
                              "on the scale of the rewards"),
    "asp.bandwidth_cost": Bound(0.0, 1e6, "money per Hz, on the scale of the rewards"),
    "asp.transmit_power_w": Bound(1e-6, 1e4, "W: a microwatt to a broadcast transmitter"),
    "mu.weights.accuracy": Bound(0.0, 1.0, "a QoE weight"),
    "mu.weights.tokens": Bound(0.0, 1.0, "a QoE weight"),
    "mu.weights.timeliness": Bound(0.0, 1.0, "a QoE weight"),
    "mu.tokens_requested": Bound(1.0, 1e7, "tokens: at least one, at most ten million"),
    "mu.deadline_s": Bound(1e-3, 1e6, "s: a millisecond to eleven days; a shorter deadline makes the "
                           "timeliness term 1 - t/T of order -1e300"),
    "mu.payload_bits": Bound(1.0, 1e13, "bits: one bit to a terabyte"),
    "mu.value_per_qoe": Bound(1e-6, 1e6, "money per unit QoE; the leaders' utilities use r^-2.5, "
                              "which overflows for rewards far outside this"),
    "mu.reward_min": Bound(1e-9, 1e6, "money per unit QoE (see value_per_qoe)"),
    "mu.reward_max": Bound(1e-9, 1e6, "money per unit QoE (see value_per_qoe)"),
    "mu.spectral_efficiency": Bound(1e-6, 100.0, "bit/s/Hz: the best links carry about 30"),
    "mu.distance_m": Bound(1e-2, 1e6, "m: a centimetre to a thousand kilometres"),
    "mu.qoe_required": Bound(-1e6, 1.0, "QoE is at most 1 (weights sum to 1): a higher floor is infeasible"),
}

#: Spectral efficiency implied by ``distance_m`` must lie in this range (same as the field).
IMPLIED_EFFICIENCY = MARKET_BOUNDS["mu.spectral_efficiency"]


def check_scenario(scenario) -> None:
    """Check every number of a parsed :class:`market.scenario.Scenario` against :data:`MARKET_BOUNDS`
    (the TOML path; the columnar path calls :func:`check_columns` on its columns directly).

    Raises
    ------
    ScenarioError
        Naming the scenario's file and the first field out of range.
    """
    asp_fields = _fields("asp")
    asp_columns = {k: np.array([getattr(a, k) for a in scenario.asps], dtype=float) for k in asp_fields}
    mu_columns = {}
    for key in _fields("mu"):
        if key.startswith("weights."):
            mu_columns[key] = np.array([getattr(m.weights, key[8:]) for m in scenario.mus], dtype=float)
        else:
            mu_columns[key] = np.array([np.nan if getattr(m, key) is None else getattr(m, key)
                                        for m in scenario.mus], dtype=float)
    index = {a.name: i for i, a in enumerate(scenario.asps)}
    mu_asp = np.array([index.get(m.asp, -1) for m in scenario.mus], dtype=np.intp)
    check_columns(scenario.market, asp_columns, mu_columns, mu_asp, asp_file=scenario.file, mu_file=scenario.file)


def _fields(table: str) -> list[str]:
    """Field names of ``table`` in :data:`MARKET_BOUNDS`, in table order."""
    prefix = f"{table}."
    return [k[len(prefix):] for k in MARKET_BOUNDS if k.startswith(prefix)]


def check_columns(market, asp_columns: dict, mu_columns: dict, mu_asp, *, asp_file: str, mu_file: str) -> None:
    """Check a scenario given as columns: the ``[market]`` values one by one (integers exactly),
    then each ASP and MU column at once; the first bad row is reported (then the first field in
    table order), and NaN marks an absent optional value. Also checks the spectral efficiency
    that ``distance_m`` implies through the path-loss model (it must lie in the range of
    ``spectral_efficiency``), naming ``mu[i].distance_m``.

    Parameters
    ----------
    market : MarketConfig
    asp_columns, mu_columns : field name -> (N,) / (M,) float arrays (``"weights.accuracy"`` etc.).
    mu_asp : (M,) index of each MU's ASP, -1 for ``"auto"``.
    asp_file, mu_file : names for the messages (the same file for TOML).

    Raises
    ------
    ScenarioError
    """
    for name, value in vars(market).items():
        bound = MARKET_BOUNDS.get(f"market.{name}")
        if bound is not None:
            bound.check(value, file=asp_file, field=f"market.{name}")
    _first_bad_row("asp", asp_columns, asp_file)
    _first_bad_row("mu", mu_columns, mu_file)
    distance = np.asarray(mu_columns.get("distance_m", ()), dtype=float)
    given = np.flatnonzero(~np.isnan(distance)) if distance.size else np.array([], dtype=np.intp)
    if given.size == 0:
        return
    power = np.asarray(asp_columns["transmit_power_w"], dtype=float)
    mu_asp = np.asarray(mu_asp)[given]
    p = np.where(mu_asp >= 0, power[np.maximum(mu_asp, 0)], power.max())
    with np.errstate(over="ignore", divide="ignore"):
        snr_hz = p * market.path_loss_reference_gain * distance[given] ** -market.path_loss_exponent \
            / market.noise_psd_w_per_hz
        efficiency = np.log2(1.0 + snr_hz / market.reference_bandwidth_hz)
    bad = ~((efficiency >= IMPLIED_EFFICIENCY.low) & (efficiency <= IMPLIED_EFFICIENCY.high))
    if bad.any():
        row = int(given[np.argmax(bad)])
        value = float(efficiency[np.argmax(bad)])
        raise ScenarioError(
            f"implies a spectral efficiency of {value:.3g} bit/s/Hz through the path-loss model, "
            f"outside [{IMPLIED_EFFICIENCY.low:g}, {IMPLIED_EFFICIENCY.high:g}] ({IMPLIED_EFFICIENCY.reason})",
            file=mu_file, field=f"mu[{row}].distance_m")


def _first_bad_row(table: str, columns: dict, file: str) -> None:
    first = None
    for order, name in enumerate(_fields(table)):
        if name not in columns:
            continue
        bound = MARKET_BOUNDS[f"{table}.{name}"]
        values = np.asarray(columns[name], dtype=float)
        with np.errstate(invalid="ignore"):
            too_low = (values <= bound.low) if bound.low_open else (values < bound.low)
            bad = np.flatnonzero((too_low | (values > bound.high) | np.isinf(values)) & ~np.isnan(values))
        if bad.size and (first is None or (int(bad[0]), order) < first[:2]):
            first = (int(bad[0]), order, name, bound, float(values[bad[0]]))
    if first is not None:
        row, _, name, bound, value = first
        raise ScenarioError(bound.violation(value), file=file, field=f"{table}[{row}].{name}")
