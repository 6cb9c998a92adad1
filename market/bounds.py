"""Physical ranges of every number in a market scenario, so every quantity stays finite.

What this module is for: the sign checks of :mod:`market.scenario` let through values that
are positive but absurd (``value_per_qoe = 1e308``, ``deadline_s = 1e-300``,
``compute_capacity = 5e-324``) and then overflow inside the model (``r^-2.5``, ``(sum sqrt(x r)
/ C)^2``) or end "converged" with 300-digit numbers. :data:`MARKET_BOUNDS` gives each field a
range that holds every physical setting we know of, with the reason, and that keeps every
derived quantity of ``docs/market.md`` (timeliness needs, shadow prices, rates, utilities)
well inside double precision: the widest products stay below about 1e60 and the smallest
values above 1e-60. :func:`check_scenario` is called once by the scenario validator and raises
:class:`market.errors.ScenarioError` naming the file and the field; ``docs/market.md``
("Physical ranges") lists the table.

Integers (``seed``, ``max_iterations``) are checked against 64 bits. The same :class:`Bound`
type serves the provisioning scenarios (``provisioning.scenario``).

May import: the standard library and ``market.errors``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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
    "mu.qoe_required": Bound(-1e6, 1.0, "QoE is at most 1 (weights sum to 1)"),
}

#: Spectral efficiency implied by ``distance_m`` must lie in this range (same as the field).
IMPLIED_EFFICIENCY = MARKET_BOUNDS["mu.spectral_efficiency"]


def check_scenario(scenario) -> None:
    """Check every number of a parsed :class:`market.scenario.Scenario` against :data:`MARKET_BOUNDS`.

    Also checks the spectral efficiency that ``distance_m`` implies through the path-loss model
    (it must lie in the range of ``spectral_efficiency``), naming ``mu[i].distance_m``.

    Raises
    ------
    ScenarioError
        Naming the scenario's file and the first field out of range.
    """
    file = scenario.file
    for name, value in vars(scenario.market).items():
        bound = MARKET_BOUNDS.get(f"market.{name}")
        if bound is not None:
            bound.check(value, file=file, field=f"market.{name}")
    for i, asp in enumerate(scenario.asps):
        for name, value in vars(asp).items():
            bound = MARKET_BOUNDS.get(f"asp.{name}")
            if bound is not None and value is not None:
                bound.check(value, file=file, field=f"asp[{i}].{name}")
    market = scenario.market
    power = {a.name: a.transmit_power_w for a in scenario.asps}
    for i, mu in enumerate(scenario.mus):
        for name, value in vars(mu).items():
            if name == "weights":
                for part, weight in vars(value).items():
                    MARKET_BOUNDS[f"mu.weights.{part}"].check(weight, file=file, field=f"mu[{i}].weights.{part}")
                continue
            bound = MARKET_BOUNDS.get(f"mu.{name}")
            if bound is not None and value is not None:
                bound.check(value, file=file, field=f"mu[{i}].{name}")
        if mu.distance_m is not None:
            p = power.get(mu.asp, max(power.values()))
            snr_hz = p * market.path_loss_reference_gain * mu.distance_m ** -market.path_loss_exponent \
                / market.noise_psd_w_per_hz
            efficiency = math.log2(1.0 + snr_hz / market.reference_bandwidth_hz)
            if IMPLIED_EFFICIENCY.violation(efficiency) is not None:
                raise ScenarioError(
                    f"implies a spectral efficiency of {efficiency:.3g} bit/s/Hz through the path-loss model, "
                    f"outside [{IMPLIED_EFFICIENCY.low:g}, {IMPLIED_EFFICIENCY.high:g}] "
                    f"({IMPLIED_EFFICIENCY.reason})", file=file, field=f"mu[{i}].distance_m")
