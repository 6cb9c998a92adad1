"""Public property-testing API: hypothesis strategies for valid scenarios and equilibrium checks.

What this module is for: users (and our own test suite) test the engine on *their* scenario
families with pytest + hypothesis::

    from hypothesis import given
    from solvers import testing as mt

    @given(mt.scenario_family(my_base, {"compute_capacity": 0.3}))
    def test_my_family(scn):
        mt.check_all(scn)

Strategies (each yields a validated :class:`market.scenario.Scenario`):

* :func:`scenarios` -- generated markets with controls: number of ASPs and MUs, model
  variants, capacity range, an idle ASP, a latency-indifferent MU, and the regime:
  ``"any"``, ``"slack"`` (no capacity can bind anywhere in the reward boxes: the MUs'
  problems decouple and the equilibrium is unique) or ``"kink"`` (one ASP's compute
  capacity set just below its demand at the slack equilibrium, so the equilibrium sits at the
  capacity's kink, where it need not be unique; linear model only);
* :func:`with_slack_capacities`, :func:`with_capacity_at_kink` -- the two constructions as
  plain functions, to build a slack or kinked version of a given scenario;
* :func:`scenario_family` -- perturbations of a user's own scenario within relative bounds
  (shrinks towards the unperturbed scenario).

Checks (each raises :class:`PropertyViolation`, an ``AssertionError``, with the figures):
:func:`check_certified`, :func:`check_capacities_respected`,
:func:`check_permutation_invariance`, :func:`check_money_rescaling`,
:func:`check_qoe_monotone_in_own_reward`, :func:`check_warm_start_stays_put`,
:func:`check_solvers_agree` (only where the equilibrium is unique: it returns False without
comparing when a capacity sits at its kink, :func:`at_capacity_kink`), and :func:`check_all`.

Why here (``solvers``) and not in ``incentive``: the strategies need ``market`` (scenarios,
generator) and the checks need ``solvers`` (solve, certify), nothing above; placing the API
in ``solvers`` lets a user who installs only the market and solver layers test with it, keeps
``incentive`` (the CLI) out of test imports, and respects "nothing imports ``incentive``".
It imports hypothesis at import time, so it is a separate module that ``solvers/__init__``
does not import: normal use of ``market`` and ``solvers`` never needs hypothesis (install it
with the ``test`` extra).

May import: numpy, hypothesis, ``market`` and ``solvers``.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import solvers
from market.followers import best_response, deviation_qoe
from market.generator import generate_scenario
from market.model import Market
from market.scenario import ASPSpec, QoEWeights, Scenario
from solvers.certificate import certify

REGIMES = ("any", "slack", "kink")
#: Relative closeness to the slack/binding threshold that counts as "at a kink" in the checks.
KINK_CLOSENESS = 1e-4


class PropertyViolation(AssertionError):
    """A property of the market or its equilibrium does not hold (the message has the figures)."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise PropertyViolation(message)


# ============================================================================ strategies
def with_slack_capacities(scenario: Scenario, margin: float = 2.0) -> Scenario:
    """Capacities ``margin`` times the largest demand any reward profile in the boxes creates,
    so that no capacity binds: pi = unit cost everywhere (needs positive unit costs)."""
    market = Market.from_scenario(scenario)
    asps = list(scenario.asps)
    for res, need in (("compute", market.timeliness_compute_need), ("bandwidth", market.timeliness_bandwidth_need)):
        demand = market.per_asp_sum(np.sqrt(need * market.reward_max))
        cost = getattr(market, f"{res}_cost")
        for n, asp in enumerate(asps):
            cap = margin * demand[n] / np.sqrt(cost[n]) if cost[n] > 0 else getattr(asp, f"{res}_capacity")
            asps[n] = dataclasses.replace(asps[n], **{f"{res}_capacity": float(max(cap, getattr(asp, f"{res}_capacity")))})
    return dataclasses.replace(scenario, asps=tuple(asps))


def with_capacity_at_kink(scenario: Scenario, asp: int, shortfall: float) -> Scenario:
    """Set ``asp``'s compute capacity to (1 - shortfall) of its demand at the equilibrium of
    ``scenario`` (use a slack scenario, :func:`with_slack_capacities`): for a small shortfall
    (about 1e-3 to 2e-2) the new equilibrium sits at that capacity's kink (linear model)."""
    market = Market.from_scenario(scenario)
    result = solvers.solve(market, "implicit-gradient", tolerance=1e-10)
    demand = market.per_asp_sum(np.sqrt(market.timeliness_compute_need * result.rewards))[asp]
    cap = (1.0 - shortfall) * demand / np.sqrt(market.compute_cost[asp])
    asps = list(scenario.asps)
    asps[asp] = dataclasses.replace(asps[asp], compute_capacity=float(cap))
    return dataclasses.replace(scenario, asps=tuple(asps))


def _sits_at_kink(scenario: Scenario, asp: int) -> bool:
    from solvers.sensitivity import detect_regime

    market = Market.from_scenario(scenario)
    result = solvers.solve(market, "implicit-gradient", tolerance=1e-10)
    return bool(detect_regime(market, result.rewards, KINK_CLOSENESS).capacity_kink[0, asp])


@st.composite
def scenarios(draw, *, asps: tuple[int, int] = (1, 4), mus: tuple[int, int] = (1, 12),
              bandwidth_models: tuple[str, ...] = ("linear",), asp_costs: tuple[str, ...] = ("linear",),
              regime: str = "any", capacity_scale: tuple[float, float] = (1.0, 1.0),
              idle_asp: bool = True, indifferent_mu: bool = True) -> Scenario:
    """Valid generated scenarios (``market.generator``) with hypothesis choosing the details.

    Parameters
    ----------
    asps, mus : (min, max) numbers of ASPs and MUs.
    bandwidth_models, asp_costs : model variants to choose from.
    regime : ``"any"``, ``"slack"`` (unique equilibrium, no binding capacity) or ``"kink"``
        (the equilibrium at one ASP's compute-capacity kink; linear model, >= 2 MUs).
    capacity_scale : (low, high) factor on every capacity (``regime="any"`` only).
    idle_asp : may add an ASP that serves nobody.
    indifferent_mu : may make one MU indifferent to latency (timeliness weight 0).
    """
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    variant = dict(bandwidth_model=draw(st.sampled_from(bandwidth_models)), asp_cost=draw(st.sampled_from(asp_costs)))
    if regime != "any" and variant != {"bandwidth_model": "linear", "asp_cost": "linear"}:
        raise ValueError("regime 'slack' and 'kink' are constructed with the closed-form (linear) model only")
    n_asps = draw(st.integers(*asps))
    low_mus = max(mus[0], 2 * n_asps if regime == "kink" else mus[0])
    n_mus = draw(st.integers(min(low_mus, mus[1]), max(low_mus, mus[1])))
    scn = generate_scenario(n_asps, n_mus, seed=draw(st.integers(0, 2**31 - 1)), **variant)
    if regime == "any" and capacity_scale != (1.0, 1.0):
        scale = draw(st.floats(*capacity_scale))
        scn = dataclasses.replace(scn, asps=tuple(dataclasses.replace(
            a, compute_capacity=a.compute_capacity * scale, bandwidth_capacity=a.bandwidth_capacity * scale)
            for a in scn.asps))
    if indifferent_mu and draw(st.booleans()):
        m = draw(st.integers(0, n_mus - 1))
        mus_ = list(scn.mus)
        mus_[m] = dataclasses.replace(mus_[m], weights=QoEWeights(accuracy=0.5, tokens=0.5, timeliness=0.0))
        scn = dataclasses.replace(scn, mus=tuple(mus_))
    if regime in ("slack", "kink"):
        scn = with_slack_capacities(scn)
    if regime == "kink":
        market = Market.from_scenario(scn)
        counts = np.bincount(market.mu_asp[market.weight_timeliness > 0], minlength=market.n_asps)
        candidates = np.flatnonzero(counts >= 2)
        if candidates.size == 0:  # fall back to any ASP with a latency-sensitive MU
            candidates = np.flatnonzero(counts >= 1)
        asp = int(draw(st.sampled_from(candidates.tolist())))
        shortfall = draw(st.floats(0.001, 0.02))
        for _ in range(4):  # a large shortfall can leave the equilibrium strictly binding: shrink it
            kinked = with_capacity_at_kink(scn, asp, shortfall)
            if _sits_at_kink(kinked, asp):
                break
            shortfall /= 4
        assume(_sits_at_kink(kinked, asp))
        scn = kinked
    if idle_asp and draw(st.booleans()):
        scn = dataclasses.replace(scn, asps=scn.asps + (ASPSpec(
            name="idle", accuracy=0.9, seconds_per_token=0.02, max_tokens=512.0, compute_capacity=10.0,
            bandwidth_capacity=1e7, compute_cost=0.01, bandwidth_cost=1e-9),))
    return Scenario.from_dict(scn.to_dict(), file="<hypothesis>")


@st.composite
def scenario_family(draw, base: Scenario, perturb: dict[str, float]) -> Scenario:
    """Perturbations of ``base``: each field in ``perturb`` (as ``incentive stress --perturb``,
    e.g. ``{"compute_capacity": 0.2, "weights": 0.05}``) of each ASP/MU times 1 + U(-rel, rel).

    Hypothesis draws an intensity in [0, 1] scaling every bound (it shrinks towards ``base``)
    and a seed for the per-entity factors.
    """
    from solvers.stress import perturbed_scenarios

    intensity = draw(st.floats(0.0, 1.0))
    seed = draw(st.integers(0, 2**32 - 1))
    return perturbed_scenarios(base, {k: v * intensity for k, v in perturb.items()}, 1, seed)[0]


# ============================================================================ checks
def _market(source) -> Market:
    return solvers.registry.as_market(source)


def at_capacity_kink(market: Market, response) -> list[str]:
    """ASP resources at the slack/binding threshold: capacity (nearly) fully used and the
    capacity multiplier (nearly) zero. There equilibria need not be unique."""
    out = []
    for res in ("compute", "bandwidth"):
        used = market.per_asp_sum(getattr(response, res)) / getattr(market, f"{res}_capacity")
        mult = getattr(response, f"{res}_multiplier")
        unit = getattr(market, f"{res}_cost")
        if res == "compute" and market.asp_cost == "quadratic":
            unit = 2 * unit * getattr(market, f"{res}_capacity") / np.maximum(np.bincount(
                market.mu_asp, minlength=market.n_asps), 1)
        rel = mult / np.maximum(mult + unit, 1e-300)
        for n in np.flatnonzero((used > 1 - KINK_CLOSENESS) & (rel < KINK_CLOSENESS)):
            out.append(f"{market.asp_names[n]}.{res}")
    return out


def check_certified(source, result=None, *, solver: str = "dual-perturbation", tolerance: float | None = None):
    """The equilibrium (solved when ``result`` is None) passes its certificate. Returns the result."""
    market = _market(source)
    if result is None:
        result = solvers.solve(market, solver, tolerance=tolerance)
    cert = result.certificate
    _require(result.status == "converged" and cert is not None and cert.passed,
             f"{market.name}: {result.solver} status {result.status}; certificate "
             f"{cert.to_dict() if cert is not None else None}")
    return result


def check_capacities_respected(source, result, *, slack: float = 1e-12) -> None:
    """Allocations are non-negative and no ASP hands out more than its capacities
    (``result``: an equilibrium result or a follower response)."""
    market = _market(source)
    resp = getattr(result, "response", result)  # an EquilibriumResult or a FollowerResponse
    for res in ("compute", "bandwidth"):
        alloc = getattr(resp, res)
        used, cap = market.per_asp_sum(alloc), getattr(market, f"{res}_capacity")
        _require(np.all(alloc >= 0), f"{market.name}: negative {res} allocation {alloc.min():.3g}")
        worst = int(np.argmax(used / cap))
        _require(np.all(used <= cap * (1 + slack)),
                 f"{market.name}: {market.asp_names[worst]} uses {used[worst]:.9g} {res} of {cap[worst]:.9g}")


def _unique(market: Market, result) -> bool:
    return not at_capacity_kink(market, result.response)


def check_permutation_invariance(scenario: Scenario, order, *, solver: str = "dual-perturbation") -> None:
    """Reordering the MUs reorders the answer: the permuted equilibrium is certified in the
    permuted market with the same allocations; where it is unique, an independent solve of the
    permuted market finds it (rewards within 1e-2 of the box, utilities within 1e-3)."""
    order = list(order)
    permuted = dataclasses.replace(scenario, mus=tuple(scenario.mus[i] for i in order))
    a, b = Market.from_scenario(scenario), Market.from_scenario(permuted)
    ra = check_certified(a, solver=solver)
    moved = best_response(b, ra.rewards[order])
    _require(np.allclose(moved.compute, ra.response.compute[order], rtol=1e-9, atol=0)
             and np.allclose(moved.bandwidth, ra.response.bandwidth[order], rtol=1e-9, atol=0),
             f"{a.name}: permuting the MUs changed the followers' allocations")
    _require(certify(b, ra.rewards[order], a.tolerance).passed,
             f"{a.name}: the permuted equilibrium is not certified in the permuted market")
    rb = check_certified(b, solver=solver)
    if _unique(a, ra):
        width = a.reward_max - a.reward_min
        gap = np.abs(rb.rewards - ra.rewards[order]) / np.where(width[order] > 0, width[order], 1.0)
        _require(np.all(gap <= 1e-2), f"{a.name}: permuted solve differs by {gap.max():.3g} of the box")
        _require(np.allclose(rb.utility, ra.utility[order], rtol=1e-3, atol=1e-9),
                 f"{a.name}: permuted solve's utilities differ")


def check_money_rescaling(scenario: Scenario, factor: float, *, solver: str = "dual-perturbation") -> None:
    """Multiplying every money quantity by ``factor`` multiplies the rewards by it and keeps the
    allocations (checked on the transformed answer, and by an independent solve where unique)."""
    a = Market.from_scenario(scenario)
    b = a.with_money_scaled(factor)
    ra = check_certified(a, solver=solver)
    scaled = best_response(b, factor * ra.rewards)
    _require(np.allclose(scaled.compute, ra.response.compute, rtol=1e-8)
             and np.allclose(scaled.bandwidth, ra.response.bandwidth, rtol=1e-8),
             f"{a.name}: rescaling money by {factor:g} changed the allocations")
    _require(certify(b, factor * ra.rewards, a.tolerance).passed,
             f"{a.name}: the rescaled equilibrium is not certified in the rescaled market (factor {factor:g})")
    rb = check_certified(b, solver=solver)
    if _unique(a, ra):
        width = a.reward_max - a.reward_min
        gap = np.abs(rb.rewards / factor - ra.rewards) / np.where(width > 0, width, 1.0)
        _require(np.all(gap <= 1e-2), f"{a.name}: rescaled solve differs by {gap.max():.3g} of the box")
        cap_f, cap_b = a.compute_capacity[a.mu_asp], a.bandwidth_capacity[a.mu_asp]
        _require(np.all(np.abs(rb.response.compute - ra.response.compute) <= 1e-2 * cap_f)
                 and np.all(np.abs(rb.response.bandwidth - ra.response.bandwidth) <= 1e-2 * cap_b),
                 f"{a.name}: rescaled solve's allocations differ")


def check_qoe_monotone_in_own_reward(source, rewards, *, grid_points: int = 33) -> None:
    """Each MU's QoE does not fall as it alone raises its reward (others at ``rewards``), and
    rises strictly over its box unless it is latency-indifferent or alone at an ASP whose capacity binds."""
    market = _market(source)
    grid = np.linspace(market.reward_min, market.reward_max, grid_points).T
    q = deviation_qoe(market, np.asarray(rewards, dtype=float), grid)
    drops = np.diff(q, axis=1)
    _require(np.all(drops >= -1e-9 * np.maximum(np.abs(q[:, 1:]), 1.0)),
             f"{market.name}: QoE falls by {-drops.min():.3g} as an MU raises its own reward")
    served = (market.weight_timeliness > 0) & (market.reward_max > market.reward_min)
    alone = np.bincount(market.mu_asp, minlength=market.n_asps)[market.mu_asp] == 1
    strict = served & ~alone
    _require(np.all(q[strict, -1] > q[strict, 0]), f"{market.name}: some MU's QoE is flat over its reward box")


def check_warm_start_stays_put(source, result, *, solver: str = "dual-perturbation", max_rounds: int = 10,
                               move: float = 1e-4) -> None:
    """Solving again from the equilibrium returns it within ``max_rounds`` rounds, every reward
    within ``move`` of its box."""
    market = _market(source)
    again = solvers.solve(market, solver, initial_rewards=result.rewards)
    _require(again.status == "converged", f"{market.name}: warm start from the equilibrium: {again.status}")
    _require(again.iterations <= max_rounds, f"{market.name}: warm start took {again.iterations} rounds")
    width = market.reward_max - market.reward_min
    gap = np.abs(again.rewards - result.rewards) / np.where(width > 0, width, 1.0)
    _require(np.all(gap <= move), f"{market.name}: warm start moved a reward by {gap.max():.3g} of its box")


def check_solvers_agree(source, solver_a: str = "dual-perturbation", solver_b: str = "implicit-gradient", *,
                        rtol: float = 1e-2) -> bool:
    """Two solvers reach the same equilibrium where it is unique: both certified, and (unless a
    capacity sits at its kink in either answer) rewards within ``rtol`` of the box and
    utilities within ``rtol / 10``. Returns True when compared, False when skipped at a kink."""
    market = _market(source)
    ra = check_certified(market, solver=solver_a)
    rb = check_certified(market, solver=solver_b)
    kinks = at_capacity_kink(market, ra.response) + at_capacity_kink(market, rb.response)
    if kinks:
        return False
    width = market.reward_max - market.reward_min
    gap = np.abs(ra.rewards - rb.rewards) / np.where(width > 0, width, 1.0)
    _require(np.all(gap <= rtol), f"{market.name}: {solver_a} and {solver_b} differ by {gap.max():.3g} of the box "
                                  f"(MU {market.mu_names[int(np.argmax(gap))]}) with no capacity at its kink")
    _require(np.allclose(ra.utility, rb.utility, rtol=rtol / 10, atol=1e-9),
             f"{market.name}: {solver_a} and {solver_b} utilities differ")
    return True


def check_all(scenario: Scenario, *, solver: str = "dual-perturbation", seed: int = 0,
              second_solver: str | None = None) -> None:
    """Every check on one scenario: certified, capacities, QoE monotone, warm start, permutation
    (a seeded random order), money rescaling (a factor in [1e-2, 1e2]), and agreement with
    ``second_solver`` (default ``implicit-gradient`` on the linear model, none otherwise)."""
    market = Market.from_scenario(scenario)
    rng = np.random.default_rng(seed)
    result = check_certified(market, solver=solver)
    check_capacities_respected(market, result)
    check_qoe_monotone_in_own_reward(market, result.rewards)
    check_warm_start_stays_put(market, result, solver=solver)
    check_permutation_invariance(scenario, rng.permutation(len(scenario.mus)), solver=solver)
    check_money_rescaling(scenario, float(10 ** rng.uniform(-2, 2)), solver=solver)
    other = second_solver or ("implicit-gradient" if market.is_closed_form else None)
    if other is not None and other != solver:
        check_solvers_agree(market, solver, other)
